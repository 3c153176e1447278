#!/usr/bin/env bash
# The demo (README): install the packages, build, start a 3-node loopback cluster with pebble as
# the CA, issue a certificate for site.test through certherd while DNS points only at nodes 2
# and 3, and show which nodes served the token. Pass --keep to leave the cluster running.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cargo build --release --locked -p certherd -p certherd-testbed --bins
exec target/release/certherd-bed demo "$@"
