/* pipelines/io/dicom.h - DICOM images in (DCMTK, behind this C header: nothing else in the tree
 * sees C++ or DCMTK). One frame of pixel data as 8-bit grey, and the Sequence of Ultrasound
 * Regions (0018,6011) that says what a pixel measures.
 *
 * Pixel data: native (uncompressed) and the compressed transfer syntaxes DCMTK decodes (JPEG
 * baseline/extended/lossless, JPEG-LS, RLE). MONOCHROME1/2 (MONOCHROME1 inverted so that bright
 * is high), RGB, YBR_FULL(_422) and PALETTE COLOR are converted to grey (ITU-R BT.601 luma);
 * more than 8 bits stored are windowed to 8 bits by the file's VOI window when it has one, else
 * by the pixel range. Multi-frame files give frame 0. */
#ifndef MI_IO_DICOM_H
#define MI_IO_DICOM_H

#include "medinfer.h"

#include <stddef.h>
#include <stdint.h>

/* DICOM Physical Units X/Y Direction (0018,6024 / 6026) codes that this tree reads */
enum { MI_DICOM_UNIT_NONE = 0, MI_DICOM_UNIT_CM = 3, MI_DICOM_UNIT_SECONDS = 4 };
/* Region Spatial Format (0018,6012) */
enum { MI_DICOM_REGION_2D = 1, MI_DICOM_REGION_MMODE = 2, MI_DICOM_REGION_SPECTRAL = 3 };

typedef struct {
    int    spatial_format;         /* (0018,6012) */
    int    x0, y0, x1, y1;         /* Region Location Min/Max X0 Y0 X1 Y1 (0018,6018..601E), pixels */
    int    unit_x, unit_y;         /* (0018,6024), (0018,6026) */
    double delta_x, delta_y;       /* Physical Delta X/Y (0018,602C / 602E): units per pixel */
} mi_dicom_region;

#define MI_DICOM_MAX_REGIONS 16

typedef struct {
    uint8_t *gray;                 /* w*h bytes, row-major; owned (mi_dicom_free) */
    int      w, h;
    int      bits_stored, frames;
    char     photometric[20];      /* as the file spells it ("MONOCHROME2", "RGB", ...) */
    char     transfer_syntax[68];  /* the UID */
    char     modality[20];         /* (0008,0060), "" when absent */
    int      nregions;             /* ultrasound regions, at most MI_DICOM_MAX_REGIONS (the rest ignored) */
    mi_dicom_region regions[MI_DICOM_MAX_REGIONS];
} mi_dicom_image;

/* true when the first bytes look like DICOM (the 128-byte preamble then "DICM") */
int       mi_dicom_sniff(const void *data, size_t n);
/* Only DICOM Part 10 files (what mi_dicom_sniff accepts; a bare dataset without the preamble is
 * refused). Errors (MI_ERR_IO, MI_ERR_FORMAT, MI_ERR_UNSUPPORTED, MI_ERR_NOMEM) name the file
 * and what is wrong: no pixel data, an unsupported photometric interpretation or transfer
 * syntax, dimensions beyond MI_IMAGE_MAX_SIDE / MI_IMAGE_MAX_PIXELS (pipelines/io/image.h),
 * truncated data (docs/dicom.md lists them). On error *img is zeroed (gray NULL). Region values
 * are the file's, not checked against w and h. */
mi_status mi_dicom_load(mi_dicom_image *img, const char *path);
/* The same from n bytes in memory (not retained); name (NULL: "(memory)") names it in errors. */
mi_status mi_dicom_load_memory(mi_dicom_image *img, const void *data, size_t n, const char *name);
void      mi_dicom_free(mi_dicom_image *img);

/* The first region with spatial_format MI_DICOM_REGION_MMODE, else NULL. */
const mi_dicom_region *mi_dicom_mmode_region(const mi_dicom_image *img);

#endif
