#!/usr/bin/env bash
# The product's layers, described once: the table below is the one source. It proves the
# imports point down, and it writes the picture into docs/ARCHITECTURE.md.
#
#   scripts/layers.sh           check the imports and that docs/ARCHITECTURE.md's picture is current
#   scripts/layers.sh --write   (re)write the picture in docs/ARCHITECTURE.md from the table
#
# Every module of src/ has a layer number below. A module may name another module — `crate::x`,
# `super::x` or `self::x` (resolved from where it is written, `super::super::` and one-line
# `{a, b}` groups included), in a `use` or inline, outside comments — only when that one's layer
# is strictly lower, or when both are the same unit (a file and its own submodules, e.g.
# wire/message.rs using wire/payload.rs). Strictly lower means no cycles across units; inside a
# unit, the files' own imports (a parent naming its children aside, and test modules aside) must
# not form a cycle either. A file whose module is not in the table fails too: a new module has
# to be given its place. Exit 0 when all holds, 1 with one line per offence otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# unit layer what it is for — the first unit that is a prefix of the module wins (most specific
# first). The description is what docs/ARCHITECTURE.md shows.
table=$(
    cat <<'EOF'
lib 16 the crate's table of contents: `mod` lines and the crate's vocabulary
commands 15 commands/mod.rs: loads the config, dispatches to each command's `run`; status's errors become UNKNOWN
manual 14 man pages and shell completions, generated from the clap definitions
commands::issue 13 issue: pre-flight fan-out and self-check, then certbot with the hooks
commands::renew 13 renew: for cron or the timer on every node; acts where this node is the primary
commands::watch 13 watch: inotify on the letsencrypt dir, deploys what changed by other means
commands::agent 12 agent: serves the protocol on stdin/stdout
commands::auth 12 auth: certbot's manual auth hook
commands::cleanup 12 cleanup: certbot's manual cleanup hook
commands::deploy 12 deploy and sync: certbot's deploy hook and the reconcile
commands::doctor 12 doctor: explains what is misconfigured
commands::stateless 12 stateless: the account thumbprint and the nginx snippet
commands::status 12 status: every node × every lineage, monitoring exit codes
commands::warm 12 warm: opens the shared SSH connection to every peer
cli 11 the clap types: every flag, documented where it is defined; each command takes its own
report 10 output: deploy (table, JSON, alert), status (table, JSON, influx, prometheus), its model, nagios, auth, nodes (the shared JSON row)
fanout 9 the engines: this node, then every peer, one typed row each (tokens, certs)
served 8 what a node serves over TLS
fleet 8 requests to every peer
holder 8 the warm holder: one agent session per peer kept open for one certbot run (docs/HOLDER.md)
agent 8 the peer side
tls 7 TLS handshake, the served leaf
check 7 HTTP-01 self-check
ssh 7 SSH connections, typed PeerError
alert 7 webhook and InfluxDB alerts
lineage 6 certbot's layout (versions, paths) and the verified atomic install, rollback, split brain
standby 6 a standby's renewal conf rebuilt from an allow-list, account files
actions 6 a node's own [[deploy]] actions (combined PEM, test/reload/roll back)
config 5 TOML → Config, the dotted key and line in every error
tokens 5 the webroot token store
certbot_env 5 CERTBOT_* → Challenge
certbot_version 5 which certbot a node runs, and what it can do with ACME profiles
fsx 4 atomic write, symlink swap, O_NOFOLLOW walks, random bytes
webconf 4 what root's nginx/Apache reads as config (includes followed, never run) and who else may write it
exec 4 the one bounded process runner
lockfile 4 flock guards
pem 4 certificates: parse, fingerprint, key ↔ certificate match
wire 3 the agent protocol: messages, payload types, size-limited framing
error 2 the crate's error type and its exit codes
log 2 stderr lines (journald priorities when JOURNAL_STREAM is set)
names 1 Token, Domain, LineageName, KeyAuthorization
pattern 1 globs for [[peers]] and [[deploy]] lineages
privdrop 1 root becomes the letsencrypt dir's owner before anything runs
text 0 printable / one_line / InfluxDB and Prometheus escaping
scratch 0 unit tests' scratch directories, removed on drop (test builds only)
crashpoint 0 named crash points for the kill tests (a feature build only)
EOF
)

