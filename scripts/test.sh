#!/usr/bin/env bash
# The test command (README, CI): install what the tests need, then format check, clippy and every
# test — unit tests and the e2e tests that run certbot, pebble, nginx and sshd for real on
# loopback. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

cargo fmt --all -- --check
# Imports in src/ point down only (docs/ARCHITECTURE.md).
bash scripts/layers.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked -- --test-threads="${CERTHERD_TEST_THREADS:-3}"

# Fuzz the agent protocol, the config parser and certbot's environment, 60 s per target, against
# the checked-in corpus (fuzz/corpus); a crash fails the run and names the input.
bash scripts/fuzz.sh 60
