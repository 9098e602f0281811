#!/usr/bin/env bash
# Builds plumb and starts plumbd with its embedded defaults (state in /var/lib/plumb, socket
# /run/plumb/plumb.sock). Extra arguments go to plumbd. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release -p plumbd -p plumb-cli
exec ./target/release/plumbd "$@"
