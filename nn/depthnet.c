/* nn/depthnet.c - tools/lesionseg_ref.py's DepthEstimator: EncDec (the torchvision ResNet-18 body,
 * nn/resnet.c, and a Monodepth2 decoder) on the image resized to global_size and on the grid of
 * patch_size patches, the patch results averaged back into one map, the two maps fused, a small
 * refinement head, a clamp.
 *
 * How each torch step is run, and why it is the same arithmetic:
 *   - Conv2d(padding=1, padding_mode="reflect" / "replicate") is torch's own F.pad(x, (1,1,1,1),
 *     mode) followed by a convolution without padding (what Conv2d._conv_forward does), so it is
 *     an nn_pad then an unpadded mi_conv here. The padded copy is freed right after the conv.
 *   - ELU, LeakyReLU, GroupNorm (InstanceNorm2d(affine) is GroupNorm with one channel per group:
 *     the same per-(image, channel) mean and biased variance) and sigmoid run in place on the
 *     tensor before them unless the session keeps that tensor by name.
 *   - The patches of all images go through one EncDec call, as the reference batches them:
 *     patch k of image n is batch row k*N + n. They are stitched as torch does it: added in grid
 *     order into a zeroed map (float32, one rounding per add), then divided by the float count.
 *   - fused = wg*global_up + wl*local and depth = clamp(fused + s*tanh(refine), 0, 1) in float32,
 *     each product and sum rounded on its own (the build has -ffp-contract=off: no FMA), the
 *     weights float32 as torch turns a Python float into the tensor's type. */
#include "nn/depthnet.h"

#include "nn/layers.h"
#include "nn/resnet.h"
#include "ops/act.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_L 4

struct mi_depthnet {
    mi_depthnet_config cfg;
    mi_resnet    *enc;
    mi_conv       up0[MAX_L + 1], up1[MAX_L + 1], head;
    mi_conv       rconv[3];
    nn_group_norm rnorm[2];
};

static const int enc_channels[MAX_L + 1] = { 64, 64, 128, 256, 512 };   /* stem, layer1 .. layer4 */

/* ---- configuration ------------------------------------------------------------------------ */

static mi_status meta_int(const mi_weights *w, const char *key, long long lo, long long hi, int *v) {
    if (!mi_weights_meta(w, key)) return MI_OK;
    long long x;
    mi_status st = mi_weights_meta_int(w, key, lo, hi, &x);
    if (st == MI_OK) *v = (int)x;
    return st;
}

static mi_status meta_double(const mi_weights *w, const char *key, double *v) {
    return mi_weights_meta(w, key) ? mi_weights_meta_double(w, key, v) : MI_OK;
}

