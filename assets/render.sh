#!/bin/sh
# Renders the SVG sources in assets/icons/ to the PNGs committed beside them.
# Needs rsvg-convert (Debian: librsvg2-bin). CI does not run this: the PNGs are
# committed; run it after editing an SVG and look at the results.
set -eu
cd "$(dirname "$0")/icons"
command -v rsvg-convert >/dev/null || { echo "render.sh: rsvg-convert not found (apt-get install librsvg2-bin)" >&2; exit 1; }
for s in enforcing monitor disabled unreachable pending; do
	rsvg-convert -w 64 -h 64 -o "status-$s.png" "status-$s.svg"
done
for n in 256 48; do
	rsvg-convert -w "$n" -h "$n" -o "tollgate-$n.png" tollgate.svg
done
echo "rendered: $(ls *.png | tr '\n' ' ')"
