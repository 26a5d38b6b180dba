/* Reductions and the softmax family on the device against plain-C references: sum, mean,
 * max, min, variance and argmax over single, several and all axes, keepdims or not, on
 * friendly, awkward and non-contiguous inputs, short and long (larger than a work-group);
 * fused elementwise prologues; softmax, log_softmax and logsumexp over first, middle and last
 * axes including inputs near 1000; gradients through the shared gradcheck helper. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

#define U 5.9604644775390625e-8 /* float32 unit roundoff, 2^-24 */
#define ULP (2 * U)             /* float32 ulp relative to the value, 2^-23 */

/* ---- host views (the reference reads through offset and strides, like a device view) ---- */

typedef struct hview {
    const float *data;
    int ndim;
    int64_t shape[CLG_MAX_DIMS];
    int64_t strides[CLG_MAX_DIMS];
    int64_t offset;
} hview;

static hview hv_dense(const float *data, int ndim, const int64_t *shape) {
    hview v = {.data = data, .ndim = ndim};
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; --d) {
        v.shape[d] = shape[d];
        v.strides[d] = s;
        s *= shape[d];
    }
    return v;
}

/* Axis d of the result is axis perm[d] of v. */
static hview hv_permute(hview v, const int *perm) {
    hview r = v;
    for (int d = 0; d < v.ndim; ++d) {
        r.shape[d] = v.shape[perm[d]];
        r.strides[d] = v.strides[perm[d]];
    }
    return r;
}

static hview hv_slice(hview v, int axis, int64_t start, int64_t stop, int64_t step) {
    v.offset += start * v.strides[axis];
    v.shape[axis] = (stop - start + step - 1) / step;
    v.strides[axis] *= step;
    return v;
}

static int64_t hv_numel(const hview *v) {
    int64_t n = 1;
    for (int d = 0; d < v->ndim; ++d)
        n *= v->shape[d];
    return n;
}

/* Element at row-major linear index lin of v; coords receives its coordinates. */
static float hv_get(const hview *v, int64_t lin, int64_t *coords) {
    int64_t off = v->offset;
    for (int d = v->ndim - 1; d >= 0; --d) {
        coords[d] = lin % v->shape[d];
        lin /= v->shape[d];
        off += coords[d] * v->strides[d];
    }
    return v->data[off];
}

/* ---- reference reductions ---- */

typedef enum rkind { R_SUM, R_MEAN, R_MAX, R_MIN, R_VAR0, R_VAR1, R_ARGMAX } rkind;

/* Reduce v over the axes in mask. out[o] (o: row-major index over the kept dims) receives the
 * result in double; mag[o] the sum of |x| over the group (for rounding bounds); returns the
 * group size. Argmax gives the first maximum's coordinate along its (single) axis. */
static int64_t ref_reduce(const hview *v, unsigned mask, rkind k, double *out, double *mag) {
    int64_t n = hv_numel(v), groups = 1, count = 1, c[CLG_MAX_DIMS];
    for (int d = 0; d < v->ndim; ++d) {
        if (mask & (1u << d))
            count *= v->shape[d];
        else
            groups *= v->shape[d];
    }
    double *mean = calloc((size_t)groups, sizeof *mean);
    ck_assert_ptr_nonnull(mean);
    for (int64_t o = 0; o < groups; ++o) {
        out[o] = k == R_MAX || k == R_ARGMAX ? -INFINITY : k == R_MIN ? INFINITY : 0.0;
        mag[o] = 0.0;
    }
    double *best = k == R_ARGMAX ? calloc((size_t)groups, sizeof *best) : NULL;
    for (int pass = 0; pass < (k == R_VAR0 || k == R_VAR1 ? 2 : 1); ++pass) {
        for (int64_t i = 0; i < n; ++i) {
            double x = hv_get(v, i, c);
            int64_t o = 0, along = 0;
            for (int d = 0; d < v->ndim; ++d) {
                if (mask & (1u << d))
                    along = c[d];
                else
                    o = o * v->shape[d] + c[d];
            }
            mag[o] += fabs(x);
            switch (k) {
            case R_SUM:
            case R_MEAN:
                out[o] += x;
                break;
            case R_MAX:
                out[o] = x > out[o] ? x : out[o];
                break;
            case R_MIN:
                out[o] = x < out[o] ? x : out[o];
                break;
            case R_ARGMAX:
                if (x > out[o]) {
                    out[o] = x;
                    best[o] = (double)along;
                }
                break;
            case R_VAR0:
            case R_VAR1:
                if (pass == 0)
                    mean[o] += x / (double)count;
                else
                    out[o] += (x - mean[o]) * (x - mean[o]);
                break;
            }
        }
    }
    for (int64_t o = 0; o < groups; ++o) {
        if (k == R_MEAN) out[o] /= (double)count;
        if (k == R_VAR0) out[o] /= (double)count;
        if (k == R_VAR1) out[o] /= (double)(count - 1);
        if (k == R_ARGMAX) out[o] = best[o];
    }
    free(best);
    free(mean);
    return count;
}

/* Rounding bound of the generated sum kernel (compile/codegen.c): a work-group of L work-items
 * (a power of two, at most 256 and the device limit, at least the length when that is
 * smaller), each adding at most ceil(n / L) terms in sequence, then log2(L) tree levels, then
 * the scale. Each addition rounds once: the error is below (ceil(n/L) + log2(L) + 1) u sum|x|. */
static double sum_gamma(int64_t n) {
    size_t maxwg = clg_context_device(clg_test_context())->max_work_group_size;
    size_t cap = 1;
    while (cap * 2 <= maxwg && cap * 2 <= 256)
        cap *= 2;
    size_t L = 1;
    while (L < (size_t)n && L < cap)
        L *= 2;
    int levels = 0;
    while ((1u << levels) < L)
        ++levels;
    return (double)(((size_t)n + L - 1) / L + (size_t)levels + 1) * U;
}

/* ---- device helpers ---- */

static void write_t(clg_plan *p, clg_tensor *t, const void *data) {
    clg_assert_ok(clg_plan_write(p, t, data, (size_t)clg_tensor_numel(t) * 4));
}

