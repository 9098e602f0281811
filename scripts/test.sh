#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and kernel/end-to-end tests that build throwaway
# network namespaces and run plumbd inside them. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release -p plumbd -p plumb-cli -p plumb-cni
cargo test --release --workspace
