#!/usr/bin/env bash
# The source tree, one line per file: path, line count, and the first sentence of the file's
# `//!` doc comment (every file opens by saying what it is for, STYLE.md). Covers the product
# (src/), the test bed (testbed/src), the benchmark runner (bench/src) and the tests (tests/).
#
#   scripts/tree.sh           print the tree
#   scripts/tree.sh --write   put it into docs/ARCHITECTURE.md between the tree markers
#   scripts/tree.sh --check   exit 1 when docs/ARCHITECTURE.md's tree is stale
set -euo pipefail
cd "$(dirname "$0")/.."

tree() {
    echo '```'
    find src testbed/src bench/src tests -name '*.rs' | LC_ALL=C sort | while read -r f; do
        lines=$(wc -l <"$f")
        # The doc comment's first paragraph, joined, cut at its first sentence (or 84 characters).
        about=$(awk '
            /^\/\/!/ { line = $0; sub(/^\/\/! ?/, "", line); if (line == "") exit; text = text (text == "" ? "" : " ") line; next }
            { if (text != "") exit }
            END { print text }' "$f")
        about=$(printf '%s' "$about" | sed -E 's/^(([^.]|\.[^ ])*\.)( .*)?$/\1/')
        if [ "${#about}" -gt 84 ]; then about="${about:0:83}…"; fi
        printf '%-34s %5s  %s\n' "$f" "$lines" "${about:-(no doc comment)}"
    done
    echo '```'
}

doc=docs/ARCHITECTURE.md
begin='<!-- tree:begin (scripts/tree.sh --write) -->'
end='<!-- tree:end -->'

case "${1:-}" in
"") tree ;;
--write | --check)
    grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" || {
        echo "$doc: no tree markers ($begin … $end)" >&2
        exit 2
    }
    new=$(mktemp)
    trap 'rm -f "$new"' EXIT
    body=$(tree)
    awk -v b="$begin" -v e="$end" -v body="$body" '
        $0 == b { print; print body; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }' "$doc" >"$new"
    if [ "$1" = --check ]; then
        cmp -s "$doc" "$new" || {
            echo "$doc: the tree is stale; run scripts/tree.sh --write" >&2
            exit 1
        }
    else
        cat "$new" >"$doc"
    fi
    ;;
*)
    echo "usage: scripts/tree.sh [--write|--check]" >&2
    exit 2
    ;;
esac
