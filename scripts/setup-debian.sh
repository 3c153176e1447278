#!/usr/bin/env bash
# Prepare a fresh Debian 12 (bookworm) or 13 (trixie) machine (as root) for certherd's test bed,
# e2e tests and benchmarks:
# certbot, pebble (+ pebble-challtestsrv), nginx, openssh-server, influxdb, rsync, openssl, sudo
# (the bed's agents run as their own account and reach nginx through the shipped sudoers line),
# keepalived and iproute2 (tests/vrrp.rs: real VRRP between the nodes' network namespaces; the
# bed starts keepalived itself, never the package's service), a C toolchain for building, and
# lintian + man-db for the package checks (scripts/deb.sh installs cargo-deb itself).
# Idempotent: safe to run again. It also makes sure this machine's name resolves from /etc/hosts
# (see below: sudo looks it up on every call).
#
# The packages' own services are NOT started (the test bed runs its own daemons on 127.0.B.x
# loopback addresses; a system nginx/sshd listening on 0.0.0.0 would take ports 80/22 from it).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-debian.sh: run me as root" >&2
    exit 1
fi

# Supported and tested: Debian 12 (bookworm) and 13 (trixie). Every package below has the same
# name on both (trixie: certbot 4.0, nginx 1.26, OpenSSH 10, sudo 1.9.16, pebble 2.6, influxdb
# 1.6, prometheus 2.53, keepalived 2.3, haproxy 3.0, apache2 2.4, lintian 2.122; the certbot
# from PyPI below as well), so one list serves both; a package a release lacks is named before
# anything is installed (below). Another release or distribution is tried with the same list,
# after a note.
# shellcheck disable=SC1091
. /etc/os-release
case "${ID:-}:${VERSION_CODENAME:-}" in
    debian:bookworm | debian:trixie) ;;
    *)
        echo "NOTE: setup-debian.sh is tested on Debian 12 (bookworm) and 13 (trixie)," \
             "not on ${PRETTY_NAME:-this system}: trying the same packages" >&2
        ;;
esac

PACKAGES=(
    certbot pebble nginx openssh-server openssh-client influxdb rsync openssl prometheus iproute2
    keepalived haproxy sudo ca-certificates curl git python3-cryptography python3-venv
    build-essential pkg-config lintian man-db apache2
)

# Keep maintainer scripts from starting services: a policy-rc.d that denies everything, unless
# the machine already has its own policy (then we leave it alone).
POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from certherd scripts/setup-debian.sh\nexit 101\n' > "$POLICY"
    chmod 0755 "$POLICY"
    created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# One clear line for what this release cannot give, instead of apt's first "no installation
# candidate" after part of the list is in.
unavailable=()
for p in "${PACKAGES[@]}"; do
    candidate=$(apt-cache policy "$p" | sed -n 's/^ *Candidate: //p')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
        unavailable+=("$p")
    fi
done
if [ "${#unavailable[@]}" -ne 0 ]; then
    echo "ERROR: not available from this machine's apt sources (${PRETTY_NAME:-unknown release}):" \
         "${unavailable[*]}; the test bed needs every package listed at the top of" \
         "scripts/setup-debian.sh (check /etc/apt/sources.list*: main, and -updates/-security)" >&2
    exit 1
fi
apt-get install -y --no-install-recommends "${PACKAGES[@]}"

cleanup
created_policy=0

# sudo looks this machine's name up on every call (the tests run it for every nginx -t and
# reload). A name /etc/hosts lacks — a debootstrap'd system, some containers — goes to DNS each
# time, and a lost reply stalls that sudo for the resolver's 5 s timeout ("sudo: unable to resolve
# host"): enough to fail a config test under a short [reload] timeout (seen: tests/faults.rs's
# hung reload, 2 s, got TestFailed). Debian's installer writes the name into /etc/hosts; so do
# we when it is missing, on 127.0.0.1 (127.0.1.1, the installer's choice, is test bed 1's node 1).
host_name=$(hostname)
if ! getent -s files hosts "$host_name" >/dev/null; then
    if printf '127.0.0.1\t%s\n' "$host_name" >> /etc/hosts; then
        echo "NOTE: added '127.0.0.1 $host_name' to /etc/hosts: sudo resolves this name on every" \
             "call, and through DNS that can stall for 5 s" >&2
    else
        echo "WARNING: this machine's name $host_name is not in /etc/hosts and it cannot be added:" \
             "every sudo asks DNS for it, which can stall 5 s and fail tests with short timeouts" >&2
    fi
