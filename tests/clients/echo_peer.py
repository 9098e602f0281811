"""Tiny peers for the published-port tests.

  echo_peer.py serve PORT...          TCP and UDP servers on each PORT: reply with the client's address
  echo_peer.py tcp HOST PORT          connect, print the reply (the address the server saw)
  echo_peer.py udp HOST PORT          send a datagram, print the reply
  echo_peer.py once PORT              print "ready", then "got" if a UDP datagram arrives within 3 s, else "none"
Clients exit 1 when nothing answers within 3 s."""

import socket
import sys
import threading


def tcp_socket(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(64)
    return s


def udp_socket(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s


def serve_tcp(s):
    while True:
        c, addr = s.accept()
        c.sendall((addr[0].removeprefix("::ffff:") + "\n").encode())
        c.close()


def serve_udp(s):
    while True:
        _, addr = s.recvfrom(512)
        s.sendto((addr[0].removeprefix("::ffff:") + "\n").encode(), addr)


def main():
    mode = sys.argv[1]
    if mode == "serve":
        # Every socket listens before "ready" is printed.
        socks = [(tcp_socket(int(p)), udp_socket(int(p))) for p in sys.argv[2:]]
        for t, u in socks:
            threading.Thread(target=serve_tcp, args=(t,), daemon=True).start()
            threading.Thread(target=serve_udp, args=(u,), daemon=True).start()
        print("ready", flush=True)
        threading.Event().wait()
    if mode == "once":
        s = udp_socket(int(sys.argv[2]))
        s.settimeout(3)
        print("ready", flush=True)
        try:
            s.recvfrom(100)
            print("got", flush=True)
        except socket.timeout:
            print("none", flush=True)
        return
    host, port = sys.argv[2], int(sys.argv[3])
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if mode == "tcp":
            s = socket.create_connection((host, port), timeout=3)
            print(s.recv(100).decode().strip())
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.sendto(b"hi", (host, port))
            print(s.recvfrom(100)[0].decode().strip())
    except OSError as e:
        print(f"no answer: {e}", file=sys.stderr)
        sys.exit(1)


main()
