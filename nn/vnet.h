/* nn/vnet.h - the V-Net of tools/vnet_ref.py (Milletari et al. 2016), 2-D for slide tiles or
 * 3-D for volumes, with its classification branch on the bottleneck, loaded from that module's
 * state_dict names and configured by the blob's metadata. Internal: integrators use
 * include/medinfer.h (arch "vnet2d" | "vnet3d"). */
#ifndef MI_NN_VNET_H
#define MI_NN_VNET_H

#include "nn/ctx.h"
#include "weights/safetensors.h"

#define MI_VNET_MAX_LEVELS 8      /* down-samplings; a side must be a multiple of 2^levels */
#define MI_VNET_MAX_CONVS  16     /* convolutions of one stage */

/* The metadata keys of tools/vnet_ref.py, with its DEFAULTS for absent keys. */
typedef struct {
    int dims;                                  /* 2 (vnet2d) or 3 (vnet3d) */
    int in_channels, width, levels;            /* levels = len(enc_convs) - 1 */
    int enc_convs[MI_VNET_MAX_LEVELS + 1];     /* level 0 .. levels (the bottleneck) */
    int dec_convs[MI_VNET_MAX_LEVELS];         /* decoder stage j ends at level levels-1-j */
    int feature_dim, num_classes;
    int input_size;                            /* the side the weights are packed for */
} mi_vnet_config;

/* Reads and checks every key (type, range, the lists' lengths, width >= in_channels, the
 * channels of the deepest level, input_size a multiple of 2^levels); errors name the file and
 * the key. */
mi_status mi_vnet_config_from_blob(mi_vnet_config *cfg, const mi_weights *w);

typedef struct mi_vnet mi_vnet;

/* Loads every layer (checking presence and shape of each tensor by its state_dict name) packed
 * for input_size-sided inputs. The result is read-only. */
mi_status mi_vnet_load(mi_vnet **out, const mi_weights *w);
void      mi_vnet_free(mi_vnet *v);
const mi_vnet_config *mi_vnet_get_config(const mi_vnet *v);

/* VNet.forward on x (N, in_channels, H, W) or (N, in_channels, D, H, W), every spatial side a
 * multiple of 2^levels (else the measure walk fails naming the side). Marks every layer by its
 * state_dict name and the stages of vnet_ref.forward: "enc.<l>", "down.<l>", "up.<j>", "dec.<j>",
 * and "seg" (N, 2, spatial: softmax, channel 1 = lesion), "features" (N, feature_dim),
 * "tile_logits" (N, num_classes). The decoder runs only when the session keeps "seg" or a layer
 * of it, the classification branch only when it keeps one of its results. Returns the last
 * tensor made. */
mi_tensor mi_vnet_forward(const mi_vnet *v, nn_ctx *c, const mi_tensor *x);

#endif
