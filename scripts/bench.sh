#!/usr/bin/env bash
# The benchmarks (README, issue 5): build certherd and certherd-bench in release mode, start the
# loopback test bed (sshd + nginx per node, pebble), run certherd against the hand-made ssh-loop
# and rsync baselines at 1, 3, 10 and 30 peers, with 0 and 20 ms round trips, and write
# BENCHMARKS.md. Run as root on Debian 12; takes about 10 minutes. Extra arguments go to
# certherd-bench (e.g. --reps 3, --peers 1,3,10, --smoke, --out /tmp/b.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p certherd -p certherd-bench --bins
exec "$target/release/certherd-bench" --certherd "$target/release/certherd" --out BENCHMARKS.md "$@"
