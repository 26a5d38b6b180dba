/* Row kernels (ops/rows.c, cl/rows.cl) on the device against plain-C double references: masked
 * and causal softmax, softmax / log_softmax / logsumexp over the last axis, layer norm; their
 * gradients against finite differences and against the composites; kernel counts. The forward
 * and gradient checks run in both kernel forms (a work-item per row, a work-group per row),
 * whatever the device, so the GPU form is checked on pocl too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"
#include "ops/rows.h"

static const clg_rows_mode forms[2] = {CLG_ROWS_ITEM, CLG_ROWS_GROUP};
static const char *const form_names[2] = {"item", "group"};

static void write_t(clg_plan *p, clg_tensor *t, const void *data) {
    clg_assert_ok(clg_plan_write(p, t, data, (size_t)clg_tensor_numel(t) * 4));
}

static void read_t(clg_plan *p, clg_tensor *t, void *out) {
    clg_assert_ok(clg_plan_read(p, t, out, (size_t)clg_tensor_numel(t) * 4));
}

static void *alloc_n(int64_t n, size_t size) {
    void *p = calloc((size_t)(n ? n : 1), size);
    ck_assert_ptr_nonnull(p);
    return p;
}

static int64_t numel(int nd, const int64_t *s) {
    int64_t n = 1;
    for (int i = 0; i < nd; ++i)
        n *= s[i];
    return n;
}

/* The element of a dense tensor of shape ms (rank mnd <= nd, broadcast right-aligned) that
 * element lin of a dense [s] tensor reads. */
static int64_t bcast_index(int nd, const int64_t *s, int64_t lin, int mnd, const int64_t *ms) {
    int64_t idx = 0, stride = 1;
    for (int d = nd - 1; d >= 0; --d) {
        int64_t c = lin % s[d];
        lin /= s[d];
        int j = d - (nd - mnd);
        if (j < 0) continue;
        if (ms[j] != 1) idx += c * stride;
        stride *= ms[j];
    }
    return idx;
}

/* Plans of the forward checks pad every buffer with guard bytes (checked after the run) and
 * start intermediates as NaN, so a write out of bounds or an element left unwritten shows. */
static const clg_compile_options guarded = {.guard_bytes = 64};

/* f32 rounding of a sum of n terms, relative, with slack: the tolerance of a row of n. */
static double row_rtol(int64_t n) {
    return 1e-5 + (double)n * 6e-8;
}

/* ---- masked softmax ---- */

/* softmax(scale x + mask) over rows of C in double; causal over [T, C] matrices. */
static void ref_masked(int nd, const int64_t *s, const float *x, float scale, int mnd,
                       const int64_t *ms, const float *mask, bool causal, double *out) {
    int64_t C = s[nd - 1], T = nd >= 2 ? s[nd - 2] : 1, R = numel(nd, s) / C;
    double *z = alloc_n(C, sizeof *z);
    for (int64_t r = 0; r < R; ++r) {
        double m = -INFINITY;
        for (int64_t j = 0; j < C; ++j) {
            int64_t i = r * C + j;
            z[j] = (double)scale * x[i] + (mask ? mask[bcast_index(nd, s, i, mnd, ms)] : 0.0);
            if (causal && j > r % T + (C - T)) z[j] = -INFINITY;
            m = z[j] > m ? z[j] : m;
        }
        double sum = 0;
        for (int64_t j = 0; j < C; ++j)
            sum += m == -INFINITY ? 0 : exp(z[j] - m);
        for (int64_t j = 0; j < C; ++j)
            out[r * C + j] = m == -INFINITY ? 0 : exp(z[j] - m) / sum;
    }
    free(z);
}

typedef struct mcase {
    const char *what;
    int nd;
    int64_t s[4];
    int mnd; /* 0: no mask */
    int64_t ms[4];
    float scale;
    bool causal;
    int inf_row; /* >= 0: this row of the mask is -INFINITY throughout */
} mcase;

static const mcase mcases[] = {
    {"[3,5]", 2, {3, 5}, 0, {0}, 1.0f, false, -1},
    {"[2,3,7,33] mask [7,33]", 4, {2, 3, 7, 33}, 2, {7, 33}, 0.5f, false, -1},
    {"[2,3,7,33] causal mask [2,1,1,33]", 4, {2, 3, 7, 33}, 4, {2, 1, 1, 33}, 0.125f, true, -1},
    {"[2,9,5] causal (T > S)", 3, {2, 9, 5}, 0, {0}, 1.0f, true, -1},
    {"[1,1]", 2, {1, 1}, 0, {0}, 2.0f, false, -1},
    {"[4,1] causal", 2, {4, 1}, 0, {0}, 1.0f, true, -1},
    {"[2,1031] mask, a masked row", 2, {2, 1031}, 2, {2, 1031}, 0.3f, false, 1},
    {"[3,1029] causal mask [1029]", 2, {3, 1029}, 1, {1029}, 1.0f, true, -1},
};

