/* pipelines/io/tiffcheck.h - a cheap look at a TIFF before OpenSlide opens it (pipelines/io/slide.c).
 *
 * OpenSlide 3.4.1 reads a TIFF's directories with its own parser before libtiff sees the file,
 * and allocates, for every tag value it looks at, the count times the type size the directory
 * entry claims: a 10 KB file whose YResolution entry claims 1 246 451 966 RATIONALs makes it ask
 * malloc for 9.97 GB at open. At read time it allocates a whole tile's byte count (TileByteCounts)
 * to read the tile raw, and decodes whole tiles. mi_tiff_check refuses such files first; what it
 * lets through claims nothing larger than the file itself (and no tile above the bounds below). */
#ifndef MI_IO_TIFFCHECK_H
#define MI_IO_TIFFCHECK_H

#include "medinfer.h"

#define MI_TIFF_MAX_DIRS       1024         /* directories in the chain: slides have < 100
                                               (an NDPI z-stack: levels x planes + macro) */
#define MI_TIFF_MAX_TILE_BYTES (256 << 20)  /* one tile's byte count: 8192^2 RGB8 raw is 192 MiB */

/* MI_OK when path does not start with a TIFF or BigTIFF header ("II*\0", "MM\0*", "II+\0",
 * "MM\0+"; MRXS, VMS and the like are left to OpenSlide untouched), and for a classic TIFF of
 * 4 GiB or more (only NDPI writes those, with 64-bit offsets standard TIFF cannot express: its
 * directories are OpenSlide's to read). Otherwise walks every directory of the chain, first
 * as raw entries (every value lies inside the file: what OpenSlide's parser will allocate), then
 * through libtiff (every tile and strip lies inside the file, tiles at most
 * MI_TIFF_MAX_TILE_BYTES and MI_SLIDE_MAX_TILE_SIDE pixels per side, at most MI_TIFF_MAX_DIRS
 * directories). MI_ERR_FORMAT names the file, the directory, the entry or tile and the numbers;
 * MI_ERR_IO when the file cannot be read. libtiff's messages go to this check's own handlers
 * (TIFFOpenExt): the process-wide ones OpenSlide uses are not touched. */
mi_status mi_tiff_check(const char *path);

#endif