mi_status mi_depthnet_config_from_blob(mi_depthnet_config *c, const mi_weights *w) {
    static const mi_depthnet_config defaults = {   /* tools/lesionseg_ref.py DEPTH_DEFAULTS */
        .input_size = 192, .global_size = 96, .patch_size = 96, .patch_stride = 48,
        .fuse_weights = { 0.5f, 0.5f }, .encoder_stages = 3, .dec_channels = { 16, 32, 64, 128 },
        .refine_channels = 16, .refine_groups = 4, .refine_scale = 0.25f, .depth_max_cm = 20 };
    *c = defaults;
    const char *arch = mi_weights_meta(w, "arch");
    if (!arch || strcmp(arch, "depthnet"))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'arch' = '%.32s' is not 'depthnet'", w->path,
                       arch ? arch : "(missing)");
    mi_status st;
    double scale = c->refine_scale;
    if ((st = meta_int(w, "input_size", 1, 16384, &c->input_size)) ||
        (st = meta_int(w, "global_size", 1, 16384, &c->global_size)) ||
        (st = meta_int(w, "patch_size", 1, 16384, &c->patch_size)) ||
        (st = meta_int(w, "patch_stride", 1, 16384, &c->patch_stride)) ||
        (st = meta_int(w, "encoder_stages", 3, 4, &c->encoder_stages)) ||
        (st = meta_int(w, "refine_channels", 1, 4096, &c->refine_channels)) ||
        (st = meta_int(w, "refine_groups", 1, 4096, &c->refine_groups)) ||
        (st = meta_double(w, "refine_scale", &scale)) || (st = meta_double(w, "depth_max_cm", &c->depth_max_cm)))
        return st;
    if (mi_weights_meta(w, "fuse_weights") && (st = mi_weights_meta_floats(w, "fuse_weights", c->fuse_weights, 2)))
        return st;
    c->refine_scale = (float)scale;
    const int L = c->encoder_stages;
    if (mi_weights_meta(w, "dec_channels")) {
        int n;
        if ((st = mi_weights_meta_ints(w, "dec_channels", 1, 4096, c->dec_channels, MAX_L + 1, &n))) return st;
        if (n != L + 1)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'dec_channels' has %d entries, expected %d (encoder_stages "
                           "%d + 1)", w->path, n, L + 1, L);
    } else if (L != defaults.encoder_stages) {
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'dec_channels' is missing; the default has %d entries, "
                       "encoder_stages %d needs %d", w->path, defaults.encoder_stages + 1, L, L + 1);
    }
    /* the EncDec halves its input L+1 times and reflect-pads the deepest map by 1, which torch
     * refuses for a map of one pixel */
    const int m = 1 << (L + 1);
    static const char *const size_key[2] = { "global_size", "patch_size" };
    const int size[2] = { c->global_size, c->patch_size };
    for (int i = 0; i < 2; i++)
        if (size[i] % m || size[i] < 2 * m)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = %d is not a multiple of 2^%d = %d of at least %d "
                           "(the encoder halves it %d times; the decoder reflect-pads the last map, which needs "
                           "2 x 2)", w->path, size_key[i], size[i], L + 1, m, 2 * m, L + 1);
    if (c->patch_size > c->input_size)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'patch_size' = %d is larger than 'input_size' = %d", w->path,
                       c->patch_size, c->input_size);
    if ((c->input_size - c->patch_size) % c->patch_stride)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'patch_stride' = %d does not divide input_size - patch_size = "
                       "%d (the patch grid must end at the border)", w->path, c->patch_stride,
                       c->input_size - c->patch_size);
    const long long g = (c->input_size - c->patch_size) / c->patch_stride + 1;
    if (g * g > MI_DEPTHNET_MAX_PATCHES)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'patch_stride' = %d makes a grid of %lld x %lld patches, more "
                       "than %d", w->path, c->patch_stride, g, g, MI_DEPTHNET_MAX_PATCHES);
    if (c->refine_channels % c->refine_groups)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'refine_groups' = %d does not divide 'refine_channels' = %d",
                       w->path, c->refine_groups, c->refine_channels);
    if (!(c->depth_max_cm > 0))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'depth_max_cm' = %g, expected > 0", w->path, c->depth_max_cm);
    return MI_OK;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* a 3x3 convolution with bias and no padding of its own (the caller pads), for side x side
 * inputs before that padding */
static mi_status load_conv3(const mi_weights *w, mi_conv *cv, const char *name, int64_t cin, int64_t cout,
                            int64_t side) {
    mi_conv_desc d = mi_conv2d_desc(cin, cout, 3, 1, 0, 1);
    d.in_size[1] = d.in_size[2] = side + 2;
    return nn_load_conv(cv, w, name, &d, true);
}

