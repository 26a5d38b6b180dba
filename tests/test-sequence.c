/* Sequence ops on the device against plain-C references: take_along_axis (every axis,
 * broadcast index, out-of-range reads, strided x), tril and the causal mask, cumsum (every
 * axis and mode, a long axis), topk against a stable C sort with ties, multinomial by
 * frequencies against the softmax it should draw from (temperature, top_k, fresh draws per
 * run, reproducible seeds); gradients of take_along_axis (duplicate indices), tril, cumsum and
 * topk's values against finite differences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"         /* the context's run counter (rng_offset) */
#include "gradcheck.h"
#include "graph/graph_internal.h" /* a multinomial node's stream is its id */
#include "harness.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), S(__VA_ARGS__)

static int64_t numel_of(int nd, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < nd; ++d)
        n *= shape[d];
    return n;
}

static float *rand_f(int64_t n, float lo, float hi, uint64_t seed) {
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, (size_t)n, lo, hi);
    return v;
}

/* Integers in [lo, hi] (inclusive). */
static int32_t *rand_i(int64_t n, int lo, int hi, uint64_t seed) {
    int32_t *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; ++i) {
        int k = lo + (int)floorf(clg_test_uniform(&r, 0.0f, (float)(hi - lo + 1)));
        v[i] = k > hi ? hi : k;
    }
    return v;
}

static void unravel(int64_t i, int nd, const int64_t *shape, int64_t *c) {
    for (int d = nd - 1; d >= 0; --d) {
        c[d] = i % shape[d];
        i /= shape[d];
    }
}

static int64_t ravel(int nd, const int64_t *shape, const int64_t *c) {
    int64_t o = 0;
    for (int d = 0; d < nd; ++d)
        o = o * shape[d] + (shape[d] == 1 ? 0 : c[d]);
    return o;
}

/* numpy take_along_axis on dense x and index, broadcasting size-1 dims outside axis; out has
 * shape os. Out of range reads 0. */
static void take_ref(const float *x, const int64_t *xs, const int32_t *idx, const int64_t *is,
                     int nd, int axis, const int64_t *os, float *out) {
    int64_t n = numel_of(nd, os), c[8];
    for (int64_t i = 0; i < n; ++i) {
        unravel(i, nd, os, c);
        int32_t k = idx[ravel(nd, is, c)];
        if (k < 0 || k >= xs[axis]) {
            out[i] = 0.0f;
            continue;
        }
        c[axis] = k;
        out[i] = x[ravel(nd, xs, c)];
    }
}

static void read_f(clg_plan *p, clg_tensor *t, float *out) {
    clg_assert_ok(clg_plan_read(p, t, out, (size_t)clg_tensor_numel(t) * sizeof *out));
}

static void read_i(clg_plan *p, clg_tensor *t, int32_t *out) {
    clg_assert_ok(clg_plan_read(p, t, out, (size_t)clg_tensor_numel(t) * sizeof *out));
}

static void write_t(clg_plan *p, clg_tensor *t, const void *v) {
    clg_assert_ok(clg_plan_write(p, t, v, (size_t)clg_tensor_numel(t) * 4));
}

static void assert_shape(clg_tensor *t, int nd, const int64_t *shape, const char *what) {
    ck_assert_msg(clg_tensor_ndim(t) == nd, "%s: rank %d, want %d", what, clg_tensor_ndim(t), nd);
    for (int d = 0; d < nd; ++d)
        ck_assert_msg(clg_tensor_shape(t)[d] == shape[d], "%s: dim %d is %lld, want %lld", what, d,
                      (long long)clg_tensor_shape(t)[d], (long long)shape[d]);
}

static void assert_exact(const float *got, const float *want, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; ++i)
        ck_assert_msg(got[i] == want[i] || (isinf(got[i]) && isinf(want[i]) &&
                                            (got[i] > 0) == (want[i] > 0)),
                      "%s: element %lld is %.8g, want %.8g", what, (long long)i, (double)got[i],
                      (double)want[i]);
}

/* ---- take_along_axis ---- */

typedef struct take_case {
    const char *what;
    int axis;
    int64_t is[3]; /* index shape */
    int64_t os[3]; /* output shape */
    bool transposed; /* x read through a transposed view of xt */
} take_case;

