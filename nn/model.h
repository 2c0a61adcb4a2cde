/* nn/model.h - the engine side of mi_model / mi_session (include/medinfer.h): the architectures
 * a blob's 'arch' can name, and what the pipelines need beyond the public API. */
#ifndef MI_NN_MODEL_H
#define MI_NN_MODEL_H

#include "medinfer.h"
#include "nn/ctx.h"
#include "weights/safetensors.h"

/* One architecture: builds the read-only network from a blob, walks it in a context. */
typedef struct {
    const char *arch;                  /* the metadata value that selects it */
    /* Loads the network, packed for in_h x in_w inputs; fills *num_classes (0 for a backbone),
     * *channels (input channels) and the default outputs a session keeps. */
    mi_status (*load)(void **net, const mi_weights *w, const char *arch, int64_t in_h, int64_t in_w,
                      int *num_classes, int *channels, const char *const **outputs, int *noutputs);
    mi_tensor (*forward)(const void *net, nn_ctx *c, const mi_tensor *x);
    void      (*free)(void *net);
    int         spatial;               /* 2: inputs (N, C, H, W); 3: (N, C, D, H, W) */
    int         default_size;          /* input_size when the blob has none; 0: preprocessing's 224 */
} nn_arch;

/* Opens a model from a blob already opened (and, where the caller has a trust policy, already
 * verified: nothing in the blob beyond its safetensors header has been parsed before this). The
 * model takes *w over (it is zeroed), also on failure. */
mi_status mi_model_open_weights(mi_model **m, mi_weights *w);
const mi_weights *mi_model_weights(const mi_model *m);

/* What a blob's metadata asks of the preprocessing (the one definition every command uses):
 *   crop   = 'input_size', default 224
 *   resize_mode = 'resize_mode': "crop" (default; Resize(resize) + CenterCrop(crop)) or "squash"
 *            (Resize((crop, crop))); anything else is refused naming the blob and the key
 *   resize = 'resize' when present, else round(input_size * 256 / 224)   (224 -> 256, 32 -> 37);
 *            in squash mode input_size, and a 'resize' other than input_size is refused
 *   mean, std = 'mean', 'std' (3 numbers each, std > 0), default ImageNet's */
mi_status mi_preprocess_spec_from_blob(mi_preprocess_spec *p, const mi_weights *w);

#endif
