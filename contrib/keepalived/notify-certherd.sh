#!/bin/sh
# keepalived notify script (vrrp_instance { notify /usr/local/lib/certherd/notify-certherd.sh }).
# keepalived calls it with: TYPE NAME STATE PRIORITY. When this node becomes MASTER it holds the
# VIP, so `certherd renew` (with [renew] vip = the VIP) now acts here: renew right away, and run
# the watcher only where the VIP is. Nothing to chown on the way back to BACKUP: certherd runs
# certbot as the letsencrypt dir's owner (the agent's account), never as root, so what it wrote
# here as primary is the account's and this node takes installs as a peer again.
state=$3
case "$state" in
    MASTER)
        # --no-block: only queue the jobs. A blocking start of the oneshot renew would hold this
        # script for the whole renewal, and keepalived runs the BACKUP notify of a flap meanwhile:
        # its `stop` would come before this `start` of the watcher, left running on a BACKUP.
        # Queued, the later stop job cancels the pending start.
        systemctl --no-block start certherd-renew.service
        systemctl --no-block start certherd-watch.service
        ;;
    BACKUP|FAULT|STOP)
        systemctl stop certherd-watch.service
        ;;
esac
exit 0
