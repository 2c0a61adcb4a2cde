/* nn/segnet.h - the depth-guided U-Net of tools/lesionseg_ref.py (SegNet): a U-Net whose encoder
 * maps are weighted, level by level, by attention computed from the depth map given as the
 * input's last channel; loaded from that module's state_dict names and configured by the blob's
 * metadata. Internal: integrators use include/medinfer.h (arch "segnet"). */
#ifndef MI_NN_SEGNET_H
#define MI_NN_SEGNET_H

#include "nn/ctx.h"
#include "weights/safetensors.h"

#define MI_SEGNET_MAX_LEVELS 8    /* down-samplings; a side must be a multiple of 2^levels */

/* The metadata keys of tools/lesionseg_ref.py (SEG_DEFAULTS for absent keys). */
typedef struct {
    int   input_size;                          /* the side the weights are packed for */
    int   in_channels;                         /* image channels; the input has one more (depth) */
    int   levels;                              /* L = len(widths) - 1 */
    int   widths[MI_SEGNET_MAX_LEVELS + 1];
    int   depth_channels;
    bool  channel_attention;                   /* attention "channel" (else "spatial") */
    bool  attention_residual;                  /* F * (1 + W) (else F * W) */
    bool  sigmoid;                             /* output "sigmoid": 1 channel (else "softmax": 2) */
    float mask_threshold;                      /* for a sigmoid output's mask; not used here */
} mi_segnet_config;

/* Reads and checks every key (type, range, 2 to MI_SEGNET_MAX_LEVELS + 1 widths, the two words,
 * attention_residual 0 or 1, mask_threshold in [0, 1], input_size a multiple of 2^L); errors
 * name the file and the key. */
mi_status mi_segnet_config_from_blob(mi_segnet_config *cfg, const mi_weights *w);

typedef struct mi_segnet mi_segnet;

/* Loads every layer (checking presence and shape of each tensor by its state_dict name; BatchNorm
 * folded into the convolutions) packed for input_size-sided inputs. Read-only. */
mi_status mi_segnet_load(mi_segnet **out, const mi_weights *w);
void      mi_segnet_free(mi_segnet *s);
const mi_segnet_config *mi_segnet_get_config(const mi_segnet *s);

/* SegNet.forward on x (N, in_channels + 1, H, W), H and W positive multiples of 2^L (else the
 * measure walk fails naming the side). Marks every layer by its state_dict name (but the 1x1
 * attention convolution "att.<l>", whose name the stage of its sigmoid takes, as "att.<l>.conv")
 * and the stages of
 * the reference: "att.<l>" (the attention W: (N, 1, h, w) spatial, (N, widths[l], 1, 1) channel),
 * "enc.<l>" (the weighted encoder map), "dec.<j>", "logits", and "seg": (N, 2, H, W) softmax
 * probabilities (channel 1 = lesion) or (N, 1, H, W) sigmoid, the result. */
mi_tensor mi_segnet_forward(const mi_segnet *s, nn_ctx *c, const mi_tensor *x);

#endif
