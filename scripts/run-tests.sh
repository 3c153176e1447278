#!/usr/bin/env bash
# Runs the workspace's test binaries in parallel lanes: `cargo test --no-run` builds them all,
# then every binary runs on its own as `cargo test` would run it, LANES at once (the bed
# gives each its own index and addresses, so beds in separate processes never meet), longest
# first. Each binary's output goes to a log; a failed binary's log is printed whole at the end,
# then a table of every binary's wall time. Exits 1 when any binary failed (after running all
# of them: one failure never hides another).
#
#   scripts/run-tests.sh [--lanes N] [NAME...]     NAME: a test binary (deploy_json, served,
#                                                  lib:certherd, ...); none: all of them
#
# Arguments after `--` go to every test binary (default: --test-threads=3). The environment
# (CERTHERD_BIN, CERTHERD_BED_CERTBOT, ...) passes through. Used by scripts/test.sh; on its own
# it is the fast loop: `scripts/run-tests.sh lib:certherd deploy_json` (docs/TESTING.md).
set -euo pipefail
cd "$(dirname "$0")/.."

lanes="${CERTHERD_TEST_LANES:-2}"
names=()
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --lanes) lanes="$2"; shift 2 ;;
        --lanes=*) lanes="${1#--lanes=}"; shift ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "run-tests.sh: unknown option $1 (expected --lanes N, test names, or -- ARGS)" >&2; exit 2 ;;
        *) names+=("$1"); shift ;;
    esac
done
case "$lanes" in
    ''|*[!0-9]*|0) echo "run-tests.sh: --lanes $lanes: expected a whole number of at least 1" >&2; exit 2 ;;
esac
[ ${#extra[@]} -gt 0 ] || extra=(--test-threads="${CERTHERD_TEST_THREADS:-3}")

logs=$(mktemp -d /tmp/certherd-tests.XXXXXX)
# Build every test binary once, up front: the lanes then only run them.
cargo test --workspace --all-targets --locked --no-run --message-format=json-render-diagnostics \
    >"$logs/build.json"
# One line per binary: "PKG KIND NAME EXECUTABLE DIR", from cargo's own list of what it built.
python3 - "$logs/build.json" >"$logs/all" <<'PY'
import json, os, sys
seen = set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m.get("profile", {}).get("test"):
        continue
    t = m["target"]
    kind = t["kind"][0]
    kind = "lib" if kind in ("lib", "rlib", "proc-macro") else kind
    pkg_dir = os.path.dirname(m["manifest_path"])
    pkg = m["package_id"]
    # "path+file:///x/bench#certherd-bench@0.1.0" (cargo 1.77+) or "certherd 0.1.0 (path+…)"
    if "#" in pkg:
        frag = pkg.split("#")[-1]
        name = frag.split("@")[0] if "@" in frag else os.path.basename(pkg_dir)
    else:
        name = pkg.split()[0]
    key = (name, kind, t["name"])
    if key not in seen:
        seen.add(key)
        print(*key, m["executable"], pkg_dir)
PY
if [ ${#names[@]} -gt 0 ]; then
    : >"$logs/chosen"
    for n in "${names[@]}"; do
        if [[ "$n" == lib:* ]]; then
            match=$(awk -v p="${n#lib:}" '$1==p && $2=="lib"' "$logs/all")
        else
            match=$(awk -v t="$n" '$3==t && $2!="lib"' "$logs/all")
        fi
        if [ -z "$match" ]; then
            echo "run-tests.sh: no test binary named $n: expected one of:" $(awk '{print ($2=="lib") ? "lib:" $1 : $3}' "$logs/all") >&2
            exit 2
        fi
        echo "$match" >>"$logs/chosen"
    done
else
    cp "$logs/all" "$logs/chosen"
fi
# Longest first (the figures of a full run on the 2-core machine: crash about 5 min, operate,
# bench_smoke, vrrp and batch about 2 min), so the lanes end together.
weight() {
    case "$1" in
        crash) echo 20 ;;
        operate|bench_smoke|vrrp|batch) echo 9 ;;
        vrrp_flap|faults|certbot_box|permissions|warm|one_deploy|apache) echo 5 ;;
        *) echo 1 ;;
    esac
}
while read -r pkg kind name exe dir; do
    echo "$(weight "$name") $pkg $kind $name $exe $dir"
done <"$logs/chosen" | sort -k1,1nr | cut -d' ' -f2- >"$logs/order"

# Runs one test binary as `cargo test` would (from its package's directory, CARGO set), but
# without cargo: cargo would hold the build directory's lock and run the lanes one at a time.
run_one() {
    local pkg=$1 kind=$2 name=$3 exe=$4 dir=$5 log start rc
    log="$LOGS/$pkg.$kind.$name.log"
    start=$(date +%s%N)
    rc=0
    # shellcheck disable=SC2086 # EXTRA is a list of words
    (cd "$dir" && exec "$exe" $EXTRA) >"$log" 2>&1 || rc=$?
    local ms=$((($(date +%s%N) - start) / 1000000))
    printf '%s\t%s\t%d.%d\n' "$rc" "$pkg $kind $name" "$((ms / 1000))" "$((ms % 1000 / 100))" >>"$LOGS/results"
    if [ "$rc" = 0 ]; then echo "ok      $name ($((ms / 1000)) s)"; else echo "FAILED  $name (exit $rc)"; fi
}
export -f run_one
export LOGS="$logs" EXTRA="${extra[*]}" CARGO="${CARGO:-$(command -v cargo)}"
: >"$logs/results"
echo "run-tests.sh: $(wc -l <"$logs/order") test binaries in $lanes lanes (logs in $logs)"
xargs -P "$lanes" -L 1 bash -c 'run_one "$@"' _ <"$logs/order" || true

failed=0
while IFS=$'\t' read -r rc what _; do
    [ "$rc" = 0 ] && continue
    failed=1
    set -- $what
    echo
    echo "==================== FAILED: $what (exit $rc) ===================="
    cat "$logs/$1.$2.$3.log"
done <"$logs/results"
echo
echo "-- test binaries (seconds, $lanes lanes) --"
sort -t $'\t' -k3 -rn "$logs/results" | awk -F'\t' '{printf "%s\t%s\t%s\n", $2, $3, ($1==0) ? "ok" : "FAILED"}' | column -t -s $'\t'
ran=$(wc -l <"$logs/results")
want=$(wc -l <"$logs/order")
if [ "$ran" != "$want" ]; then
    echo "run-tests.sh: only $ran of $want test binaries reported a result" >&2
    failed=1
fi
[ "$failed" = 0 ] && rm -rf "$logs"
exit "$failed"
