#!/usr/bin/env python3
"""An example remote IPAM driver for Docker and plumb, standard library only.

Pools are /24s handed out from 10.123.0.0/16 (or the subnet asked for); addresses are handed
out in order from each pool, the gateway first. State lives in --state, so that a restart of
the plugin (or of plumbd) loses nothing.

    sudo ./ipam_driver.py --socket /run/docker/plugins/pyipam.sock --state /var/lib/pyipam.json
    plumb network create --ipam-driver pyipam pynet
"""

import ipaddress

from pluginkit import Refused, State, serve

BASE = ipaddress.ip_network("10.123.0.0/16")


class Ipam:
    def setup(self, args):
        self.state = State(args.state, {"pools": {}})

    def IpamDriver_GetCapabilities(self, req):
        return {"RequiresMACAddress": False}

    def IpamDriver_GetDefaultAddressSpaces(self, req):
        return {"LocalDefaultAddressSpace": "pylocal", "GlobalDefaultAddressSpace": "pyglobal"}

    def _overlaps(self, net):
        return any(net.overlaps(ipaddress.ip_network(p["pool"]))
                   for p in self.state.data["pools"].values())

    def IpamDriver_RequestPool(self, req):
        if req.get("V6"):
            raise Refused("this driver has no IPv6 pools")
        if req.get("Pool"):
            net = ipaddress.ip_network(req["Pool"], strict=False)
            if self._overlaps(net):
                raise Refused("pool %s overlaps a granted pool" % net)
        else:
            net = next((n for n in BASE.subnets(new_prefix=24) if not self._overlaps(n)), None)
            if net is None:
                raise Refused("no free pool left in %s" % BASE)
        pid = "%s/%s" % (req.get("AddressSpace", ""), net)
        self.state.data["pools"][pid] = {"pool": str(net), "used": []}
        self.state.save()
        return {"PoolID": pid, "Pool": str(net), "Data": {}}

    def IpamDriver_ReleasePool(self, req):
        self.state.data["pools"].pop(req["PoolID"], None)
        self.state.save()
        return {}

    def IpamDriver_RequestAddress(self, req):
        pool = self.state.data["pools"].get(req["PoolID"])
        if pool is None:
            raise Refused("unknown pool %s" % req["PoolID"])
        net = ipaddress.ip_network(pool["pool"])
        want = req.get("Address")
        if want:
            addr = ipaddress.ip_address(want)
            if addr not in net or str(addr) in pool["used"]:
                raise Refused("%s is not free in %s" % (addr, net))
        else:
            addr = next((h for h in net.hosts() if str(h) not in pool["used"]), None)
            if addr is None:
                raise Refused("no free address in %s" % net)
        pool["used"].append(str(addr))
        self.state.save()
        return {"Address": "%s/%d" % (addr, net.prefixlen), "Data": {}}

    def IpamDriver_ReleaseAddress(self, req):
        pool = self.state.data["pools"].get(req["PoolID"])
        if pool and req["Address"] in pool["used"]:
            pool["used"].remove(req["Address"])
            self.state.save()
        return {}


if __name__ == "__main__":
    serve(Ipam(), ["IpamDriver"], __doc__)
