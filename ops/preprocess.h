/* ops/preprocess.h - torchvision's classifier input transform on decoded 8-bit RGB pixels
 * (mi_preprocess_rgb8 and mi_preprocess_spec are public: include/medinfer.h), and its steps.
 * Pure computation: decoding files is the pipelines' business (pipelines/io). */
#ifndef MI_OPS_PREPROCESS_H
#define MI_OPS_PREPROCESS_H

#include "medinfer.h"

/* torchvision Resize(int size) output size: shorter side -> size, longer -> int(size*long/short). */
void      mi_resize_shorter_size(int w, int h, int size, int *ow, int *oh);
/* torchvision F.resize(uint8 [3,H,W], [oh, ow], BILINEAR, antialias=True): the resize step of
 * mi_preprocess_rgb8 on its own. src: h rows of w RGB pixels, stride bytes apart; dst: oh rows
 * of ow RGB pixels, packed. */
mi_status mi_resize_aa_rgb8(uint8_t *dst, int ow, int oh, const uint8_t *src, int w, int h,
                            size_t stride);

/* "crop" / "squash": the metadata value, as reports print it ("?" outside the enum). */
const char *mi_resize_mode_name(mi_resize_mode m);

#endif
