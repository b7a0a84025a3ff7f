#!/bin/sh
# Before removal (deb: "remove"; rpm: 0). An upgrade (deb "upgrade", rpm 1)
# leaves the daemon running: postinstall restarts it, and the machine is
# never without its firewall in between.
set -e
[ -z "${DPKG_ROOT:-}" ] || exit 0
[ -d /run/systemd/system ] || exit 0
case "$1" in
remove|0)
	systemctl disable --now tollgated.service || true ;;
esac
exit 0
