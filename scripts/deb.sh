#!/usr/bin/env bash
# Build the Debian package and print the path of the .deb it made (the only line on stdout).
#
#   scripts/deb.sh            # then: dpkg -i "$(scripts/deb.sh)"   (or apt install ./file.deb)
#
# Steps: install cargo-deb (pinned) if missing; build the release binary; let that binary write
# its own man pages and shell completions (so they match its clap definitions exactly); copy
# contrib/ and hooks/ as the examples and the systemd units with the packaged binary's path
# (/usr/bin instead of the manual install's /usr/local/bin); then `cargo deb --no-build`.
# Package layout and maintainer script: Cargo.toml [package.metadata.deb], debian/postinst.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0

# Progress goes to stderr: stdout is the .deb path alone, for "$(scripts/deb.sh)".
log() { echo "deb.sh: $*" >&2; }

if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
    log "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2
fi

target=${CARGO_TARGET_DIR:-target}
assets=target/deb-assets   # Cargo.toml's asset list names this path, relative to the package

log "building the release binary"
cargo build --release --locked -p certherd >&2
bin=$target/release/certherd

rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/systemd" "$assets/examples"
"$bin" manpages "$assets/man"
"$bin" completions bash > "$assets/completions/certherd.bash"
"$bin" completions zsh > "$assets/completions/_certherd"
"$bin" completions fish > "$assets/completions/certherd.fish"

# Debian's changelog (changelog.Debian.gz, which lintian requires) for this version, pointing at
# the project's own CHANGELOG.md (installed as changelog.gz); dated by the last commit, so a
# rebuild of the same commit is the same.
version=$("$bin" --version | awk '{print $2}')
maintainer=$(sed -n 's/^maintainer = "\(.*\)"$/\1/p' Cargo.toml)
date=$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")
cat > "$assets/changelog" <<CHANGELOG
certherd ($version-1) unstable; urgency=medium

  * Release $version; see /usr/share/doc/certherd/changelog.gz for what changed.

 -- $maintainer  $date
CHANGELOG

# One source for the manual install and the package: rewrite the binary's path on the way in.
packaged_path() { sed 's|/usr/local/bin/certherd|/usr/bin/certherd|g' "$1" > "$2"; }
for unit in contrib/systemd/*; do
    packaged_path "$unit" "$assets/systemd/$(basename "$unit")"
done
while IFS= read -r -d '' file; do
    rel=${file#./}
    mkdir -p "$assets/examples/$(dirname "$rel")"
    packaged_path "$file" "$assets/examples/$rel"
done < <(find ./contrib ./hooks -type f -print0)

log "packaging"
# cargo-deb prints the path of the package it wrote as its last stdout line.
deb=$(cargo deb -p certherd --no-build --locked | tail -n 1)
if [ ! -f "$deb" ]; then
    echo "deb.sh: cargo deb did not report a package file (got: '$deb')" >&2
    exit 1
fi
realpath "$deb"
