#!/usr/bin/env bash
# The test command (README, CI): install what the tests need, then format check, clippy, build
# and install the Debian package (scripts/deb.sh, scripts/deb-check.sh: lintian, files, account,
# dpkg -r), and every test — unit tests and the e2e tests that run certbot, pebble, nginx and
# sshd for real on loopback — against the INSTALLED /usr/bin/certherd, so a broken package
# fails the run; then the certbot e2e tests once more with certbot 5.x from PyPI. Run as root on
# Debian 12 or 13.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

cargo fmt --all -- --check
# Imports in src/ point down only (docs/ARCHITECTURE.md).
bash scripts/layers.sh
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
deb=$(bash scripts/deb.sh)
bash scripts/deb-check.sh "$deb"
# tests/common checks that this binary answers --version and `completions bash` exactly as the
# cargo-built one does, and fails every test loudly otherwise.
CERTHERD_BIN=/usr/bin/certherd \
    cargo test --workspace --all-targets --locked -- --test-threads="${CERTHERD_TEST_THREADS:-3}"

# The e2e tests that run certbot, again with the newest certbot from PyPI (5.x, in the virtualenv
# scripts/setup-debian.sh made): whatever certherd reads from or writes for certbot must hold
# from Debian 12's 2.1 to 5.x (tests/issuance.rs checks which certbot wrote the lineage).
CERTHERD_BIN=/usr/bin/certherd CERTHERD_BED_CERTBOT=/opt/certherd-certbot5/bin/certbot \
    cargo test --locked -p certherd --test issuance --test issue_paths --test deploy_hook \
    --test failover --test operate --test warm --test root_never_runs_agent_files \
    -- --test-threads="${CERTHERD_TEST_THREADS:-3}"

# Fuzz the agent protocol, the config parser and certbot's environment, 60 s per target, against
# the checked-in corpus (fuzz/corpus); a crash fails the run and names the input.
bash scripts/fuzz.sh 60