static void read_t(clg_plan *p, clg_tensor *t, void *out) {
    clg_assert_ok(clg_plan_read(p, t, out, (size_t)clg_tensor_numel(t) * 4));
}

static void *alloc_n(int64_t n, size_t size) {
    void *p = malloc((size_t)(n ? n : 1) * size);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* One reduction of the graph and what the reference needs to check it. */
typedef struct rcase {
    const char *what;
    clg_tensor *y;
    const hview *v; /* host view of the reduced tensor */
    unsigned mask;
    rkind k;
    bool keepdims;
} rcase;

#define MAX_CASES 64

typedef struct rbatch {
    clg_graph *g;
    rcase c[MAX_CASES];
    int n;
} rbatch;

static clg_tensor *build(clg_graph *g, clg_tensor *x, rkind k, int naxes, const int *axes,
                         bool keepdims) {
    switch (k) {
    case R_SUM:
        return clg_sum(g, x, naxes, axes, keepdims);
    case R_MEAN:
        return clg_mean(g, x, naxes, axes, keepdims);
    case R_MAX:
        return clg_max(g, x, naxes, axes, keepdims);
    case R_MIN:
        return clg_min(g, x, naxes, axes, keepdims);
    case R_VAR0:
        return clg_variance(g, x, naxes, axes, keepdims, 0);
    case R_VAR1:
        return clg_variance(g, x, naxes, axes, keepdims, 1);
    case R_ARGMAX:
        return clg_argmax(g, x, axes[0], keepdims);
    }
    return NULL;
}

/* Add k(x) over axes (naxes 0: all) to the batch; v is x's host view. */
static void add_case(rbatch *b, const char *what, clg_tensor *x, const hview *v, rkind k, int naxes,
                     const int *axes, bool keepdims) {
    ck_assert_int_lt(b->n, MAX_CASES);
    unsigned mask = 0;
    for (int i = 0; i < naxes; ++i)
        mask |= 1u << (axes[i] < 0 ? axes[i] + v->ndim : axes[i]);
    if (naxes == 0) mask = (1u << v->ndim) - 1;
    clg_tensor *y = build(b->g, x, k, naxes, axes, keepdims);
    clg_assert_ok(clg_graph_status(b->g));
    clg_assert_ok(clg_graph_output(b->g, y));
    b->c[b->n++] = (rcase){what, y, v, mask, k, keepdims};
}

/* Check every case: shape (keepdims or not), dtype, values. */
static void check_cases(clg_plan *p, const rbatch *b) {
    for (int i = 0; i < b->n; ++i) {
        const rcase *c = &b->c[i];
        const hview *v = c->v;
        int nd = 0;
        int64_t shape[CLG_MAX_DIMS];
        for (int d = 0; d < v->ndim; ++d) {
            bool red = c->mask & (1u << d);
            if (!red || c->keepdims) shape[nd++] = red ? 1 : v->shape[d];
        }
        ck_assert_msg(clg_tensor_ndim(c->y) == nd, "%s: rank %d, want %d", c->what,
                      clg_tensor_ndim(c->y), nd);
        for (int d = 0; d < nd; ++d)
            ck_assert_msg(clg_tensor_shape(c->y)[d] == shape[d], "%s: dim %d is %lld, want %lld",
                          c->what, d, (long long)clg_tensor_shape(c->y)[d], (long long)shape[d]);
        ck_assert_int_eq(clg_tensor_dtype(c->y), c->k == R_ARGMAX ? CLG_I32 : CLG_F32);
        int64_t m = clg_tensor_numel(c->y);
        double *want = alloc_n(m, sizeof *want), *mag = alloc_n(m, sizeof *mag);
        int64_t count = ref_reduce(v, c->mask, c->k, want, mag);
        if (c->k == R_ARGMAX) {
            int32_t *got = alloc_n(m, sizeof *got);
            read_t(p, c->y, got);
            for (int64_t o = 0; o < m; ++o)
                ck_assert_msg(got[o] == (int32_t)want[o], "%s [%lld]: argmax %d, want %d", c->what,
                              (long long)o, got[o], (int)want[o]);
            free(got);
        } else {
            float *got = alloc_n(m, sizeof *got);
            read_t(p, c->y, got);
            double g = sum_gamma(count);
            for (int64_t o = 0; o < m; ++o) {
                double tol;
                switch (c->k) {
                case R_SUM:
                    tol = g * mag[o];
                    break;
                case R_MEAN:
                    tol = g * mag[o] / (double)count + 2 * U * fabs(want[o]);
                    break;
                /* (x - mean)^2 rounds 3 times before the all-positive sum; the mean's own
                 * error enters only squared; then the scale. */
                case R_VAR0:
                case R_VAR1:
                    tol = (g + 6 * U) * fabs(want[o]) + 1e-12;
                    break;
                default:
                    tol = 0;
                    break; /* max and min are exact */
                }
                double err = fabs((double)got[o] - want[o]);
                ck_assert_msg(err <= tol, "%s [%lld] (n = %lld): got %.9g want %.9g (tol %.3g)",
                              c->what, (long long)o, (long long)count, (double)got[o], want[o],
                              tol);
            }
            free(got);
        }
        free(want);
        free(mag);
    }
}

/* Distinct values in random order: a shuffled grid plus small jitter, so maxima, minima and
 * argmax have no ties (and differ by at least step - 2 jitter). */
static void fill_distinct(clg_test_rng *r, float *x, int64_t n, float lo, float step) {
    for (int64_t i = 0; i < n; ++i)
        x[i] = lo + step * (float)i;
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = (int64_t)clg_test_uniform(r, 0, (float)(i + 1));
        if (j > i) j = i;
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    for (int64_t i = 0; i < n; ++i)
        x[i] += clg_test_uniform(r, -0.1f, 0.1f) * step;
}

/* ---- forward ---- */

/* Friendly [8, 16]; awkward: a [7, 1, 6, 5] input permuted to a non-contiguous [5, 1, 7, 6]
 * view (reductions over its size-1 axis too); a [9, 10] input sliced with step 3 along its
 * last axis. Every kind over single, several and all axes, keepdims both ways. */
START_TEST(test_reduce_axes) {
    clg_graph *g = clg_graph_new(clg_test_context());
    rbatch b = {.g = g};
    const int64_t sf[2] = {8, 16}, sa[4] = {7, 1, 6, 5}, ss[2] = {9, 10};
    const int perm[4] = {3, 1, 0, 2};
    clg_tensor *xf = clg_input(g, "xf", CLG_F32, 2, sf);
    clg_tensor *xa = clg_input(g, "xa", CLG_F32, 4, sa);
    clg_tensor *xs = clg_input(g, "xs", CLG_F32, 2, ss);
    clg_tensor *va = clg_permute(g, xa, perm);
    clg_tensor *vs = clg_slice(g, xs, 1, 1, 10, 3);
    static float hf[128], ha[210], hs[90];
    clg_test_rng r;
    clg_test_rng_seed(&r, 101);
    fill_distinct(&r, hf, 128, -3.0f, 0.05f);
    fill_distinct(&r, ha, 210, -2.0f, 0.02f);
    clg_test_fill(&r, hs, 90, 0.5f, 1.5f);
    hview hvf = hv_dense(hf, 2, sf);
    hview hva = hv_permute(hv_dense(ha, 4, sa), perm);
    hview hvs = hv_slice(hv_dense(hs, 2, ss), 1, 1, 10, 3);
    const int a0[1] = {0}, a1[1] = {1}, a2[1] = {2}, a3[1] = {3}, am1[1] = {-1};
    const int a02[2] = {0, 2}, a13[2] = {1, 3}, a30[2] = {3, 0};

    add_case(&b, "sum f ax0", xf, &hvf, R_SUM, 1, a0, false);
    add_case(&b, "sum f ax1 keep", xf, &hvf, R_SUM, 1, a1, true);
    add_case(&b, "mean f ax1", xf, &hvf, R_MEAN, 1, a1, false);
    add_case(&b, "max f ax0 keep", xf, &hvf, R_MAX, 1, a0, true);
    add_case(&b, "min f all keep", xf, &hvf, R_MIN, 0, NULL, true);
    add_case(&b, "var0 f ax1", xf, &hvf, R_VAR0, 1, a1, false);
    add_case(&b, "var1 f all", xf, &hvf, R_VAR1, 0, NULL, false);
    add_case(&b, "argmax f ax0", xf, &hvf, R_ARGMAX, 1, a0, false);
    add_case(&b, "argmax f ax-1 keep", xf, &hvf, R_ARGMAX, 1, am1, true);

    add_case(&b, "sum a ax0", va, &hva, R_SUM, 1, a0, false);
    add_case(&b, "sum a ax1 (size 1) keep", va, &hva, R_SUM, 1, a1, true);
    add_case(&b, "sum a ax0,2 keep", va, &hva, R_SUM, 2, a02, true);
    add_case(&b, "sum a ax1,3", va, &hva, R_SUM, 2, a13, false);
    add_case(&b, "sum a all keep", va, &hva, R_SUM, 0, NULL, true);
    add_case(&b, "mean a ax3,0", va, &hva, R_MEAN, 2, a30, false);
    add_case(&b, "mean a ax2 keep", va, &hva, R_MEAN, 1, a2, true);
    add_case(&b, "max a ax0,2 keep", va, &hva, R_MAX, 2, a02, true);
    add_case(&b, "max a all", va, &hva, R_MAX, 0, NULL, false);
    add_case(&b, "min a ax2", va, &hva, R_MIN, 1, a2, false);
    add_case(&b, "min a ax1,3 keep", va, &hva, R_MIN, 2, a13, true);
    add_case(&b, "var1 a ax2", va, &hva, R_VAR1, 1, a2, false);
    add_case(&b, "var0 a ax0,3 keep", va, &hva, R_VAR0, 2, a30, true);
    add_case(&b, "argmax a ax0 keep", va, &hva, R_ARGMAX, 1, a0, true);
    add_case(&b, "argmax a ax3", va, &hva, R_ARGMAX, 1, a3, false);

    add_case(&b, "sum s ax0", vs, &hvs, R_SUM, 1, a0, false);
    add_case(&b, "var1 s ax0", vs, &hvs, R_VAR1, 1, a0, false);

    clg_compile_options o = {.guard_bytes = 64};
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &o, &p));
    write_t(p, xf, hf);
    write_t(p, xa, ha);
    write_t(p, xs, hs);
    clg_assert_ok(clg_plan_run(p));
    check_cases(p, &b);
    clg_assert_ok(clg_plan_check_guards(p));
    clg_graph_free(g);
}
END_TEST

