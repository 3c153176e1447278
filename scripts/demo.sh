#!/usr/bin/env bash
# The demo (README): install the packages, build, start a 3-node loopback cluster with pebble as
# the CA, issue a certificate for site.test through certherd while DNS points only at nodes 2
# and 3, deploy it to every node, renew it through the deploy hook, and print the time each phase
# took. Pass --keep to leave the cluster running. Works from a checkout anywhere, root's 0700
# home included: the bed runs a copy of certherd where the agent's account can reach it.
set -euo pipefail
cd "$(dirname "$0")/.."

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now)
bash scripts/setup-debian.sh
packages=$(since "$t")

t=$(now)
cargo build --release --locked -p certherd -p certherd-testbed --bins
build=$(since "$t")

exec target/release/certherd-bed demo --phase "packages=$packages" --phase "build=$build" "$@"
