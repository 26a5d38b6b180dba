/* Losses and metrics on the device against plain-C (double) references: fused softmax
 * cross-entropy (every reduction, logits of magnitude 1000, odd and 3-D shapes, a transposed
 * view, out-of-range labels, the kernels a forward + backward uses), binary cross-entropy on
 * logits, MSE and Huber; gradients through the shared gradcheck helper; the accuracy count
 * and the host confusion matrix against hand-computed values; builder errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"
#include "runtime/plan.h"

/* Float32 ulp relative to the value: 2^-23. */
#define ULP 1.1920928955078125e-7

/* Central differences at eps = 1e-2 on losses of size ~1-10: truncation eps^2/6 |f'''| stays
 * below 1e-3 relative for these smooth losses, and a few ulp of rounding noise in the loss
 * (ulp ~1e-6) over 2 eps is about 1e-4 absolute. */
#define GC_EPS 1e-2f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-2f

static float *alloc_f(int64_t n) {
    float *p = calloc((size_t)(n ? n : 1), sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void read_t(clg_plan *p, clg_tensor *t, float *out) {
    clg_assert_ok(clg_plan_read(p, t, out, (size_t)clg_tensor_numel(t) * sizeof *out));
}

static void write_t(clg_plan *p, clg_tensor *t, const void *data) {
    clg_assert_ok(clg_plan_write(p, t, data, (size_t)clg_tensor_numel(t) * 4));
}

static clg_tensor *out(clg_graph *g, clg_tensor *t) {
    clg_assert_ok(clg_graph_output(g, t));
    return t;
}

/* ---- softmax cross-entropy ---- */

/* Loss of one row in double: logsumexp(x) - x[y]; NaN for a label outside [0, C). */
static double ce_row(const float *x, int64_t C, int y) {
    if (y < 0 || y >= C) return NAN;
    double m = -INFINITY, s = 0.0;
    for (int64_t c = 0; c < C; ++c) m = fmax(m, x[c]);
    for (int64_t c = 0; c < C; ++c) s += exp((double)x[c] - m);
    return (m - x[y]) + log(s);
}

/* d loss_row / d x[c] = softmax(x)[c] - (c == y). */
static void ce_row_grad(const float *x, int64_t C, int y, double *d) {
    double m = -INFINITY, s = 0.0;
    for (int64_t c = 0; c < C; ++c) m = fmax(m, x[c]);
    for (int64_t c = 0; c < C; ++c) s += exp((double)x[c] - m);
    for (int64_t c = 0; c < C; ++c) d[c] = exp((double)x[c] - m) / s - (c == y ? 1.0 : 0.0);
}

/* Forward tolerance of one row: the sum of C exponentials (3 ulp each, OpenCL 1.2 7.4) and
 * its rounding, the log (3 ulp) and the final additions, relative to the loss's size. */
static double ce_atol(int64_t C) {
    return (double)(C + 8) * 2 * ULP;
}

typedef struct ce_case {
    const char *name;
    int ndim;
    int64_t shape[3]; /* logits; the last entry is C */
} ce_case;

START_TEST(test_cross_entropy_forward) {
    /* friendly [8, 10]; odd C = 67 (more classes than lanes); C = 1 (loss 0); 3-D [2, 3, 5];
     * a row per magnitude: logits of +-1000 and 500 */
    static const ce_case cases[] = {
        {"mnist-like", 2, {8, 10}},
        {"wide", 2, {3, 67}},
        {"one class", 2, {4, 1}},
        {"3-D", 3, {2, 3, 5}},
    };
    enum { NC = sizeof cases / sizeof cases[0] };
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *x[NC], *mean[NC], *sum[NC], *none[NC];
    float *hx[NC];
    int32_t *hy[NC];
    clg_test_rng r;
    clg_test_rng_seed(&r, 7);
    for (int k = 0; k < NC; ++k) {
        const ce_case *c = &cases[k];
        int64_t n = 1;
        for (int d = 0; d < c->ndim; ++d) n *= c->shape[d];
        int64_t C = c->shape[c->ndim - 1], rows = n / C;
        hx[k] = alloc_f(n);
        clg_test_fill(&r, hx[k], (size_t)n, -3.0f, 3.0f);
        hy[k] = malloc((size_t)rows * sizeof *hy[k]);
        for (int64_t i = 0; i < rows; ++i)
            hy[k][i] = (int32_t)(clg_test_uniform(&r, 0.0f, (float)C - 0.01f));
        if (k == 0) {
            /* row 0: huge logits, label on the largest (the others at least 60 below);
             * row 1: label on the smallest; row 2: two equal huge logits */
            for (int64_t c = 0; c < C; ++c)
                hx[k][c] = c % 2 ? -1000.0f : 1000.0f - 30.0f * (float)c;
            hy[k][0] = 0;
            for (int64_t c = 0; c < C; ++c) hx[k][C + c] = c % 2 ? -1000.0f : 500.0f;
            hy[k][1] = 1;
            for (int64_t c = 0; c < C; ++c) hx[k][2 * C + c] = c < 2 ? 1000.0f : -1000.0f;
            hy[k][2] = 1;
        }
        x[k] = clg_input(g, c->name, CLG_F32, c->ndim, c->shape);
        clg_tensor *y = clg_constant(g, CLG_I32, c->ndim - 1, c->shape, hy[k]);
        mean[k] = out(g, clg_cross_entropy(g, x[k], y, CLG_REDUCTION_MEAN));
        sum[k] = out(g, clg_cross_entropy(g, x[k], y, CLG_REDUCTION_SUM));
        none[k] = out(g, clg_cross_entropy(g, x[k], y, CLG_REDUCTION_NONE));
        ck_assert_int_eq(clg_tensor_ndim(mean[k]), 0);
        ck_assert_int_eq(clg_tensor_ndim(none[k]), c->ndim - 1);
    }
    clg_assert_ok(clg_graph_status(g));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 256}, &p));
    for (int k = 0; k < NC; ++k) write_t(p, x[k], hx[k]);
    clg_assert_ok(clg_plan_run(p));
    for (int k = 0; k < NC; ++k) {
        const ce_case *c = &cases[k];
        int64_t C = c->shape[c->ndim - 1], rows = clg_tensor_numel(none[k]);
        float *got = alloc_f(rows), *want = alloc_f(rows);
        double total = 0.0, worst = 0.0;
        for (int64_t i = 0; i < rows; ++i) {
            double l = ce_row(hx[k] + i * C, C, hy[k][i]);
            want[i] = (float)l;
            total += l;
            worst = fmax(worst, fabs(l));
        }
        read_t(p, none[k], got);
        clg_assert_close(got, want, (size_t)rows, ce_atol(C), 4 * ULP);
        if (k == 0) {
            ck_assert_float_eq(got[0], 0.0f); /* exp(-60) vanishes next to 1 */
            clg_assert_close(&got[1], &(float){(float)(1500.0 + log(5.0))}, 1, ce_atol(C),
                             4 * ULP);
            clg_assert_close(&got[2], &(float){(float)log(2.0)}, 1, ce_atol(C), 4 * ULP);
        }
        /* the reduction adds one rounding per row */
        double red_tol = ce_atol(C) * (double)rows + (double)(rows + 4) * ULP * worst * rows;
        float s, m;
        read_t(p, sum[k], &s);
        read_t(p, mean[k], &m);
        clg_assert_close(&s, &(float){(float)total}, 1, red_tol, 0);
        clg_assert_close(&m, &(float){(float)(total / (double)rows)}, 1, red_tol / (double)rows,
                         0);
        free(got);
        free(want);
    }
    clg_assert_ok(clg_plan_check_guards(p));
    for (int k = 0; k < NC; ++k) {
        free(hx[k]);
        free(hy[k]);
    }
    clg_graph_free(g);
}
END_TEST

