/* pipelines/patho/stain.c - Macenko and Reinhard stain normalization (see stain.h); every step
 * follows tools/patho_ref.py in float64, in numpy's order of operations where that is known. */
#include "pipelines/patho/stain.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define IO   240.0   /* Macenko's transmitted light intensity */
#define BETA 0.15    /* optical density below which a pixel is transparent */
#define ALPHA 1.0    /* percentile of the angle extremes */

/* ---- order statistics -----------------------------------------------------------------------
 * numpy's percentile (method "linear", H&F 7) needs the order statistics at floor((n-1)q) and
 * the next. A full sort of 512*512 values per percentile would cost ~20 ms; selection (Wirth,
 * "Algorithms + Data Structures = Programs": Hoare partitioning around a median of three,
 * keeping only the side that holds k) costs O(n) on average and handles runs of equal values
 * (common here: a tile has far fewer colours than pixels) by splitting them evenly. */
static double select_kth(double *x, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        const int64_t mid = lo + (hi - lo) / 2;
        double t;
        if (x[mid] < x[lo]) { t = x[mid]; x[mid] = x[lo]; x[lo] = t; }
        if (x[hi] < x[lo])  { t = x[hi];  x[hi] = x[lo];  x[lo] = t; }
        if (x[hi] < x[mid]) { t = x[hi];  x[hi] = x[mid]; x[mid] = t; }
        const double pivot = x[mid];
        int64_t i = lo, j = hi;
        do {
            while (x[i] < pivot) i++;
            while (pivot < x[j]) j--;
            if (i <= j) {
                t = x[i]; x[i] = x[j]; x[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;             /* j < k < i: x[k] equals the pivot, in place */
    }
    return x[k];   /* and x[0..k) <= x[k] <= x[k+1..n) */
}

/* np.percentile(x, p) for finite x, n >= 1; reorders x. numpy's index (n-1)*(p/100), its floor,
 * and its _lerp: a + (b-a)*g, or b - (b-a)*(1-g) when g >= 0.5. */
static double percentile(double *x, int64_t n, double p) {
    const double q = p / 100.0, vi = (double)(n - 1) * q;
    if (vi >= (double)(n - 1)) {
        double m = x[0];
        for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
        return m;
    }
    const int64_t prev = (int64_t)floor(vi);
    const double g = vi - (double)prev;
    const double a = select_kth(x, n, prev);
    double b = x[prev + 1];
    for (int64_t i = prev + 2; i < n; i++) b = x[i] < b ? x[i] : b;
    const double d = b - a;
    return g >= 0.5 ? b - d * (1.0 - g) : a + d * g;
}

/* ---- 3x3 symmetric eigen decomposition -------------------------------------------------------
 * Cyclic Jacobi rotations (Jacobi 1846; as in Golub & Van Loan, "Matrix Computations", 8.5): on a
 * 3x3 covariance it converges to full float64 accuracy in a handful of sweeps, and its
 * eigenvectors are as accurate as LAPACK's (both backward stable), which is what numpy.eigh
 * calls. Eigenvalues ascending as eigh returns them; v[:, i] belongs to w[i]. */
static void eigh3(const double a_in[3][3], double w[3], double v[3][3]) {
    double a[3][3];
    memcpy(a, a_in, sizeof a);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) v[i][j] = i == j;
    for (int sweep = 0; sweep < 64; sweep++) {
        const double off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        const double diag = a[0][0] * a[0][0] + a[1][1] * a[1][1] + a[2][2] * a[2][2];
        if (off == 0 || off < 1e-36 * diag) break;   /* off-diagonal below a float64 ulp of it */
        for (int p = 0; p < 2; p++)
            for (int q = p + 1; q < 3; q++) {
                if (a[p][q] == 0) continue;
                /* the rotation (c, s) in the (p, q) plane that zeroes a[p][q]: t = tan(phi) is the
                 * smaller root of t^2 + 2 theta t - 1 = 0, theta = cot(2 phi) */
                const double theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 3; k++) {           /* A <- A J */
                    const double akp = a[k][p], akq = a[k][q];
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for (int k = 0; k < 3; k++) {           /* A <- J^T A */
                    const double apk = a[p][k], aqk = a[q][k];
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                a[p][q] = a[q][p] = 0.0;
                for (int k = 0; k < 3; k++) {           /* V <- V J */
                    const double vkp = v[k][p], vkq = v[k][q];
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
    }
    int order[3] = { 0, 1, 2 };                          /* ascending, stable */
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && a[order[j]][order[j]] < a[order[j - 1]][order[j - 1]]; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    double vv[3][3];
    for (int i = 0; i < 3; i++) {
        w[i] = a[order[i]][order[i]];
        for (int k = 0; k < 3; k++) vv[k][i] = v[k][order[i]];
    }
    memcpy(v, vv, sizeof vv);
}

/* patho_ref._orient: the sign that makes the component of largest magnitude (the first such)
 * positive. An eigenvector's sign is arbitrary; this fixes it the same way in both. */
static void orient(double e[3]) {
    int m = 0;
    for (int i = 1; i < 3; i++) if (fabs(e[i]) > fabs(e[m])) m = i;
    if (e[m] < 0) for (int i = 0; i < 3; i++) e[i] = -e[i];
}

/* ---- concentrations ---------------------------------------------------------------------------
 * patho_ref.concentrations: np.linalg.solve(HEᵀHE, HEᵀ od), i.e. LAPACK's gesv: LU with partial
 * pivoting of the 2x2 matrix (l from the reciprocal of the pivot, as dgetrf2 scales), then the
 * two triangular solves for each pixel. Precomputed once per fit. */
typedef struct {
    double he[3][2];
    bool   swap;            /* row interchange chosen by the pivoting */
    double u00, u01, u11, l;
} solver;

static bool solver_init(solver *sv, const double he[3][2]) {
    memcpy(sv->he, he, sizeof sv->he);
    double m[2][2];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) m[a][b] = he[0][a] * he[0][b] + he[1][a] * he[1][b] + he[2][a] * he[2][b];
    sv->swap = fabs(m[1][0]) > fabs(m[0][0]);
    const int r0 = sv->swap, r1 = !sv->swap;
    sv->u00 = m[r0][0];
    sv->u01 = m[r0][1];
    if (sv->u00 == 0) return false;
    sv->l = m[r1][0] * (1.0 / sv->u00);
    sv->u11 = m[r1][1] - sv->l * sv->u01;
    /* HEᵀHE of two unit vectors at angle a has det sin^2 a; when they coincide (a single-colour
     * tile) numpy's solve raises LinAlgError("Singular matrix") or, when rounding leaves a tiny
     * pivot, returns concentrations of 1e15 that mean nothing. Both are refused here: a pivot
     * below 1e-12 of the first (stains closer than ~1e-6 rad) is no fit. */
    return isfinite(sv->u11) && fabs(sv->u11) > 1e-12 * fabs(sv->u00);
}

static inline void solve(const solver *sv, const double od[3], double c[2]) {
    double r[2];
    for (int a = 0; a < 2; a++) r[a] = sv->he[0][a] * od[0] + sv->he[1][a] * od[1] + sv->he[2][a] * od[2];
    const double y0 = r[sv->swap], y1 = r[!sv->swap] - sv->l * y0;
    c[1] = y1 / sv->u11;
    c[0] = (y0 - sv->u01 * c[1]) / sv->u00;
}

/* -ln((v + 1) / 240) for every byte value: 256 logs instead of 3 a pixel */
static void od_table(double od[256]) {
    for (int v = 0; v < 256; v++) od[v] = -log(((double)v + 1.0) / IO);
}

size_t mi_patho_macenko_scratch_bytes(int64_t npix) {
    return npix > 0 && (uint64_t)npix <= SIZE_MAX / 16 ? (size_t)npix * 16 : 0;
}

static mi_status check_args(const uint8_t *rgb, int64_t npix, const char *who) {
    if (!rgb || npix < 1)
        return MI_FAIL(MI_ERR_ARG, "%s: %lld pixels, expected at least 1", who, (long long)npix);
    return MI_OK;
}

mi_status mi_patho_macenko_fit(mi_macenko *fit, const uint8_t *rgb, int64_t npix, void *scratch,
                               size_t scratch_bytes) {
    memset(fit, 0, sizeof *fit);
    mi_status st = check_args(rgb, npix, "Macenko fit");
    if (st) return st;
    const size_t need = mi_patho_macenko_scratch_bytes(npix);
    if (!scratch || scratch_bytes < need)
        return MI_FAIL(MI_ERR_ARG, "Macenko fit: %zu bytes of scratch for %lld pixels, %zu needed",
                       scratch ? scratch_bytes : 0, (long long)npix, need);
    double *c0 = scratch, *c1 = c0 + npix, od[256];
    od_table(od);
#define STAINED(p) (od[(p)[0]] >= BETA && od[(p)[1]] >= BETA && od[(p)[2]] >= BETA)

    /* np.cov of the stained pixels' OD: mean, then the centred products / (N - 1) (numpy
     * multiplies by the reciprocal) */
    double sum[3] = { 0, 0, 0 };
    int64_t n = 0;
    for (int64_t i = 0; i < npix; i++) {
        const uint8_t *p = rgb + 3 * i;
        if (!STAINED(p)) continue;
        for (int k = 0; k < 3; k++) sum[k] += od[p[k]];
        n++;
    }
    fit->stained = n;
    if (n < MI_MACENKO_MIN_PIXELS) {
        fit->status = MI_STAIN_TOO_LITTLE;
        return MI_OK;
    }
    double mean[3], cov[3][3] = { { 0 } };
    for (int k = 0; k < 3; k++) mean[k] = sum[k] / (double)n;
    for (int64_t i = 0; i < npix; i++) {
        const uint8_t *p = rgb + 3 * i;
        if (!STAINED(p)) continue;
        const double d[3] = { od[p[0]] - mean[0], od[p[1]] - mean[1], od[p[2]] - mean[2] };
        for (int a = 0; a < 3; a++)
            for (int b = a; b < 3; b++) cov[a][b] += d[a] * d[b];
    }
    const double f = 1.0 / (double)(n - 1);
    for (int a = 0; a < 3; a++)
        for (int b = a; b < 3; b++) cov[b][a] = cov[a][b] *= f;

    /* the plane of the two largest eigenvectors, oriented */
    double w[3], v[3][3], e[2][3];
    eigh3(cov, w, v);
    for (int k = 0; k < 3; k++) {
        e[0][k] = v[k][1];
        e[1][k] = v[k][2];
    }
    orient(e[0]);
    orient(e[1]);

    /* the angle of each stained pixel in that plane; its 1st and 99th percentiles */
    int64_t m = 0;
    for (int64_t i = 0; i < npix; i++) {
        const uint8_t *p = rgb + 3 * i;
        if (!STAINED(p)) continue;
        const double o[3] = { od[p[0]], od[p[1]], od[p[2]] };
        const double t0 = o[0] * e[0][0] + o[1] * e[0][1] + o[2] * e[0][2];
        const double t1 = o[0] * e[1][0] + o[1] * e[1][1] + o[2] * e[1][2];
        c0[m++] = atan2(t1, t0);
    }
#undef STAINED
    const double lo = percentile(c0, n, ALPHA), hi = percentile(c0, n, 100.0 - ALPHA);
    double v_lo[3], v_hi[3];
    for (int k = 0; k < 3; k++) {
        v_lo[k] = e[0][k] * cos(lo) + e[1][k] * sin(lo);
        v_hi[k] = e[0][k] * cos(hi) + e[1][k] * sin(hi);
    }
    const bool lo_is_h = v_lo[0] > v_hi[0];   /* hematoxylin: the larger red OD */
    for (int k = 0; k < 3; k++) {
        fit->he[k][0] = lo_is_h ? v_lo[k] : v_hi[k];
        fit->he[k][1] = lo_is_h ? v_hi[k] : v_lo[k];
    }

    /* every pixel's concentrations (stained or not, as patho_ref), their 99th percentiles */
    solver sv;
    if (!solver_init(&sv, fit->he)) {
        fit->status = MI_STAIN_DEGENERATE;
        return MI_OK;
    }
    for (int64_t i = 0; i < npix; i++) {
        const uint8_t *p = rgb + 3 * i;
        const double o[3] = { od[p[0]], od[p[1]], od[p[2]] };
        double c[2];
        solve(&sv, o, c);
        c0[i] = c[0];
        c1[i] = c[1];
    }
    fit->max_c[0] = percentile(c0, npix, 99.0);
    fit->max_c[1] = percentile(c1, npix, 99.0);
    fit->status = fit->max_c[0] > 0 && fit->max_c[1] > 0 && isfinite(fit->max_c[0]) && isfinite(fit->max_c[1])
                      ? MI_STAIN_OK : MI_STAIN_DEGENERATE;
    return MI_OK;
}

/* np.clip(np.rint(v), 0, 255).astype(uint8): rint rounds half to even in the default rounding
 * mode, as numpy's does; NaN (numpy's cast gives 0 on x86) becomes 0 without UB */
static inline uint8_t to_u8(double v) {
    v = rint(v);
    if (!(v > 0)) return 0;
    return v >= 255 ? 255 : (uint8_t)v;
}

static bool fit_usable(const mi_macenko *f) {
    if (!f || f->status != MI_STAIN_OK) return false;
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 2; j++)
            if (!isfinite(f->he[k][j])) return false;
    return f->max_c[0] > 0 && f->max_c[1] > 0 && isfinite(f->max_c[0]) && isfinite(f->max_c[1]);
}

mi_status mi_patho_macenko_apply(uint8_t *out, const uint8_t *rgb, int64_t npix, const mi_macenko *fit,
                                 const mi_macenko *ref) {
    mi_status st = check_args(rgb, npix, "Macenko normalize");
    if (st) return st;
    if (!fit_usable(fit))
        return MI_FAIL(MI_ERR_ARG, "Macenko normalize: the tile's fit is not usable (status %d)",
                       fit ? (int)fit->status : -1);
    if (!fit_usable(ref))
        return MI_FAIL(MI_ERR_ARG, "Macenko normalize: the reference stains are not usable (status "
                       "%d, or a non-finite or non-positive value)", ref ? (int)ref->status : -1);
    solver sv;
    if (!solver_init(&sv, fit->he))
        return MI_FAIL(MI_ERR_ARG, "Macenko normalize: the tile's stain vectors are degenerate");
    double od[256];
    od_table(od);
    const double scale[2] = { ref->max_c[0] / fit->max_c[0], ref->max_c[1] / fit->max_c[1] };
    for (int64_t i = 0; i < npix; i++) {
        const uint8_t *p = rgb + 3 * i;
        const double o[3] = { od[p[0]], od[p[1]], od[p[2]] };
        double c[2];
        solve(&sv, o, c);
        c[0] *= scale[0];
        c[1] *= scale[1];
        uint8_t *q = out + 3 * i;   /* may be p: all of p was read above */
        for (int k = 0; k < 3; k++)
            q[k] = to_u8(IO * exp(-ref->he[k][0] * c[0] + -ref->he[k][1] * c[1]));
    }
    return MI_OK;
}

mi_status mi_patho_macenko_normalize(uint8_t *out, const uint8_t *rgb, int64_t npix,
                                     const mi_macenko *ref, void *scratch, size_t scratch_bytes,
                                     mi_macenko *tile_fit) {
    mi_macenko f;
    mi_status st = mi_patho_macenko_fit(&f, rgb, npix, scratch, scratch_bytes);
    if (tile_fit) *tile_fit = f;
    if (st || f.status != MI_STAIN_OK) return st;
    return mi_patho_macenko_apply(out, rgb, npix, &f, ref);
}

/* ---- Reinhard --------------------------------------------------------------------------------
 * patho_ref's matrices: RGB -> LMS and back as Reinhard gives them, and the l-alpha-beta
 * rotation as diag(1/sqrt3, 1/sqrt6, 1/sqrt2) · M and its inverse M' · diag(sqrt3/3, sqrt6/6,
 * sqrt2/2). numpy's product with a diagonal adds exact zeros, so each entry is one rounded
 * product, computed here the same way (sqrt and / are correctly rounded in both). */
static const double RGB2LMS[3][3] = { { 0.3811, 0.5783, 0.0402 }, { 0.1967, 0.7244, 0.0782 },
                                      { 0.0241, 0.1288, 0.8444 } };
static const double LMS2RGB[3][3] = { { 4.4679, -3.5873, 0.1193 }, { -1.2186, 2.3809, -0.1624 },
                                      { 0.0497, -0.2439, 1.2045 } };

typedef struct { double to_lab[3][3], to_lms[3][3]; } lab_mats;

static void lab_init(lab_mats *m) {
    static const double R[3][3] = { { 1, 1, 1 }, { 1, 1, -2 }, { 1, -1, 0 } };
    static const double Ri[3][3] = { { 1, 1, 1 }, { 1, 1, -1 }, { 1, -2, 0 } };
    const double d[3] = { 1 / sqrt(3.0), 1 / sqrt(6.0), 1 / sqrt(2.0) };
    const double e[3] = { sqrt(3.0) / 3, sqrt(6.0) / 6, sqrt(2.0) / 2 };
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            m->to_lab[i][j] = d[i] * R[i][j];
            m->to_lms[i][j] = Ri[i][j] * e[j];
        }
}

/* patho_ref._to_lab for one pixel: log10((rgb + 1) · RGB2LMSᵀ) · LMS2LABᵀ */
static inline void to_lab(const lab_mats *m, const uint8_t *p, double lab[3]) {
    const double x[3] = { p[0] + 1.0, p[1] + 1.0, p[2] + 1.0 };
    double l[3];
    for (int i = 0; i < 3; i++) l[i] = log10(x[0] * RGB2LMS[i][0] + x[1] * RGB2LMS[i][1] + x[2] * RGB2LMS[i][2]);
    for (int i = 0; i < 3; i++) lab[i] = l[0] * m->to_lab[i][0] + l[1] * m->to_lab[i][1] + l[2] * m->to_lab[i][2];
}

/* lab.mean(0) and lab.std(0): numpy reduces axis 0 of the (N, 3) array row after row, so plain
 * sequential sums are its order; std = sqrt(sum((x - mean)^2) / N) */
static void lab_stats(const lab_mats *m, const uint8_t *rgb, int64_t npix, mi_reinhard *r) {
    double s[3] = { 0, 0, 0 }, lab[3];
    for (int64_t i = 0; i < npix; i++) {
        to_lab(m, rgb + 3 * i, lab);
        for (int k = 0; k < 3; k++) s[k] += lab[k];
    }
    for (int k = 0; k < 3; k++) r->mean[k] = s[k] / (double)npix;
    double q[3] = { 0, 0, 0 };
    for (int64_t i = 0; i < npix; i++) {
        to_lab(m, rgb + 3 * i, lab);
        for (int k = 0; k < 3; k++) {
            const double d = lab[k] - r->mean[k];
            q[k] += d * d;
        }
    }
    for (int k = 0; k < 3; k++) r->std[k] = sqrt(q[k] / (double)npix);
}

mi_status mi_patho_reinhard_fit(mi_reinhard *fit, const uint8_t *rgb, int64_t npix) {
    memset(fit, 0, sizeof *fit);
    mi_status st = check_args(rgb, npix, "Reinhard fit");
    if (st) return st;
    lab_mats m;
    lab_init(&m);
    lab_stats(&m, rgb, npix, fit);
    return MI_OK;
}

mi_status mi_patho_reinhard_normalize(uint8_t *out, const uint8_t *rgb, int64_t npix,
                                      const mi_reinhard *ref) {
    mi_status st = check_args(rgb, npix, "Reinhard normalize");
    if (st) return st;
    for (int k = 0; k < 3; k++)
        if (!isfinite(ref->mean[k]) || !isfinite(ref->std[k]))
            return MI_FAIL(MI_ERR_ARG, "Reinhard normalize: reference %s[%d] is not finite",
                           isfinite(ref->mean[k]) ? "std" : "mean", k);
    lab_mats m;
    lab_init(&m);
    mi_reinhard t;
    lab_stats(&m, rgb, npix, &t);
    double sd[3];
    for (int k = 0; k < 3; k++) sd[k] = t.std[k] > 0 ? t.std[k] : 1.0;
    for (int64_t i = 0; i < npix; i++) {
        double lab[3], y[3], lms[3];
        to_lab(&m, rgb + 3 * i, lab);
        for (int k = 0; k < 3; k++) y[k] = (lab[k] - t.mean[k]) / sd[k] * ref->std[k] + ref->mean[k];
        for (int k = 0; k < 3; k++)
            lms[k] = pow(10.0, y[0] * m.to_lms[k][0] + y[1] * m.to_lms[k][1] + y[2] * m.to_lms[k][2]);
        uint8_t *q = out + 3 * i;   /* may be rgb + 3i: read in full by to_lab above */
        for (int k = 0; k < 3; k++)
            q[k] = to_u8(lms[0] * LMS2RGB[k][0] + lms[1] * LMS2RGB[k][1] + lms[2] * LMS2RGB[k][2] - 1.0);
    }
    return MI_OK;
}
