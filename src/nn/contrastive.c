/* Self-supervised learning's pieces: the NT-Xent loss (SimCLR's InfoNCE), a composite of
 * engine ops so its gradient comes from the parts, and batch augmentations whose random
 * parameters are drawn on the device and turned into affine matrices and masks by graph ops
 * (one plan, no per-image host work; the resampling is clg_affine_grid_sample). */
#include <math.h>

#include "clgrad/nn.h"
#include "clgrad/ops.h"
#include "graph/graph_internal.h"

/* Added to the similarity of a view with itself: far below any cosine / temperature, so its
 * softmax weight is exactly 0, yet finite, so the masking add has no inf * 0 in its gradient. */
#define SELF_MASK (-1e9f)

clg_tensor *clg_nt_xent(clg_graph *g, clg_tensor *z, float temperature) {
    CLG_GUARD(g, "nt_xent", 1, z);
    char b[200];
    clg_shape_str(z->ndim, z->shape, b, sizeof b);
    if (z->dtype != CLG_F32)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "nt_xent: z %s must be f32", b);
    if (z->ndim != 2 || z->shape[0] < 2 || z->shape[0] % 2 != 0 || z->shape[1] < 1)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "nt_xent: z %s must be [2N, D] with rows i and i + N the two "
                              "views of item i",
                              b);
    if (!(temperature > 0.0f) || !isfinite(temperature))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "nt_xent: temperature %g must be finite and above 0",
                              (double)temperature);
    const int64_t m = z->shape[0], n = m / 2;
    /* rows scaled to unit length (F.normalize's eps keeps a zero row finite) */
    clg_tensor *ss = clg_sum(g, clg_square(g, z), 1, (int[]){1}, true);
    clg_tensor *zn = clg_mul(g, z, clg_rsqrt(g, clg_add_scalar(g, ss, 1e-12f)));
    /* [2N, 2N] cosine similarities / T, one GEMM */
    clg_tensor *sim = clg_mul_scalar(g, clg_matmul(g, zn, zn, false, true), 1.0f / temperature);
    clg_tensor *idx = clg_arange(g, m, CLG_F32);
    clg_tensor *eye = clg_eq(g, clg_reshape(g, idx, 2, (int64_t[]){m, 1}),
                             clg_reshape(g, idx, 2, (int64_t[]){1, m}));
    sim = clg_add(g, sim, clg_mul_scalar(g, eye, SELF_MASK));
    /* row i's positive is its other view: i + N for the first half, i - N for the second */
    clg_tensor *half = clg_arange(g, n, CLG_F32);
    clg_tensor *parts[2] = {clg_add_scalar(g, half, (float)n), half};
    clg_tensor *labels = clg_cast(g, clg_concat(g, 2, parts, 0), CLG_I32);
    return clg_cross_entropy(g, sim, labels, CLG_REDUCTION_MEAN);
}

/* Column k of u [N, K] as [N, 1]. */
static clg_tensor *col(clg_graph *g, clg_tensor *u, int k) {
    return clg_slice(g, u, 1, k, k + 1, 1);
}

/* lo + (hi - lo) u */
static clg_tensor *lerp(clg_graph *g, clg_tensor *u, float lo, float hi) {
    return clg_add_scalar(g, clg_mul_scalar(g, u, hi - lo), lo);
}

static bool check_ranges(clg_graph *g, const clg_augment_params *p) {
    bool ok = p->crop_scale_min > 0.0f && p->crop_scale_min <= p->crop_scale_max &&
              p->crop_scale_max <= 1.0f && p->crop_ratio_min > 0.0f &&
              p->crop_ratio_min <= p->crop_ratio_max && p->rotate >= 0.0f && p->translate >= 0.0f &&
              p->erase_prob >= 0.0f && p->erase_prob <= 1.0f &&
              (p->erase_prob == 0.0f ||
               (p->erase_scale_min > 0.0f && p->erase_scale_min <= p->erase_scale_max &&
                p->erase_scale_max <= 1.0f)) &&
              p->brightness >= 0.0f && p->brightness < 1.0f && p->contrast >= 0.0f &&
              p->contrast < 1.0f && p->noise_std >= 0.0f;
    if (!ok)
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                       "augment: bad ranges (crop scale %g..%g in (0, 1], ratio %g..%g > 0, "
                       "rotate %g, translate %g >= 0, erase p %g in [0, 1] with scale %g..%g "
                       "in (0, 1], brightness %g and contrast %g in [0, 1), noise %g >= 0)",
                       (double)p->crop_scale_min, (double)p->crop_scale_max,
                       (double)p->crop_ratio_min, (double)p->crop_ratio_max, (double)p->rotate,
                       (double)p->translate, (double)p->erase_prob, (double)p->erase_scale_min,
                       (double)p->erase_scale_max, (double)p->brightness, (double)p->contrast,
                       (double)p->noise_std);
    return ok;
}

