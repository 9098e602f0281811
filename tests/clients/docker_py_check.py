"""docker-py (the Docker SDK for Python) against plumbd: create, list, inspect, connect,
disconnect, remove and prune networks, and the errors dockerd gives. Exits non-zero on the
first mismatch. DOCKER_HOST points at plumbd; SANDBOX names a sandbox that exists."""

import os
import sys

import docker
from docker.types import IPAMConfig, IPAMPool


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)


client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], version="auto")
check(client.ping() is True, "ping")
sandbox = os.environ["SANDBOX"]

ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="10.88.0.0/24", gateway="10.88.0.1")])
net = client.networks.create("py1", driver="bridge", ipam=ipam, labels={"x": "y"}, options={"com.docker.network.driver.mtu": "1400"})
check(len(net.id) == 64, f"id {net.id}")
net.reload()
check(net.attrs["IPAM"]["Config"] == [{"Subnet": "10.88.0.0/24", "Gateway": "10.88.0.1"}], f"IPAM.Config echoed exactly: {net.attrs['IPAM']}")
check(net.attrs["IPAM"]["Options"] is None, f"IPAM.Options null when not given: {net.attrs['IPAM']}")
check(net.attrs["Labels"] == {"x": "y"}, "labels")
check(net.attrs["Options"] == {"com.docker.network.driver.mtu": "1400"}, f"options {net.attrs['Options']}")
check(net.attrs["Driver"] == "bridge" and net.attrs["Scope"] == "local", "driver and scope")

names = sorted(n.name for n in client.networks.list())
check(names == ["bridge", "host", "none", "py1"], f"list {names}")
check([n.name for n in client.networks.list(filters={"label": "x=y"})] == ["py1"], "label filter")
check([n.name for n in client.networks.list(names=["py1"])] == ["py1"], "names filter")
check(client.networks.list(filters={"dangling": True})[0].name == "py1", "dangling filter")

try:
    net.connect(sandbox, driver_opt={"com.docker.network.portmap": "8000-8001"})
    check(False, "a range without host ports must fail")
except docker.errors.APIError as e:
    check(e.status_code == 400 and "HOST_PORT:CONTAINER_PORT" in str(e), f"bad port -> 400: {e}")
net.connect(sandbox, ipv4_address="10.88.0.42", aliases=["api"],
            driver_opt={"com.docker.network.portmap": "18099:80,18100:81/udp"})
net.reload()
members = list(net.attrs["Containers"].values())
check(len(members) == 1 and members[0]["IPv4Address"] == "10.88.0.42/24", f"containers {members}")
check(members[0].get("Ports") == ["18099:80/tcp", "18100:81/udp"], f"ports {members[0]}")
check(members[0]["MacAddress"] == "02:42:0a:58:00:2a", f"mac {members[0]}")
check(client.networks.list(filters={"dangling": True}) == [], "in use is not dangling")

try:
    net.connect(sandbox)
    check(False, "second connect must fail")
except docker.errors.APIError as e:
    check(e.status_code == 409, f"already attached -> 409, got {e.status_code}")
try:
    net.remove()
    check(False, "remove with endpoints must fail")
except docker.errors.APIError as e:
    check(e.status_code == 403 and "active endpoints" in str(e), f"active endpoints -> 403: {e}")
try:
    client.networks.get("nope")
    check(False, "get nope must fail")
except docker.errors.NotFound as e:
    check("network nope not found" in str(e), str(e))
try:
    client.networks.create("py1")
    check(False, "duplicate must fail")
except docker.errors.APIError as e:
    check(e.status_code == 409, f"duplicate -> 409, got {e.status_code}")
try:
    client.networks.create("bad", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.89.0.0/24", gateway="10.90.0.1")]))
    check(False, "gateway outside subnet must fail")
except docker.errors.APIError as e:
    check(e.status_code == 400 and "Gateway" in str(e), f"bad gateway -> 400: {e}")

net.disconnect(sandbox)
client.networks.create("py2")
pruned = client.networks.prune(filters={"label": "x=y"})
check(pruned["NetworksDeleted"] == ["py1"], f"prune by label {pruned}")
pruned = client.networks.prune()
check(pruned["NetworksDeleted"] == ["py2"], f"prune {pruned}")

# A remote network driver and remote IPAM (a plugin named by PLUGIN, serving both).
plugin = os.environ.get("PLUGIN")
if plugin:
    rnet = client.networks.create("pyremote", driver=plugin, ipam=IPAMConfig(driver=plugin))
    check(rnet.attrs["Driver"] == plugin, f"remote driver {rnet.attrs['Driver']}")
    check(rnet.attrs["IPAM"]["Driver"] == plugin, f"remote IPAM {rnet.attrs['IPAM']}")
    rnet.connect(sandbox)
    rnet.reload()
    eps = list(rnet.attrs["Containers"].values())
    check(len(eps) == 1 and eps[0]["IPv4Address"].startswith("10.123."), f"endpoint {eps}")
    rnet.disconnect(sandbox)
    rnet.remove()
print("docker-py: all checks passed")
