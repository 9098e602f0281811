#!/usr/bin/env python3
"""The example bridge driver and IPAM driver in one plugin, made to misbehave on demand for
plumb's tests. --modes names a JSON file, read at every call: {"NetworkDriver.Join": MODE}
where MODE is one of: badjson (200, not JSON), wrongtype (200, fields of the wrong type),
refuse (500 {"Err"}), text500 (500, plain text), notfound (404), hang (no answer), die (the
process exits without answering), slow:SECONDS (answers late), err200 (200 with Err)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "plugins"))

import pluginkit  # noqa: E402
from bridge_driver import BridgeDriver  # noqa: E402
from ipam_driver import Ipam  # noqa: E402

MODES = os.environ.get("PLUMB_MISBEHAVE_MODES", "")

WRONG_TYPES = {
    "NetworkDriver.Join": {"InterfaceName": 5},
    "NetworkDriver.CreateEndpoint": {"Interface": {"MacAddress": 7}},
    "NetworkDriver.GetCapabilities": {"Scope": "galactic"},
    "IpamDriver.RequestAddress": {"Address": 42},
    "IpamDriver.RequestPool": {"PoolID": "p", "Pool": "not-a-cidr"},
}


class Both(BridgeDriver, Ipam):
    def setup(self, args):
        BridgeDriver.setup(self, args)
        path = args.state + ".ipam" if args.state else None
        self.ipam_state = pluginkit.State(path, {"pools": {}})

    def raw_answer(self, call, req):
        modes = {}
        if MODES and os.path.exists(MODES):
            with open(MODES) as f:
                modes = json.load(f)
        mode = modes.get(call, "")
        if mode == "badjson":
            return 200, b"{not json"
        if mode == "wrongtype":
            return 200, json.dumps(WRONG_TYPES.get(call, {"Err": 1})).encode()
        if mode == "refuse":
            return 500, b'{"Err": "refused by the test plugin"}'
        if mode == "err200":
            return 200, b'{"Err": "refused with a 200", "Error": ""}'
        if mode == "text500":
            return 500, b"boom\n"
        if mode == "notfound":
            return 404, b"404 page not found\n"
        if mode == "hang":
            time.sleep(3600)
        if mode == "die":
            os._exit(3)
        if mode.startswith("slow:"):
            time.sleep(float(mode[5:]))
        return None

    # The IPAM half keeps its own state apart from the driver's.
    def _ipam(self, fn, req):
        saved, self.state = self.state, self.ipam_state
        try:
            return fn(self, req)
        finally:
            self.state = saved

    def IpamDriver_RequestPool(self, req):
        return self._ipam(Ipam.IpamDriver_RequestPool, req)

    def IpamDriver_ReleasePool(self, req):
        return self._ipam(Ipam.IpamDriver_ReleasePool, req)

    def IpamDriver_RequestAddress(self, req):
        return self._ipam(Ipam.IpamDriver_RequestAddress, req)

    def IpamDriver_ReleaseAddress(self, req):
        return self._ipam(Ipam.IpamDriver_ReleaseAddress, req)


if __name__ == "__main__":
    pluginkit.serve(Both(), ["NetworkDriver", "IpamDriver"], __doc__)