/* Lengths above the work-group size (5000: many terms per work-item, contiguous and with
 * stride 3) and below it (3). Positive inputs, so dropping or doubling a term moves a sum by
 * far more than its rounding bound. */
START_TEST(test_reduce_lengths) {
    clg_graph *g = clg_graph_new(clg_test_context());
    rbatch b = {.g = g};
    const int64_t s1[1] = {5000}, s2[2] = {2, 5000}, s3[2] = {5000, 3}, s4[1] = {3}, s5[2] = {4, 3};
    clg_tensor *x1 = clg_input(g, "x1", CLG_F32, 1, s1);
    clg_tensor *x2 = clg_input(g, "x2", CLG_F32, 2, s2);
    clg_tensor *x3 = clg_input(g, "x3", CLG_F32, 2, s3);
    clg_tensor *x4 = clg_input(g, "x4", CLG_F32, 1, s4);
    clg_tensor *x5 = clg_input(g, "x5", CLG_F32, 2, s5);
    static float h1[5000], h2[10000], h3[15000], h4[3], h5[12];
    clg_test_rng r;
    clg_test_rng_seed(&r, 102);
    fill_distinct(&r, h1, 5000, 0.5f, 1e-3f); /* spacing 1e-3: exact ties impossible */
    clg_test_fill(&r, h2, 10000, 0.5f, 1.5f);
    fill_distinct(&r, h3, 15000, -7.0f, 1e-3f);
    h4[0] = 2.5f;
    h4[1] = -1.0f;
    h4[2] = 4.0f;
    fill_distinct(&r, h5, 12, -1.0f, 0.25f);
    hview v1 = hv_dense(h1, 1, s1), v2 = hv_dense(h2, 2, s2), v3 = hv_dense(h3, 2, s3);
    hview v4 = hv_dense(h4, 1, s4), v5 = hv_dense(h5, 2, s5);
    const int a0[1] = {0}, a1[1] = {1};
    add_case(&b, "sum 5000", x1, &v1, R_SUM, 0, NULL, false);
    add_case(&b, "mean 5000", x1, &v1, R_MEAN, 1, a0, true);
    add_case(&b, "max 5000", x1, &v1, R_MAX, 0, NULL, false);
    add_case(&b, "min 5000", x1, &v1, R_MIN, 0, NULL, false);
    add_case(&b, "argmax 5000", x1, &v1, R_ARGMAX, 1, a0, false);
    add_case(&b, "var1 5000", x1, &v1, R_VAR1, 0, NULL, false);
    add_case(&b, "sum [2,5000] ax1", x2, &v2, R_SUM, 1, a1, false);
    add_case(&b, "sum [5000,3] ax0", x3, &v3, R_SUM, 1, a0, false);
    add_case(&b, "argmax [5000,3] ax0", x3, &v3, R_ARGMAX, 1, a0, true);
    add_case(&b, "max [5000,3] ax0", x3, &v3, R_MAX, 1, a0, false);
    add_case(&b, "sum 3", x4, &v4, R_SUM, 0, NULL, false);
    add_case(&b, "argmax 3", x4, &v4, R_ARGMAX, 1, a0, false);
    add_case(&b, "max [4,3] ax1", x5, &v5, R_MAX, 1, a1, false);
    add_case(&b, "min [4,3] ax1", x5, &v5, R_MIN, 1, a1, true);
    add_case(&b, "var0 [4,3] ax1", x5, &v5, R_VAR0, 1, a1, false);
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x1, h1);
    write_t(p, x2, h2);
    write_t(p, x3, h3);
    write_t(p, x4, h4);
    write_t(p, x5, h5);
    clg_assert_ok(clg_plan_run(p));
    check_cases(p, &b);
    clg_graph_free(g);
}
END_TEST