static mi_status load(mi_depthnet *d, const mi_weights *w) {
    const mi_depthnet_config *c = &d->cfg;
    const int L = c->encoder_stages, S = c->global_size;
    const int *dec = c->dec_channels;
    mi_status st = mi_resnet_load(&d->enc, w, "resnet18", "encdec.encoder.", L, false, S, S);
    if (st) return st;
    if (mi_resnet_in_channels(d->enc) != 3)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor 'encdec.encoder.conv1.weight' takes %d input channels, expected 3 "
                       "(RGB)", w->path, mi_resnet_in_channels(d->enc));
    char t[64];
    for (int i = L; i >= 0; i--) {
        /* up0[i] reads the map at feats[i]'s scale (S / 2^(i+1)); up1[i] the map doubled */
        snprintf(t, sizeof t, "encdec.up0.%d.conv", i);
        if ((st = load_conv3(w, &d->up0[i], t, i == L ? enc_channels[L] : dec[i + 1], dec[i], S >> (i + 1))))
            return st;
        snprintf(t, sizeof t, "encdec.up1.%d.conv", i);
        if ((st = load_conv3(w, &d->up1[i], t, dec[i] + (i ? enc_channels[i - 1] : 0), dec[i], S >> i))) return st;
    }
    if ((st = load_conv3(w, &d->head, "encdec.head", dec[0], 1, S))) return st;
    const int rc = c->refine_channels, R = c->input_size;
    if ((st = load_conv3(w, &d->rconv[0], "refine.conv1", 4, rc, R)) ||
        (st = load_conv3(w, &d->rconv[1], "refine.conv2", rc, rc, R)) ||
        (st = load_conv3(w, &d->rconv[2], "refine.conv3", rc, 1, R)) ||
        (st = nn_load_group_norm(&d->rnorm[0], w, "refine.norm1", rc, rc, 1e-5)) ||   /* InstanceNorm2d */
        (st = nn_load_group_norm(&d->rnorm[1], w, "refine.norm2", rc, c->refine_groups, 1e-5)))
        return st;
    return MI_OK;
}

void mi_depthnet_free(mi_depthnet *d) {
    if (!d) return;
    mi_resnet_free(d->enc);
    for (int i = 0; i <= MAX_L; i++) {
        mi_conv_free(&d->up0[i]);
        mi_conv_free(&d->up1[i]);
    }
    mi_conv_free(&d->head);
    for (int i = 0; i < 3; i++) mi_conv_free(&d->rconv[i]);
    free(d);
}

mi_status mi_depthnet_load(mi_depthnet **out, const mi_weights *w) {
    *out = NULL;
    mi_depthnet *d = calloc(1, sizeof *d);   /* zeroed: freeing a layer never loaded is a no-op */
    if (!d) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    mi_status st = mi_depthnet_config_from_blob(&d->cfg, w);
    if (st == MI_OK) st = load(d, w);
    if (st) {
        mi_depthnet_free(d);
        return st;
    }
    *out = d;
    return MI_OK;
}

const mi_depthnet_config *mi_depthnet_get_config(const mi_depthnet *d) { return &d->cfg; }

/* ---- forward ------------------------------------------------------------------------------ */

static mi_tensor empty(void) { return (mi_tensor){ 0 }; }

/* conv(pad(x, 1, mode)) with the conv's bias, then ELU (alpha 1) unless elu is false */
static mi_tensor pad_conv(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, mi_pad_mode mode, bool elu,
                          const char *elu_name) {
    static const int64_t one[4] = { 1, 1, 1, 1 };
    char name[80];
    snprintf(name, sizeof name, "%s.pad", cv->name);
    mi_tensor p = nn_pad(c, x, one, mode, name);
    mi_tensor y = nn_conv(c, cv, &p, NULL, MI_ACT_NONE);
    nn_free(c, &p);
    return elu ? nn_act_fwd(c, NN_ELU, 1.0f, &y, !nn_wants(c, cv->name), elu_name) : y;
}

/* EncDec.forward(x, stages, prefix): the decoder's stages marked "<prefix>dec.<i>", the result
 * (sigmoid(head(h)), N x 1 x side x side) `out_name`. x stays the caller's. */
