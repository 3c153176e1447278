#!/usr/bin/env bash
# The benchmarks (README, issues 5 and 12): build certherd and certherd-bench in release mode,
# start the loopback test bed (sshd + nginx per node, pebble), run certherd against the hand-made
# ssh-loop and rsync baselines at 1, 3, 10, 30 and 100 peers (a bed of 101 nodes), with 0 and
# 20 ms round trips — auth cold, warm and after `certherd warm`, deploy, memory and CPU, the
# key-exchange choices, a real renewal with and without `warm` — and write BENCHMARKS.md. Run as
# root on Debian 12; takes about 30 minutes. Extra arguments go to certherd-bench (e.g. --reps 3,
# --peers 1,3,10, --only kex,auth, --smoke, --out /tmp/b.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p certherd -p certherd-bench --bins
exec "$target/release/certherd-bench" --certherd "$target/release/certherd" --out BENCHMARKS.md "$@"
