#!/usr/bin/env bash
# The test command (README, CI): install what the tests need, then format check, clippy, build
# and install the Debian package (scripts/deb.sh, scripts/deb-check.sh: lintian, files, account,
# dpkg -r), and every test — unit tests and the e2e tests that run certbot, pebble, nginx and
# sshd for real on loopback — against the INSTALLED /usr/bin/certherd, so a broken package
# fails the run; then the certbot e2e tests once more with certbot 5.x from PyPI. Run as root on
# Debian 12 or 13.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where the time goes: every phase, printed as a table when the run ends (also when it fails;
# the failed phase is the last one listed, marked); scripts/run-tests.sh prints each test
# binary's time.
timings_dir=$(mktemp -d)
phases="$timings_dir/phases"
started=$SECONDS
: >"$phases"
report_timings() {
    local rc=$?
    if [ -n "${current_phase:-}" ]; then
        printf '%s\t%s\tFAILED (exit %s)\n' "$current_phase" "$((SECONDS - phase_started))" "$rc" >>"$phases"
    fi
    echo
    echo "== timings (seconds) =="
    column -t -s $'\t' "$phases" 2>/dev/null || cat "$phases"
    echo "total $((SECONDS - started)) s"
    rm -rf "$timings_dir"
}
trap report_timings EXIT
# `phase NAME CMD…`: runs CMD, recording its wall time under NAME.
phase() {
    current_phase=$1
    phase_started=$SECONDS
    shift
    "$@"
    printf '%s\t%s\n' "$current_phase" "$((SECONDS - phase_started))" >>"$phases"
    current_phase=
}
phase setup bash scripts/setup-debian.sh

phase fmt cargo fmt --all -- --check
# Imports in src/ point down only (docs/ARCHITECTURE.md).
phase layers bash scripts/layers.sh
phase clippy cargo clippy --workspace --all-targets --locked -- -D warnings
phase clippy-crashpoints cargo clippy --locked --features crashpoints --lib --bins -- -D warnings
# The crash tests (tests/crash.rs) run certherd built with the `crashpoints` feature, in its own
# target dir (the test builds it too; this makes that a no-op). The release binary must contain
# none of it: the feature's environment variable is not even a string in it.
phase build-crashpoints cargo build --locked --features crashpoints --bin certherd --target-dir target/crashpoints
phase build-release cargo build --locked --release --bin certherd
if grep -qa CERTHERD_CRASHPOINT target/release/certherd; then
    echo "target/release/certherd contains crash points (built with --features crashpoints?)" >&2
    exit 1
fi
phase deb bash scripts/deb.sh >"$timings_dir/deb"
deb=$(cat "$timings_dir/deb")
phase deb-check bash scripts/deb-check.sh "$deb"
# tests/common checks that this binary answers --version and `completions bash` exactly as the
# cargo-built one does, and fails every test loudly otherwise.
# Every test binary of the workspace, in parallel lanes (scripts/run-tests.sh: each binary a
# process of its own, the bed gives each its own addresses; CERTHERD_TEST_LANES, default 2).
CERTHERD_BIN=/usr/bin/certherd phase tests bash scripts/run-tests.sh

# The e2e tests that run certbot, again with the newest certbot from PyPI (5.x, in the virtualenv
# scripts/setup-debian.sh made): whatever certherd reads from or writes for certbot must hold
# from Debian 12's 2.1 to 5.x (tests/issuance.rs checks which certbot wrote the lineage).
CERTHERD_BIN=/usr/bin/certherd CERTHERD_BED_CERTBOT=/opt/certherd-certbot5/bin/certbot \
    phase tests-certbot5 bash scripts/run-tests.sh issuance issue_paths deploy_hook failover \
    operate warm root_never_runs_agent_files

# Fuzz the agent protocol, the config parser and certbot's environment, 60 s per target, against
# the checked-in corpus (fuzz/corpus); a crash fails the run and names the input.
phase fuzz bash scripts/fuzz.sh 60