static mi_tensor encdec_forward(const mi_depthnet *d, nn_ctx *c, const mi_tensor *x, const char *prefix,
                                const char *out_name) {
    const int L = d->cfg.encoder_stages;
    static const double twice[2] = { 2.0, 2.0 };
    mi_tensor f[5];
    mi_resnet_forward_feats(d->enc, c, x, f);
    mi_tensor h = f[L];
    char name[64];
    for (int i = L; i >= 0; i--) {
        snprintf(name, sizeof name, "%sup0.%d", prefix, i);
        mi_tensor a = pad_conv(c, &d->up0[i], &h, MI_PAD_REFLECT, true, name);   /* up0[i](h) */
        nn_free(c, &h);                                                        /* f[L] the first time */
        snprintf(name, sizeof name, "%sup.%d", prefix, i);
        mi_tensor u = nn_resize_nearest(c, &a, twice, name);                   /* interpolate(x2, nearest) */
        nn_free(c, &a);
        if (i) {                                                               /* cat([h, f[i-1]], 1) */
            const mi_tensor *parts[2] = { &u, &f[i - 1] };
            snprintf(name, sizeof name, "%scat.%d", prefix, i);
            mi_tensor cat = nn_concat(c, parts, 2, name);
            nn_free(c, &u);
            nn_free(c, &f[i - 1]);
            u = cat;
        }
        snprintf(name, sizeof name, "%sdec.%d", prefix, i);
        h = pad_conv(c, &d->up1[i], &u, MI_PAD_REFLECT, true, name);          /* up1[i](h) */
        nn_free(c, &u);
    }
    mi_tensor o = pad_conv(c, &d->head, &h, MI_PAD_REFLECT, false, NULL);
    nn_free(c, &h);
    return nn_act_fwd(c, NN_SIGMOID, 0, &o, !nn_wants(c, d->head.name), out_name);   /* sigmoid(head(h)) */
}

static bool input_ok(const mi_depthnet *d, nn_ctx *c, const mi_tensor *x) {
    const int R = d->cfg.input_size;
    if (x->ndim == 4 && x->shape[1] == 3 && x->shape[2] == R && x->shape[3] == R) return true;
    char s[96];
    nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "a depthnet takes (N, 3, %d, %d) inputs (its input_size), not %s", R, R,
                       mi_shape_str(s, sizeof s, x->ndim, x->shape)));
    return false;
}

/* torch.cat([x[:, :, y:y+P, x0:x0+P] for y, x0 in grid], 0) */
static void crop_patches(float *out, const float *x, int64_t N, int64_t C, int64_t R, int64_t P, int64_t T,
                         int64_t g) {
    for (int64_t k = 0; k < g * g; k++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t ch = 0; ch < C; ch++) {
                const float *src = x + ((n * C + ch) * R + k / g * T) * R + k % g * T;
                float *dst = out + ((k * N + n) * C + ch) * P * P;
                for (int64_t y = 0; y < P; y++) memcpy(dst + y * P, src + y * R, (size_t)P * sizeof *dst);
            }
}

/* acc[:, :, y:y+P, x0:x0+P] += out[k*N:(k+1)*N] in grid order, cnt likewise, then acc / cnt.
 * loc: (N, 1, R, R); cnt: R*R floats of scratch. */
static void stitch(float *loc, float *cnt, const float *out, int64_t N, int64_t R, int64_t P, int64_t T,
                   int64_t g) {
    memset(loc, 0, (size_t)(N * R * R) * sizeof *loc);
    memset(cnt, 0, (size_t)(R * R) * sizeof *cnt);
    for (int64_t k = 0; k < g * g; k++) {
        const int64_t y0 = k / g * T, x0 = k % g * T;
        for (int64_t n = 0; n < N; n++) {
            const float *p = out + (k * N + n) * P * P;
            for (int64_t y = 0; y < P; y++)
                for (int64_t i = 0; i < P; i++) loc[(n * R + y0 + y) * R + x0 + i] += p[y * P + i];
        }
        for (int64_t y = 0; y < P; y++)
            for (int64_t i = 0; i < P; i++) cnt[(y0 + y) * R + x0 + i] += 1.0f;
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < R * R; i++) loc[n * R * R + i] = loc[n * R * R + i] / cnt[i];
}