/* argmax picks the first maximum: whole rows of equal values give 0, and repeated maxima the
 * smallest index, also when the length exceeds a work-group (ties in different work-items).
 * i32 inputs: argmax reads them as they are, sum gives f32. */
START_TEST(test_argmax_ties) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {4, 700};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, s);
    clg_tensor *y = clg_argmax(g, x, 1, false);
    clg_tensor *yt = clg_argmax(g, clg_transpose(g, x, 0, 1), 0, false);
    const int64_t si[2] = {2, 3};
    clg_tensor *xi = clg_input(g, "xi", CLG_I32, 2, si);
    clg_tensor *ai = clg_argmax(g, xi, -1, false);
    int ax1 = 1;
    clg_tensor *si_ = clg_sum(g, xi, 1, &ax1, false);
    ck_assert_int_eq(clg_tensor_dtype(ai), CLG_I32);
    ck_assert_int_eq(clg_tensor_dtype(si_), CLG_F32);
    clg_assert_ok(clg_graph_output(g, y));
    clg_assert_ok(clg_graph_output(g, yt));
    clg_assert_ok(clg_graph_output(g, ai));
    clg_assert_ok(clg_graph_output(g, si_));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    static float h[2800];
    for (int i = 0; i < 2800; ++i)
        h[i] = (float)(i % 7) * 0.25f - 2.0f;
    for (int j = 0; j < 700; ++j)
        h[j] = 1.0f;                                 /* row 0: all equal */
    h[700 + 5] = h[700 + 300] = h[700 + 699] = 9.0f; /* row 1: first at 5 */
    h[1400 + 650] = h[1400 + 651] = 3.0f;            /* row 2: first at 650 */
    h[2100 + 0] = -5.0f;                             /* row 3: i % 7 == 6 first at 6 */
    const int32_t hi[6] = {-7, 12, 12, 100000, -3, 99999};
    write_t(p, x, h);
    write_t(p, xi, hi);
    clg_assert_ok(clg_plan_run(p));
    int32_t got[4];
    float gs[2];
    read_t(p, ai, got);
    ck_assert_int_eq(got[0], 1);
    ck_assert_int_eq(got[1], 0);
    read_t(p, si_, gs);
    ck_assert_float_eq(gs[0], 17.0f);
    ck_assert_float_eq(gs[1], 199996.0f);
    const int32_t want[4] = {0, 5, 650, 6};
    read_t(p, y, got);
    for (int i = 0; i < 4; ++i)
        ck_assert_int_eq(got[i], want[i]);
    read_t(p, yt, got);
    for (int i = 0; i < 4; ++i)
        ck_assert_int_eq(got[i], want[i]);
    clg_graph_free(g);
}
END_TEST

/* Reductions whose input is elementwise work: the work is the kernel's prologue, so each of the
 * four reductions is exactly one kernel (compile.c inlines an elementwise node into its only
 * consumer when that is a reduction; inputs and scalars are operands, not kernels). */
