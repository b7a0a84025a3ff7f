#!/bin/sh
# After removal. deb "purge": the rules database and connection log in
# /var/lib/tollgate go too (dpkg removes the conffiles). rpm has no purge:
# erasing keeps /var/lib/tollgate (remove it by hand, see README).
set -e
if [ "$1" = purge ]; then
	rm -rf "${DPKG_ROOT:-}/var/lib/tollgate"
fi
[ -z "${DPKG_ROOT:-}" ] || exit 0
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
