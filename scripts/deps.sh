#!/usr/bin/env bash
# Installs the Debian packages plumb needs to run and to test (idempotent).
set -euo pipefail
# protobuf-compiler builds the etcd client; etcd-server (with etcdctl from etcd-client) runs
# the cluster store in the multi-host tests (openssl makes their TLS certificates); iperf3
# measures the overlay data path; runc, crun, podman, containerd and busybox-static run real
# containers through the OCI hook and the CNI plugin (containerd's service is not started by
# this: the test runs its own daemon in a test namespace); containernetworking-plugins is Podman's own default
# network (the benchmark's reference); curl fetches from containers in the tests.
pkgs=(iproute2 nftables iputils-ping util-linux procps dnsutils dnsperf make gcc python3 curl
      protobuf-compiler etcd-server etcd-client iperf3 openssl runc crun podman containerd busybox-static
      containernetworking-plugins)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
# The docker-py compatibility test makes a venv; Debian's python3 needs python3-venv for that.
if command -v python3 >/dev/null && ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
fi