START_TEST(test_reduce_prologue) {
    clg_graph *g = clg_graph_new(clg_test_context());
    enum { R = 37, C = 53 };
    const int64_t s[2] = {R, C}, sb[1] = {C};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, s);
    clg_tensor *bb = clg_input(g, "b", CLG_F32, 1, sb);
    const int a0[1] = {0}, a1[1] = {1};
    clg_tensor *y1 = clg_sum(g, clg_exp(g, clg_mul_scalar(g, x, 2.0f)), 1, a1, false);
    clg_tensor *y2 = clg_mean(g, clg_square(g, clg_add_scalar(g, x, -0.25f)), 0, NULL, false);
    clg_tensor *y3 = clg_max(g, clg_abs(g, clg_transpose(g, x, 0, 1)), 1, a1, false);
    clg_tensor *y4 = clg_sum(g, clg_mul(g, x, bb), 1, a0, true);
    clg_tensor *ys[4] = {y1, y2, y3, y4};
    for (int k = 0; k < 4; ++k)
        clg_assert_ok(clg_graph_output(g, ys[k]));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    ck_assert_uint_eq(clg_plan_kernel_count(p), 4);
    static float h[R * C], hb[C];
    clg_test_rng r;
    clg_test_rng_seed(&r, 103);
    clg_test_fill(&r, h, R * C, -1, 1);
    clg_test_fill(&r, hb, C, -2, 2);
    write_t(p, x, h);
    write_t(p, bb, hb);
    clg_assert_ok(clg_plan_run(p));
    float got[C], want[C];
    double g1 = sum_gamma(C), g0 = sum_gamma(R), ga = sum_gamma(R * C);
    /* exp: 3 ulp on terms up to e^2; the rest as sum_gamma */
    read_t(p, y1, got);
    for (int i = 0; i < R; ++i) {
        double acc = 0;
        for (int j = 0; j < C; ++j)
            acc += exp(2.0 * h[i * C + j]);
        ck_assert_msg(fabs(got[i] - acc) <= (g1 + 4 * ULP) * acc, "sum(exp(2x)) [%d]: %.9g vs %.9g",
                      i, (double)got[i], acc);
    }
    read_t(p, y2, got);
    double acc = 0;
    for (int i = 0; i < R * C; ++i)
        acc += ((double)h[i] - 0.25) * ((double)h[i] - 0.25);
    acc /= R * C;
    /* x - 1/4 and its square round once each (3 u on the term), the 1/N scale and its
     * product once each */
    ck_assert_msg(fabs(got[0] - acc) <= (ga + 6 * U) * acc, "mean((x - 1/4)^2): %.9g vs %.9g",
                  (double)got[0], acc);
    read_t(p, y3, got);
    for (int j = 0; j < C; ++j) {
        float m = 0;
        for (int i = 0; i < R; ++i)
            m = fabsf(h[i * C + j]) > m ? fabsf(h[i * C + j]) : m;
        want[j] = m;
    }
    clg_assert_close(got, want, C, 0, 0);
    read_t(p, y4, got);
    for (int j = 0; j < C; ++j) {
        double s4 = 0, mag = 0;
        for (int i = 0; i < R; ++i) {
            s4 += (double)h[i * C + j] * hb[j];
            mag += fabs((double)h[i * C + j] * hb[j]);
        }
        ck_assert_msg(fabs(got[j] - s4) <= (g0 + U) * mag, "sum(x * b) [%d]: %.9g vs %.9g", j,
                      (double)got[j], s4);
    }
    clg_graph_free(g);
}
END_TEST

/* ---- softmax family ---- */

typedef enum sfkind { SF_SOFTMAX, SF_LOG_SOFTMAX, SF_LOGSUMEXP } sfkind;

typedef struct sfcase {
    const char *what;
    clg_tensor *y;
    const hview *v;
    sfkind k;
    int axis;
    bool keepdims;
} sfcase;

/* Reference in double over axis of v, written in y's row-major order (keepdims layout for
 * logsumexp, which has the same order either way). */
static void ref_softmax(const hview *v, int axis, sfkind k, double *out) {
    int64_t n = hv_numel(v), len = v->shape[axis], c[CLG_MAX_DIMS], groups = n / len;
    double *m = malloc((size_t)groups * sizeof *m), *s = malloc((size_t)groups * sizeof *s);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(s);
    for (int64_t o = 0; o < groups; ++o) {
        m[o] = -INFINITY;
        s[o] = 0;
    }
    for (int pass = 0; pass < 3; ++pass) {
        for (int64_t i = 0; i < n; ++i) {
            double x = hv_get(v, i, c);
            int64_t o = 0;
            for (int d = 0; d < v->ndim; ++d)
                if (d != axis) o = o * v->shape[d] + c[d];
            if (pass == 0)
                m[o] = x > m[o] ? x : m[o];
            else if (pass == 1)
                s[o] += exp(x - m[o]);
            else if (k == SF_SOFTMAX)
                out[i] = exp(x - m[o]) / s[o];
            else if (k == SF_LOG_SOFTMAX)
                out[i] = x - m[o] - log(s[o]);
        }
    }
    if (k == SF_LOGSUMEXP)
        for (int64_t o = 0; o < groups; ++o)
            out[o] = m[o] + log(s[o]);
    free(m);
    free(s);
}

/* Inputs: x [4, 5, 6] in [-3, 3]; big: 1000 + [-5, 5] (exp(1000) overflows float: only the
 * max shift keeps results finite); a [6, 5, 4] input transposed to a non-contiguous [4, 5, 6].
 * Tolerances: x - max is exact (Sterbenz) or one rounding, exp 3 ulp, a sum of <= 6 terms and
 * a divide (2.5 ulp): softmax within 16 ulp relative. log_softmax's error is absolute: ulp of
 * |x - max| <= 10 plus log's 3 ulp of log(sum) <= 2: 4 ulp(16). logsumexp adds the max to
 * log(sum): 1 ulp of the result plus log's error. */