START_TEST(masked_softmax_forward) {
    clg_rows_force(forms[_i]);
    const int n = (int)(sizeof mcases / sizeof mcases[0]);
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *xs[8], *ms[8], *ys[8];
    float *hx[8], *hm[8];
    clg_test_rng r;
    clg_test_rng_seed(&r, 1301);
    for (int k = 0; k < n; ++k) {
        const mcase *c = &mcases[k];
        int64_t nx = numel(c->nd, c->s), nm = numel(c->mnd, c->ms);
        hx[k] = alloc_n(nx, sizeof(float));
        clg_test_fill(&r, hx[k], (size_t)nx, -4, 4);
        xs[k] = clg_input(g, "x", CLG_F32, c->nd, c->s);
        hm[k] = NULL;
        ms[k] = NULL;
        if (c->mnd) {
            hm[k] = alloc_n(nm, sizeof(float));
            for (int64_t i = 0; i < nm; ++i)
                hm[k][i] =
                    clg_test_uniform(&r, 0, 1) < 0.25f ? -INFINITY : clg_test_uniform(&r, -2, 2);
            if (c->inf_row >= 0)
                for (int64_t j = 0; j < c->ms[c->mnd - 1]; ++j)
                    hm[k][c->inf_row * c->ms[c->mnd - 1] + j] = -INFINITY;
            ms[k] = clg_input(g, "mask", CLG_F32, c->mnd, c->ms);
        }
        ys[k] = clg_softmax_masked(g, xs[k], c->scale, ms[k], c->causal);
        clg_assert_ok(clg_graph_output(g, ys[k]));
    }
    clg_assert_ok(clg_graph_status(g));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &guarded, &p));
    for (int k = 0; k < n; ++k) {
        write_t(p, xs[k], hx[k]);
        if (ms[k]) write_t(p, ms[k], hm[k]);
    }
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    for (int k = 0; k < n; ++k) {
        const mcase *c = &mcases[k];
        int64_t nx = numel(c->nd, c->s), C = c->s[c->nd - 1];
        float *got = alloc_n(nx, sizeof *got), *want = alloc_n(nx, sizeof *want);
        double *ref = alloc_n(nx, sizeof *ref);
        read_t(p, ys[k], got);
        ref_masked(c->nd, c->s, hx[k], c->scale, c->mnd, c->ms, hm[k], c->causal, ref);
        int zero_rows = 0;
        for (int64_t i = 0; i < nx; ++i)
            want[i] = (float)ref[i];
        for (int64_t row = 0; row < nx / C; ++row) {
            bool all_zero = true;
            for (int64_t j = 0; j < C; ++j)
                all_zero = all_zero && ref[row * C + j] == 0;
            if (!all_zero) continue;
            ++zero_rows;
            for (int64_t j = 0; j < C; ++j)
                ck_assert_msg(got[row * C + j] == 0.0f, "%s (%s): masked row %lld [%lld] = %g",
                              c->what, form_names[_i], (long long)row, (long long)j,
                              (double)got[row * C + j]);
        }
        if (c->inf_row >= 0 || (c->causal && c->s[c->nd - 2] > C))
            ck_assert_msg(zero_rows > 0, "%s: the case has no fully masked row", c->what);
        clg_assert_close(got, want, (size_t)nx, 1e-7, row_rtol(C));
        free(got);
        free(want);
        free(ref);
        free(hx[k]);
        free(hm[k]);
    }
    clg_graph_free(g);
    clg_rows_force(CLG_ROWS_AUTO);
}
END_TEST

/* ---- softmax, log_softmax, logsumexp over the last axis ---- */

typedef struct fcase {
    const char *what;
    int nd;
    int64_t s[4];
    float lo, hi;
    bool transposed; /* x is the transpose of an input [C, R] (a 2-D case) */
} fcase;

static const fcase fcases[] = {
    {"[3,5]", 2, {3, 5}, -3, 3, false},
    {"[2,3,7,33]", 4, {2, 3, 7, 33}, -3, 3, false},
    {"[1,1]", 2, {1, 1}, -3, 3, false},
    {"[6,1]", 2, {6, 1}, -3, 3, false},
    {"[2,1500]", 2, {2, 1500}, -8, 8, false},
    {"[4,10] 1000 + [-5, 5]", 2, {4, 10}, 995, 1005, false},
    {"[7,33] transposed", 2, {7, 33}, -3, 3, true},
};