START_TEST(take_along_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    const int64_t xs[3] = {4, 5, 6};
    float *xv = rand_f(120, -2, 2, 1);
    /* the same values laid out [6, 5, 4], read back through a transpose */
    float *xt = malloc(120 * sizeof *xt);
    for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 5; ++b)
            for (int c = 0; c < 6; ++c)
                xt[(c * 5 + b) * 4 + a] = xv[(a * 5 + b) * 6 + c];
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, xs);
    clg_tensor *xtin = clg_input(g, "xt", CLG_F32, 3, S(6, 5, 4));
    clg_tensor *xtt = clg_transpose(g, xtin, 0, 2);
    const take_case cases[] = {
        {"axis 0", 0, {3, 5, 6}, {3, 5, 6}, false},
        {"axis 1 (middle), longer than x", 1, {4, 9, 6}, {4, 9, 6}, false},
        {"axis 2 (last)", 2, {4, 5, 2}, {4, 5, 2}, false},
        {"axis -1, index broadcast over dim 0", -1, {1, 5, 3}, {4, 5, 3}, false},
        {"axis 0, index broadcast over dims 1 and 2", 0, {7, 1, 1}, {7, 5, 6}, false},
        {"axis 1 of a transposed view", 1, {4, 3, 6}, {4, 3, 6}, true},
    };
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    clg_tensor *outs[8];
    int32_t *idx[8];
    clg_tensor *iv[8];
    char name[16];
    for (int c = 0; c < nc; ++c) {
        int axis = cases[c].axis < 0 ? 3 + cases[c].axis : cases[c].axis;
        /* indices from -2 to dim + 1: four of every dim + 4 values read 0 */
        idx[c] = rand_i(numel_of(3, cases[c].is), -2, (int)xs[axis] + 1, 10 + (uint64_t)c);
        snprintf(name, sizeof name, "i%d", c);
        iv[c] = clg_input(g, name, CLG_I32, 3, cases[c].is);
        outs[c] = clg_take_along_axis(g, cases[c].transposed ? xtt : x, iv[c], cases[c].axis);
        ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s: %s", cases[c].what, clg_graph_error(g));
        clg_assert_ok(clg_graph_output(g, outs[c]));
    }
    /* an i32 x gathers exactly too */
    int32_t *xi = rand_i(20, -1000, 1000, 30);
    clg_tensor *xin = clg_input(g, "xi", CLG_I32, 2, S(4, 5));
    int32_t ii[8] = {4, 0, 0, 3, 1, 1, 2, 5};
    clg_tensor *ti = clg_take_along_axis(g, xin, clg_constant(g, CLG_I32, ND(4, 2), ii), 1);
    clg_assert_ok(clg_graph_output(g, ti));
    /* shape errors */
    clg_graph *bad = clg_graph_new(clg_test_context());
    clg_tensor *bx = clg_input(bad, "x", CLG_F32, 2, S(3, 4));
    clg_take_along_axis(bad, bx, clg_input(bad, "i", CLG_I32, 2, S(2, 4)), 1);
    ck_assert_int_eq(clg_graph_status(bad), CLG_ERR_SHAPE);
    clg_graph_free(bad);

    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, xv);
    write_t(p, xtin, xt);
    write_t(p, xin, xi);
    for (int c = 0; c < nc; ++c)
        write_t(p, iv[c], idx[c]);
    clg_assert_ok(clg_plan_run(p));
    for (int c = 0; c < nc; ++c) {
        int axis = cases[c].axis < 0 ? 3 + cases[c].axis : cases[c].axis;
        int64_t n = numel_of(3, cases[c].os);
        float *got = malloc((size_t)n * sizeof *got), *want = malloc((size_t)n * sizeof *want);
        assert_shape(outs[c], 3, cases[c].os, cases[c].what);
        take_ref(xv, xs, idx[c], cases[c].is, 3, axis, cases[c].os, want);
        read_f(p, outs[c], got);
        assert_exact(got, want, n, cases[c].what);
        free(got);
        free(want);
        free(idx[c]);
    }
    int32_t gi[8];
    read_i(p, ti, gi);
    for (int r = 0; r < 4; ++r)
        for (int j = 0; j < 2; ++j) {
            int k = ii[r * 2 + j];
            int32_t want = k < 5 ? xi[r * 5 + k] : 0;
            ck_assert_msg(gi[r * 2 + j] == want, "i32 [%d, %d]: %d, want %d", r, j,
                          gi[r * 2 + j], want);
        }
    free(xv);
    free(xt);
    free(xi);
    clg_graph_free(g);
}
END_TEST

/* Duplicate and out-of-range indices; a line with more than 8 indices takes the per-line
 * adjoint, fewer the per-element one; the gradient is bit-identical run to run. */
START_TEST(take_along_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[4];
    const int64_t s0[2] = {3, 4}, s1[2] = {5, 3}, s2[2] = {2, 5}, s3[2] = {1, 4};
    in[0] = (clg_gc_input){clg_input(g, "a", CLG_F32, 2, s0), rand_f(12, -1, 1, 41), "axis 1 x"};
    in[1] = (clg_gc_input){clg_input(g, "b", CLG_F32, 2, s1), rand_f(15, -1, 1, 42), "axis 0 x"};
    in[2] = (clg_gc_input){clg_input(g, "c", CLG_F32, 2, s2), rand_f(10, -1, 1, 43),
                           "axis 1 x, 12 per line"};
    in[3] = (clg_gc_input){clg_input(g, "d", CLG_F32, 2, s3), rand_f(4, -1, 1, 44),
                           "x [1, 4] broadcast over the index's 3 rows"};
    clg_gc_require(in, 4);
    const int32_t i0[] = {1, 1, 3, -1, 0, 2, 2, 2, 3, 3, 0, 4, 1, 0, 1, 0, 0, 0};
    const int32_t i1[] = {4, 0, 4, 4, 1, 0, 7, 2, 2, 0, 0, 0};
    const int32_t i2[] = {0, 4, 4, 1, 4, 0, 2, 2, 9, 4, 3, 4, 1, 1, 1, 1, 1, 1, 0, 0, 3, 3, 2, -5};
    clg_tensor *y0 = clg_take_along_axis(g, in[0].tensor, clg_constant(g, CLG_I32, ND(3, 6), i0), 1);
    clg_tensor *y1 = clg_take_along_axis(g, in[1].tensor, clg_constant(g, CLG_I32, ND(4, 3), i1), 0);
    clg_tensor *y2 =
        clg_take_along_axis(g, in[2].tensor, clg_constant(g, CLG_I32, ND(2, 12), i2), 1);
    const int32_t i3[] = {3, 3, 0, 1, 2, 3};
    clg_tensor *y3 = clg_take_along_axis(g, in[3].tensor, clg_constant(g, CLG_I32, ND(3, 2), i3), 1);
    clg_tensor *loss = clg_add(g, clg_add(g, clg_gc_weighted_sum(g, y0, 1),
                                          clg_gc_weighted_sum(g, y1, 2)),
                               clg_gc_weighted_sum(g, y2, 3));
    /* a plain sum: the gradient arriving is a broadcast scalar */
    loss = clg_add(g, loss, clg_sum(g, y3, 0, NULL, false));
    clg_gradcheck(g, loss, in, 4, 0.25f, 2e-3f, 1e-3f);

    /* determinism: the same plan twice gives the same bits */
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    float first[10], again[10];
    for (int i = 0; i < 4; ++i)
        write_t(p, in[i].tensor, in[i].values);
    clg_assert_ok(clg_plan_run(p));
    read_f(p, clg_grad(g, in[2].tensor), first);
    clg_assert_ok(clg_plan_run(p));
    read_f(p, clg_grad(g, in[2].tensor), again);
    ck_assert_msg(memcmp(first, again, sizeof first) == 0, "two runs' gradients differ");
    for (int i = 0; i < 4; ++i)
        free(in[i].values);
    clg_graph_free(g);
}
END_TEST

