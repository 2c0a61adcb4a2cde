/* nn/resnet.h - ResNet-18 / ResNet-50 exactly as torchvision.models.resnet defines them (any
 * num_classes, any input H x W), loaded with torchvision's own state_dict names, as a classifier
 * or as the C2-C5 backbone of a larger network. Internal: integrators use include/medinfer.h. */
#ifndef MI_NN_RESNET_H
#define MI_NN_RESNET_H

#include "nn/ctx.h"
#include "weights/safetensors.h"

typedef struct mi_resnet mi_resnet;

/* arch: "resnet18" | "resnet50". prefix: "" for torchvision's names, or the path of the
 * backbone inside a larger model ("backbone.body."). stages: 4, or 1..3 for a body that ends at
 * that layer (no head then): 3 for a "C4" backbone (stride 16, as detection models with one
 * feature map use it), or a feature pyramid's body that returns no later layer.
 * head: also load avgpool + fc ("fc.weight" [num_classes, 512 | 2048], "fc.bias"). The input
 * channels are conv1's (3, or 1 for a grey modality). Weights are packed for in_h x in_w inputs.
 * Checks every tensor's presence and shape; BatchNorm is folded into the convolutions. The
 * result is read-only. */
mi_status mi_resnet_load(mi_resnet **out, const mi_weights *w, const char *arch, const char *prefix,
                         int stages, bool head, int64_t in_h, int64_t in_w);
/* The same with the BatchNorm eps given (mi_resnet_load: torch's default 1e-5). torchvision's
 * detection backbones use FrozenBatchNorm2d, whose eps is 1e-5 too, except in its COCO-trained
 * weights, which set 0 (overwrite_eps). MI_ERR_ARG outside [0, 1]. */
mi_status mi_resnet_load_eps(mi_resnet **out, const mi_weights *w, const char *arch, const char *prefix,
                             int stages, bool head, int64_t in_h, int64_t in_w, double bn_eps);
void      mi_resnet_free(mi_resnet *r);
int       mi_resnet_num_classes(const mi_resnet *r);     /* 0 without a head */
int       mi_resnet_in_channels(const mi_resnet *r);
int       mi_resnet_out_channels(const mi_resnet *r);    /* of the last stage */

/* torchvision ResNet._forward_impl on x (N, in_channels, H, W). Marks (nn_mark) every conv by its name,
 * "stem" (after the maxpool), "layer1".."layer4" (also as "features.C2".."features.C5"), and with
 * a head that the session wants: "pool", "fc" (also as "logits"). Returns the last tensor. */
mi_tensor mi_resnet_forward(const mi_resnet *r, nn_ctx *c, const mi_tensor *x);

/* The body alone (no head), keeping what a decoder or a feature pyramid reads: feats[0] is the
 * stem's relu(bn1(conv1(x))) before the max-pool (stride 2), feats[1..stages] the stages' outputs
 * (strides 4, 8, 16, 32). The caller frees each with nn_free once it has read it. Returns the
 * last stage's output (== feats[stages]). Marks as mi_resnet_forward. */
mi_tensor mi_resnet_forward_feats(const mi_resnet *r, nn_ctx *c, const mi_tensor *x, mi_tensor feats[5]);

#endif