doc=docs/ARCHITECTURE.md
begin='<!-- layers:begin (scripts/layers.sh --write) -->'
end='<!-- layers:end -->'

# The picture: top layer first, one line per unit, `main.rs` above everything.
picture() {
    echo '```'
    printf '%-5s %-20s %s\n' "" "main.rs" "parse, then commands::run; one call maps any error to its exit code"
    awk '{ layer = $2; unit = $1; $1 = ""; $2 = ""; sub(/^  /, ""); print layer "\t" NR "\t" unit "\t" $0 }' <<<"$table" |
        sort -t$'\t' -k1,1nr -k2,2n |
        awk -F'\t' '{ if (NR > 1 && $1 != last) print "      │"; last = $1; printf "%-5s %-20s %s\n", ($1 == shown ? "" : $1), $3, $4; shown = $1 }'
    echo '```'
}

# The document with the picture put between the markers.
with_picture() {
    grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" || {
        echo "$doc: no layer markers ($begin … $end)" >&2
        exit 2
    }
    awk -v b="$begin" -v e="$end" -v body="$(picture)" '
        $0 == b { print; print body; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }' "$doc"
}

case "${1:-}" in
--write)
    new=$(with_picture)
    printf '%s\n' "$new" >"$doc"
    exit 0
    ;;
"") ;;
*)
    echo "usage: scripts/layers.sh [--write]" >&2
    exit 2
    ;;
esac

