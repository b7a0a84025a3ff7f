#!/bin/sh
# After install or upgrade (deb: "configure" [old version]; rpm: 1 install,
# 2 upgrade). Enable and start on first install, restart on upgrade; an
# admin's disable is kept. Nothing when systemd is not running (containers,
# image builds) or when installing into another root (DPKG_ROOT).
set -e
[ -z "${DPKG_ROOT:-}" ] || exit 0
[ -d /run/systemd/system ] || exit 0
systemctl daemon-reload >/dev/null 2>&1 || true
case "$1" in
configure)
	if [ -z "${2:-}" ]; then
		systemctl enable --now tollgated.service || true
	else
		systemctl try-restart tollgated.service || true
	fi ;;
1)
	systemctl enable --now tollgated.service || true ;;
*)
	systemctl try-restart tollgated.service || true ;;
esac
exit 0
