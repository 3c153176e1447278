#!/usr/bin/env bash
# Fuzzes certherd with cargo-fuzz (libFuzzer + AddressSanitizer, debug assertions on): every
# target for SECONDS (default 60, what CI runs; run longer by hand, e.g. `scripts/fuzz.sh 3600`),
# seeded from the checked-in corpus in fuzz/corpus/<target>/. New inputs go to fuzz/scratch/
# (not checked in). Exits 1 when any target found a crash, naming the input in fuzz/artifacts/:
# turn it into a regression test (SECURITY.md, "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh --build-only    build the targets and stop (scripts/test.sh builds them
#                                   while the e2e tests run)
#
# cargo-fuzz needs nightly-only rustc flags (-Z sanitizer); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them, so no second toolchain is needed. Set CERTHERD_FUZZ_TARGET_DIR to build
# elsewhere than fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=
if [ "${1:-}" = --build-only ]; then
    build_only=1
    shift
fi
seconds="${1:-60}"
shift || true
case "$seconds" in
    '' | *[!0-9]* | 0) echo "fuzz.sh: $seconds: expected SECONDS, a whole number of at least 1 (or --build-only)" >&2; exit 2 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(agent_request agent_response config certbot_env)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

build=(-a)   # release + debug assertions and overflow checks
if [ -n "${CERTHERD_FUZZ_TARGET_DIR:-}" ]; then
    build+=(--target-dir "$CERTHERD_FUZZ_TARGET_DIR")
fi

cd fuzz
cargo fuzz build "${build[@]}"
[ -z "$build_only" ] || exit 0

# One target: its run, then one summary line (executions, speed, corpus size); its exit status
# is left in scratch/<target>.rc.
fuzz_one() {
    local t=$1 max_len=4096 rc=0
    local extra=()
    mkdir -p "scratch/$t" "artifacts/$t"
    # The protocol targets go past the 1 MiB line limit (MAX_REQUEST_LINE / MAX_RESPONSE_LINE):
    # -max_len above it, a dictionary of the protocol's words, and the targets' own generators
    # that expand a short input into a line at the limit ± 1 KiB (see the targets' docs).
    case "$t" in
        agent_request | agent_response)
            max_len=$((1024 * 1024 + 64 * 1024))
            extra=(-dict=dict/protocol.dict)
            ;;
    esac
    echo "fuzz.sh: $t for ${seconds}s" >&2
    # First corpus dir is written to, the second (checked in) only read.
    cargo fuzz run "${build[@]}" "$t" "scratch/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
        -print_final_stats=1 ${extra[@]+"${extra[@]}"} 2>"scratch/$t.log" || rc=$?
    echo "$rc" >"scratch/$t.rc"
    local runs rate cov
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "scratch/$t.log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "scratch/$t.log" | grep -o '[0-9]*$' || true)
    cov=$(grep -E '^#[0-9]+' "scratch/$t.log" | tail -n 1 | grep -o 'cov: [0-9]*' || true)
    echo "fuzz.sh: $t: ${runs:-?} executions (${rate:-?}/s), ${cov:-cov: ?}, $(ls "scratch/$t" | wc -l) new inputs" >&2
}

# One target per core at a time: each still gets a whole core for its SECONDS, the run ends
# sooner (CERTHERD_FUZZ_JOBS overrides).
jobs="${CERTHERD_FUZZ_JOBS:-$(nproc)}"
running=0
for t in "${targets[@]}"; do
    rm -f "scratch/$t.rc"
    fuzz_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=()
for t in "${targets[@]}"; do
    if [ "$(cat "scratch/$t.rc" 2>/dev/null || echo missing)" != 0 ]; then
        failed+=("$t")
        echo "fuzz.sh: $t failed; the end of its log:" >&2
        tail -n 40 "scratch/$t.log" >&2
    fi
done

# agent_request's scratch nodes live in /dev/shm; libFuzzer exits without running destructors.
for d in /dev/shm/certherd-fuzz-agent-*; do
    [ -d "$d" ] && [ ! -d "/proc/${d##*-}" ] && rm -rf "$d"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    ls -l artifacts/*/ >&2 || true
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no crash" >&2