/* Row-wise softmax (what 0), log_softmax (1) or logsumexp (2, one value per row) in double. */
static void ref_family(int64_t R, int64_t C, const double *x, int what, double *out) {
    for (int64_t r = 0; r < R; ++r) {
        const double *xr = x + r * C;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; ++j)
            m = xr[j] > m ? xr[j] : m;
        for (int64_t j = 0; j < C; ++j)
            s += exp(xr[j] - m);
        if (what == 2) out[r] = m + log(s);
        for (int64_t j = 0; what != 2 && j < C; ++j)
            out[r * C + j] = what == 0 ? exp(xr[j] - m) / s : (xr[j] - m) - log(s);
    }
}

START_TEST(softmax_family_last_axis) {
    clg_rows_force(forms[_i]);
    const int n = (int)(sizeof fcases / sizeof fcases[0]);
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *in[8], *ys[8][3];
    float *hx[8];
    clg_test_rng r;
    clg_test_rng_seed(&r, 1302);
    for (int k = 0; k < n; ++k) {
        const fcase *c = &fcases[k];
        int64_t nx = numel(c->nd, c->s);
        hx[k] = alloc_n(nx, sizeof(float));
        clg_test_fill(&r, hx[k], (size_t)nx, c->lo, c->hi);
        clg_tensor *x;
        if (c->transposed) {
            const int64_t st[2] = {c->s[1], c->s[0]};
            in[k] = clg_input(g, "xt", CLG_F32, 2, st);
            x = clg_transpose(g, in[k], 0, 1);
        } else {
            x = in[k] = clg_input(g, "x", CLG_F32, c->nd, c->s);
        }
        ys[k][0] = clg_softmax(g, x, -1);
        ys[k][1] = clg_log_softmax(g, x, c->nd - 1);
        ys[k][2] = clg_logsumexp(g, x, -1, false);
        for (int w = 0; w < 3; ++w)
            clg_assert_ok(clg_graph_output(g, ys[k][w]));
    }
    clg_assert_ok(clg_graph_status(g));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &guarded, &p));
    for (int k = 0; k < n; ++k)
        write_t(p, in[k], hx[k]);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    static const char *const names[3] = {"softmax", "log_softmax", "logsumexp"};
    for (int k = 0; k < n; ++k) {
        const fcase *c = &fcases[k];
        int64_t nx = numel(c->nd, c->s), C = c->s[c->nd - 1], R = nx / C;
        double *xd = alloc_n(nx, sizeof *xd), *ref = alloc_n(nx, sizeof *ref);
        for (int64_t i = 0; i < nx; ++i)
            xd[i] = c->transposed ? hx[k][(i % C) * R + i / C] : hx[k][i];
        float *got = alloc_n(nx, sizeof *got), *want = alloc_n(nx, sizeof *want);
        for (int w = 0; w < 3; ++w) {
            int64_t m = w == 2 ? R : nx;
            ck_assert_int_eq(clg_tensor_numel(ys[k][w]), m);
            ck_assert_int_eq(clg_tensor_ndim(ys[k][w]), w == 2 ? c->nd - 1 : c->nd);
            ref_family(R, C, xd, w, ref);
            read_t(p, ys[k][w], got);
            for (int64_t i = 0; i < m; ++i) {
                ck_assert_msg(isfinite(got[i]), "%s %s (%s) [%lld] = %g", names[w], c->what,
                              form_names[_i], (long long)i, (double)got[i]);
                want[i] = (float)ref[i];
            }
            /* log_softmax: (x - max) is exact, so its error is absolute, a few ulp of the
             * values and of log(sum); logsumexp's relative to the result. */
            if (w == 0)
                clg_assert_close(got, want, (size_t)m, 1e-8, row_rtol(C));
            else if (w == 1)
                clg_assert_close(got, want, (size_t)m, 2e-6 * (1 + c->hi - c->lo), 0);
            else
                clg_assert_close(got, want, (size_t)m, 2e-6, row_rtol(C));
        }
        free(xd);
        free(ref);
        free(got);
        free(want);
        free(hx[k]);
    }
    clg_graph_free(g);
    clg_rows_force(CLG_ROWS_AUTO);
}
END_TEST

/* ---- layer norm ---- */

typedef struct lcase {
    const char *what;
    int nd;
    int64_t s[4];
    int nn;
    bool w, b, transposed;
    float lo, hi;
} lcase;

