/* nn/resnet.h - ResNet-18 / ResNet-50 exactly as torchvision.models.resnet defines them (any
 * num_classes), loaded from a blob with torchvision's own state_dict names. BatchNorm is folded
 * into the convolutions at load; forward() runs in an arena sized at load and never allocates. */
#ifndef MI_RESNET_H
#define MI_RESNET_H

#include "../weights/safetensors.h"

typedef struct mi_resnet mi_resnet;

/* Opens the blob (arch from metadata "arch": resnet18 | resnet50), checks every tensor's
 * presence and shape, folds BN, packs weights, and sizes the arena for batches of up to
 * max_batch images of input_size x input_size (metadata "input_size", default 224). */
mi_status mi_resnet_open(mi_resnet **out, const char *path, int max_batch);
void      mi_resnet_close(mi_resnet *m);

/* x: (n, 3, H, W) float32 normalized input, n <= max_batch, H = W = input size.
 * logits: (n, num_classes). Same bits for any thread count. */
mi_status mi_resnet_forward(mi_resnet *m, const float *x, int64_t n, float *logits);

/* The blob (metadata, path, sha256) the model was loaded from. */
const mi_weights *mi_resnet_weights(const mi_resnet *m);
const char *mi_resnet_arch(const mi_resnet *m);
int         mi_resnet_num_classes(const mi_resnet *m);
int         mi_resnet_input_size(const mi_resnet *m);
const char *mi_resnet_label(const mi_resnet *m, int i);   /* from metadata "labels" */
void        mi_resnet_norm(const mi_resnet *m, float mean[3], float std[3]);

/* Named intermediate activations of the last forward (for parity tests): "stem" (after maxpool),
 * "layer1".."layer4", "pool", "fc". NULL for an unknown name. Valid until the next forward. */
const mi_tensor *mi_resnet_activation(const mi_resnet *m, const char *name);

#endif
