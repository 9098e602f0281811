#!/usr/bin/env python3
"""An example remote network driver for Docker and plumb, standard library only.

Each network is a Linux bridge ("pyb" + 8 hex digits of the network id) carrying the
network's gateway address; each endpoint is a veth pair whose host end ("pyh...") is a port
of that bridge and whose other end ("pyc...") is handed to plumb (or dockerd) in the Join
answer, to be moved into the sandbox. The driver picks each endpoint's MAC address.

    sudo ./bridge_driver.py --socket /run/docker/plugins/pybridge.sock
    plumb network create -d pybridge --subnet 10.50.0.0/24 pynet
"""

import subprocess

from pluginkit import Refused, State, serve


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise Refused("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.returncode == 0


def link_exists(name):
    return ip("link", "show", "dev", name, check=False)


class BridgeDriver:
    def setup(self, args):
        self.state = State(args.state, {"networks": {}, "endpoints": {}})

    def NetworkDriver_GetCapabilities(self, req):
        return {"Scope": "local", "ConnectivityScope": "local"}

    def NetworkDriver_CreateNetwork(self, req):
        nid = req["NetworkID"]
        bridge = "pyb" + nid[:8]
        v4 = req.get("IPv4Data") or []
        if not v4:
            raise Refused("this driver needs an IPv4 pool")
        if not link_exists(bridge):
            ip("link", "add", bridge, "type", "bridge")
        gw = v4[0].get("Gateway")
        if gw:
            ip("addr", "replace", gw, "dev", bridge)
        ip("link", "set", bridge, "up")
        gw_ip = gw.split("/")[0] if gw else ""
        self.state.data["networks"][nid] = {"bridge": bridge, "gateway": gw_ip}
        self.state.save()
        return {}

    def NetworkDriver_DeleteNetwork(self, req):
        net = self.state.data["networks"].pop(req["NetworkID"], None)
        if net and link_exists(net["bridge"]):
            ip("link", "del", net["bridge"])
        self.state.save()
        return {}

    def NetworkDriver_CreateEndpoint(self, req):
        nid, eid = req["NetworkID"], req["EndpointID"]
        if nid not in self.state.data["networks"]:
            raise Refused("network %s unknown to this driver" % nid[:12])
        iface = req.get("Interface") or {}
        answer = {}
        mac = iface.get("MacAddress") or ""
        if not mac:
            # A locally administered MAC from the endpoint id.
            mac = "02:50:" + ":".join(eid[i:i + 2] for i in range(0, 8, 2))
            answer = {"Interface": {"MacAddress": mac}}
        self.state.data["endpoints"][eid] = {"network": nid, "mac": mac}
        self.state.save()
        return answer

    def NetworkDriver_EndpointOperInfo(self, req):
        ep = self.state.data["endpoints"].get(req["EndpointID"], {})
        net = self.state.data["networks"].get(req["NetworkID"], {})
        return {"Value": {"bridge": net.get("bridge", ""), "mac": ep.get("mac", "")}}

    def NetworkDriver_DeleteEndpoint(self, req):
        eid = req["EndpointID"]
        self.state.data["endpoints"].pop(eid, None)
        self.state.save()
        if link_exists("pyh" + eid[:8]):
            ip("link", "del", "pyh" + eid[:8])
        return {}

    def NetworkDriver_Join(self, req):
        nid, eid = req["NetworkID"], req["EndpointID"]
        net = self.state.data["networks"].get(nid)
        if net is None:
            raise Refused("network %s unknown to this driver" % nid[:12])
        host, peer = "pyh" + eid[:8], "pyc" + eid[:8]
        if link_exists(host):
            ip("link", "del", host)
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        ip("link", "set", host, "master", net["bridge"], "up")
        return {"InterfaceName": {"SrcName": peer, "DstPrefix": "eth"},
                "Gateway": net["gateway"]}

    def NetworkDriver_Leave(self, req):
        host = "pyh" + req["EndpointID"][:8]
        if link_exists(host):
            ip("link", "del", host)
        return {}

    def NetworkDriver_DiscoverNew(self, req):
        return {}

    def NetworkDriver_DiscoverDelete(self, req):
        return {}


if __name__ == "__main__":
    serve(BridgeDriver(), ["NetworkDriver"], __doc__)