/* theta [N, 2, 3] of a random resized crop, rotated by a and shifted by (tx, ty): the output's
 * [-1, 1] square goes to the box of size (w, h) (fractions of the image, area s, aspect r)
 * centred at (cx, cy): theta = [[w cos a, -w sin a, cx + tx], [h sin a, h cos a, cy + ty]]. */
static clg_tensor *crop_theta(clg_graph *g, clg_tensor *u, const clg_augment_params *p) {
    clg_tensor *s = lerp(g, col(g, u, 0), p->crop_scale_min, p->crop_scale_max);
    clg_tensor *r =
        clg_exp(g, lerp(g, col(g, u, 1), logf(p->crop_ratio_min), logf(p->crop_ratio_max)));
    clg_tensor *w = clg_clamp(g, clg_sqrt(g, clg_mul(g, s, r)), 0.0f, 1.0f);
    clg_tensor *h = clg_clamp(g, clg_sqrt(g, clg_div(g, s, r)), 0.0f, 1.0f);
    /* the box stays inside the image: |centre| <= 1 - size */
    clg_tensor *cx =
        clg_mul(g, clg_add_scalar(g, clg_neg(g, w), 1.0f), lerp(g, col(g, u, 2), -1, 1));
    clg_tensor *cy =
        clg_mul(g, clg_add_scalar(g, clg_neg(g, h), 1.0f), lerp(g, col(g, u, 3), -1, 1));
    clg_tensor *a = lerp(g, col(g, u, 4), -p->rotate, p->rotate);
    clg_tensor *tx = lerp(g, col(g, u, 5), -2.0f * p->translate, 2.0f * p->translate);
    clg_tensor *ty = lerp(g, col(g, u, 6), -2.0f * p->translate, 2.0f * p->translate);
    clg_tensor *ca = clg_cos(g, a), *sa = clg_sin(g, a);
    clg_tensor *e[6] = {clg_mul(g, w, ca),  clg_neg(g, clg_mul(g, w, sa)),
                        clg_add(g, cx, tx), clg_mul(g, h, sa),
                        clg_mul(g, h, ca),  clg_add(g, cy, ty)};
    clg_tensor *t = clg_concat(g, 6, e, 1);
    return clg_reshape(g, t, 3, (int64_t[]){clg_tensor_dim(t, 0), 2, 3});
}

/* The erased box of each image as a [N, 1, H, W] mask of 1 inside: area s (a fraction of the
 * image), aspect r log-uniform in [0.3, 3.3] (torchvision's), anywhere inside the image,
 * present with probability erase_prob. */