START_TEST(test_softmax_family) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[3] = {4, 5, 6}, st[3] = {6, 5, 4};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, s);
    clg_tensor *big = clg_input(g, "big", CLG_F32, 3, s);
    clg_tensor *xt = clg_input(g, "xt", CLG_F32, 3, st);
    clg_tensor *vt = clg_transpose(g, xt, 0, 2);
    static float hx[120], hbig[120], hxt[120];
    clg_test_rng r;
    clg_test_rng_seed(&r, 104);
    clg_test_fill(&r, hx, 120, -3, 3);
    for (int i = 0; i < 120; ++i)
        hbig[i] = 1000.0f + clg_test_uniform(&r, -5, 5);
    clg_test_fill(&r, hxt, 120, -3, 3);
    hview vx = hv_dense(hx, 3, s), vbig = hv_dense(hbig, 3, s);
    const int tp[3] = {2, 1, 0};
    hview vvt = hv_permute(hv_dense(hxt, 3, st), tp);
    sfcase cs[] = {
        {"softmax ax0", clg_softmax(g, x, 0), &vx, SF_SOFTMAX, 0, false},
        {"softmax ax1", clg_softmax(g, x, 1), &vx, SF_SOFTMAX, 1, false},
        {"softmax ax-1", clg_softmax(g, x, -1), &vx, SF_SOFTMAX, 2, false},
        {"log_softmax ax1", clg_log_softmax(g, x, 1), &vx, SF_LOG_SOFTMAX, 1, false},
        {"log_softmax ax2", clg_log_softmax(g, x, 2), &vx, SF_LOG_SOFTMAX, 2, false},
        {"logsumexp ax0 keep", clg_logsumexp(g, x, 0, true), &vx, SF_LOGSUMEXP, 0, true},
        {"logsumexp ax2", clg_logsumexp(g, x, 2, false), &vx, SF_LOGSUMEXP, 2, false},
        {"softmax big ax0", clg_softmax(g, big, 0), &vbig, SF_SOFTMAX, 0, false},
        {"log_softmax big ax2", clg_log_softmax(g, big, 2), &vbig, SF_LOG_SOFTMAX, 2, false},
        {"logsumexp big ax1", clg_logsumexp(g, big, 1, false), &vbig, SF_LOGSUMEXP, 1, false},
        {"softmax view ax-1", clg_softmax(g, vt, -1), &vvt, SF_SOFTMAX, 2, false},
    };
    const int n = (int)(sizeof cs / sizeof cs[0]);
    clg_assert_ok(clg_graph_status(g));
    for (int k = 0; k < n; ++k)
        clg_assert_ok(clg_graph_output(g, cs[k].y));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, hx);
    write_t(p, big, hbig);
    write_t(p, xt, hxt);
    clg_assert_ok(clg_plan_run(p));
    for (int k = 0; k < n; ++k) {
        const sfcase *c = &cs[k];
        if (c->k == SF_LOGSUMEXP) {
            int nd = 0;
            for (int d = 0; d < 3; ++d) {
                if (d != c->axis)
                    ck_assert_int_eq(clg_tensor_shape(c->y)[nd++], s[d]);
                else if (c->keepdims)
                    ck_assert_int_eq(clg_tensor_shape(c->y)[nd++], 1);
            }
            ck_assert_int_eq(clg_tensor_ndim(c->y), nd);
        } else {
            ck_assert_int_eq(clg_tensor_ndim(c->y), 3);
            for (int d = 0; d < 3; ++d)
                ck_assert_int_eq(clg_tensor_shape(c->y)[d], s[d]);
        }
        int64_t m = clg_tensor_numel(c->y);
        float got[120], want[120];
        double ref[120];
        read_t(p, c->y, got);
        ref_softmax(c->v, c->axis, c->k, ref);
        for (int64_t i = 0; i < m; ++i) {
            ck_assert_msg(isfinite(got[i]), "%s [%lld] is %g", c->what, (long long)i,
                          (double)got[i]);
            want[i] = (float)ref[i];
        }
        if (c->k == SF_SOFTMAX) {
            clg_assert_close(got, want, (size_t)m, 0, 16 * ULP);
            for (int64_t i = 0; i < m; ++i)
                ck_assert(got[i] > 0.0f && got[i] <= 1.0f);
        } else if (c->k == SF_LOG_SOFTMAX) {
            clg_assert_close(got, want, (size_t)m, 4 * 16 * ULP, 0);
        } else {
            clg_assert_close(got, want, (size_t)m, 16 * ULP, ULP);
        }
    }
    clg_graph_free(g);
}
END_TEST

/* ---- gradients ---- */

/* Same settings as test-elementwise.c: eps 1e-2, truncation below 1e-3 relative, rounding
 * noise of a few ulp of a loss of a few tens over 2 eps. max/min inputs are a shuffled grid
 * with spacing 0.3, so no two candidates come within eps. */
#define GC_EPS 1e-2f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-2f

enum { N_RGRAD = 10 };
static const char *const rgrad_names[N_RGRAD] = {"sum ax1",         "mean ax0 keep",
                                                 "max ax1",         "min all",
                                                 "variance c1 ax1", "variance c0 all",
                                                 "softmax ax0",     "log_softmax ax1",
                                                 "logsumexp ax0",   "sum+max over [3,1,2] ax0,2"};

static clg_tensor *rgrad_op(clg_graph *g, int k, clg_tensor *x) {
    const int a0[1] = {0}, a1[1] = {1}, a02[2] = {0, 2};
    switch (k) {
    case 0:
        return clg_sum(g, x, 1, a1, false);
    case 1:
        return clg_mean(g, x, 1, a0, true);
    case 2:
        return clg_max(g, x, 1, a1, false);
    case 3:
        return clg_min(g, x, 0, NULL, false);
    case 4:
        return clg_variance(g, x, 1, a1, false, 1);
    case 5:
        return clg_variance(g, x, 0, NULL, true, 0);
    case 6:
        return clg_softmax(g, x, 0);
    case 7:
        return clg_log_softmax(g, x, 1);
    case 8:
        return clg_logsumexp(g, x, 0, false);
    default:
        return clg_add(g, clg_sum(g, x, 2, a02, true), clg_max(g, x, 2, a02, true));
    }
}

/* Each op on its own [2, 3] input ([3, 1, 2] for the last), in two graphs of five ops: every
 * plan run launches all of a plan's kernels, and a check runs it twice per element. */
