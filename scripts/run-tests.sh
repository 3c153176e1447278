#!/usr/bin/env bash
# Runs the workspace's test binaries in parallel lanes: `cargo test --no-run` builds them all,
# then every binary runs on its own as `cargo test` would run it, LANES at once (the bed
# gives each its own index and addresses, so beds in separate processes never meet), longest
# first. Each binary's output goes to a log; a failed binary's log is printed whole at the end,
# then a table of every binary's wall time. Exits 1 when any binary failed (after running all
# of them: one failure never hides another).
#
#   scripts/run-tests.sh [--lanes N] [--pass LABEL VAR=VALUE NAME,NAME...]... [NAME...]
#
# NAME: a test binary (deploy_json, served, lib:certherd, ...); none: all of them. `--pass` runs
# the binaries it names once more with VAR=VALUE in their environment, in the same lanes as the
# rest (scripts/test.sh runs the certbot tests again with certbot 5 that way: a second pass in
# lanes of its own would wait for the first one's slowest binary); the table names it LABEL.
# VALUE holds no blank.
#
# Arguments after `--` go to every test binary (default: --test-threads=N, N from `threads`
# below, or CERTHERD_TEST_THREADS for every binary). The environment
# (CERTHERD_BIN, CERTHERD_BED_CERTBOT, ...) passes through. Used by scripts/test.sh; on its own
# it is the fast loop: `scripts/run-tests.sh lib:certherd deploy_json` (docs/TESTING.md).
set -euo pipefail
cd "$(dirname "$0")/.."

# Three lanes on the 2-core machine: an e2e binary mostly waits on daemons, ssh and certbot, so
# a third lane fills the cores the first two leave idle (full run: tests 585 s in 2 lanes).
lanes="${CERTHERD_TEST_LANES:-3}"
names=()
extra=()
passes=()   # "LABEL VAR=VALUE NAME,NAME..." each
while [ $# -gt 0 ]; do
    case "$1" in
        --lanes) lanes="$2"; shift 2 ;;
        --lanes=*) lanes="${1#--lanes=}"; shift ;;
        --pass)
            if [ $# -lt 4 ] || [[ "$2" == *[!A-Za-z0-9_-]* ]] || [[ "$3" != [A-Z]*=* ]] || [ -z "$4" ]; then
                echo "run-tests.sh: --pass ${2:-} ${3:-} ${4:-}: expected --pass LABEL VAR=VALUE NAME,NAME..." >&2
                exit 2
            fi
            passes+=("$2 $3 $4")
            shift 4 ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "run-tests.sh: unknown option $1 (expected --lanes N, test names, or -- ARGS)" >&2; exit 2 ;;
        *) names+=("$1"); shift ;;
    esac
done
case "$lanes" in
    ''|*[!0-9]*|0) echo "run-tests.sh: --lanes $lanes: expected a whole number of at least 1" >&2; exit 2 ;;