static clg_tensor *erase_mask(clg_graph *g, clg_tensor *u, const clg_augment_params *p, int64_t N,
                              int64_t H, int64_t W) {
    clg_tensor *s = lerp(g, col(g, u, 7), p->erase_scale_min, p->erase_scale_max);
    clg_tensor *r = clg_exp(g, lerp(g, col(g, u, 8), logf(0.3f), logf(3.3f)));
    clg_tensor *eh =
        clg_clamp(g, clg_mul_scalar(g, clg_sqrt(g, clg_div(g, s, r)), (float)H), 1.0f, (float)H);
    clg_tensor *ew =
        clg_clamp(g, clg_mul_scalar(g, clg_sqrt(g, clg_mul(g, s, r)), (float)W), 1.0f, (float)W);
    clg_tensor *y0 = clg_mul(g, clg_add_scalar(g, clg_neg(g, eh), (float)H), col(g, u, 9));
    clg_tensor *x0 = clg_mul(g, clg_add_scalar(g, clg_neg(g, ew), (float)W), col(g, u, 10));
    clg_tensor *on = clg_lt(g, col(g, u, 11), clg_full(g, p->erase_prob, 0, NULL));
    const int64_t per[4] = {N, 1, 1, 1};
    y0 = clg_reshape(g, y0, 4, per);
    x0 = clg_reshape(g, x0, 4, per);
    eh = clg_reshape(g, eh, 4, per);
    ew = clg_reshape(g, ew, 4, per);
    on = clg_reshape(g, on, 4, per);
    /* pixel centres, as [1, 1, H, 1] rows and [1, 1, 1, W] columns */
    clg_tensor *ry = clg_add_scalar(
        g, clg_reshape(g, clg_arange(g, H, CLG_F32), 4, (int64_t[]){1, 1, H, 1}), 0.5f);
    clg_tensor *rx = clg_add_scalar(
        g, clg_reshape(g, clg_arange(g, W, CLG_F32), 4, (int64_t[]){1, 1, 1, W}), 0.5f);
    clg_tensor *in_y = clg_mul(g, clg_ge(g, ry, y0), clg_lt(g, ry, clg_add(g, y0, eh)));
    clg_tensor *in_x = clg_mul(g, clg_ge(g, rx, x0), clg_lt(g, rx, clg_add(g, x0, ew)));
    return clg_mul(g, clg_mul(g, in_y, in_x), on);
}

/* Uniform columns: 0-6 the crop, 7-11 erasing, 12-13 brightness and contrast. */
#define AUG_UNIFORMS 14

clg_tensor *clg_augment(clg_graph *g, clg_tensor *x, const clg_augment_params *p, uint64_t seed,
                        clg_tensor **theta_out) {
    if (theta_out) *theta_out = g ? g->poison : NULL;
    CLG_GUARD(g, "augment", 1, x);
    char b[200];
    if (!p) return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "augment: params are NULL");
    if (x->ndim != 4 || x->dtype != CLG_F32)
        return clg_graph_fail(g, CLG_ERR_SHAPE, "augment: x %s must be f32 [N, C, H, W]",
                              clg_shape_str(x->ndim, x->shape, b, sizeof b));
    if (!check_ranges(g, p)) return g->poison;
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    clg_tensor *u = clg_rand_uniform(g, 2, (int64_t[]){N, AUG_UNIFORMS}, 0.0f, 1.0f, seed);
    clg_tensor *theta = crop_theta(g, u, p);
    clg_tensor *y = clg_affine_grid_sample(g, theta, x, H, W);
    const int64_t per[4] = {N, 1, 1, 1};
    if (p->brightness > 0.0f || p->contrast > 0.0f) {
        /* y b, then its contrast scaled by c about the image's mean, clamped to [0, 1] */
        clg_tensor *bf =
            clg_reshape(g, lerp(g, col(g, u, 12), 1 - p->brightness, 1 + p->brightness), 4, per);
        clg_tensor *cf =
            clg_reshape(g, lerp(g, col(g, u, 13), 1 - p->contrast, 1 + p->contrast), 4, per);
        y = clg_mul(g, y, bf);
        clg_tensor *mu = clg_mean(g, y, 3, (int[]){1, 2, 3}, true);
        y = clg_add(g, clg_mul(g, clg_sub(g, y, mu), cf), mu);
        y = clg_clamp(g, y, 0.0f, 1.0f);
    }
    if (p->erase_prob > 0.0f) {
        clg_tensor *m = erase_mask(g, u, p, N, H, W);
        y = clg_mul(g, y, clg_add_scalar(g, clg_neg(g, m), 1.0f));
    }
    if (p->noise_std > 0.0f)
        y = clg_add(g, y,
                    clg_rand_normal(g, 4, (int64_t[]){N, C, H, W}, 0.0f, p->noise_std,
                                    seed ^ 0x9e3779b97f4a7c15ull));
    if (g->error) return g->poison;
    if (theta_out) *theta_out = theta;
    return y;
}