START_TEST(test_reduce_grad) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {2, 3}, s3[3] = {3, 1, 2};
    const int k0 = _i * N_RGRAD / 2, n = N_RGRAD / 2;
    float vals[N_RGRAD / 2][6];
    clg_gc_input in[N_RGRAD / 2];
    clg_test_rng r;
    clg_test_rng_seed(&r, 105u + (unsigned)_i);
    for (int j = 0; j < n; ++j) {
        int k = k0 + j;
        if (k == 2 || k == 3 || k == 9)
            fill_distinct(&r, vals[j], 6, -0.8f, 0.3f);
        else
            clg_test_fill(&r, vals[j], 6, -1.5f, 1.5f);
        in[j] =
            (clg_gc_input){clg_input(g, rgrad_names[k], CLG_F32, k == 9 ? 3 : 2, k == 9 ? s3 : s),
                           vals[j], rgrad_names[k]};
    }
    clg_gc_require(in, n);
    clg_tensor *loss = NULL;
    for (int j = 0; j < n; ++j) {
        clg_tensor *l = clg_gc_weighted_sum(g, rgrad_op(g, k0 + j, in[j].tensor), 400u + k0 + j);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    clg_assert_ok(clg_graph_status(g));
    clg_gradcheck(g, loss, in, n, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

/* Long reductions with few outputs are split over several work-groups and combined by a
 * second kernel: sum, mean, max, min over 100003 values and over rows of 50001, against
 * double-precision references (max/min exact), with a NaN that must win a max. */
START_TEST(split_reductions) {
    enum { N = 100003, R = 3, C = 50001 };
    clg_context *ctx = clg_test_context();
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 4242);
    float *x = malloc(N * sizeof *x), *y = malloc((size_t)R * C * sizeof *y);
    clg_test_fill(&rng, x, N, -1.0f, 1.0f);
    clg_test_fill(&rng, y, (size_t)R * C, 0.0f, 2.0f);
    y[C + 777] = NAN; /* row 1 */
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *tx = clg_constant(g, CLG_F32, 1, (int64_t[]){N}, x);
    clg_tensor *ty = clg_constant(g, CLG_F32, 2, (int64_t[]){R, C}, y);
    clg_tensor *outs[7] = {
        clg_sum(g, tx, 0, NULL, false),          clg_mean(g, tx, 0, NULL, false),
        clg_max(g, tx, 0, NULL, false),          clg_min(g, tx, 0, NULL, false),
        clg_sum(g, ty, 1, (int[]){1}, false),    clg_max(g, ty, 1, (int[]){1}, false),
        clg_sum(g, clg_exp(g, tx), 0, NULL, false)};
    for (int i = 0; i < 7; ++i) clg_assert_ok(clg_graph_output(g, outs[i]));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    /* each reduction is split: two kernels apiece */
    ck_assert_uint_eq(clg_plan_kernel_count(p), 14);
    clg_assert_ok(clg_plan_run(p));
    float got[4], rows_sum[R], rows_max[R], esum;
    for (int i = 0; i < 4; ++i) clg_assert_ok(clg_plan_read(p, outs[i], &got[i], sizeof got[i]));
    clg_assert_ok(clg_plan_read(p, outs[4], rows_sum, sizeof rows_sum));
    clg_assert_ok(clg_plan_read(p, outs[5], rows_max, sizeof rows_max));
    clg_assert_ok(clg_plan_read(p, outs[6], &esum, sizeof esum));
    double s = 0, e = 0, mx = -INFINITY, mn = INFINITY;
    for (int i = 0; i < N; ++i) {
        s += x[i];
        e += exp((double)x[i]);
        mx = x[i] > mx ? x[i] : mx;
        mn = x[i] < mn ? x[i] : mn;
    }
    /* float sums of 1e5 terms of magnitude <= 1: allow 1e-3 absolute (the terms cancel) */
    ck_assert_msg(fabs(got[0] - s) < 1e-3, "sum %g want %g", (double)got[0], s);
    ck_assert_msg(fabs(got[1] - s / N) < 1e-8, "mean %g want %g", (double)got[1], s / N);
    ck_assert_msg(got[2] == (float)mx && got[3] == (float)mn, "max %g/%g min %g/%g",
                  (double)got[2], mx, (double)got[3], mn);
    ck_assert_msg(fabs(esum - e) < 1e-4 * e, "sum(exp) %g want %g", (double)esum, e);
    for (int r = 0; r < R; ++r) {
        double rs = 0, rm = -INFINITY;
        for (int c = 0; c < C; ++c) {
            rs += y[r * C + c];
            rm = y[r * C + c] > rm ? y[r * C + c] : rm;
        }
        if (r == 1) {
            ck_assert_msg(isnan(rows_sum[r]) && isnan(rows_max[r]), "NaN row: sum %g max %g",
                          (double)rows_sum[r], (double)rows_max[r]);
            continue;
        }
        ck_assert_msg(fabs(rows_sum[r] - rs) < 1e-4 * rs, "row %d sum %g want %g", r,
                      (double)rows_sum[r], rs);
        ck_assert_msg(rows_max[r] == (float)rm, "row %d max %g want %g", r, (double)rows_max[r], rm);
    }
    free(x);
    free(y);
    clg_graph_free(g);
}
END_TEST

/* The innermost axis reduced with an outer one (a bias gradient: [N, C, L] -> [C]) walks rows
 * of the innermost axis: sum, mean, max and min over axes 0 and 2 of [8, 3, 4001], long enough
 * to be split over work-groups, and over a small [5, 4, 7] that is not, against double-precision
 * references, with a NaN that must win its channel's max. */
START_TEST(row_reductions) {
    enum { N = 8, C = 3, L = 4001 };
    clg_context *ctx = clg_test_context();
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 777);
    float *x = malloc((size_t)N * C * L * sizeof *x), small[5 * 4 * 7];
    clg_test_fill(&rng, x, (size_t)N * C * L, -1.0f, 2.0f);
    clg_test_fill(&rng, small, 5 * 4 * 7, -1.0f, 1.0f);
    x[(5 * C + 2) * L + 123] = NAN; /* channel 2 */
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *tx = clg_constant(g, CLG_F32, 3, (int64_t[]){N, C, L}, x);
    clg_tensor *ts = clg_constant(g, CLG_F32, 3, (int64_t[]){5, 4, 7}, small);
    const int a02[2] = {0, 2};
    clg_tensor *outs[5] = {clg_sum(g, tx, 2, a02, false), clg_mean(g, tx, 2, a02, false),
                           clg_max(g, tx, 2, a02, false), clg_min(g, tx, 2, a02, false),
                           clg_sum(g, clg_square(g, ts), 2, a02, false)};
    for (int i = 0; i < 5; ++i) clg_assert_ok(clg_graph_output(g, outs[i]));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_run(p));
    float sum[C], mean[C], mx[C], mn[C], sq[4];
    clg_assert_ok(clg_plan_read(p, outs[0], sum, sizeof sum));
    clg_assert_ok(clg_plan_read(p, outs[1], mean, sizeof mean));
    clg_assert_ok(clg_plan_read(p, outs[2], mx, sizeof mx));
    clg_assert_ok(clg_plan_read(p, outs[3], mn, sizeof mn));
    clg_assert_ok(clg_plan_read(p, outs[4], sq, sizeof sq));
    for (int c = 0; c < C; ++c) {
        double rs = 0, rmax = -INFINITY, rmin = INFINITY;
        for (int n = 0; n < N; ++n)
            for (int l = 0; l < L; ++l) {
                float v = x[(n * C + c) * L + l];
                if (isnan(v)) continue;
                rs += v;
                rmax = v > rmax ? v : rmax;
                rmin = v < rmin ? v : rmin;
            }
        if (c == 2) {
            ck_assert_msg(isnan(sum[c]) && isnan(mx[c]), "NaN channel: sum %g max %g",
                          (double)sum[c], (double)mx[c]);
            continue;
        }
        ck_assert_msg(fabs(sum[c] - rs) < 1e-4 * fabs(rs) + 1e-2, "channel %d sum %g want %g", c,
                      (double)sum[c], rs);
        ck_assert_msg(fabs(mean[c] - rs / (N * L)) < 1e-6, "channel %d mean %g want %g", c,
                      (double)mean[c], rs / (N * L));
        ck_assert_msg(mx[c] == (float)rmax && mn[c] == (float)rmin, "channel %d max %g/%g min %g/%g",
                      c, (double)mx[c], rmax, (double)mn[c], rmin);
    }
    for (int c = 0; c < 4; ++c) {
        double rs = 0;
        for (int a = 0; a < 5; ++a)
            for (int l = 0; l < 7; ++l) rs += (double)small[(a * 4 + c) * 7 + l] * small[(a * 4 + c) * 7 + l];
        ck_assert_msg(fabs(sq[c] - rs) < 1e-5 * rs + 1e-6, "small channel %d %g want %g", c,
                      (double)sq[c], rs);
    }
    free(x);
    clg_graph_free(g);
}
END_TEST