/* A transposed (non-contiguous) view of logits, and labels outside [0, C): only that row
 * becomes NaN, in the loss and in its gradient. */
START_TEST(test_cross_entropy_view_and_bad_labels) {
    enum { N = 5, C = 4 };
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t ts[2] = {C, N}, ys = N;
    float hxt[C * N], hx[N * C];
    clg_test_rng r;
    clg_test_rng_seed(&r, 8);
    clg_test_fill(&r, hxt, C * N, -2.0f, 2.0f);
    for (int i = 0; i < N; ++i)
        for (int c = 0; c < C; ++c) hx[i * C + c] = hxt[c * N + i];
    const int32_t hy[N] = {3, -1, 0, C, 2};
    clg_tensor *xt = clg_input(g, "xt", CLG_F32, 2, ts);
    clg_assert_ok(clg_requires_grad(xt));
    clg_tensor *y = clg_constant(g, CLG_I32, 1, &ys, hy);
    clg_tensor *rows = out(g, clg_cross_entropy(g, clg_transpose(g, xt, 0, 1), y,
                                                CLG_REDUCTION_NONE));
    clg_tensor *loss = clg_sum(g, rows, 0, NULL, false);
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *dxt = out(g, clg_grad(g, xt));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, xt, hxt);
    clg_assert_ok(clg_plan_run(p));
    float got[N], dgot[C * N];
    read_t(p, rows, got);
    read_t(p, dxt, dgot);
    for (int i = 0; i < N; ++i) {
        bool bad = hy[i] < 0 || hy[i] >= C;
        double d[C];
        ce_row_grad(hx + i * C, C, hy[i], d);
        if (bad) {
            ck_assert_msg(isnan(got[i]), "row %d with label %d: loss %g, want NaN", i, hy[i],
                          (double)got[i]);
        } else {
            clg_assert_close(&got[i], &(float){(float)ce_row(hx + i * C, C, hy[i])}, 1,
                             ce_atol(C), 4 * ULP);
        }
        for (int c = 0; c < C; ++c) {
            float v = dgot[c * N + i];
            if (bad)
                ck_assert_msg(isnan(v), "gradient row %d: %g, want NaN", i, (double)v);
            else
                clg_assert_close(&v, &(float){(float)d[c]}, 1, ce_atol(C), 0);
        }
    }
    clg_graph_free(g);
}
END_TEST