/* ---- tril and the causal mask ---- */

static void tril_ref(const float *x, int64_t batch, int64_t T, int64_t S_, int64_t d, float *out) {
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < S_; ++j) {
                int64_t o = (b * T + i) * S_ + j;
                out[o] = j <= i + d ? x[o] : 0.0f;
            }
}

START_TEST(tril_causal_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float *xv = rand_f(30, 1, 2, 5);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, S(2, 3, 5));
    const int64_t diags[] = {0, -1, 2, 10, -10, 4, -3};
    const int nd = (int)(sizeof diags / sizeof diags[0]);
    clg_tensor *tr[8];
    for (int k = 0; k < nd; ++k) {
        tr[k] = clg_tril(g, x, diags[k]);
        clg_assert_ok(clg_graph_output(g, tr[k]));
    }
    /* fused into a reduction's prologue: the linear index is the sum's input's */
    int ax = 2;
    clg_tensor *rs = clg_sum(g, clg_tril(g, x, 1), 1, &ax, false);
    clg_assert_ok(clg_graph_output(g, rs));
    const int64_t ms[][2] = {{3, 5}, {4, 4}, {5, 3}, {1, 1}, {1, 7}};
    const int nm = (int)(sizeof ms / sizeof ms[0]);
    clg_tensor *cm[8];
    for (int k = 0; k < nm; ++k) {
        cm[k] = clg_causal_mask(g, ms[k][0], ms[k][1]);
        clg_assert_ok(clg_graph_output(g, cm[k]));
    }
    /* used as an additive mask: a row's masked entries vanish from a softmax */
    clg_tensor *sc = clg_input(g, "sc", CLG_F32, 2, S(3, 5));
    clg_tensor *sm = clg_softmax(g, clg_add(g, sc, clg_causal_mask(g, 3, 5)), 1);
    clg_assert_ok(clg_graph_output(g, sm));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, xv);
    float *scv = rand_f(15, -1, 1, 6);
    write_t(p, sc, scv);
    clg_assert_ok(clg_plan_run(p));
    float got[64], want[64];
    char what[64];
    for (int k = 0; k < nd; ++k) {
        tril_ref(xv, 2, 3, 5, diags[k], want);
        read_f(p, tr[k], got);
        snprintf(what, sizeof what, "tril diagonal %lld", (long long)diags[k]);
        assert_exact(got, want, 30, what);
    }
    tril_ref(xv, 2, 3, 5, 1, want);
    float rows[6];
    read_f(p, rs, rows);
    for (int r = 0; r < 6; ++r) {
        float s = 0;
        for (int j = 0; j < 5; ++j)
            s += want[r * 5 + j];
        ck_assert_msg(fabsf(rows[r] - s) <= 1e-5f, "sum of tril row %d: %g, want %g", r,
                      (double)rows[r], (double)s);
    }
    for (int k = 0; k < nm; ++k) {
        int64_t T = ms[k][0], Sn = ms[k][1];
        assert_shape(cm[k], 2, ms[k], "causal_mask");
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < Sn; ++j)
                want[i * Sn + j] = j <= i + (Sn - T) ? 0.0f : -INFINITY;
        read_f(p, cm[k], got);
        snprintf(what, sizeof what, "causal_mask [%lld, %lld]", (long long)T, (long long)Sn);
        assert_exact(got, want, T * Sn, what);
    }
    read_f(p, sm, got);
    for (int i = 0; i < 3; ++i) {
        double m = -1e30, z = 0;
        for (int j = 0; j <= i + 2; ++j)
            m = fmax(m, scv[i * 5 + j]);
        for (int j = 0; j <= i + 2; ++j)
            z += exp(scv[i * 5 + j] - m);
        for (int j = 0; j < 5; ++j)
            want[i * 5 + j] = j <= i + 2 ? (float)(exp(scv[i * 5 + j] - m) / z) : 0.0f;
    }
    clg_assert_close(got, want, 15, 1e-6, 1e-5);
    free(xv);
    free(scv);
    clg_graph_free(g);
}
END_TEST

START_TEST(tril_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[1] = {{clg_input(g, "x", CLG_F32, 3, S(2, 4, 3)), rand_f(24, -1, 1, 7), "x"}};
    clg_gc_require(in, 1);
    clg_tensor *loss = clg_add(g, clg_gc_weighted_sum(g, clg_tril(g, in[0].tensor, 0), 1),
                               clg_gc_weighted_sum(g, clg_tril(g, in[0].tensor, -2), 2));
    clg_gradcheck(g, loss, in, 1, 0.25f, 2e-3f, 1e-3f);
    free(in[0].values);
    clg_graph_free(g);
}
END_TEST

