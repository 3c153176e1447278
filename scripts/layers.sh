#!/usr/bin/env bash
# Proves the product's imports point down only (docs/ARCHITECTURE.md draws the picture).
#
# Every module of src/ has a layer number below. A module may name another module (`crate::x`,
# in a `use` or inline, outside comments) only when that one's layer is strictly lower, or when
# both are the same unit (a file and its own submodules, e.g. wire/message.rs using
# wire/payload.rs). Strictly lower means no cycles, across units as well as up and down. A file
# whose module is not in the table fails too: a new module has to be given its place.
# Exit 0 when every import points down, 1 with one line per offending import otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# unit layer — the first unit that is a prefix of the module wins (most specific first).
table=$(cat <<'EOF'
text 0
crashpoint 0
names 1
pattern 1
error 2
log 2
wire 3
fsx 4
webconf 4
privdrop 1
exec 4
lockfile 4
pem 4
config 5
tokens 5
certbot_env 5
certbot_version 5
lineage 6
standby 6
actions 6
tls 7
check 7
ssh 7
alert 7
served 8
fleet 8
holder 8
agent 8
fanout 9
report 10
commands::agent 11
commands::auth 11
commands::cleanup 11
commands::deploy 11
commands::doctor 11
commands::stateless 11
commands::status 11
commands::warm 11
commands::issue 12
commands::renew 12
commands::watch 12
cli 13
commands 15
manual 14
lib 16
EOF
)

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

fail=0
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
    # Paths named outside comments; a trailing `!` is a macro (exported at the crate root).
    while IFS=: read -r line path; do
        target=$(unit_of "$path")
        [[ -z $target || $target == "$unit" ]] && continue
        theirs=$(layer_of "$target")
        if ((theirs >= own)); then
            echo "$file:$line: $unit (layer $own) imports $path ($target, layer $theirs): imports must point down"
            fail=1
        fi
    done < <(grep -n -v '^\s*//' "$file" | grep -oE '^[0-9]+:|crate::[a-z_]+(::[a-z_]+)?\b!?' |
        awk '/^[0-9]+:$/ { line = substr($0, 1, length($0) - 1); next }
             !/!$/ { sub(/^crate::/, ""); print line ":" $0 }')
done < <(find src -name '*.rs' | sort)

if ((fail)); then
    exit 1
fi
echo "layers: every import in src/ points down"