/* Gradients against finite differences through each way the row gradient arrives: the mean
 * and the sum (a broadcast scalar), per-row weights (dense), a transposed 3-D gradient (copied
 * dense) and a label-free mix of reductions. */
START_TEST(test_cross_entropy_grad) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s2[2] = {4, 6}, s3[3] = {2, 3, 5}, s1 = 4, s1b[2] = {2, 3};
    float v[4][30];
    clg_test_rng r;
    clg_test_rng_seed(&r, 9);
    for (int k = 0; k < 4; ++k) clg_test_fill(&r, v[k], 30, -2.0f, 2.0f);
    clg_gc_input in[4] = {
        {clg_input(g, "mean", CLG_F32, 2, s2), v[0], "cross_entropy mean"},
        {clg_input(g, "sum", CLG_F32, 2, s2), v[1], "cross_entropy sum"},
        {clg_input(g, "none", CLG_F32, 2, s2), v[2], "cross_entropy none, weighted"},
        {clg_input(g, "3d", CLG_F32, 3, s3), v[3], "cross_entropy 3-D, transposed gradient"},
    };
    clg_gc_require(in, 4);
    const int32_t y1[4] = {0, 5, 2, 2}, y3[6] = {4, 0, 1, 3, 2, 2};
    clg_tensor *lab = clg_constant(g, CLG_I32, 1, &s1, y1);
    clg_tensor *lab3 = clg_constant(g, CLG_I32, 2, s1b, y3);
    clg_tensor *loss = clg_cross_entropy(g, in[0].tensor, lab, CLG_REDUCTION_MEAN);
    loss = clg_add(g, loss, clg_mul_scalar(g, clg_cross_entropy(g, in[1].tensor, lab,
                                                                CLG_REDUCTION_SUM), 0.5f));
    loss = clg_add(g, loss, clg_gc_weighted_sum(
                                g, clg_cross_entropy(g, in[2].tensor, lab, CLG_REDUCTION_NONE),
                                31u));
    clg_tensor *rows3 = clg_cross_entropy(g, in[3].tensor, lab3, CLG_REDUCTION_NONE);
    loss = clg_add(g, loss, clg_gc_weighted_sum(g, clg_transpose(g, rows3, 0, 1), 32u));
    clg_assert_ok(clg_graph_status(g));
    clg_gradcheck(g, loss, in, 4, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

static int count_steps(const clg_plan *p, const char *label) {
    int n = 0;
    for (size_t i = 0; i < p->n_steps; ++i) n += strcmp(p->steps[i].label, label) == 0;
    return n;
}

/* A forward + backward spends one kernel on the loss rows and one on their gradient; with
 * the mean folded into the rows, the whole thing is 3 kernels (rows, their sum, gradient).
 * In a training step (linear layer, optimizer) the loss part is still those two fused ops. */
START_TEST(test_cross_entropy_kernels) {
    clg_context *ctx = clg_test_context();
    enum { N = 6, C = 10, IN = 7 };
    clg_graph *g = clg_graph_new(ctx);
    const int64_t s[2] = {N, C}, sn = N;
    const int32_t hy[N] = {1, 2, 3, 4, 5, 9};
    clg_tensor *x = clg_input(g, "logits", CLG_F32, 2, s);
    clg_assert_ok(clg_requires_grad(x));
    clg_tensor *loss = out(g, clg_cross_entropy(g, x, clg_constant(g, CLG_I32, 1, &sn, hy),
                                                CLG_REDUCTION_MEAN));
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *dx = out(g, clg_grad(g, x));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    ck_assert_int_eq(count_steps(p, "cross_entropy"), 1);
    ck_assert_int_eq(count_steps(p, "cross_entropy_grad"), 1);
    ck_assert_uint_eq(clg_plan_kernel_count(p), 3);
    /* and the values of that minimal plan */
    float hx[N * C], got[N * C], want[N * C], l;
    double lsum = 0.0;
    clg_test_rng r;
    clg_test_rng_seed(&r, 10);
    clg_test_fill(&r, hx, N * C, -4.0f, 4.0f);
    write_t(p, x, hx);
    clg_assert_ok(clg_plan_run(p));
    read_t(p, loss, &l);
    read_t(p, dx, got);
    for (int i = 0; i < N; ++i) {
        double d[C];
        lsum += ce_row(hx + i * C, C, hy[i]);
        ce_row_grad(hx + i * C, C, hy[i], d);
        for (int c = 0; c < C; ++c) want[i * C + c] = (float)(d[c] / N);
    }
    clg_assert_close(&l, &(float){(float)(lsum / N)}, 1, ce_atol(C) * 2, 0);
    clg_assert_close(got, want, N * C, ce_atol(C) / N, 0);
    clg_graph_free(g);

    /* a training step */
    clg_linear fc;
    clg_assert_ok(clg_linear_init(ctx, &fc, "ce_kernels_fc", IN, C, true, 5));
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_SGD);
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    ck_assert_ptr_nonnull(opt);
    g = clg_graph_new(ctx);
    const int64_t sx[2] = {N, IN};
    clg_tensor *in = clg_input(g, "x", CLG_F32, 2, sx);
    clg_tensor *lab = clg_input(g, "y", CLG_I32, 1, &sn);
    loss = out(g, clg_cross_entropy(g, clg_linear_forward(g, &fc, in), lab, CLG_REDUCTION_MEAN));
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_optimizer_apply(opt, g, NULL));
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    ck_assert_int_eq(count_steps(p, "cross_entropy"), 1);
    ck_assert_int_eq(count_steps(p, "cross_entropy_grad"), 1);
    clg_graph_free(g);
    clg_optimizer_free(opt);
}
END_TEST

