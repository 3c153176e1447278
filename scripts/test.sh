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
    if [ -n "${fuzz_build_pid:-}" ]; then
        kill -- "-$fuzz_build_pid" 2>/dev/null || true
    fi
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
# The crash tests (tests/crash.rs) run certherd built with the `crashpoints` feature. Built in the
# shared target dir, only certherd itself compiles again (a target dir of its own compiled every
# dependency too: 77 s against 35 s); the binary is copied out and handed to the tests
# (CERTHERD_CRASHPOINT_BIN), and the test build below puts the product binary back in
# target/debug, which is checked there. The release binary must contain none of it: the
# feature's environment variable is not even a string in it.
phase build-crashpoints cargo build --locked --features crashpoints --bin certherd
crashpoint_bin="$PWD/target/crashpoints/certherd"
mkdir -p "$(dirname "$crashpoint_bin")"
cp target/debug/certherd "$crashpoint_bin"
export CERTHERD_CRASHPOINT_BIN="$crashpoint_bin"
phase build-release cargo build --locked --release --bin certherd
if grep -qa CERTHERD_CRASHPOINT target/release/certherd; then
    echo "target/release/certherd contains crash points (built with --features crashpoints?)" >&2
    exit 1
fi
phase deb bash scripts/deb.sh >"$timings_dir/deb"
deb=$(cat "$timings_dir/deb")
phase deb-check bash scripts/deb-check.sh "$deb"
# Every test binary, built once (scripts/run-tests.sh's own build is then a no-op), and the
# workspace's binaries: tests/bench_smoke.rs builds certherd-bench, which `cargo test --no-run`
# does not, and compiled it in the middle of the e2e tests (about 90 s of CPU beside them). The dev
# binary the tests compare CERTHERD_BIN with is the product again, not the crash-point build.
build_tests() {
    cargo test --workspace --all-targets --locked --no-run
    cargo build --workspace --bins --locked
}
phase build-tests build_tests
if grep -qa CERTHERD_CRASHPOINT target/debug/certherd; then
    echo "target/debug/certherd still contains crash points after the test build" >&2
    exit 1
fi

# The fuzz targets build (about 100 s of both cores) while the e2e tests run: those mostly wait on
# daemons, ssh and certbot. Niced, so a test's daemons come first; its time is a line of its own.
# setsid: its own process group, which the exit trap stops when the run ends before the build.
fuzz_build_log="$timings_dir/fuzz-build"
setsid nice -n 10 bash -c 'start=$SECONDS; bash scripts/fuzz.sh --build-only; rc=$?; echo $((SECONDS - start)) >"$0.seconds"; exit $rc' \
    "$fuzz_build_log" >"$fuzz_build_log" 2>&1 &
fuzz_build_pid=$!

# tests/common checks that this binary answers --version and `completions bash` exactly as the
# cargo-built one does, and fails every test loudly otherwise.
# Every test binary of the workspace, in parallel lanes (scripts/run-tests.sh: each binary a
# process of its own, the bed gives each its own addresses; CERTHERD_TEST_LANES, default 3),
# and, in the same lanes, the e2e tests that run certbot again with the newest certbot from PyPI
# (5.x, in the virtualenv scripts/setup-debian.sh made): whatever certherd reads from or writes
# for certbot must hold from Debian 12's 2.1 to 5.x (tests/issuance.rs checks which certbot wrote
# the lineage).
CERTHERD_BIN=/usr/bin/certherd phase tests bash scripts/run-tests.sh \
    --pass certbot5 CERTHERD_BED_CERTBOT=/opt/certherd-certbot5/bin/certbot \
    issuance,issue_paths,deploy_hook,failover,operate,warm,root_never_runs_agent_files,coalesce

# The fuzz build started before the tests: wait for it (its wall time, beside the tests, is
# recorded as fuzz-build; a failed build fails the run with its log).
current_phase=fuzz-build
phase_started=$SECONDS
if ! wait "$fuzz_build_pid"; then
    cat "$fuzz_build_log" >&2
    exit 1
fi
fuzz_build_pid=
printf '%s\t%s\t%s\n' fuzz-build "$((SECONDS - phase_started))" \
    "(waited; the build took $(cat "$fuzz_build_log.seconds") s beside the tests)" >>"$phases"
current_phase=

# Fuzz the agent protocol, the config parser and certbot's environment, 60 s per target, against
# the checked-in corpus (fuzz/corpus); a crash fails the run and names the input.
phase fuzz bash scripts/fuzz.sh 60