static const lcase lcases[] = {
    {"[3,5] w b", 2, {3, 5}, 1, true, true, false, -2, 2},
    {"[2,3,7,33] last 2, w", 4, {2, 3, 7, 33}, 2, true, false, false, -2, 2},
    {"[1,1] w b", 2, {1, 1}, 1, true, true, false, -2, 2},
    {"[2,1100] b, offset 10", 2, {2, 1100}, 1, false, true, false, 8, 12},
    {"[4,5] transposed", 2, {4, 5}, 1, false, false, true, -2, 2},
    {"[4,3,2] all 3", 3, {4, 3, 2}, 3, true, true, false, -2, 2},
};

static void ref_layer_norm(int64_t R, int64_t N, const double *x, const float *w, const float *b,
                           float eps, double *out) {
    for (int64_t r = 0; r < R; ++r) {
        const double *xr = x + r * N;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < N; ++j)
            mean += xr[j];
        mean /= (double)N;
        for (int64_t j = 0; j < N; ++j)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= (double)N;
        for (int64_t j = 0; j < N; ++j) {
            double v = (xr[j] - mean) / sqrt(var + eps);
            out[r * N + j] = v * (w ? w[j] : 1.0) + (b ? b[j] : 0.0);
        }
    }
}

START_TEST(layer_norm_forward) {
    clg_rows_force(forms[_i]);
    const int n = (int)(sizeof lcases / sizeof lcases[0]);
    const float eps = 1e-5f;
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *in[8], *ws[8], *bs[8], *ys[8];
    float *hx[8], *hw[8], *hb[8];
    clg_test_rng r;
    clg_test_rng_seed(&r, 1303);
    for (int k = 0; k < n; ++k) {
        const lcase *c = &lcases[k];
        int64_t nx = numel(c->nd, c->s), N = numel(c->nn, c->s + c->nd - c->nn);
        hx[k] = alloc_n(nx, sizeof(float));
        clg_test_fill(&r, hx[k], (size_t)nx, c->lo, c->hi);
        hw[k] = alloc_n(N, sizeof(float));
        hb[k] = alloc_n(N, sizeof(float));
        clg_test_fill(&r, hw[k], (size_t)N, 0.5f, 1.5f);
        clg_test_fill(&r, hb[k], (size_t)N, -1, 1);
        clg_tensor *x;
        if (c->transposed) {
            const int64_t st[2] = {c->s[1], c->s[0]};
            in[k] = clg_input(g, "xt", CLG_F32, 2, st);
            x = clg_transpose(g, in[k], 0, 1);
        } else {
            x = in[k] = clg_input(g, "x", CLG_F32, c->nd, c->s);
        }
        const int64_t *ns = c->s + c->nd - c->nn;
        ws[k] = c->w ? clg_input(g, "w", CLG_F32, c->nn, ns) : NULL;
        bs[k] = c->b ? clg_input(g, "b", CLG_F32, c->nn, ns) : NULL;
        ys[k] = clg_layer_norm(g, x, c->nn, ws[k], bs[k], eps);
        clg_assert_ok(clg_graph_output(g, ys[k]));
    }
    clg_assert_ok(clg_graph_status(g));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &guarded, &p));
    for (int k = 0; k < n; ++k) {
        write_t(p, in[k], hx[k]);
        if (ws[k]) write_t(p, ws[k], hw[k]);
        if (bs[k]) write_t(p, bs[k], hb[k]);
    }
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    for (int k = 0; k < n; ++k) {
        const lcase *c = &lcases[k];
        int64_t nx = numel(c->nd, c->s), N = numel(c->nn, c->s + c->nd - c->nn), R = nx / N;
        ck_assert_int_eq(clg_tensor_ndim(ys[k]), c->nd);
        for (int d = 0; d < c->nd; ++d)
            ck_assert_int_eq(clg_tensor_shape(ys[k])[d], c->s[d]);
        double *xd = alloc_n(nx, sizeof *xd), *ref = alloc_n(nx, sizeof *ref);
        for (int64_t i = 0; i < nx; ++i)
            xd[i] = c->transposed ? hx[k][(i % N) * R + i / N] : hx[k][i];
        ref_layer_norm(R, N, xd, c->w ? hw[k] : NULL, c->b ? hb[k] : NULL, eps, ref);
        float *got = alloc_n(nx, sizeof *got), *want = alloc_n(nx, sizeof *want);
        read_t(p, ys[k], got);
        for (int64_t i = 0; i < nx; ++i)
            want[i] = (float)ref[i];
        /* the mean of values around 10 carries ulp(10 N) / N of rounding into x - mean */
        clg_assert_close(got, want, (size_t)nx, 2e-5 * (1 + fabs(c->lo)), 1e-5);
        free(xd);
        free(ref);
        free(got);
        free(want);
        free(hx[k]);
        free(hw[k]);
        free(hb[k]);
    }
    clg_graph_free(g);
    clg_rows_force(CLG_ROWS_AUTO);
}
END_TEST

