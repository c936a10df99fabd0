#!/usr/bin/env bash
# Draws the tray icons, one per state, into icons/ (ImageMagick; drawn at
# 128 px and scaled to 32 px for smooth edges). The PNGs are committed; run
# this again only to change their look.
#   idle: green · talking: red · receiving: blue (sound waves) · busy: amber
#   muted / do not disturb: grey with a slash · offline: grey ring
set -euo pipefail
cd "$(dirname "$0")/../icons"

mic() { # colour
  echo "fill $1 stroke none roundrectangle 50,22 78,78 14,14
        fill none stroke $1 stroke-width 8 arc 36,44 92,96 0,180
        fill $1 stroke none rectangle 60,96 68,110 rectangle 46,106 82,114"
}

draw() { # name, background draw commands, extra draw commands, mic colour
  convert -size 128x128 xc:none -draw "$2" -draw "$(mic "${4:-white}")" \
    ${3:+-draw "$3"} -resize 32x32 "tray-$1.png"
}
disc() { echo "fill $1 stroke none circle 64,64 64,2"; }

draw idle "$(disc '#1f8a5b')"
draw talking "$(disc '#d32f2f')"
draw receiving "$(disc '#1565c0')" \
  "fill none stroke white stroke-width 6 arc 16,34 46,94 110,250 arc 82,34 112,94 -70,70"
draw busy "$(disc '#ef8f00')"
draw muted "$(disc '#6b6b6b')" "stroke white stroke-width 10 line 24,24 104,104"
draw offline "fill none stroke '#8a8a8a' stroke-width 10 circle 64,64 64,8" "" "'#8a8a8a'"
echo "icons: $(ls tray-*.png | tr '\n' ' ')"
