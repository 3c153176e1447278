#!/bin/sh
# keepalived notify script (vrrp_instance { notify /usr/local/lib/certherd/notify-certherd.sh }).
# keepalived calls it with: TYPE NAME STATE PRIORITY. When this node becomes MASTER it holds the
# VIP, so `certherd renew` (with [renew] vip = the VIP) now acts here: renew right away, and run
# the watcher only where the VIP is.
state=$3
case "$state" in
    MASTER)
        systemctl start certherd-renew.service
        systemctl start certherd-watch.service
        ;;
    BACKUP|FAULT|STOP)
        systemctl stop certherd-watch.service
        ;;
esac
exit 0
