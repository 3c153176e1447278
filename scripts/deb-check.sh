#!/usr/bin/env bash
# Check a certherd .deb the way an admin meets it, and leave it installed for the e2e tests
# (scripts/test.sh then runs them against /usr/bin/certherd):
#   1. lintian: no errors (warnings and info are printed, not fatal);
#   2. dpkg -i: the binary, man pages, completions, systemd units (installed, not enabled), the
#      examples (sudoers and sshd snippets), /etc/cron.d/certherd as a conffile, and the
#      `certherd` system account (home /var/lib/certherd, shell /bin/sh), that home root's
#      (root:root 0755) and only its webroot the account's (SECURITY.md);
#   3. dpkg -r: /etc/certherd (with what is in it), the cron conffile and the account stay;
#      dpkg --purge: only the cron conffile goes;
#   4. dpkg -i again: the account exists now and the maintainer script keeps it, and takes
#      back a home an earlier package left to the account;
#   and /etc/letsencrypt is exactly as before (listing with modes, owners, sizes, times, links).
# Usage (root): scripts/deb-check.sh PATH.deb
set -euo pipefail
deb=${1:?usage: scripts/deb-check.sh PATH.deb}
[ -f "$deb" ] || { echo "deb-check: no such file: $deb" >&2; exit 2; }

fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
ok() { echo "deb-check: ok: $*"; }

letsencrypt_state() {
    if [ -e /etc/letsencrypt ]; then
        find /etc/letsencrypt -printf '%p %y %m %U %G %s %T@ %l\n' | sort | sha256sum
    else
        echo absent
    fi
}
before=$(letsencrypt_state)

# 1. lintian
lintian_out=$(lintian --fail-on error --display-info "$deb" 2>&1) || {
    echo "$lintian_out" >&2
    fail "lintian reports errors on $deb"
}
echo "$lintian_out" | sed 's/^/lintian: /'
ok "lintian: no errors"

# 2. install
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/certherd ] || fail "/usr/bin/certherd missing"
/usr/bin/certherd --version | grep -q '(agent protocol [0-9]*)$' || fail "--version names no agent protocol"
for f in /usr/share/man/man1/certherd.1.gz /usr/share/man/man1/certherd-deploy.1.gz \
         /usr/share/bash-completion/completions/certherd \
         /usr/share/zsh/vendor-completions/_certherd \
         /usr/share/fish/vendor_completions.d/certherd.fish \
         /usr/lib/systemd/system/certherd-renew.service /usr/lib/systemd/system/certherd-renew.timer \
         /usr/lib/systemd/system/certherd-watch.service \
         /usr/share/doc/certherd/examples/contrib/sudoers/certherd \
         /usr/share/doc/certherd/examples/contrib/ssh/sshd-certherd.conf \
         /usr/share/doc/certherd/examples/contrib/cron.d/certherd \
         /usr/share/doc/certherd/examples/hooks/certherd-deploy \
         /usr/share/doc/certherd/copyright /etc/cron.d/certherd; do
    [ -e "$f" ] || fail "$f missing"
done
grep -q 'ExecStart=/usr/bin/certherd ' /usr/lib/systemd/system/certherd-renew.service ||
    fail "the packaged unit does not run /usr/bin/certherd"
if grep -rq /usr/local/bin/certherd /usr/lib/systemd/system/certherd-* /usr/share/doc/certherd/examples; then
    fail "a packaged file still names /usr/local/bin/certherd"
fi
# Debian 13's lintian (aliased-location) wants units under /usr/lib since the /usr merge;
# Debian 12's accepts both: one layout for both releases.
if dpkg -L certherd | grep -q '^/lib/'; then
    fail "the package installs under /lib (aliased location since the /usr merge): $(dpkg -L certherd | grep '^/lib/' | head -n 1)"
fi
if ls /etc/systemd/system/*.wants/certherd-* >/dev/null 2>&1; then
    fail "a certherd unit is enabled: the package must only install them"
fi
dpkg-query -W -f='${Conffiles}\n' certherd | grep -q '^ /etc/cron.d/certherd ' ||
    fail "/etc/cron.d/certherd is not a conffile"
grep -Eq '^[^#]*certherd' /etc/cron.d/certherd && fail "/etc/cron.d/certherd is active by default"
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd certherd) || fail "no certherd account"
[ "$home" = /var/lib/certherd ] && [ "$shell" = /bin/sh ] ||
    fail "certherd account: home $home shell $shell (want /var/lib/certherd, /bin/sh)"
[ -d /etc/certherd ] || fail "/etc/certherd missing"
home_is_roots() {
    [ "$(stat -c '%U:%G %a' /var/lib/certherd)" = "root:root 755" ] ||
        fail "/var/lib/certherd is $(stat -c '%U:%G %a' /var/lib/certherd), want root:root 755 (SECURITY.md)"
    [ "$(stat -c '%U:%G %a' /var/lib/certherd/webroot)" = "certherd:$(id -gn certherd) 755" ] ||
        fail "/var/lib/certherd/webroot is $(stat -c '%U:%G %a' /var/lib/certherd/webroot), want certherd's, 755"
}
home_is_roots
ok "installed: binary, man pages, completions, units (not enabled), examples, cron conffile, account, root's home"

# 3. remove: configs, certificates and the account stay
marker=/etc/certherd/.deb-check-$$
echo keep > "$marker"
dpkg -r certherd >/dev/null
[ ! -e /usr/bin/certherd ] || fail "dpkg -r left /usr/bin/certherd"
[ -f "$marker" ] || fail "dpkg -r removed /etc/certherd's content"
[ -f /etc/cron.d/certherd ] || fail "dpkg -r removed the cron conffile"
getent passwd certherd >/dev/null || fail "dpkg -r removed the certherd account"
ok "dpkg -r left /etc/certherd, the cron conffile and the account"
dpkg --purge certherd >/dev/null
[ -f "$marker" ] || fail "dpkg --purge removed /etc/certherd's content"
[ ! -e /etc/cron.d/certherd ] || fail "dpkg --purge left the cron conffile"
getent passwd certherd >/dev/null || fail "dpkg --purge removed the certherd account"
rm -f "$marker"
ok "dpkg --purge removed only the package's own conffile; /etc/certherd and the account stay"

# 4. again, with the account already there, its home left to it as earlier packages did
chown certherd: /var/lib/certherd
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/certherd ] || fail "reinstall: /usr/bin/certherd missing"
[ "$(getent passwd certherd | cut -d: -f6)" = /var/lib/certherd ] || fail "reinstall changed the account"
home_is_roots
ok "reinstalled over the existing account; its home root's again, the webroot still its own"

[ "$(letsencrypt_state)" = "$before" ] || fail "/etc/letsencrypt changed"
ok "/etc/letsencrypt untouched"
echo "deb-check: $(dpkg-query -W -f='${Package} ${Version}' certherd) installed"
