#!/usr/bin/env bash
# The test bed's start-up time with and without network namespaces (BENCHMARKS.md, "Test bed
# start-up"): builds certherd and the bed's `bed-startup` tool, then starts and drops a 3-node bed
# with pebble N times each way, alternating, and prints a Markdown table of medians. Run as root
# on a machine prepared by scripts/setup-debian.sh. Arguments go to bed-startup (--nodes, --runs).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --locked -p certherd -p certherd-testbed --bins
exec "$target/debug/bed-startup" --certherd "$target/debug/certherd" "$@"