/* ---- binary cross-entropy, MSE, Huber ---- */

static double bce_ref(double x, double t) {
    return fmax(x, 0.0) - x * t + log1p(exp(-fabs(x)));
}

static double huber_ref(double d, double delta) {
    double a = fabs(d);
    return a < delta ? 0.5 * d * d : delta * (a - 0.5 * delta);
}

enum { PW_N = 13 };

START_TEST(test_pointwise_losses_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {PW_N, 1};
    float hx[PW_N], ht[PW_N], hp[PW_N];
    clg_test_rng r;
    clg_test_rng_seed(&r, 11);
    clg_test_fill(&r, hx, PW_N, -6.0f, 6.0f);
    clg_test_fill(&r, ht, PW_N, 0.0f, 1.0f);
    clg_test_fill(&r, hp, PW_N, -3.0f, 3.0f);
    /* extremes: the stable form must stay finite and exact */
    hx[0] = 100.0f, ht[0] = 1.0f;
    hx[1] = -100.0f, ht[1] = 1.0f;
    hx[2] = 100.0f, ht[2] = 0.0f;
    hx[3] = 0.0f, ht[3] = 0.5f;
    hx[4] = -1000.0f, ht[4] = 0.0f;
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, s), *t = clg_input(g, "t", CLG_F32, 2, s);
    clg_tensor *pr = clg_input(g, "p", CLG_F32, 2, s);
    const float delta = 1.5f;
    clg_tensor *res[3][CLG_REDUCTION_COUNT];
    for (int red = 0; red < CLG_REDUCTION_COUNT; ++red) {
        res[0][red] = out(g, clg_bce_with_logits(g, x, t, (clg_reduction)red));
        res[1][red] = out(g, clg_mse_loss(g, pr, t, (clg_reduction)red));
        res[2][red] = out(g, clg_huber_loss(g, pr, t, delta, (clg_reduction)red));
    }
    clg_assert_ok(clg_graph_status(g));
    ck_assert_int_eq(clg_tensor_ndim(res[0][CLG_REDUCTION_MEAN]), 0);
    ck_assert_int_eq(clg_tensor_ndim(res[2][CLG_REDUCTION_NONE]), 2);
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, hx);
    write_t(p, t, ht);
    write_t(p, pr, hp);
    clg_assert_ok(clg_plan_run(p));
    static const char *const names[3] = {"bce_with_logits", "mse", "huber"};
    for (int k = 0; k < 3; ++k) {
        float want[PW_N], got[PW_N];
        double total = 0.0, worst = 0.0;
        for (int i = 0; i < PW_N; ++i) {
            double v = k == 0 ? bce_ref(hx[i], ht[i])
                     : k == 1 ? ((double)hp[i] - ht[i]) * ((double)hp[i] - ht[i])
                              : huber_ref((double)hp[i] - ht[i], delta);
            want[i] = (float)v;
            total += v;
            worst = fmax(worst, fabs(v));
        }
        read_t(p, res[k][CLG_REDUCTION_NONE], got);
        for (int i = 0; i < PW_N; ++i)
            ck_assert_msg(isfinite(got[i]), "%s [%d] = %g", names[k], i, (double)got[i]);
        /* exp, log (3 ulp each) on values below 1 plus the additions, each an ulp of the
         * largest term (|x| up to 1000 for bce) */
        double atol = 16 * ULP, rtol = 8 * ULP;
        clg_assert_close(got, want, PW_N, atol, rtol);
        float s, m;
        read_t(p, res[k][CLG_REDUCTION_SUM], &s);
        read_t(p, res[k][CLG_REDUCTION_MEAN], &m);
        double red_tol = PW_N * atol + (PW_N + 4) * ULP * worst * PW_N;
        clg_assert_close(&s, &(float){(float)total}, 1, red_tol, 0);
        clg_assert_close(&m, &(float){(float)(total / PW_N)}, 1, red_tol / PW_N, 0);
    }
    clg_graph_free(g);
}
END_TEST

