#!/usr/bin/env bash
# The test command (README, CI): install what the tests need, then format check, clippy and every
# test — unit tests and the e2e tests that run certbot, pebble, nginx and sshd for real on
# loopback. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --locked --features crashpoints --lib --bins -- -D warnings
# The crash tests (tests/crash.rs) run certherd built with the `crashpoints` feature, in its own
# target dir (the test builds it too; this makes that a no-op). The release binary must contain
# none of it: the feature's environment variable is not even a string in it.
cargo build --locked --features crashpoints --bin certherd --target-dir target/crashpoints
cargo build --locked --release --bin certherd
if grep -qa CERTHERD_CRASHPOINT target/release/certherd; then
    echo "target/release/certherd contains crash points (built with --features crashpoints?)" >&2
    exit 1
fi
cargo test --workspace --all-targets --locked -- --test-threads="${CERTHERD_TEST_THREADS:-3}"

# Fuzz the agent protocol, the config parser and certbot's environment, 60 s per target, against
# the checked-in corpus (fuzz/corpus); a crash fails the run and names the input.
bash scripts/fuzz.sh 60