/* ---- gradients against finite differences ---- */

#define GC_EPS 1e-2f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-2f

enum { N_GRAD = 11 };

/* Case k of the gradient checks: its inputs (values filled here) and its output. */
static clg_tensor *grad_case(clg_graph *g, int k, clg_gc_input *in, int *n_in, float *buf,
                             const char **what) {
    clg_test_rng r;
    clg_test_rng_seed(&r, 1304 + (uint64_t)k);
    int n = 0;
    float *next = buf;
#define IN(label, nd, ...)                                                                         \
    do {                                                                                           \
        const int64_t s_[] = {__VA_ARGS__};                                                        \
        int64_t m_ = numel(nd, s_);                                                                \
        clg_test_fill(&r, next, (size_t)m_, -2, 2);                                                \
        in[n] = (clg_gc_input){clg_input(g, label, CLG_F32, nd, s_), next, label};                 \
        next += m_;                                                                                \
        ++n;                                                                                       \
    } while (0)
    clg_tensor *y = NULL;
    switch (k) {
    case 0:
        *what = "softmax_masked [3,5] scale 1.3";
        IN("x", 2, 3, 5);
        clg_gc_require(in, n);
        y = clg_softmax_masked(g, in[0].tensor, 1.3f, NULL, false);
        break;
    case 1: {
        *what = "softmax_masked [2,4,6] causal, mask [4,6] with -inf";
        IN("x", 3, 2, 4, 6);
        clg_gc_require(in, n);
        const int64_t ms[2] = {4, 6};
        static float hm[24];
        clg_test_fill(&r, hm, 24, -1, 1);
        hm[3] = hm[10] = hm[17] = -INFINITY;
        clg_tensor *mask = clg_constant(g, CLG_F32, 2, ms, hm);
        y = clg_softmax_masked(g, in[0].tensor, 0.8f, mask, true);
        break;
    }
    case 2:
        *what = "softmax_masked [5,3] causal (two rows fully masked)";
        IN("x", 2, 5, 3);
        clg_gc_require(in, n);
        y = clg_softmax_masked(g, in[0].tensor, 1.0f, NULL, true);
        break;
    case 3:
        *what = "softmax_masked [3,4] scale 0.7, mask [4] (x and mask)";
        IN("x", 2, 3, 4);
        IN("mask", 1, 4);
        clg_gc_require(in, n);
        y = clg_softmax_masked(g, in[0].tensor, 0.7f, in[1].tensor, false);
        break;
    case 4:
        *what = "log_softmax [3,7] last axis";
        IN("x", 2, 3, 7);
        clg_gc_require(in, n);
        y = clg_log_softmax(g, in[0].tensor, -1);
        break;
    case 5:
        *what = "logsumexp [3,7] last axis";
        IN("x", 2, 3, 7);
        clg_gc_require(in, n);
        y = clg_logsumexp(g, in[0].tensor, 1, false);
        break;
    case 6:
        *what = "softmax [2,3,5] last axis";
        IN("x", 3, 2, 3, 5);
        clg_gc_require(in, n);
        y = clg_softmax(g, in[0].tensor, 2);
        break;
    case 7:
        *what = "layer_norm [3,6] weight and bias";
        IN("x", 2, 3, 6);
        IN("w", 1, 6);
        IN("b", 1, 6);
        clg_gc_require(in, n);
        y = clg_layer_norm(g, in[0].tensor, 1, in[1].tensor, in[2].tensor, 1e-5f);
        break;
    case 8:
        *what = "layer_norm [2,3,4] last 2, no weight or bias";
        IN("x", 3, 2, 3, 4);
        clg_gc_require(in, n);
        y = clg_layer_norm(g, in[0].tensor, 2, NULL, NULL, 1e-5f);
        break;
    case 9:
        *what = "layer_norm [4,5] weight only";
        IN("x", 2, 4, 5);
        IN("w", 1, 5);
        clg_gc_require(in, n);
        y = clg_layer_norm(g, in[0].tensor, 1, in[1].tensor, NULL, 1e-3f);
        break;
    default:
        *what = "layer_norm [4,5] bias only, x a transposed view";
        IN("xt", 2, 5, 4);
        IN("b", 1, 5);
        clg_gc_require(in, n);
        y = clg_layer_norm(g, clg_transpose(g, in[0].tensor, 0, 1), 1, NULL, in[1].tensor, 1e-5f);
        break;
    }
#undef IN
    *n_in = n;
    return y;
}