START_TEST(test_pointwise_losses_grad) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {3, 5};
    float vx[15], vp[15], vq[15], vt[15];
    clg_test_rng r;
    clg_test_rng_seed(&r, 12);
    clg_test_fill(&r, vx, 15, -4.0f, 4.0f);
    clg_test_fill(&r, vt, 15, 0.0f, 1.0f);
    clg_test_fill(&r, vp, 15, -2.0f, 2.0f);
    clg_test_fill(&r, vq, 15, -4.0f, 4.0f);
    vx[0] = 0.0f; /* the tie point of max(x, 0) and |x| */
    /* Huber: keep |p - t| away from delta = 1 by more than eps, where the second derivative
     * jumps (the gradient itself is continuous) */
    for (int i = 0; i < 15; ++i)
        if (fabsf(fabsf(vq[i] - vt[i]) - 1.0f) < 0.05f) vq[i] += 0.2f;
    clg_gc_input in[3] = {
        {clg_input(g, "bce x", CLG_F32, 2, s), vx, "bce_with_logits logits"},
        {clg_input(g, "mse p", CLG_F32, 2, s), vp, "mse_loss pred"},
        {clg_input(g, "huber p", CLG_F32, 2, s), vq, "huber_loss pred"},
    };
    clg_gc_require(in, 3);
    clg_tensor *t = clg_constant(g, CLG_F32, 2, s, vt);
    clg_tensor *loss = clg_bce_with_logits(g, in[0].tensor, t, CLG_REDUCTION_SUM);
    loss = clg_add(g, loss, clg_mse_loss(g, in[1].tensor, t, CLG_REDUCTION_MEAN));
    loss = clg_add(g, loss, clg_gc_weighted_sum(
                                g, clg_huber_loss(g, in[2].tensor, t, 1.0f, CLG_REDUCTION_NONE),
                                41u));
    clg_assert_ok(clg_graph_status(g));
    clg_gradcheck(g, loss, in, 3, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

/* The BCE gradient at logit 0 is sigmoid(0) - t exactly, not a one-sided subgradient. */
START_TEST(test_bce_grad_at_zero) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s = 3;
    const float hx[3] = {0.0f, 0.0f, 0.0f}, ht[3] = {0.0f, 0.25f, 1.0f};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 1, &s);
    clg_assert_ok(clg_requires_grad(x));
    clg_tensor *loss = out(g, clg_bce_with_logits(g, x, clg_constant(g, CLG_F32, 1, &s, ht),
                                                  CLG_REDUCTION_SUM));
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *dx = out(g, clg_grad(g, x));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, hx);
    clg_assert_ok(clg_plan_run(p));
    float got[3], l;
    const float want[3] = {0.5f, 0.25f, -0.5f};
    read_t(p, dx, got);
    read_t(p, loss, &l);
    clg_assert_close(got, want, 3, 4 * ULP, 0);
    clg_assert_close(&l, &(float){(float)(3 * log(2.0))}, 1, 16 * ULP, 0);
    clg_graph_free(g);
}
END_TEST

