/* nn/layers.h - what every network is built from: loaders that read a layer from a blob by its
 * PyTorch state_dict names (checking presence and shape, naming the file, the tensor, expected
 * vs found), and the steps a forward() is written in, each running in an nn_ctx (nn/ctx.h): in a
 * measure walk they check shapes and take memory only, in a run they compute.
 *
 * Loaders take the layer's full name prefix ("layer1.0.conv1"; a backbone inside a larger model
 * passes "backbone.body.layer1.0.conv1"); the layer is named by it in every later message.
 * in_size (D, H, W; 0 when unknown) is the input the layer will mostly see: its weights are
 * packed for it once, at load. Any other size still runs. */
#ifndef MI_NN_LAYERS_H
#define MI_NN_LAYERS_H

#include "nn/ctx.h"
#include "ops/conv.h"
#include "ops/pad.h"
#include "ops/pool.h"
#include "weights/safetensors.h"

/* torch.nn.Conv2d/3d "<conv>.weight" [cout, cin/groups, k...] and, when has_bias,
 * "<conv>.bias" [cout]. */
mi_status nn_load_conv(mi_conv *c, const mi_weights *w, const char *conv, const mi_conv_desc *d,
                       bool has_bias);
/* Conv (no bias, as torchvision writes it before a BatchNorm) + BatchNorm2d/3d "<bn>.weight,
 * bias, running_mean, running_var" folded into one conv in float64 (eps: the BN's, 1e-5 in
 * torch's default). */
mi_status nn_load_conv_bn(mi_conv *c, const mi_weights *w, const char *conv, const char *bn,
                          const mi_conv_desc *d, double eps);
/* torch.nn.ConvTranspose2d/3d "<name>.weight" [cin, cout/groups, k...], optional "<name>.bias". */
mi_status nn_load_deconv(mi_deconv *c, const mi_weights *w, const char *name,
                         const mi_deconv_desc *d, bool has_bias);

/* torch.nn.Linear "<name>.weight" [out, in], optional "<name>.bias" [out]: views into the blob. */
typedef struct {
    char         name[64];
    int64_t      in, out;
    const float *weight, *bias;   /* bias NULL when the layer has none */
} nn_linear;
mi_status nn_load_linear(nn_linear *l, const mi_weights *w, const char *name, int64_t in,
                         int64_t out, bool has_bias);

/* torch.nn.PReLU "<name>.weight" [num_parameters] (1: one shared slope, or channels). */
typedef struct {
    char         name[64];
    int64_t      n;
    const float *slope;
} nn_prelu;
mi_status nn_load_prelu(nn_prelu *p, const mi_weights *w, const char *name, int64_t channels);

/* torch.nn.GroupNorm(G, C) and InstanceNorm2d(C, affine=True) (G == C): "<name>.weight",
 * "<name>.bias" [C], views into the blob. eps: the module's (1e-5 in torch's default). G must
 * divide C (MI_ERR_ARG naming the layer otherwise). */
typedef struct {
    char         name[64];
    int64_t      C, G;
    double       eps;
    const float *gamma, *beta;
} nn_group_norm;
mi_status nn_load_group_norm(nn_group_norm *g, const mi_weights *w, const char *name, int64_t C,
                             int64_t G, double eps);

/* ---- steps of a forward(); each returns its output from the arena ----------------------------
 * On a failure in the measure walk (a shape that does not fit) the step records it in the
 * context and returns an empty tensor; later steps then do nothing. The steps never allocate
 * on the heap. */

/* act(conv(x) + bias [+ residual]) */
mi_tensor nn_conv(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, const mi_tensor *residual,
                  mi_act act);
/* The same, consuming the residual (the caller no longer frees it): the output is written over
 * it where nothing reads it afterwards (nn_take) and the layer has pixels on the lanes, so that
 * the add reads and writes one map instead of reading one and filling another. Same bits either
 * way (mi_conv_forward). */
mi_tensor nn_conv_add_into(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, const mi_tensor *residual,
                           mi_act act);
/* A 1x1 stride-1 layer and the 3x3 stride-2 layer that reads its output (ops/conv.h,
 * mi_conv_forward_padded_out / _in), where both _ok: the first returns its map padded
 * (*padded) unless a capture hook or a kept output needs the plain one, the second takes either. */
mi_tensor nn_conv_padded_out(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, mi_act act, bool *padded);
mi_tensor nn_conv_padded_in(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, bool padded, mi_act act);
mi_tensor nn_deconv(nn_ctx *c, const mi_deconv *cv, const mi_tensor *x, const mi_tensor *residual,
                    mi_act act);
mi_tensor nn_max_pool(nn_ctx *c, const mi_pool_desc *d, const mi_tensor *x, const char *name);
/* (N, C, 1, 1[, 1]) */
mi_tensor nn_global_avg_pool(nn_ctx *c, const mi_tensor *x, const char *name);
/* x: (N, in, 1, ...) or (N, in) -> (N, out) */
mi_tensor nn_linear_fwd(nn_ctx *c, const nn_linear *l, const mi_tensor *x);
mi_tensor nn_prelu_fwd(nn_ctx *c, const nn_prelu *p, const mi_tensor *x);

/* Steps that may write over their input. in_place: x is the arena's and nothing reads it after
 * this step as it was (in particular the session does not keep it: pass !nn_wants(c, <the name
 * x was marked by>)); then the result is x's block under the new name, and freeing either frees
 * both. Otherwise the result is a new tensor and x is left as it was. Marked `name`. */
typedef enum { NN_ELU, NN_LEAKY_RELU, NN_TANH, NN_SIGMOID } nn_act;
/* elu (alpha = param), leaky_relu (negative slope = param), tanh, sigmoid; param unused by the
 * last two */
mi_tensor nn_act_fwd(nn_ctx *c, nn_act act, float param, const mi_tensor *x, bool in_place, const char *name);
/* group_norm(x, G, gamma, beta, eps) on (N, C, ...): marked by the layer's name */
mi_tensor nn_group_norm_fwd(nn_ctx *c, const nn_group_norm *g, const mi_tensor *x, bool in_place);

/* torch.nn.functional.pad(x, pad, mode) of (N, C, H, W); pad = { left, right, top, bottom }.
 * A pad that torch refuses (reflect by as much as the side or more) fails the walk naming x. */
mi_tensor nn_pad(nn_ctx *c, const mi_tensor *x, const int64_t pad[4], mi_pad_mode mode, const char *name);
/* torch.nn.functional.interpolate of (N, C, H, W): bilinear (align_corners False) to size
 * (h, w); nearest by scale_factor (scale[0] on H, scale[1] on W). */
mi_tensor nn_resize_bilinear(nn_ctx *c, const mi_tensor *x, int64_t h, int64_t w, const char *name);
mi_tensor nn_resize_nearest(nn_ctx *c, const mi_tensor *x, const double scale[2], const char *name);
/* torch.cat(xs, 1) */
mi_tensor nn_concat(nn_ctx *c, const mi_tensor *const *xs, int nx, const char *name);

#endif