START_TEST(row_gradients) {
    int form = _i / N_GRAD, k = _i % N_GRAD;
    clg_rows_force(forms[form]);
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_gc_input in[3];
    static float buf[256];
    int n = 0;
    const char *what = "";
    clg_tensor *y = grad_case(g, k, in, &n, buf, &what);
    clg_tensor *loss = clg_gc_weighted_sum(g, y, 77u + (unsigned)k);
    clg_assert_ok(clg_graph_status(g));
    static char labels[3][200];
    for (int i = 0; i < n; ++i) {
        snprintf(labels[i], sizeof labels[i], "%s (%s): %s", what, form_names[form], in[i].label);
        in[i].label = labels[i];
    }
    clg_gradcheck(g, loss, in, n, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
    clg_rows_force(CLG_ROWS_AUTO);
}
END_TEST

/* The fused ops and their composites (CLGRAD_ROWS=composite) give the same values and
 * gradients, on inputs large enough that the work is spread over many rows. */
static void fused_or_composite(clg_rows_mode mode, int which, const float *hx, const float *hw,
                               float *y_out, float *gx_out, float *gw_out) {
    clg_rows_force(mode);
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[3] = {3, 40, 52}, ms[2] = {40, 52}, ns[1] = {52};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, s), *w = NULL, *y;
    clg_assert_ok(clg_requires_grad(x));
    if (which == 0) {
        w = clg_input(g, "mask", CLG_F32, 2, ms);
        clg_assert_ok(clg_requires_grad(w));
        y = clg_softmax_masked(g, x, 0.25f, w, true);
    } else {
        w = clg_input(g, "w", CLG_F32, 1, ns);
        clg_assert_ok(clg_requires_grad(w));
        y = clg_layer_norm(g, x, 1, w, NULL, 1e-5f);
    }
    clg_tensor *loss = clg_gc_weighted_sum(g, y, 5u);
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *gx = clg_grad(g, x), *gw = clg_grad(g, w);
    ck_assert_ptr_nonnull(gx);
    ck_assert_ptr_nonnull(gw);
    clg_assert_ok(clg_graph_output(g, y));
    clg_assert_ok(clg_graph_output(g, gx));
    clg_assert_ok(clg_graph_output(g, gw));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, hx);
    write_t(p, w, hw);
    clg_assert_ok(clg_plan_run(p));
    read_t(p, y, y_out);
    read_t(p, gx, gx_out);
    read_t(p, gw, gw_out);
    clg_graph_free(g);
    clg_rows_force(CLG_ROWS_AUTO);
}

START_TEST(fused_matches_composite) {
    enum { NX = 3 * 40 * 52, NW = 40 * 52 };
    static float hx[NX], hw[NW], y[2][NX], gx[2][NX], gw[2][NW];
    clg_test_rng r;
    clg_test_rng_seed(&r, 1305);
    clg_test_fill(&r, hx, NX, -3, 3);
    for (int which = 0; which < 2; ++which) {
        int nw = which == 0 ? NW : 52;
        clg_test_fill(&r, hw, (size_t)nw, -1, 1);
        for (int i = 0; which == 0 && i < NW; i += 7)
            hw[i] = -INFINITY;
        fused_or_composite(CLG_ROWS_COMPOSITE, which, hx, hw, y[0], gx[0], gw[0]);
        fused_or_composite(CLG_ROWS_AUTO, which, hx, hw, y[1], gx[1], gw[1]);
        clg_assert_close(y[1], y[0], NX, 1e-6, 1e-5);
        clg_assert_close(gx[1], gx[0], NX, 1e-5, 1e-4);
        /* the mask's gradient sums the batch; -inf entries give zeros in both */
        clg_assert_close(gw[1], gw[0], (size_t)nw, 1e-5, 1e-4);
    }
}
END_TEST

/* ---- long rows and many rows ----
 * Past a device's loop limit (rusticl's llvmpipe stops every work-item at 65535 iterations
 * without an error) the kernels change form: rows of 20000 columns, and a weight gradient
 * summed over 40000 rows. */