/* ---- metrics ---- */

START_TEST(test_accuracy_count) {
    clg_graph *g = clg_graph_new(clg_test_context());
    enum { N = 6, C = 4 };
    const int64_t s[2] = {N, C}, sn = N, s3[3] = {2, 3, C}, sl3[2] = {2, 3};
    /* argmax per row: 2, 0 (first of a tie), 3, 1, 0 (all equal), 3 */
    const float hx[N * C] = {0, 1, 5, 2,  7, 1, 7, 0,  -1, -2, -3, 4,
                             0, 9, 1, 2,  3, 3, 3, 3,  1, 1, 1, 1.5f};
    const int32_t hy[N] = {2, 2, 3, 1, 1, 3}; /* correct: rows 0, 2, 3, 5 */
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, s);
    clg_tensor *y = clg_input(g, "y", CLG_I32, 1, &sn);
    clg_tensor *acc = out(g, clg_accuracy_count(g, x, y));
    clg_tensor *pred = out(g, clg_argmax(g, x, -1, false));
    /* the same rows as [2, 3, C] */
    clg_tensor *acc3 = out(g, clg_accuracy_count(g, clg_reshape(g, x, 3, s3),
                                                 clg_reshape(g, y, 2, sl3)));
    clg_assert_ok(clg_graph_status(g));
    ck_assert_int_eq(clg_tensor_ndim(acc), 0);
    ck_assert_int_eq(clg_tensor_dtype(acc), CLG_F32);
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_t(p, x, hx);
    write_t(p, y, hy);
    clg_assert_ok(clg_plan_run(p));
    float a, a3;
    int32_t hp[N];
    read_t(p, acc, &a);
    read_t(p, acc3, &a3);
    clg_assert_ok(clg_plan_read(p, pred, hp, sizeof hp));
    ck_assert_float_eq(a, 4.0f);
    ck_assert_float_eq(a3, 4.0f);
    const int32_t want_pred[N] = {2, 0, 3, 1, 0, 3};
    for (int i = 0; i < N; ++i) ck_assert_int_eq(hp[i], want_pred[i]);

    /* the confusion matrix of those predictions */
    clg_confusion *cm;
    clg_assert_ok(clg_confusion_new(C, &cm));
    clg_assert_ok(clg_confusion_add(cm, hp, hy, N));
    ck_assert_int_eq(clg_confusion_classes(cm), C);
    ck_assert_int_eq(clg_confusion_total(cm), N);
    ck_assert_int_eq(clg_confusion_count(cm, 2, 2), 1);
    ck_assert_int_eq(clg_confusion_count(cm, 2, 0), 1);
    ck_assert_int_eq(clg_confusion_count(cm, 1, 0), 1);
    ck_assert_int_eq(clg_confusion_count(cm, 3, 3), 2);
    ck_assert_int_eq(clg_confusion_count(cm, 1, 1), 1);
    ck_assert_int_eq(clg_confusion_count(cm, 0, 0), 0);
    ck_assert_int_eq(clg_confusion_count(cm, 9, 0), 0); /* out of range reads 0 */
    ck_assert_double_eq_tol(clg_confusion_accuracy(cm), 4.0 / 6.0, 1e-12);
    ck_assert_double_eq_tol(clg_confusion_recall(cm, 2), 0.5, 1e-12);
    ck_assert_double_eq_tol(clg_confusion_recall(cm, 0), 0.0, 1e-12);
    clg_confusion_free(cm);
    clg_graph_free(g);
}
END_TEST

