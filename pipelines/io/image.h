/* pipelines/io/image.h - still images in and out (stb_image / stb_image_write), the classifier
 * preprocessing of a decoded image (the computation itself is in the engine: ops/preprocess.c),
 * and .npy. */
#ifndef MI_IO_IMAGE_H
#define MI_IO_IMAGE_H

#include "medinfer.h"
#include "nn/model.h"
#include "ops/preprocess.h"

typedef struct {
    uint8_t *px;   /* RGB, 3 bytes per pixel, row-major, w*h*3 bytes; owned (mi_image_free) */
    int      w, h;
} mi_image;

/* Bigger than any slide tile or endoscopy frame we decode whole (larger inputs go to io/slides),
 * and per side too: a 1 x 2^28 strip is no picture we classify. */
#define MI_IMAGE_MAX_PIXELS (1ll << 28)
#define MI_IMAGE_MAX_SIDE   (1 << 15)

/* PNG, JPEG or BMP (decoded by stb_image; its other formats are refused); grey/RGBA converted to
 * RGB. Error names the file. */
mi_status mi_image_load(mi_image *img, const char *path);
/* The same from n bytes in memory (not retained); `name` (NULL: "(memory)") names the image in
 * errors. Both refuse, before decoding, images beyond MI_IMAGE_MAX_SIDE or MI_IMAGE_MAX_PIXELS. */
mi_status mi_image_load_memory(mi_image *img, const void *data, size_t n, const char *name);
/* Only the checks mi_image_load_memory makes before decoding (format, size bounds, truncation);
 * *w, *h get the size the header gives. Costs no decoding. */
mi_status mi_image_info_memory(const void *data, size_t n, const char *name, int *w, int *h);
/* The colour channels the file stores (stbi_info: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA; a
 * palette PNG counts as 3 or 4) of bytes mi_image_info_memory accepted; 0 when stb cannot say.
 * mi_image_load converts every one of them to RGB, so this is the only way to learn that an
 * image was grey in its file. */
int       mi_image_channels_memory(const void *data, size_t n);
mi_status mi_image_alloc(mi_image *img, int w, int h);     /* zeroed */
mi_status mi_image_write_png(const char *path, const mi_image *img);
/* One 8-bit grey channel (w*h bytes, row-major) as a PNG of colour type 0: masks. */
mi_status mi_gray_write_png(const char *path, const uint8_t *px, int w, int h);
void      mi_image_free(mi_image *img);

/* The classifier's input transform in crop mode (torchvision Resize -> CenterCrop -> ToTensor ->
 * Normalize, ops/preprocess.c) on a decoded image. out: [3, crop, crop] float32. A blob's whole
 * spec, squash mode included, goes through mi_preprocess_rgb8(img->px, img->w, img->h, ...). */
mi_status mi_image_preprocess(const mi_image *img, int resize, int crop, const float mean[3],
                              const float std[3], float *out);
/* Antialiased bilinear resize of a decoded image (mi_resize_aa_rgb8); dst is allocated
 * (mi_image_free). */
mi_status mi_image_resize_aa(mi_image *dst, const mi_image *src, int ow, int oh);

/* A little-endian float32 .npy (C order; format versions 1 to 3). *data malloc'd (free());
 * shape[0..ndim) filled, ndim <= 5 (0 for a scalar). Error names the file. */
mi_status mi_npy_load(const char *path, float **data, int *ndim, int64_t shape[5]);
/* The same from `size` bytes in memory (not retained; *data is a copy); `name` (NULL:
 * "(memory)") names the array in errors. */
mi_status mi_npy_load_memory(const void *buf, size_t size, const char *name, float **data, int *ndim,
                             int64_t shape[5]);
/* Writes data as a version 1.0 '<f4' C-order .npy that numpy.load reads. */
mi_status mi_npy_save(const char *path, const float *data, int ndim, const int64_t *shape);

#endif
