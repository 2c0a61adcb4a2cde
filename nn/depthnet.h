/* nn/depthnet.h - the depth estimator of tools/lesionseg_ref.py (DepthEstimator): a ResNet-18
 * encoder with a Monodepth2-style decoder (EncDec) run on the whole image resized and on
 * overlapping patches, the two maps fused and refined; loaded from that module's state_dict names
 * and configured by the blob's metadata. Internal: integrators use include/medinfer.h (arch
 * "depthnet"). */
#ifndef MI_NN_DEPTHNET_H
#define MI_NN_DEPTHNET_H

#include "nn/ctx.h"
#include "weights/safetensors.h"

#define MI_DEPTHNET_MAX_PATCHES 4096   /* of the patch grid, a sanity bound on the metadata */

/* The metadata keys of tools/lesionseg_ref.py (DEPTH_DEFAULTS for absent keys). */
typedef struct {
    int   input_size, global_size, patch_size, patch_stride;
    float fuse_weights[2];             /* global, local: float32, as torch multiplies by them */
    int   encoder_stages;              /* 3 (conv1 .. layer3) or 4 (the whole body) */
    int   dec_channels[5];             /* encoder_stages + 1 entries */
    int   refine_channels, refine_groups;
    float refine_scale;
    double depth_max_cm;               /* what an output of 1 means; the network does not use it */
} mi_depthnet_config;

/* Reads and checks every key (type, range, the list lengths, global_size and patch_size multiples
 * of 2^(encoder_stages+1) and large enough for the deepest reflect padding, patch_size <=
 * input_size, patch_stride dividing input_size - patch_size, refine_groups dividing
 * refine_channels, depth_max_cm > 0); errors name the file and the key. */
mi_status mi_depthnet_config_from_blob(mi_depthnet_config *cfg, const mi_weights *w);

typedef struct mi_depthnet mi_depthnet;

/* Loads every layer (checking presence and shape of each tensor by its state_dict name; BatchNorm
 * folded), the EncDec packed for global_size inputs, the refinement for input_size. Read-only. */
mi_status mi_depthnet_load(mi_depthnet **out, const mi_weights *w);
void      mi_depthnet_free(mi_depthnet *d);
const mi_depthnet_config *mi_depthnet_get_config(const mi_depthnet *d);

/* DepthEstimator.forward on x (N, 3, input_size, input_size) (any other shape fails the measure
 * walk naming the expected one). Marks every layer by its state_dict name and the stages of the
 * reference: "global.dec.<i>", "global", "global_up", "local", "fused", "refine", "depth"
 * (N, 1, R, R), the last being the result. The EncDec run on the patch batch is marked too:
 * "local.input" (N*np, 3, P, P; row k*N + n is patch k of image n), "local.dec.<i>" and
 * "local.encdec" (N*np, 1, P, P). The EncDec's layers (and nn/resnet.c's "stem", "layer<i>") are
 * marked on both passes under the same names, the global pass first: a session keeping one of
 * them gets two outputs of that name, and mi_session_output finds the global one. */
mi_tensor mi_depthnet_forward(const mi_depthnet *d, nn_ctx *c, const mi_tensor *x);

#endif