START_TEST(test_confusion_host) {
    clg_confusion *c = NULL;
    ck_assert_int_eq(clg_confusion_new(0, &c), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(c);
    clg_assert_ok(clg_confusion_new(3, &c));
    ck_assert_double_eq(clg_confusion_accuracy(c), 0.0);
    const int32_t lab[10] = {0, 0, 0, 1, 1, 2, 2, 2, 2, 2};
    const int32_t pred[10] = {0, 1, 0, 1, 1, 2, 0, 2, 2, 1};
    clg_assert_ok(clg_confusion_add(c, pred, lab, 10));
    const int64_t want[3][3] = {{2, 1, 0}, {0, 2, 0}, {1, 1, 3}};
    for (int k = 0; k < 3; ++k)
        for (int q = 0; q < 3; ++q) ck_assert_int_eq(clg_confusion_count(c, k, q), want[k][q]);
    ck_assert_double_eq_tol(clg_confusion_accuracy(c), 0.7, 1e-12);
    /* a bad pair rejects the whole call */
    const int32_t bad_pred[2] = {0, 3}, bad_lab[2] = {0, 0};
    ck_assert_int_eq(clg_confusion_add(c, bad_pred, bad_lab, 2), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "predicted 3"));
    ck_assert_int_eq(clg_confusion_total(c), 10);
    ck_assert_int_eq(clg_confusion_count(c, 0, 0), 2);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    clg_assert_ok(clg_confusion_print(c, f));
    fclose(f);
    /* header with the predicted classes, one row per label with its counts and recall */
    const char *want_text = "       predicted\n"
                            "label  0 1 2  recall\n"
                            "    0  2 1 0   66.7%\n"
                            "    1  0 2 0  100.0%\n"
                            "    2  1 1 3   60.0%\n"
                            "accuracy 70.00% of 10\n";
    ck_assert_str_eq(text, want_text);
    free(text);
    clg_confusion_reset(c);
    ck_assert_int_eq(clg_confusion_total(c), 0);
    ck_assert_int_eq(clg_confusion_count(c, 2, 2), 0);
    clg_confusion_free(c);
    clg_confusion_free(NULL);
}
END_TEST

/* ---- builder errors: sticky, naming the op and the shapes ---- */

static void expect_error(clg_graph *g, clg_status st, const char *a, const char *b) {
    ck_assert_int_eq(clg_graph_status(g), st);
    const char *msg = clg_graph_error(g);
    ck_assert_msg(strstr(msg, a) && (!b || strstr(msg, b)), "message '%s' lacks '%s' / '%s'", msg,
                  a, b ? b : "");
    clg_graph_free(g);
}