fi

# sshd's privilege separation directory (normally created by its systemd unit).
mkdir -p /run/sshd
chmod 0755 /run/sshd

# Tell about system daemons that run anyway: they may hold ports on 0.0.0.0.
running_system_daemon() {
    # $1: executable path. Matches processes whose executable is exactly that file.
    local exe=$1 pid
    for pid in /proc/[0-9]*; do
        if [ "$(readlink "$pid/exe" 2>/dev/null || true)" = "$exe" ]; then
            # a running test bed's daemons (or their workers, via the parent) name their bed dir
            local ppid
            ppid=$(awk '{print $4}' "$pid/stat" 2>/dev/null || echo 0)
            if ! cat "$pid/cmdline" "/proc/$ppid/cmdline" 2>/dev/null | tr '\0' ' ' \
                    | grep -q 'certherd-bed-'; then
                return 0
            fi
        fi
    done
    return 1
}
for exe in /usr/sbin/nginx /usr/sbin/sshd /usr/bin/influxd; do
    if running_system_daemon "$exe"; then
        echo "NOTE: $exe is running on this machine. If it listens on 0.0.0.0 (ports 80/443/22/8086)" \
             "it can keep the test bed's daemons from binding 127.0.B.x; consider stopping it" \
             "(e.g. systemctl stop $(basename "$exe")) or check with: ss -ltnp" >&2
    fi
done

# The newest certbot from PyPI beside Debian's (2.1 on Debian 12, 4.0 on 13), in its own
# virtualenv, pinned: scripts/test.sh runs the certbot e2e tests with it as well
# (CERTHERD_BED_CERTBOT). Readable by every account: the bed runs certbot as the agent's.
CERTBOT_PYPI_VERSION=5.8.0
CERTBOT_VENV=/opt/certherd-certbot5
if [ "$("$CERTBOT_VENV/bin/certbot" --version 2>/dev/null | awk '{print $2}')" != "$CERTBOT_PYPI_VERSION" ]; then
    echo "installing certbot $CERTBOT_PYPI_VERSION from PyPI into $CERTBOT_VENV"
    rm -rf "$CERTBOT_VENV"
    /usr/bin/python3 -m venv "$CERTBOT_VENV"
    "$CERTBOT_VENV/bin/pip" install --quiet --disable-pip-version-check "certbot==$CERTBOT_PYPI_VERSION"
fi
chmod -R go+rX,go-w "$CERTBOT_VENV"

missing=()
for bin in /usr/bin/certbot /usr/bin/pebble /usr/bin/pebble-challtestsrv /usr/sbin/nginx \
           /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen /usr/bin/influxd /usr/bin/rsync \
           /usr/bin/openssl /usr/bin/promtool /usr/bin/curl /usr/bin/sudo /usr/sbin/visudo \
           /usr/sbin/useradd /usr/sbin/userdel /usr/sbin/runuser /usr/bin/lintian /usr/bin/man \
           /usr/sbin/keepalived /usr/bin/ip /usr/sbin/haproxy "$CERTBOT_VENV/bin/certbot"; do
    if [ ! -x "$bin" ]; then
        missing+=("$bin")
    fi
done
if [ "${#missing[@]}" -ne 0 ]; then
    echo "ERROR: missing after install: ${missing[*]}" >&2
    exit 1
fi

if command -v cargo >/dev/null 2>&1; then
    echo "Rust: $(cargo --version)"
else
    echo "Rust toolchain not found: install it with rustup (https://rustup.rs), e.g." >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y" >&2
    echo "then re-run this script or just: cargo build --bins && cargo test" >&2
fi

echo "OK: test bed prerequisites are installed on ${PRETTY_NAME:-this system} (certbot $(certbot --version 2>&1 | awk '{print $2}') and $("$CERTBOT_VENV/bin/certbot" --version 2>&1 | awk '{print $2}') from PyPI," \
     "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(ssh -V 2>&1 | cut -d, -f1))."