mi_tensor mi_depthnet_forward(const mi_depthnet *d, nn_ctx *c, const mi_tensor *x) {
    const mi_depthnet_config *g = &d->cfg;
    if (!nn_ok(c) || (c->measure && !input_ok(d, c, x))) return empty();
    const int64_t N = x->shape[0], R = g->input_size, S = g->global_size, P = g->patch_size, T = g->patch_stride,
                  side = (R - P) / T + 1, np = side * side;
    /* g = encdec(interpolate(x, (S, S), bilinear)); gu = interpolate(g, (R, R), bilinear) */
    mi_tensor xs = nn_resize_bilinear(c, x, S, S, "global.input");
    mi_tensor gl = encdec_forward(d, c, &xs, "global.", "global");
    nn_free(c, &xs);
    mi_tensor gu = nn_resize_bilinear(c, &gl, R, R, "global_up");
    nn_free(c, &gl);
    /* out = encdec(cat(patches, 0)); loc = stitched average */
    const int64_t pshape[4] = { N * np, 3, P, P };
    mi_tensor patches = nn_ok(c) ? nn_alloc(c, 4, pshape, "local.input") : empty();
    if (nn_ok(c) && nn_compute(c)) crop_patches(patches.data, x->data, N, 3, R, P, T, side);
    nn_mark(c, "local.input", &patches);
    mi_tensor out = encdec_forward(d, c, &patches, "local.", "local.encdec");
    nn_free(c, &patches);
    const int64_t mshape[4] = { N, 1, R, R };
    mi_tensor loc = nn_ok(c) ? nn_alloc(c, 4, mshape, "local") : empty();
    float *cnt = nn_scratch(c, (size_t)(R * R) * sizeof(float));
    if (nn_ok(c) && nn_compute(c)) stitch(loc.data, cnt, out.data, N, R, P, T, side);
    nn_scratch_free(c, cnt);
    nn_free(c, &out);
    nn_mark(c, "local", &loc);
    /* fused = wg * gu + wl * loc */
    mi_tensor fused = nn_ok(c) ? nn_alloc(c, 4, mshape, "fused") : empty();
    if (nn_ok(c) && nn_compute(c)) {
        const float wg = g->fuse_weights[0], wl = g->fuse_weights[1];
        for (int64_t i = 0; i < N * R * R; i++) fused.data[i] = wg * gu.data[i] + wl * loc.data[i];
    }
    nn_free(c, &gu);
    nn_free(c, &loc);
    nn_mark(c, "fused", &fused);
    /* h = conv3(lrelu(norm2(conv2(lrelu(norm1(conv1(cat(x, fused)))))))), replicate padding */
    const mi_tensor *parts[2] = { x, &fused };
    mi_tensor h = nn_concat(c, parts, 2, "refine.input");
    for (int k = 0; k < 2; k++) {
        mi_tensor y = pad_conv(c, &d->rconv[k], &h, MI_PAD_REPLICATE, false, NULL);
        nn_free(c, &h);
        mi_tensor nrm = nn_group_norm_fwd(c, &d->rnorm[k], &y, !nn_wants(c, d->rconv[k].name));
        if (nrm.data != y.data) nn_free(c, &y);
        char name[32];
        snprintf(name, sizeof name, "refine.act%d", k + 1);
        h = nn_act_fwd(c, NN_LEAKY_RELU, 0.2f, &nrm, !nn_wants(c, d->rnorm[k].name), name);
        if (h.data != nrm.data) nn_free(c, &nrm);
    }
    mi_tensor r = pad_conv(c, &d->rconv[2], &h, MI_PAD_REPLICATE, false, NULL);
    nn_free(c, &h);
    nn_mark(c, "refine", &r);
    /* depth = clamp(fused + refine_scale * tanh(h), 0, 1) */
    const bool keep_r = nn_wants(c, "refine") || nn_wants(c, d->rconv[2].name);
    mi_tensor t = r;
    if (keep_r && nn_ok(c)) t = nn_alloc(c, 4, mshape, "depth");
    snprintf(t.name, sizeof t.name, "depth");
    if (nn_ok(c) && nn_compute(c)) {
        const float s = g->refine_scale;
        mi_tanh(t.data, r.data, N * R * R);
        for (int64_t i = 0; i < N * R * R; i++) {
            const float v = fused.data[i] + s * t.data[i];
            t.data[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;   /* NaN passes, as in torch.clamp */
        }
    }
    if (t.data != r.data) nn_free(c, &r);
    nn_free(c, &fused);
    nn_mark(c, "depth", &t);
    return t;
}