/* ---- cumsum ---- */

/* Running sums in double along axis of dense x [outer, len, inner]. */
static void cumsum_ref(const float *x, int nd, const int64_t *shape, int axis, bool excl,
                       bool rev, double *out) {
    int64_t outer = numel_of(axis, shape), len = shape[axis];
    int64_t inner = numel_of(nd - axis - 1, shape + axis + 1);
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < inner; ++j) {
            double acc = 0;
            for (int64_t t = 0; t < len; ++t) {
                int64_t tt = rev ? len - 1 - t : t;
                int64_t at = (o * len + tt) * inner + j;
                if (excl) out[at] = acc;
                acc += x[at];
                if (!excl) out[at] = acc;
            }
        }
}

/* Within a few float roundings of each partial sum: tolerance from the sum of |x|. */
static void check_cumsum(const float *got, const float *x, int nd, const int64_t *shape, int axis,
                         bool excl, bool rev, const char *what) {
    int64_t n = numel_of(nd, shape);
    double *want = malloc((size_t)n * sizeof *want), *mag = malloc((size_t)n * sizeof *mag);
    float *ax = calloc((size_t)n, sizeof *ax);
    ck_assert(want && mag && ax);
    for (int64_t i = 0; i < n; ++i)
        ax[i] = fabsf(x[i]);
    cumsum_ref(x, nd, shape, axis, excl, rev, want);
    cumsum_ref(ax, nd, shape, axis, excl, rev, mag);
    for (int64_t i = 0; i < n; ++i)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-6 * mag[i] * 16 + 1e-6,
                      "%s: element %lld is %.8g, want %.8g", what, (long long)i, (double)got[i],
                      want[i]);
    free(want);
    free(mag);
    free(ax);
}

START_TEST(cumsum_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    const int64_t xs[3] = {3, 4, 5};
    float *xv = rand_f(60, -2, 2, 8);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, xs);
    clg_tensor *outs[3][4];
    for (int a = 0; a < 3; ++a)
        for (int m = 0; m < 4; ++m) {
            outs[a][m] = clg_cumsum(g, x, a, m & 1, m & 2);
            clg_assert_ok(clg_graph_output(g, outs[a][m]));
        }
    /* a long axis: few lines (a work-group each) and many (a work-item each, on a CPU device);
     * a transposed view (axis 0 of it is x's last) */
    const int64_t ls[2] = {3, 5000};
    float *lv = rand_f(15000, -1, 1, 9);
    clg_tensor *lx = clg_input(g, "long", CLG_F32, 2, ls);
    clg_tensor *lo[4];
    for (int m = 0; m < 4; ++m) {
        lo[m] = clg_cumsum(g, lx, -1, m & 1, m & 2);
        clg_assert_ok(clg_graph_output(g, lo[m]));
    }
    const int64_t ms[2] = {5000, 40};
    float *mv = rand_f(200000, -1, 1, 10);
    clg_tensor *mx = clg_input(g, "many", CLG_F32, 2, ms);
    clg_tensor *mo = clg_cumsum(g, mx, 0, false, true);
    clg_assert_ok(clg_graph_output(g, mo));
    clg_tensor *tv = clg_cumsum(g, clg_transpose(g, x, 0, 2), 0, true, false);
    clg_assert_ok(clg_graph_output(g, tv));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, xv);
    write_t(p, lx, lv);
    write_t(p, mx, mv);
    clg_assert_ok(clg_plan_run(p));
    float *got = malloc(200000 * sizeof *got);
    char what[80];
    for (int a = 0; a < 3; ++a)
        for (int m = 0; m < 4; ++m) {
            read_f(p, outs[a][m], got);
            snprintf(what, sizeof what, "cumsum axis %d%s%s", a, m & 1 ? " exclusive" : "",
                     m & 2 ? " reverse" : "");
            check_cumsum(got, xv, 3, xs, a, m & 1, m & 2, what);
        }
    for (int m = 0; m < 4; ++m) {
        read_f(p, lo[m], got);
        snprintf(what, sizeof what, "cumsum [3, 5000] axis 1%s%s", m & 1 ? " exclusive" : "",
                 m & 2 ? " reverse" : "");
        check_cumsum(got, lv, 2, ls, 1, m & 1, m & 2, what);
    }
    read_f(p, mo, got);
    check_cumsum(got, mv, 2, ms, 0, false, true, "cumsum [5000, 40] axis 0 reverse");
    /* the transpose [5, 4, 3] of x, exclusive along its axis 0 */
    float xtv[60];
    for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 4; ++b)
            for (int c = 0; c < 5; ++c)
                xtv[(c * 4 + b) * 3 + a] = xv[(a * 4 + b) * 5 + c];
    read_f(p, tv, got);
    check_cumsum(got, xtv, 3, S(5, 4, 3), 0, true, false, "cumsum of a transposed view");
    free(got);
    free(xv);
    free(lv);
    free(mv);
    clg_graph_free(g);
}
END_TEST