/* Reductions along outer dims with many outputs take the serial column form (a CPU device's
 * sums: its strip form, here 135 outputs, the last strip partly past the end): sum, max, min
 * and argmax over axis 0 (and 0 and 2), and a mean of squares (a fused prologue and a
 * scale), against references. */
START_TEST(column_reductions) {
    enum { A = 37, B = 45, C = 3 };
    clg_context *ctx = clg_test_context();
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 99);
    float x[A * B * C];
    clg_test_fill(&rng, x, A * B * C, -3.0f, 3.0f);
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *tx = clg_constant(g, CLG_F32, 3, (int64_t[]){A, B, C}, x);
    clg_tensor *t2 = clg_reshape(g, tx, 2, (int64_t[]){A, B * C}); /* [37, 135] */
    clg_tensor *outs[6] = {clg_sum(g, t2, 1, (int[]){0}, false),
                           clg_max(g, t2, 1, (int[]){0}, false),
                           clg_min(g, t2, 1, (int[]){0}, false),
                           clg_argmax(g, t2, 0, false),
                           clg_sum(g, tx, 2, (int[]){0, 2}, false), /* [45]: not column */
                           clg_mean(g, clg_mul(g, t2, t2), 1, (int[]){0}, false)};
    for (int i = 0; i < 6; ++i) clg_assert_ok(clg_graph_output(g, outs[i]));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_run(p));
    float sum[B * C], mx[B * C], mn[B * C], s2[B], msq[B * C];
    int32_t am[B * C];
    clg_assert_ok(clg_plan_read(p, outs[5], msq, sizeof msq));
    clg_assert_ok(clg_plan_read(p, outs[0], sum, sizeof sum));
    clg_assert_ok(clg_plan_read(p, outs[1], mx, sizeof mx));
    clg_assert_ok(clg_plan_read(p, outs[2], mn, sizeof mn));
    clg_assert_ok(clg_plan_read(p, outs[3], am, sizeof am));
    clg_assert_ok(clg_plan_read(p, outs[4], s2, sizeof s2));
    float want_sum[B * C], want_mx[B * C], want_mn[B * C], want_s2[B] = {0}, want_msq[B * C];
    for (int j = 0; j < B * C; ++j) {
        double acc = 0, sq = 0;
        float hi = -INFINITY, lo = INFINITY;
        int arg = 0;
        for (int i = 0; i < A; ++i) {
            float v = x[i * B * C + j];
            acc += v;
            sq += (double)v * v;
            if (v > hi) {
                hi = v;
                arg = i;
            }
            lo = v < lo ? v : lo;
            want_s2[j / C] += v;
        }
        want_sum[j] = (float)acc;
        want_msq[j] = (float)(sq / A);
        want_mx[j] = hi;
        want_mn[j] = lo;
        ck_assert_msg(am[j] == arg, "argmax column %d: %d want %d", j, am[j], arg);
    }
    clg_assert_close(sum, want_sum, B * C, 1e-4, 1e-5);
    clg_assert_close(mx, want_mx, B * C, 0, 0);
    clg_assert_close(mn, want_mn, B * C, 0, 0);
    clg_assert_close(s2, want_s2, B, 1e-4, 1e-5);
    clg_assert_close(msq, want_msq, B * C, 1e-5, 1e-5);
    clg_graph_free(g);
}
END_TEST

static Suite *reduce_suite(void) {
    Suite *s = suite_create("reduce");
    TCase *fwd = tcase_create("forward");
    tcase_add_test(fwd, test_reduce_axes);
    tcase_add_test(fwd, split_reductions);
    tcase_add_test(fwd, row_reductions);
    tcase_add_test(fwd, column_reductions);
    tcase_add_test(fwd, test_reduce_lengths);
    tcase_add_test(fwd, test_argmax_ties);
    tcase_add_test(fwd, test_reduce_prologue);
    tcase_add_test(fwd, test_softmax_family);
    TCase *grad = tcase_create("gradient");
    tcase_add_loop_test(grad, test_reduce_grad, 0, 2);
    TCase *all[] = {fwd, grad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) {
        tcase_set_timeout(all[i], 600);
        suite_add_tcase(s, all[i]);
    }
    return s;
}

int main(void) {
    return clg_test_run(reduce_suite());
}