START_TEST(long_loops) {
    enum { C = 20000, R = 40000, N = 3 };
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t sl[2] = {2, C}, sm[2] = {R, N}, ns[1] = {N};
    clg_tensor *xl = clg_input(g, "xl", CLG_F32, 2, sl);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, sm), *gy = clg_input(g, "gy", CLG_F32, 2, sm);
    clg_tensor *w = clg_input(g, "w", CLG_F32, 1, ns), *b = clg_input(g, "b", CLG_F32, 1, ns);
    clg_assert_ok(clg_requires_grad(w));
    clg_assert_ok(clg_requires_grad(b));
    clg_tensor *yl = clg_softmax(g, xl, -1);
    clg_tensor *y = clg_layer_norm(g, x, 1, w, b, 1e-5f);
    clg_tensor *loss = clg_sum(g, clg_mul(g, y, gy), 0, NULL, false);
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *gw = clg_grad(g, w), *gb = clg_grad(g, b);
    clg_assert_ok(clg_graph_output(g, yl));
    clg_assert_ok(clg_graph_output(g, gw));
    clg_assert_ok(clg_graph_output(g, gb));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &guarded, &p));
    float *hxl = alloc_n(2 * C, sizeof(float)), *hx = alloc_n(R * N, sizeof(float));
    float *hgy = alloc_n(R * N, sizeof(float)), hw[N] = {0.5f, 1.0f, 2.0f}, hb[N] = {0, 1, -1};
    clg_test_rng r;
    clg_test_rng_seed(&r, 1306);
    clg_test_fill(&r, hxl, 2 * C, -5, 5);
    clg_test_fill(&r, hx, R * N, -2, 2);
    clg_test_fill(&r, hgy, R * N, -1, 1);
    write_t(p, xl, hxl);
    write_t(p, x, hx);
    write_t(p, gy, hgy);
    write_t(p, w, hw);
    write_t(p, b, hb);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    float *got = alloc_n(2 * C, sizeof(float)), *want = alloc_n(2 * C, sizeof(float));
    double *xd = alloc_n(2 * C, sizeof(double)), *ref = alloc_n(2 * C, sizeof(double));
    for (int i = 0; i < 2 * C; ++i)
        xd[i] = hxl[i];
    ref_family(2, C, xd, 0, ref);
    for (int i = 0; i < 2 * C; ++i)
        want[i] = (float)ref[i];
    read_t(p, yl, got);
    clg_assert_close(got, want, 2 * C, 1e-9, row_rtol(C));
    /* dw[c] = sum_r gy xhat, db[c] = sum_r gy, with |terms| summed for the tolerance */
    double dw[N] = {0}, db[N] = {0}, mag[N] = {0};
    for (int64_t i = 0; i < R; ++i) {
        double mean = 0, var = 0;
        for (int c = 0; c < N; ++c)
            mean += hx[i * N + c];
        mean /= N;
        for (int c = 0; c < N; ++c)
            var += (hx[i * N + c] - mean) * (hx[i * N + c] - mean);
        var /= N;
        for (int c = 0; c < N; ++c) {
            double xh = (hx[i * N + c] - mean) / sqrt(var + 1e-5);
            dw[c] += hgy[i * N + c] * xh;
            db[c] += hgy[i * N + c];
            mag[c] += fabs(hgy[i * N + c]) * (1 + fabs(xh));
        }
    }
    float gwv[N], gbv[N];
    read_t(p, gw, gwv);
    read_t(p, gb, gbv);
    for (int c = 0; c < N; ++c) {
        ck_assert_msg(fabs(gwv[c] - dw[c]) <= 1e-5 * mag[c], "dw[%d] %g vs %g", c, (double)gwv[c],
                      dw[c]);
        ck_assert_msg(fabs(gbv[c] - db[c]) <= 1e-5 * mag[c], "db[%d] %g vs %g", c, (double)gbv[c],
                      db[c]);
    }
    free(hxl);
    free(hx);
    free(hgy);
    free(got);
    free(want);
    free(xd);
    free(ref);
    clg_graph_free(g);
}
END_TEST

/* ---- kernel counts ---- */

static size_t count_kernels(clg_graph *g) {
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    size_t n = clg_plan_kernel_count(p);
    clg_plan_free(p);
    return n;
}

/* Kernels of a plan computing y and, with backward, the gradients of sum(y * gy) for x and
 * the parameters that need them. which 0: layer_norm with weight and bias (all three need
 * gradients); 1: causal softmax with a constant additive mask; 2: the same with the mask
 * needing a gradient too; 3: y = x, the baseline: the loss's own kernels. */