START_TEST(cumsum_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[2] = {{clg_input(g, "x", CLG_F32, 2, S(3, 5)), rand_f(15, -1, 1, 11), "x"},
                          {clg_input(g, "y", CLG_F32, 3, S(4, 2, 3)), rand_f(24, -1, 1, 12), "y"}};
    clg_gc_require(in, 2);
    clg_tensor *loss = NULL;
    for (int m = 0; m < 4; ++m) {
        clg_tensor *t = clg_gc_weighted_sum(g, clg_cumsum(g, in[0].tensor, 1, m & 1, m & 2), 1 + m);
        loss = loss ? clg_add(g, loss, t) : t;
        t = clg_gc_weighted_sum(g, clg_cumsum(g, in[1].tensor, 0, m & 1, m & 2), 5 + m);
        loss = clg_add(g, loss, t);
    }
    clg_gradcheck(g, loss, in, 2, 0.25f, 2e-3f, 1e-3f);
    free(in[0].values);
    free(in[1].values);
    clg_graph_free(g);
}
END_TEST

/* ---- topk ---- */

typedef struct keyed {
    float v;
    int i;
} keyed;

/* descending by value, ties by index */
static int by_value_desc(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static void topk_ref(const float *x, int64_t rows, int64_t n, int64_t k, float *val,
                     int32_t *idx) {
    keyed *tmp = malloc((size_t)n * sizeof *tmp);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < n; ++i)
            tmp[i] = (keyed){x[r * n + i], (int)i};
        qsort(tmp, (size_t)n, sizeof *tmp, by_value_desc);
        for (int64_t j = 0; j < k; ++j) {
            val[r * k + j] = tmp[j].v;
            idx[r * k + j] = tmp[j].i;
        }
    }
    free(tmp);
}

typedef struct topk_case {
    const char *what;
    int64_t rows, n, k;
    bool ties; /* values from a few integers (many ties, negative ones, zeros) */
} topk_case;

