#!/bin/sh
# tests/make_big_slide.sh OUT W H [MPP] - a W x H pyramidal tiled JPEG TIFF for memory tests of the
# slide pipeline: mostly white background with a few tissue-like regions, resolution tags for MPP
# microns per pixel (default 0.5), levels down to one tile, that OpenSlide opens as generic-tiff.
# Test tool only; needs the `vips` CLI (libvips-tools) and nothing else.
#
# Streaming: the slide is one `vips arrayjoin` of BLOCK x BLOCK blocks (white, or one of a few
# tissue blocks) saved straight to the pyramidal TIFF, so vips never holds the whole image: the
# block files are loaded once each (libvips caches loads by file name) and the saver keeps a strip
# of tiles per pyramid level. When W or H is not a multiple of BLOCK the grid is a block larger and
# is cropped in a second pass through a flat tiled intermediate (JPEG too, so it stays small).
#
# Tissue comes from the real H&E tiles in ../shared/data/wsi-he/tiles/ (repeated and placed whole
# or offset in a block; $MI_SHARED_DATA overrides ../shared/data); without them, from vips's
# Worley noise coloured pink and purple. It sits in three blobs (ellipses of blocks), about a fifth
# of the area (18 % at 50 000 x 50 000), at positions fixed by W and H, so the same arguments give
# the same slide. Measured here (2 shared cores): 50 000 x 50 000 in 3 min, 245 MB, vips < 150 MB.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 OUT W H [MPP]" >&2; exit 2; }
out=$1 w=$2 h=$3 mpp=${4:-0.5}
case "$w$h" in *[!0-9]*) echo "$0: W and H must be positive integers (got '$w' '$h')" >&2; exit 2 ;; esac
[ "$w" -ge 256 ] && [ "$h" -ge 256 ] || { echo "$0: W and H must be at least 256" >&2; exit 2; }
command -v vips >/dev/null || { echo "$0: the vips CLI is missing (Debian libvips-tools)" >&2; exit 2; }
# blocks of a twentieth of the shorter side (256..2000 px): blobs look alike at any size
min=$(( w < h ? w : h ))
B=${BLOCK:-$(( min / 20 < 256 ? 256 : min / 20 > 2000 ? 2000 : min / 20 ))}
res=$(awk -v m="$mpp" 'BEGIN { if (!(m > 0)) exit 1; printf "%.6f", 1000 / m }') ||
    { echo "$0: MPP must be a positive number (got '$mpp')" >&2; exit 2; }   # vips: pixels per mm

tmp=$(mktemp -d "${TMPDIR:-/tmp}/make_big_slide.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tiles=${MI_SHARED_DATA:-$(dirname "$0")/../../shared/data}/wsi-he/tiles

# blocks: white, and tissue t0..t2 (a tile repeated to fill the block, or embedded at an offset
# in white so that blob edges are not block-aligned)
vips black "$tmp/black.v" "$B" "$B" --bands 3
vips linear "$tmp/black.v" "$tmp/white.v" 1 255 --uchar
i=0
for t in tissue-level0-4302-10273-4814-10785 tissue-level2-1784-6289-5880-10386 high-nuclei-score-level0; do
    if [ -f "$tiles/$t.png" ]; then
        vips flatten "$tiles/$t.png" "$tmp/flat.v" --background 255
    else
        vips worley "$tmp/worley.v" 512 512 --cell-size 48 --seed $i
        vips linear --uchar -- "$tmp/worley.v" "$tmp/flat.v" "-3 -4 -1.5" "230 200 230"  # "--": negative constants
    fi
    n=$(( B / 400 + 1 ))
    vips replicate "$tmp/flat.v" "$tmp/rep.v" $n $n
    vips crop "$tmp/rep.v" "$tmp/t$i.v" 0 0 "$B" "$B"
    vips embed "$tmp/flat.v" "$tmp/e$i.v" $(( B / 5 )) $(( B / 7 )) "$B" "$B" --extend white
    i=$((i + 1))
done

nx=$(( (w + B - 1) / B )) ny=$(( (h + B - 1) / B ))
# three elliptical blobs, centres and radii in block units
list=$(awk -v nx=$nx -v ny=$ny -v d="$tmp" 'BEGIN {
    cx[0] = nx * 0.30; cy[0] = ny * 0.35; r[0] = (nx < ny ? nx : ny) * 0.16 + 0.6
    cx[1] = nx * 0.68; cy[1] = ny * 0.60; r[1] = (nx < ny ? nx : ny) * 0.12 + 0.6
    cx[2] = nx * 0.45; cy[2] = ny * 0.82; r[2] = (nx < ny ? nx : ny) * 0.07 + 0.6
    for (y = 0; y < ny; y++) for (x = 0; x < nx; x++) {
        f = "white"
        for (k = 0; k < 3; k++) {
            q = ((x + 0.5 - cx[k]) / (r[k] * 1.3)) ^ 2 + ((y + 0.5 - cy[k]) / r[k]) ^ 2
            if (q < 0.7) f = "t" k
            else if (q < 1.0 && f == "white") f = "e" k
        }
        printf "%s/%s.v ", d, f
    }
}')

save="tile,tile-width=256,tile-height=256,pyramid,compression=jpeg,Q=85,xres=$res,yres=$res,resunit=cm"
if [ $((nx * B)) -eq "$w" ] && [ $((ny * B)) -eq "$h" ]; then
    vips arrayjoin "$list" "$out[$save]" --across $nx
else
    vips arrayjoin "$list" "$tmp/flat.tif[tile,tile-width=256,tile-height=256,compression=jpeg,Q=85]" --across $nx
    vips crop "$tmp/flat.tif" "$out[$save]" 0 0 "$w" "$h"
fi