static size_t plan_kernels(int which, bool backward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[3] = {2, 24, 40}, ns[1] = {40}, ms[2] = {24, 40};
    static float hm[24 * 40];
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, s), *gy = clg_input(g, "gy", CLG_F32, 3, s);
    clg_tensor *w = clg_input(g, "w", CLG_F32, 1, ns), *b = clg_input(g, "b", CLG_F32, 1, ns);
    clg_tensor *mask =
        which == 2 ? clg_input(g, "mask", CLG_F32, 2, ms) : clg_constant(g, CLG_F32, 2, ms, hm);
    clg_tensor *params[3] = {x};
    int n = 1;
    if (which == 0) {
        params[n++] = w;
        params[n++] = b;
    }
    if (which == 2) params[n++] = mask;
    if (backward)
        for (int i = 0; i < n; ++i)
            clg_assert_ok(clg_requires_grad(params[i]));
    clg_tensor *y = which == 0   ? clg_layer_norm(g, x, 1, w, b, 1e-5f)
                    : which <= 2 ? clg_softmax_masked(g, x, 0.5f, mask, true)
                                 : x;
    if (!backward) {
        clg_assert_ok(clg_graph_output(g, y));
    } else {
        clg_tensor *loss = clg_sum(g, clg_mul(g, y, gy), 0, NULL, false);
        clg_assert_ok(clg_backward(g, loss));
        clg_assert_ok(clg_graph_output(g, loss));
        for (int i = 0; i < n; ++i)
            clg_assert_ok(clg_graph_output(g, clg_grad(g, params[i])));
    }
    clg_assert_ok(clg_graph_status(g));
    size_t k = count_kernels(g);
    clg_graph_free(g);
    return k;
}

START_TEST(kernel_counts) {
    ck_assert_uint_eq(plan_kernels(0, false), 1);
    ck_assert_uint_eq(plan_kernels(1, false), 1);
    ck_assert_uint_eq(plan_kernels(2, false), 1);
    size_t base = plan_kernels(3, true), ln = plan_kernels(0, true), sm = plan_kernels(1, true);
    size_t smm = plan_kernels(2, true);
    /* the forward kernel, then at most two kernels for dx, dweight and dbias */
    ck_assert_msg(ln <= base + 1 + 2, "layer_norm: %zu kernels with its gradients, baseline %zu",
                  ln, base);
    /* the forward kernel and one backward kernel */
    ck_assert_msg(sm <= base + 1 + 1, "softmax_masked: %zu kernels with its gradient, baseline %zu",
                  sm, base);
    /* a mask that needs a gradient adds its sum over the broadcast dims and x's scale */
    ck_assert_msg(smm <= base + 1 + 3,
                  "softmax_masked: %zu kernels with the mask's gradient, "
                  "baseline %zu",
                  smm, base);
}
END_TEST

/* ---- refusals ---- */

START_TEST(refusals) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {3, 5}, bad[1] = {4}, ns[1] = {5};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, s);
    ck_assert_ptr_nonnull(
        clg_softmax_masked(g, x, 1.0f, clg_input(g, "m", CLG_F32, 1, bad), false));
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    x = clg_input(g, "x", CLG_F32, 2, s);
    clg_layer_norm(g, x, 3, NULL, NULL, 1e-5f);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    x = clg_input(g, "x", CLG_F32, 2, s);
    clg_layer_norm(g, x, 1, clg_input(g, "w", CLG_F32, 1, bad), NULL, 1e-5f);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    x = clg_input(g, "x", CLG_F32, 2, s);
    clg_layer_norm(g, x, 1, clg_input(g, "w", CLG_F32, 1, ns), NULL, -1.0f);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    const int64_t one[1] = {5};
    clg_softmax_masked(g, clg_input(g, "v", CLG_F32, 1, one), 1.0f, NULL, true);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    clg_graph_free(g);
}
END_TEST

/* Every test starts in the automatic form, also after one that failed while forcing another. */
static void auto_form(void) {
    clg_rows_force(CLG_ROWS_AUTO);
}

static Suite *rows_suite(void) {
    Suite *s = suite_create("rows");
    TCase *fwd = tcase_create("forward");
    tcase_add_loop_test(fwd, masked_softmax_forward, 0, 2);
    tcase_add_loop_test(fwd, softmax_family_last_axis, 0, 2);
    tcase_add_loop_test(fwd, layer_norm_forward, 0, 2);
    tcase_add_test(fwd, kernel_counts);
    tcase_add_test(fwd, long_loops);
    tcase_add_test(fwd, refusals);
    TCase *grad = tcase_create("gradient");
    tcase_add_loop_test(grad, row_gradients, 0, 2 * N_GRAD);
    tcase_add_test(grad, fused_matches_composite);
    TCase *all[] = {fwd, grad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) {
        tcase_set_timeout(all[i], 600);
        tcase_add_checked_fixture(all[i], auto_form, NULL);
        suite_add_tcase(s, all[i]);
    }
    return s;
}

int main(void) {
    return clg_test_run(rows_suite());
}