START_TEST(topk_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    const topk_case cases[] = {
        {"ties, k 5 of 37", 7, 37, 5, true},      {"ties, k 1", 7, 37, 1, true},
        {"ties, k = n (full sort)", 3, 37, 37, true}, {"n 1", 4, 1, 1, false},
        {"k 40 of 3000", 3, 3000, 40, false},   {"ties, k 300 of 3000", 2, 3000, 300, true},
        {"k 2 of 3", 5, 3, 2, false},
    };
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    float *xv[8];
    clg_tensor *xin[8], *val[8], *idx[8];
    char name[16];
    for (int c = 0; c < nc; ++c) {
        int64_t n = cases[c].rows * cases[c].n;
        if (cases[c].ties) {
            int32_t *iv = rand_i(n, -3, 3, 60 + (uint64_t)c);
            xv[c] = malloc((size_t)n * sizeof *xv[c]);
            for (int64_t i = 0; i < n; ++i)
                xv[c][i] = (float)iv[i] * 0.5f;
            free(iv);
        } else {
            xv[c] = rand_f(n, -4, 4, 60 + (uint64_t)c);
        }
    }
    float *tv = rand_f(60, -1, 1, 70);
    clg_tensor *tin, *tval, *tidx;
    /* k beyond the row poisons the graph and both results */
    clg_graph *bad = clg_graph_new(clg_test_context());
    clg_tensor *bv = NULL, *bi = NULL;
    ck_assert_int_eq(clg_topk(bad, clg_input(bad, "x", CLG_F32, 2, S(2, 37)), 38, &bv, &bi),
                     CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(bv);
    ck_assert_ptr_eq(bv, bi);
    ck_assert_int_eq(clg_graph_status(bad), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(bad);

    for (int c = 0; c < nc; ++c) {
        snprintf(name, sizeof name, "x%d", c);
        xin[c] = clg_input(g, name, CLG_F32, 2, S(cases[c].rows, cases[c].n));
        clg_assert_ok(clg_topk(g, xin[c], cases[c].k, &val[c], &idx[c]));
        clg_assert_ok(clg_graph_output(g, val[c]));
        clg_assert_ok(clg_graph_output(g, idx[c]));
    }
    tin = clg_input(g, "t", CLG_F32, 3, S(2, 10, 3));
    clg_assert_ok(clg_topk(g, clg_transpose(g, tin, 1, 2), 4, &tval, &tidx));
    clg_assert_ok(clg_graph_output(g, tval));
    clg_assert_ok(clg_graph_output(g, tidx));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    for (int c = 0; c < nc; ++c)
        write_t(p, xin[c], xv[c]);
    write_t(p, tin, tv);
    clg_assert_ok(clg_plan_run(p));
    for (int c = 0; c < nc; ++c) {
        int64_t m = cases[c].rows * cases[c].k;
        float *gv = malloc((size_t)m * sizeof *gv), *wv = malloc((size_t)m * sizeof *wv);
        int32_t *gi = malloc((size_t)m * sizeof *gi), *wi = malloc((size_t)m * sizeof *wi);
        topk_ref(xv[c], cases[c].rows, cases[c].n, cases[c].k, wv, wi);
        assert_shape(idx[c], 2, S(cases[c].rows, cases[c].k), cases[c].what);
        read_f(p, val[c], gv);
        read_i(p, idx[c], gi);
        for (int64_t j = 0; j < m; ++j)
            ck_assert_msg(gi[j] == wi[j] && gv[j] == wv[j],
                          "topk %s: row %lld place %lld is (%g, %d), want (%g, %d)", cases[c].what,
                          (long long)(j / cases[c].k), (long long)(j % cases[c].k),
                          (double)gv[j], gi[j], (double)wv[j], wi[j]);
        free(gv);
        free(wv);
        free(gi);
        free(wi);
        free(xv[c]);
    }
    /* rows of the view: t[b, :, c] */
    float rowv[60], gv[24], wv[24];
    int32_t gi[24], wi[24];
    for (int b = 0; b < 2; ++b)
        for (int c = 0; c < 3; ++c)
            for (int j = 0; j < 10; ++j)
                rowv[(b * 3 + c) * 10 + j] = tv[(b * 10 + j) * 3 + c];
    topk_ref(rowv, 6, 10, 4, wv, wi);
    read_f(p, tval, gv);
    read_i(p, tidx, gi);
    for (int j = 0; j < 24; ++j)
        ck_assert_msg(gi[j] == wi[j] && gv[j] == wv[j], "topk of a view [%d]: (%g, %d), want (%g, %d)",
                      j, (double)gv[j], gi[j], (double)wv[j], wi[j]);
    free(tv);
    clg_graph_free(g);
}
END_TEST

START_TEST(topk_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    /* distinct values at least 0.5 apart, so the +-0.1 steps never reorder them */
    float *xv = malloc(27 * sizeof *xv);
    int32_t *perm = rand_i(27, 0, 1000, 80);
    for (int r = 0; r < 3; ++r)
        for (int j = 0; j < 9; ++j)
            xv[r * 9 + j] = (float)((j * 5 + r * 2 + perm[r * 9 + j] % 3 * 0) % 9) * 0.5f - 2.0f;
    free(perm);
    clg_gc_input in[1] = {{clg_input(g, "x", CLG_F32, 2, S(3, 9)), xv, "topk x"}};
    clg_gc_require(in, 1);
    clg_tensor *v, *i;
    clg_assert_ok(clg_topk(g, in[0].tensor, 4, &v, &i));
    clg_gradcheck(g, clg_gc_weighted_sum(g, v, 3), in, 1, 0.1f, 2e-3f, 1e-3f);
    free(xv);
    clg_graph_free(g);
}
END_TEST

/* ---- multinomial ---- */

#define MN_ROWS 4000
#define MN_V 6

/* Pearson's chi-square of counts against probabilities over the cells with p > 0; a draw in a
 * cell with p == 0 fails at once. */
static double chi_square(const int64_t *count, const double *prob, int cells, int64_t total,
                         const char *what) {
    double chi = 0;
    for (int c = 0; c < cells; ++c) {
        if (prob[c] == 0) {
            ck_assert_msg(count[c] == 0, "%s: %lld draws of index %d, outside the allowed set",
                          what, (long long)count[c], c);
            continue;
        }
        double e = prob[c] * (double)total;
        chi += (count[c] - e) * (count[c] - e) / e;
    }
    return chi;
}

/* softmax(l / T) over the top_k largest (ties at the cut: lower index), in double. */
static void softmax_ref(const float *l, int n, double T, int top_k, double *p) {
    int keep[64];
    for (int i = 0; i < n; ++i) {
        int above = 0;
        for (int j = 0; j < n; ++j)
            above += l[j] > l[i] || (l[j] == l[i] && j < i);
        keep[i] = top_k == 0 || above < top_k;
    }
    double m = -1e30, z = 0;
    for (int i = 0; i < n; ++i)
        if (keep[i]) m = fmax(m, l[i]);
    for (int i = 0; i < n; ++i)
        z += keep[i] ? exp((l[i] - m) / T) : 0;
    for (int i = 0; i < n; ++i)
        p[i] = keep[i] ? exp((l[i] - m) / T) / z : 0;
}

typedef struct mgraph {
    clg_graph *g;
    clg_tensor *logits, *full, *top3, *wide, *one, *w, *o;
    clg_plan *p;
} mgraph;

static const float mn_logits[MN_V] = {2.0f, 1.0f, 1.0f, 0.5f, 3.0f, -1.0f};

static void mgraph_build(mgraph *m, clg_context *ctx, uint64_t seed) {
    m->g = clg_graph_new(ctx);
    ck_assert_ptr_nonnull(m->g);
    m->logits = clg_input(m->g, "l", CLG_F32, 2, S(MN_ROWS, MN_V));
    m->full = clg_multinomial(m->g, m->logits, 0.7f, 0, seed);
    m->top3 = clg_multinomial(m->g, m->logits, 1.3f, 3, seed + 1);
    m->w = clg_input(m->g, "w", CLG_F32, 2, S(50, 3000));
    m->o = clg_input(m->g, "o", CLG_F32, 1, S(MN_V));
    m->wide = clg_multinomial(m->g, m->w, 1.0f, 5, seed);
    m->one = clg_multinomial(m->g, m->o, 1.0f, 0, seed);
    clg_assert_ok(clg_graph_output(m->g, m->full));
    clg_assert_ok(clg_graph_output(m->g, m->top3));
    clg_assert_ok(clg_graph_output(m->g, m->wide));
    clg_assert_ok(clg_graph_output(m->g, m->one));
    clg_assert_ok(clg_graph_compile(m->g, NULL, &m->p));
    float *lv = malloc(MN_ROWS * MN_V * sizeof *lv);
    for (int r = 0; r < MN_ROWS; ++r)
        memcpy(lv + r * MN_V, mn_logits, sizeof mn_logits);
    write_t(m->p, m->logits, lv);
    free(lv);
}

static float *wide_logits(void) {
    return rand_f(50 * 3000, -3, 3, 90);
}

/* Frequencies of 5 runs x 4000 rows against the softmax with the temperature (chi-square, 5
 * degrees of freedom: 30 is p < 2e-5; without the temperature or uniformly the statistic is in
 * the hundreds); top_k 3 never draws outside the top 3 and matches their renormalised softmax;
 * rows of 3000 logits with top_k 5 stay in each row's top 5. */
START_TEST(multinomial_distribution) {
    mgraph m;
    mgraph_build(&m, clg_test_context(), 1234);
    float *wl = wide_logits();
    write_t(m.p, m.w, wl);
    write_t(m.p, m.o, mn_logits);
    int64_t cf[MN_V] = {0}, ct[MN_V] = {0}, co[MN_V] = {0};
    int32_t *d = malloc(MN_ROWS * sizeof *d);
    int32_t wd[50], od;
    int64_t wide_count[50][5] = {{0}};
    const int runs = 5;
    for (int run = 0; run < runs; ++run) {
        clg_assert_ok(clg_plan_run(m.p));
        assert_shape(m.full, 2, S(MN_ROWS, 1), "multinomial [4000, 6]");
        read_i(m.p, m.full, d);
        for (int r = 0; r < MN_ROWS; ++r) {
            ck_assert(d[r] >= 0 && d[r] < MN_V);
            cf[d[r]]++;
        }
        read_i(m.p, m.top3, d);
        for (int r = 0; r < MN_ROWS; ++r) {
            ck_assert(d[r] >= 0 && d[r] < MN_V);
            ct[d[r]]++;
        }
        read_i(m.p, m.wide, wd);
        for (int r = 0; r < 50; ++r) {
            float rowk[5];
            int32_t ik[5];
            topk_ref(wl + r * 3000, 1, 3000, 5, rowk, ik);
            int at = -1;
            for (int j = 0; j < 5; ++j)
                if (ik[j] == wd[r]) at = j;
            ck_assert_msg(at >= 0, "row %d of 3000 logits drew %d, outside its top 5", r, wd[r]);
            wide_count[r][at]++;
        }
        read_i(m.p, m.one, &od);
        ck_assert(od >= 0 && od < MN_V);
        co[od]++;
    }
    double pf[MN_V], pt[MN_V], pw[MN_V];
    softmax_ref(mn_logits, MN_V, 0.7, 0, pf);
    softmax_ref(mn_logits, MN_V, 1.3, 3, pt);
    ck_assert(pt[2] == 0 && pt[1] > 0); /* the tie at the cut keeps the lower index */
    double chi = chi_square(cf, pf, MN_V, runs * MN_ROWS, "temperature 0.7");
    softmax_ref(mn_logits, MN_V, 1.0, 0, pw);
    double chi_wrong = chi_square(cf, pw, MN_V, runs * MN_ROWS, "temperature 0.7");
    ck_assert_msg(chi < 30, "temperature 0.7: chi-square %.1f against its softmax", chi);
    ck_assert_msg(chi_wrong > 100, "the counts fit temperature 1 too (chi-square %.1f)",
                  chi_wrong);
    double chi3 = chi_square(ct, pt, MN_V, runs * MN_ROWS, "top_k 3");
    ck_assert_msg(chi3 < 25, "top_k 3: chi-square %.1f (2 degrees of freedom)", chi3);
    free(d);
    free(wl);
    clg_graph_free(m.g);
}
END_TEST

/* Runs draw afresh; the same seed on a new context reproduces the draws bit for bit; another
 * seed does not. */
START_TEST(multinomial_runs_and_seeds) {
    clg_context *c1, *c2, *c3;
    clg_assert_ok(clg_context_create(NULL, &c1));
    clg_assert_ok(clg_context_create(NULL, &c2));
    clg_assert_ok(clg_context_create(NULL, &c3));
    mgraph a, b, c;
    mgraph_build(&a, c1, 77);
    mgraph_build(&b, c2, 77);
    mgraph_build(&c, c3, 78);
    float *wl = wide_logits();
    mgraph *all[3] = {&a, &b, &c};
    for (int k = 0; k < 3; ++k) {
        write_t(all[k]->p, all[k]->w, wl);
        write_t(all[k]->p, all[k]->o, mn_logits);
    }
    int32_t *d1 = malloc(MN_ROWS * sizeof *d1), *d2 = malloc(MN_ROWS * sizeof *d2);
    int32_t *d3 = malloc(MN_ROWS * sizeof *d3), *d4 = malloc(MN_ROWS * sizeof *d4);
    clg_assert_ok(clg_plan_run(a.p));
    read_i(a.p, a.full, d1);
    clg_assert_ok(clg_plan_run(a.p));
    read_i(a.p, a.full, d2);
    clg_assert_ok(clg_plan_run(b.p));
    read_i(b.p, b.full, d3);
    clg_assert_ok(clg_plan_run(c.p));
    read_i(c.p, c.full, d4);
    int same12 = 0, same14 = 0;
    for (int r = 0; r < MN_ROWS; ++r) {
        same12 += d1[r] == d2[r];
        same14 += d1[r] == d4[r];
    }
    /* independent draws agree with probability sum p^2 (about 0.45 here) */
    ck_assert_msg(same12 < MN_ROWS * 6 / 10, "a second run repeated %d of %d draws", same12,
                  MN_ROWS);
    ck_assert_msg(same14 < MN_ROWS * 6 / 10, "another seed repeated %d of %d draws", same14,
                  MN_ROWS);
    ck_assert_msg(memcmp(d1, d3, MN_ROWS * sizeof *d1) == 0,
                  "the same seed on a new context drew differently");
    free(d1);
    free(d2);
    free(d3);
    free(d4);
    free(wl);
    clg_context_free(c1);
    clg_context_free(c2);
    clg_context_free(c3);
}
END_TEST

/* Rows a mask or a bad value leaves odd: all -INFINITY draws uniformly, one finite logit among
 * -INFINITY always draws it, a NaN gives -1. */
START_TEST(multinomial_edge_rows) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *l = clg_input(g, "l", CLG_F32, 2, S(3, 4));
    clg_tensor *d = clg_multinomial(g, l, 1.0f, 0, 5);
    clg_tensor *d2 = clg_multinomial(g, l, 0.5f, 2, 6);
    clg_assert_ok(clg_graph_output(g, d));
    clg_assert_ok(clg_graph_output(g, d2));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    const float lv[12] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, 5.0f,
                          -INFINITY, -INFINITY, 0.0f,      NAN,       1.0f,      2.0f};
    write_t(p, l, lv);
    int seen[4] = {0};
    for (int run = 0; run < 40; ++run) {
        int32_t got[3], got2[3];
        clg_assert_ok(clg_plan_run(p));
        read_i(p, d, got);
        read_i(p, d2, got2);
        ck_assert_msg(got[0] >= 0 && got[0] < 4, "all -inf row drew %d", got[0]);
        seen[got[0]]++;
        ck_assert_msg(got2[0] >= 0 && got2[0] < 2, "all -inf row, top_k 2, drew %d", got2[0]);
        ck_assert_int_eq(got[1], 1);
        ck_assert_int_eq(got2[1], 1);
        ck_assert_int_eq(got[2], -1);
        ck_assert_int_eq(got2[2], -1); /* NaN counts as the largest: it is kept */
    }
    for (int i = 0; i < 4; ++i)
        ck_assert_msg(seen[i] > 0, "all -inf row never drew %d in 40 runs", i);
    clg_graph_free(g);
}
END_TEST