START_TEST(test_loss_errors) {
    clg_context *ctx = clg_test_context();
    const int64_t s[2] = {4, 3}, s4 = 4, s5 = 5, s43[2] = {4, 3};
    clg_graph *g = clg_graph_new(ctx);
    clg_cross_entropy(g, clg_input(g, "x", CLG_F32, 2, s), clg_input(g, "y", CLG_F32, 1, &s4),
                      CLG_REDUCTION_MEAN);
    expect_error(g, CLG_ERR_DTYPE, "cross_entropy", "[4] f32");

    g = clg_graph_new(ctx);
    clg_cross_entropy(g, clg_input(g, "x", CLG_F32, 2, s), clg_input(g, "y", CLG_I32, 1, &s5),
                      CLG_REDUCTION_SUM);
    expect_error(g, CLG_ERR_SHAPE, "cross_entropy", "[4, 3] and labels [5]");

    g = clg_graph_new(ctx);
    clg_cross_entropy(g, clg_input(g, "x", CLG_F32, 2, s), clg_input(g, "y", CLG_I32, 2, s43),
                      CLG_REDUCTION_SUM);
    expect_error(g, CLG_ERR_SHAPE, "cross_entropy", "labels [4, 3]");

    g = clg_graph_new(ctx);
    clg_cross_entropy(g, clg_input(g, "x", CLG_F32, 2, s), clg_input(g, "y", CLG_I32, 1, &s4),
                      (clg_reduction)7);
    expect_error(g, CLG_ERR_INVALID_ARGUMENT, "cross_entropy", "reduction 7");

    g = clg_graph_new(ctx);
    clg_mse_loss(g, clg_input(g, "p", CLG_F32, 2, s), clg_input(g, "t", CLG_F32, 1, &s4),
                 CLG_REDUCTION_MEAN);
    expect_error(g, CLG_ERR_SHAPE, "mse_loss", "pred [4, 3] and target [4]");

    g = clg_graph_new(ctx);
    clg_bce_with_logits(g, clg_input(g, "p", CLG_F32, 2, s), clg_input(g, "t", CLG_I32, 2, s),
                        CLG_REDUCTION_MEAN);
    expect_error(g, CLG_ERR_DTYPE, "bce_with_logits", "[4, 3] i32");

    g = clg_graph_new(ctx);
    clg_huber_loss(g, clg_input(g, "p", CLG_F32, 2, s), clg_input(g, "t", CLG_F32, 2, s), 0.0f,
                   CLG_REDUCTION_MEAN);
    expect_error(g, CLG_ERR_INVALID_ARGUMENT, "huber_loss", "delta 0");

    g = clg_graph_new(ctx);
    clg_accuracy_count(g, clg_input(g, "x", CLG_F32, 2, s), clg_input(g, "y", CLG_I32, 1, &s5));
    expect_error(g, CLG_ERR_SHAPE, "accuracy_count", "[4, 3]");

    /* a poisoned graph stays poisoned: later builders are no-ops */
    g = clg_graph_new(ctx);
    clg_tensor *bad = clg_mse_loss(g, clg_input(g, "p", CLG_F32, 2, s),
                                   clg_input(g, "t", CLG_F32, 1, &s4), CLG_REDUCTION_MEAN);
    clg_tensor *later = clg_cross_entropy(g, bad, clg_input(g, "y", CLG_I32, 1, &s4),
                                          CLG_REDUCTION_MEAN);
    ck_assert_ptr_eq(bad, later);
    expect_error(g, CLG_ERR_SHAPE, "mse_loss", NULL);
}
END_TEST

static Suite *loss_suite(void) {
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("device");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_cross_entropy_forward);
    tcase_add_test(tc, test_cross_entropy_view_and_bad_labels);
    tcase_add_test(tc, test_cross_entropy_grad);
    tcase_add_test(tc, test_cross_entropy_kernels);
    tcase_add_test(tc, test_pointwise_losses_forward);
    tcase_add_test(tc, test_pointwise_losses_grad);
    tcase_add_test(tc, test_bce_grad_at_zero);
    tcase_add_test(tc, test_accuracy_count);
    tcase_add_test(tc, test_confusion_host);
    tcase_add_test(tc, test_loss_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return clg_test_run(loss_suite());
}
