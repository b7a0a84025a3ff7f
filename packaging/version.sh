#!/bin/sh
# Prints the package version from `git describe`, valid for both Debian and
# RPM (digits first, no '-', '+' and '.' only):
#   v1.2.3                -> 1.2.3
#   v1.2.3-5-gabc1234     -> 1.2.3+git5.gabc1234
#   abc1234 (no tag yet)  -> 0.0.0+git<commits>.gabc1234
#   ... -dirty            -> ....dirty
set -eu
d=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
dirty=""
case "$d" in *-dirty) dirty=".dirty"; d=${d%-dirty} ;; esac
d=${d#v}
if git describe --tags --abbrev=0 >/dev/null 2>&1; then tagged=yes; else tagged=no; fi
case "$tagged$d" in
yes[0-9]*)
	if echo "$d" | grep -Eq -- '-[0-9]+-g[0-9a-f]+$'; then
		base=$(echo "$d" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
		n=$(echo "$d" | sed -E 's/.*-([0-9]+)-g([0-9a-f]+)$/\1/')
		h=$(echo "$d" | sed -E 's/.*-([0-9]+)-g([0-9a-f]+)$/\2/')
		v="$base+git$n.g$h"
	else
		v="$d"
	fi ;;
*)
	n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	v="0.0.0+git$n.g$d" ;;
esac
# Whatever a tag held: keep only characters both formats accept.
echo "$v$dirty" | tr -- '-' '.' | tr -cd '0-9A-Za-z.+~\n'
