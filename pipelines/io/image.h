/* pipelines/io/image.h - still images in and out (stb_image / stb_image_write), the
 * torchvision-equivalent preprocessing from decoded pixels to a normalized tensor, and .npy. */
#ifndef MI_IO_IMAGE_H
#define MI_IO_IMAGE_H

#include "medinfer.h"

typedef struct {
    uint8_t *px;   /* RGB, 3 bytes per pixel, row-major, w*h*3 bytes; owned (mi_image_free) */
    int      w, h;
} mi_image;

/* PNG/JPEG/BMP (whatever stb_image reads); grey/RGBA converted to RGB. Error names the file. */
mi_status mi_image_load(mi_image *img, const char *path);
mi_status mi_image_alloc(mi_image *img, int w, int h);     /* zeroed */
mi_status mi_image_write_png(const char *path, const mi_image *img);
void      mi_image_free(mi_image *img);

/* The classifier's input transform, equal (within a stated tolerance) to torchvision's
 *   Resize(resize, bilinear, antialias=True) -> CenterCrop(crop) -> ToTensor -> Normalize(mean, std)
 * applied to the same decoded pixels. out: [3, crop, crop] float32. */
mi_status mi_image_preprocess(const mi_image *img, int resize, int crop, const float mean[3],
                              const float std[3], float *out);

/* A little-endian float32 .npy (C order). *data malloc'd; error names the file. */
mi_status mi_npy_load(const char *path, float **data, int *ndim, int64_t shape[5]);

#endif