/* Philox-4x32-10 as test-random writes it from its definition. */
static void philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = (uint32_t)p1;
        c[2] = n2;
        c[3] = (uint32_t)p0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

/* The draw of row r is the first index whose running probability passes u, u the top 24 bits
 * of word 0 of Philox((r, node id, run low, run high), seed) times 2^-24: checked against
 * that in double on two runs (a draw within 1e-5 of a boundary may fall either way; the wrong
 * counter, stream or seed agrees on about half the rows). */
START_TEST(multinomial_stream) {
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx);
    const int rows = 500;
    const uint64_t seed = 0xFEEDFACE12345678ull;
    clg_tensor *l = clg_input(g, "l", CLG_F32, 2, S(rows, MN_V));
    clg_tensor *d = clg_multinomial(g, l, 0.7f, 0, seed);
    clg_assert_ok(clg_graph_output(g, d));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    float *lv = malloc((size_t)rows * MN_V * sizeof *lv);
    for (int r = 0; r < rows; ++r)
        memcpy(lv + r * MN_V, mn_logits, sizeof mn_logits);
    write_t(p, l, lv);
    double prob[MN_V];
    softmax_ref(mn_logits, MN_V, 0.7, 0, prob);
    int32_t *got = malloc((size_t)rows * sizeof *got);
    for (int run = 0; run < 2; ++run) {
        uint64_t ctr = ctx->rng_offset;
        clg_assert_ok(clg_plan_run(p));
        ck_assert_msg(ctx->rng_offset == ctr + 1, "a run advanced the counter by %llu",
                      (unsigned long long)(ctx->rng_offset - ctr));
        read_i(p, d, got);
        int off = 0;
        for (int r = 0; r < rows; ++r) {
            uint32_t c[4] = {(uint32_t)r, (uint32_t)d->id, (uint32_t)ctr, (uint32_t)(ctr >> 32)};
            philox(c, (uint32_t)seed, (uint32_t)(seed >> 32));
            double u = (double)(c[0] >> 8) / 16777216.0, acc = 0;
            int want = MN_V - 1, near = 0;
            for (int i = 0; i < MN_V; ++i) {
                acc += prob[i];
                near |= fabs(acc - u) < 1e-5;
                if (acc > u) {
                    want = i;
                    break;
                }
            }
            if (got[r] != want) {
                ck_assert_msg(near, "row %d (run %d) drew %d, Philox says %d (u = %.7f)", r, run,
                              got[r], want, u);
                off++;
            }
        }
        ck_assert_int_le(off, 2);
    }
    free(lv);
    free(got);
    clg_graph_free(g);
}
END_TEST

