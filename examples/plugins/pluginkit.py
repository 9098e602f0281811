"""Shared plumbing of the example plugins: Docker's plugin protocol (JSON over HTTP on a
unix socket) with Python's standard library only. A plugin is a class with one method per
call (``NetworkDriver_Join`` answers ``POST /NetworkDriver.Join``); an exception becomes
``{"Err": "..."}`` with HTTP 500, a missing method a 404. Every call is appended to a JSON
log (one object per line: call, request, answer) when ``--log`` is given."""

import argparse
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler


class Refused(Exception):
    """The plugin says no; the message goes back as Err."""


def serve(plugin, implements, description):
    """Parses --socket/--log/--state, and serves `plugin` until killed."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--socket", required=True, help="unix socket to listen on")
    p.add_argument("--log", help="append every call here, as JSON lines")
    p.add_argument("--state", help="file keeping the plugin's state across restarts")
    args = p.parse_args()
    plugin.setup(args)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def address_string(self):
            return "unix"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            started = time.monotonic()
            call = self.path.lstrip("/")
            req = json.loads(raw) if raw.strip() else None
            status, answer = 200, {}
            # A plugin may answer a call with raw bytes itself (tests use it to misbehave).
            raw_answer = getattr(plugin, "raw_answer", None)
            forced = raw_answer(call, req) if raw_answer else None
            if forced is not None:
                status, body = forced
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if call == "Plugin.Activate":
                answer = {"Implements": implements}
            else:
                fn = getattr(plugin, call.replace(".", "_"), None)
                if fn is None:
                    status, answer = 404, {"Err": "not implemented: " + call}
                else:
                    try:
                        with lock:
                            answer = fn(req or {}) or {}
                    except Refused as e:
                        status, answer = 500, {"Err": str(e)}
                    except Exception as e:  # a bug or a failed command: say so
                        status, answer = 500, {"Err": "%s: %s" % (type(e).__name__, e)}
            if args.log:
                elapsed = (time.monotonic() - started) * 1e3
                with open(args.log, "a") as f:
                    f.write(json.dumps({"call": call, "request": req, "status": status,
                                        "answer": answer, "ms": round(elapsed, 3)}) + "\n")
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    if os.path.exists(args.socket):
        os.unlink(args.socket)
    os.makedirs(os.path.dirname(os.path.abspath(args.socket)), exist_ok=True)
    srv = Server(args.socket, Handler)
    print("listening on", args.socket, file=sys.stderr, flush=True)
    srv.serve_forever()


class State:
    """A dict kept in a JSON file (written whole, then renamed)."""

    def __init__(self, path, empty):
        self.path = path
        self.data = empty
        if path and os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)