# The unit a module path belongs to (longest table entry that is the path or a prefix of it).
unit_of() {
    local path=$1 best="" name
    while read -r name _; do
        if [[ $path == "$name" || $path == "$name"::* ]] && ((${#name} > ${#best})); then
            best=$name
        fi
    done <<<"$table"
    echo "$best"
}

layer_of() {
    awk -v u="$1" '$1 == u { print $2 }' <<<"$table"
}

# src/a/b.rs -> a::b, src/a/mod.rs -> a, src/lib.rs -> lib.
module_of() {
    local m=${1#src/}
    m=${m%.rs}
    m=${m%/mod}
    echo "${m//\//::}"
}

files=$(find src -name '*.rs' | sort)
modules=$(while read -r f; do module_of "$f"; done <<<"$files" | tr '\n' ' ')

# Every module path a file names outside comments, resolved to the module it lands in, as
# `LINE MODULE T` (T is 1 inside an inline `mod … {`, i.e. a test module). `crate::x` is from
# the root, `self::x` from where it is written, `super::x` one module up per `super`; a path that
# names no module file (`crate::Config`, a re-export) lands in the longest module it starts with.
# A trailing `!` is a macro (exported at the crate root): not an import.
imports() {
    local file=$1 mod=$2
    grep -n -v '^\s*//' "$file" | awk -v mod="$mod" -v modules="$modules" '
        BEGIN {
            n = split(modules, list, " ")
            for (i = 1; i <= n; i++) known[list[i]] = 1
            here = (mod == "lib") ? "" : mod
            inner = 0
        }
        function up(path,    k) { k = match(path, /::[^:]*$/); return k ? substr(path, 1, k - 1) : "" }
        function land(path,    p) {
            p = path
            while (p != "" && !(p in known)) p = up(p)
            return p == "" ? "lib" : p
        }
        function emit(line, base, rest,    full) {
            full = base
            if (rest != "") full = (full == "" ? rest : full "::" rest)
            print line " " land(full) " " inner
        }
        {
            line = $0; sub(/:.*/, "", line)
            text = substr($0, length(line) + 2)
            if (text ~ /^[ \t]*(pub )?mod [a-z_]+ *\{/) {
                name = text; sub(/^[ \t]*(pub )?mod /, "", name); sub(/ *\{.*/, "", name)
                here = (here == "" ? name : here "::" name); inner = 1
            }
            while (match(text, /(^|[^A-Za-z0-9_:])(crate|super|self)(::(super|[A-Za-z_][A-Za-z0-9_]*))*(::\{[^}]*\}|!)?/)) {
                path = substr(text, RSTART, RLENGTH)
                text = substr(text, RSTART + RLENGTH)
                sub(/^[^a-z]/, "", path)
                # `supervisor`, `self.x`, `pub(crate)`: a word that only starts like a path.
                if (path ~ /!$/ || text ~ /^[A-Za-z0-9_]/) continue
                group = ""
                if (match(path, /::\{[^}]*\}$/)) {
                    group = substr(path, RSTART + 3, RLENGTH - 4)
                    path = substr(path, 1, RSTART - 1)
                }
                k = split(path, seg, "::")
                if (seg[1] == "crate") base = ""
                else base = here
                i = 1
                if (seg[1] == "super") { base = up(base); i = 2; while (i <= k && seg[i] == "super") { base = up(base); i++ } }
                else i = 2
                rest = ""
                for (; i <= k; i++) rest = (rest == "" ? seg[i] : rest "::" seg[i])
                if (k == 1 && group == "") continue
                if (group == "") { emit(line, base, rest); continue }
                g = split(group, items, ",")
                for (j = 1; j <= g; j++) {
                    item = items[j]; gsub(/^[ \t]+|[ \t]+$/, "", item); sub(/ as .*/, "", item)
                    if (item == "self" || item == "*" || item == "") { emit(line, base, rest); continue }
                    sub(/::\*$/, "", item)
                    emit(line, base, (rest == "" ? item : rest "::" item))
                }
            }
        }'
}

fail=0
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
while IFS= read -r file; do
    [[ $file == src/main.rs ]] && continue # the binary: above everything
    mod=$(module_of "$file")
    unit=$(unit_of "$mod")
    if [[ -z $unit ]]; then
        echo "$file: module $mod has no layer in scripts/layers.sh"
        fail=1
        continue
    fi
    own=$(layer_of "$unit")
    while read -r line target in_test; do
        [[ $target == "$mod" || $target == lib ]] && continue
        theirs_unit=$(unit_of "$target")
        [[ -z $theirs_unit ]] && continue
        if [[ $theirs_unit == "$unit" ]]; then
            # Inside a unit: a parent may name its children; anything else is an edge that
            # must not close a circle (test modules, which only run under `cargo test`, aside).
            [[ $target == "$mod"::* || $in_test == 1 ]] && continue
            echo "$mod $target $file:$line" >>"$edges"
            continue
        fi
        theirs=$(layer_of "$theirs_unit")
        if ((theirs >= own)); then
            echo "$file:$line: $unit (layer $own) imports $target ($theirs_unit, layer $theirs): imports must point down"
            fail=1
        fi
    done < <(imports "$file" "$mod")
done <<<"$files"

# A circle among the files of one unit: tsort names the modules on it.
if ! cycle=$(cut -d' ' -f1,2 "$edges" | tsort 2>&1 >/dev/null) || [[ -n $cycle ]]; then
    on=$(grep -oE '[a-z_]+(::[a-z_]+)+' <<<"$cycle" | sort -u | tr '\n' ' ')
    echo "import cycle inside a unit among: $on— move what they share into a module both import:"
    for m in $on; do
        grep -E "^$m ($(tr ' ' '|' <<<"${on% }")) " "$edges" | awk '{ print "  " $3 ": " $1 " imports " $2 }'
    done
    fail=1
fi

if [[ "$(with_picture)" != "$(cat "$doc")" ]]; then
    echo "$doc: the layer picture is stale; run scripts/layers.sh --write"
    fail=1
fi

if ((fail)); then
    exit 1
fi
echo "layers: every import in src/ points down, no unit has an import cycle, $doc is current"