START_TEST(multinomial_errors) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *l = clg_input(g, "l", CLG_F32, 2, S(2, 5));
    clg_multinomial(g, l, 0.0f, 0, 1);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    l = clg_input(g, "l", CLG_F32, 2, S(2, 5));
    clg_multinomial(g, l, 1.0f, 6, 1);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    clg_multinomial(g, clg_input(g, "i", CLG_I32, 1, S(5)), 1.0f, 0, 1);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_DTYPE);
    clg_graph_free(g);
}
END_TEST

/* One case per test, so CK_RUN_CASE=<name> runs one. */
static void add_case(Suite *s, const char *name, const TTest *test) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

int main(void) {
    Suite *s = suite_create("sequence");
    add_case(s, "take_along_forward", take_along_forward);
    add_case(s, "take_along_gradient", take_along_gradient);
    add_case(s, "tril_causal_forward", tril_causal_forward);
    add_case(s, "tril_gradient", tril_gradient);
    add_case(s, "cumsum_forward", cumsum_forward);
    add_case(s, "cumsum_gradient", cumsum_gradient);
    add_case(s, "topk_forward", topk_forward);
    add_case(s, "topk_gradient", topk_gradient);
    add_case(s, "multinomial_distribution", multinomial_distribution);
    add_case(s, "multinomial_runs_and_seeds", multinomial_runs_and_seeds);
    add_case(s, "multinomial_stream", multinomial_stream);
    add_case(s, "multinomial_edge_rows", multinomial_edge_rows);
    add_case(s, "multinomial_errors", multinomial_errors);
    return clg_test_run(s);
}