esac

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
# `lookup NAME`: the line of test binary NAME, or a one-line error naming it and what exists.
lookup() {
    local n=$1 match
    if [[ "$n" == lib:* ]]; then
        match=$(awk -v p="${n#lib:}" '$1==p && $2=="lib"' "$logs/all")
    else
        match=$(awk -v t="$n" '$3==t && $2!="lib"' "$logs/all")
    fi
    if [ -z "$match" ]; then
        echo "run-tests.sh: no test binary named $n: expected one of:" $(awk '{print ($2=="lib") ? "lib:" $1 : $3}' "$logs/all") >&2
        exit 2
    fi
    echo "$match"
}
# Every line of "chosen" is "PASS ENV PKG KIND NAME EXECUTABLE DIR": PASS is "-" and ENV "-" for
# the plain run, the label and VAR=VALUE of a --pass otherwise.
: >"$logs/chosen"
if [ ${#names[@]} -gt 0 ]; then
    for n in "${names[@]}"; do
        # `lookup` exits in its own subshell: stop here too, or the name would run as nothing.
        # A bad name changes nothing: no log directory is left behind either.
        line=$(lookup "$n") || { rm -rf "$logs"; exit 2; }
        echo "- - $line" >>"$logs/chosen"
    done
else
    sed 's/^/- - /' "$logs/all" >>"$logs/chosen"
fi
for p in ${passes[@]+"${passes[@]}"}; do
    read -r label assignment list <<<"$p"
    for n in ${list//,/ }; do
        line=$(lookup "$n") || { rm -rf "$logs"; exit 2; }
        echo "$label $assignment $line" >>"$logs/chosen"
    done
done
# Longest first, so the lanes end together: the seconds each binary took in the tests phase on
# the 2-core machine (3 lanes beside other sessions' runs, certbot5 pass included; mean of two
# runs, 2026-12-06, after the waits polled a TLS probe instead of openssl); anything not named
# here took under 10 s. A binary of the certbot5 pass is weighed as its plain run. crash: its
# walks in slices side by side (8 threads). coalesce and canary were missing (weight 5), so
# they started last and ran past the other lanes. staging_limit
# and slow_commit: from one full run at load 7-10, scaled to these.
weight() {
    case "$1" in
        operate) echo 141 ;;
        vrrp) echo 132 ;;
        crash) echo 122 ;;
        bench_smoke) echo 95 ;;
        batch) echo 79 ;;
        coalesce) echo 43 ;;
        staging_limit) echo 42 ;;
        vrrp_flap) echo 40 ;;
        certbot_box) echo 37 ;;
        permissions) echo 36 ;;
        apache) echo 32 ;;
        faults | one_deploy | warm) echo 31 ;;
        deploy_actions | quickstart) echo 30 ;;
        canary | deploy) echo 29 ;;
        status_scale | slow_commit) echo 24 ;;
        hostile_agent) echo 23 ;;
        failover | served) echo 22 ;;
        issue_paths | quickstart_apache) echo 20 ;;
        issuance) echo 19 ;;
        deploy_hook | peer_lineages | root_never_runs_agent_files) echo 18 ;;
        checkout_anywhere) echo 15 ;;
        agent_verify | fallback) echo 14 ;;
        holder_routes | lineage_names) echo 12 ;;
        deploy_json | lifetimes) echo 11 ;;
        include_escalation | output_formats) echo 10 ;;
        *) echo 5 ;;
    esac
}
while read -r pass env pkg kind name exe dir; do
    echo "$(weight "$name") $pass $env $pkg $kind $name $exe $dir"
done <"$logs/chosen" | sort -k1,1nr | cut -d' ' -f2- >"$logs/order"

# How many tests of one binary run at once, unless `--` or CERTHERD_TEST_THREADS says: 3, and
# more for a binary whose tests are slices of one long walk, each on its own bed, that mostly
# wait on ssh, nginx and the agent (crash: 8 slices; with 3 threads its walks set the whole
# run's wall time).
threads() {
    case "$1" in
        crash) echo 8 ;;
        *) echo 3 ;;
    esac
}

# Runs one test binary as `cargo test` would (from its package's directory, CARGO set), but
# without cargo: cargo would hold the build directory's lock and run the lanes one at a time.
# PASS/ENV: "-" for the plain run, else a --pass's label and its VAR=VALUE.
run_one() {
    local pass=$1 env=$2 pkg=$3 kind=$4 name=$5 exe=$6 dir=$7 log start rc what label= args=$EXTRA
    [ -n "$args" ] || args="--test-threads=${CERTHERD_TEST_THREADS:-$(threads "$name")}"
    [ "$pass" = - ] || label=" [$pass]"
    what="$pkg $kind $name$label"
    [ "$env" = - ] && env=
    log="$LOGS/$pass.$pkg.$kind.$name.log"
    start=$(date +%s%N)
    rc=0
    # shellcheck disable=SC2086 # ARGS is a list of words, ENV one VAR=VALUE or nothing
    (cd "$dir" && exec env $env "$exe" $args) >"$log" 2>&1 || rc=$?
    local ms=$((($(date +%s%N) - start) / 1000000))
    printf '%s\t%s\t%d.%d\t%s\n' "$rc" "$what" "$((ms / 1000))" "$((ms % 1000 / 100))" "$log" >>"$LOGS/results"
    if [ "$rc" = 0 ]; then echo "ok      $name$label ($((ms / 1000)) s)"; else echo "FAILED  $name$label (exit $rc)"; fi
}
export -f run_one threads
export LOGS="$logs" EXTRA="${extra[*]}" CARGO="${CARGO:-$(command -v cargo)}"
: >"$logs/results"
echo "run-tests.sh: $(wc -l <"$logs/order") test binaries in $lanes lanes (logs in $logs)"
xargs -P "$lanes" -L 1 bash -c 'run_one "$@"' _ <"$logs/order" || true

failed=0
while IFS=$'\t' read -r rc what _ log; do
    [ "$rc" = 0 ] && continue
    failed=1
    echo
    echo "==================== FAILED: $what (exit $rc) ===================="
    cat "$log"
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
