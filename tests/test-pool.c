/* Pooling on the device against plain-C references: max_pool2d (inputs without ties; NaN
 * propagation), avg_pool2d (count_include_pad) and global_avg_pool2d, forward and gradients
 * for a grid of windows (overlapping, padded, non-square, default stride, a strided input
 * view) in one graph; relu -> max_pool2d, whose relu gate the pooling's backward applies;
 * central finite differences on small shapes; error messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

typedef enum pool_kind { POOL_MAX, POOL_AVG, POOL_GLOBAL } pool_kind;

typedef struct pool_case {
    const char *name;
    int64_t n, c, h, w;
    clg_pool2d_params p;
    bool transposed_x; /* x is a transposed view of an input [N, C, W, H] */
} pool_case;

static const pool_case grid[] = {
    {"2x2 stride 2 on odd 7x9", 2, 3, 7, 9, {.kernel_h = 2, .kernel_w = 2}, false},
    {"3x3 stride 2 pad 1", 2, 3, 8, 7, {3, 3, 2, 2, 1, 1}, false},
    {"3x3 stride 1 pad 1 (overlapping)", 1, 5, 5, 6, {3, 3, 1, 1, 1, 1}, false},
    {"2x3 stride (1,2) pad (1,1)", 2, 2, 6, 7, {2, 3, 1, 2, 1, 1}, false},
    {"3x2 stride 3x1, batch 1, C1", 1, 1, 9, 4, {3, 2, 3, 1, 0, 0}, false},
    {"2x2 on a transposed view", 2, 3, 6, 5, {.kernel_h = 2, .kernel_w = 2}, true},
    {"2x2 stride 3 (gaps between windows) on 8x10", 2, 2, 8, 10, {2, 2, 3, 3, 0, 0}, false},
    {"3x3 stride 3 on 9x7", 1, 2, 9, 7, {3, 3, 3, 3, 0, 0}, false},
};
#define N_GRID (int)(sizeof grid / sizeof grid[0])

static int64_t stride_or(int s, int k) {
    return s ? s : k;
}

static void out_size(const pool_case *pc, int64_t *oh, int64_t *ow) {
    const clg_pool2d_params *p = &pc->p;
    *oh = (pc->h + 2 * p->pad_h - p->kernel_h) / stride_or(p->stride_h, p->kernel_h) + 1;
    *ow = (pc->w + 2 * p->pad_w - p->kernel_w) / stride_or(p->stride_w, p->kernel_w) + 1;
}

/* Forward and the gradient of sum(y * gy) for max or average pooling of dense x. Max: the
 * first maximum of each window in row-major order gets the window's gradient. */
static void pool_ref(pool_kind kind, const pool_case *pc, const float *x, const float *gy, float *y,
                     float *dx) {
    const clg_pool2d_params *p = &pc->p;
    int64_t oh, ow, sh = stride_or(p->stride_h, p->kernel_h);
    int64_t sw = stride_or(p->stride_w, p->kernel_w);
    out_size(pc, &oh, &ow);
    memset(dx, 0, (size_t)(pc->n * pc->c * pc->h * pc->w) * sizeof *dx);
    for (int64_t nc = 0; nc < pc->n * pc->c; ++nc)
        for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) {
                int64_t yi = (nc * oh + oy) * ow + ox, arg = -1;
                double sum = 0.0;
                float m = 0.0f;
                for (int64_t i = 0; i < p->kernel_h; ++i)
                    for (int64_t j = 0; j < p->kernel_w; ++j) {
                        int64_t iy = oy * sh - p->pad_h + i, ix = ox * sw - p->pad_w + j;
                        if (iy < 0 || iy >= pc->h || ix < 0 || ix >= pc->w) continue;
                        int64_t xi = (nc * pc->h + iy) * pc->w + ix;
                        sum += x[xi];
                        if (arg < 0 || x[xi] > m || (isnan(x[xi]) && !isnan(m))) {
                            m = x[xi];
                            arg = xi;
                        }
                    }
                if (kind == POOL_MAX) {
                    y[yi] = m;
                    dx[arg] += gy[yi];
                    continue;
                }
                double area = (double)(p->kernel_h * p->kernel_w);
                y[yi] = (float)(sum / area);
                for (int64_t i = 0; i < p->kernel_h; ++i)
                    for (int64_t j = 0; j < p->kernel_w; ++j) {
                        int64_t iy = oy * sh - p->pad_h + i, ix = ox * sw - p->pad_w + j;
                        if (iy < 0 || iy >= pc->h || ix < 0 || ix >= pc->w) continue;
                        dx[(nc * pc->h + iy) * pc->w + ix] += (float)(gy[yi] / area);
                    }
            }
}

static float *alloc_f(int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fill(float *v, int64_t n, uint64_t seed, float lo, float hi) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, (size_t)n, lo, hi);
}

/* Distinct values spaced by `gap` in random order: no ties, and a perturbation below gap / 2
 * never changes which element is a window's maximum. */
static void fill_distinct(float *v, int64_t n, uint64_t seed, float gap) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; ++i)
        v[i] = (float)(i - n / 2) * gap;
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = (int64_t)(clg_test_uniform(&r, 0.0f, 1.0f) * (float)(i + 1));
        if (j > i) j = i;
        float t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* Transpose the last two axes of a dense [NC, A, B] array into [NC, B, A]. */
static void transpose_hw(const float *src, int64_t nc, int64_t a, int64_t b, float *dst) {
    for (int64_t k = 0; k < nc; ++k)
        for (int64_t i = 0; i < a; ++i)
            for (int64_t j = 0; j < b; ++j)
                dst[(k * b + j) * a + i] = src[(k * a + i) * b + j];
}

static void check_tensor(clg_plan *p, clg_tensor *t, const float *want, int64_t n, double atol,
                         double rtol, const char *what) {
    ck_assert_msg(t != NULL, "%s: no tensor", what);
    ck_assert_int_eq(clg_tensor_numel(t), n);
    float *got = alloc_f(n);
    clg_assert_ok(clg_plan_read(p, t, got, (size_t)n * sizeof *got));
    for (int64_t i = 0; i < n; ++i) {
        bool ok = isnan(want[i]) ? isnan(got[i])
                                 : fabs((double)got[i] - want[i]) <= atol + rtol * fabs(want[i]);
        if (!ok) {
            double gv = got[i], wv = want[i];
            free(got);
            ck_abort_msg("%s: element %lld of %lld is %.7g, want %.7g", what, (long long)i,
                         (long long)n, gv, wv);
        }
    }
    free(got);
}

typedef struct pool_run {
    pool_kind kind;
    const pool_case *pc;
    float *x, *xin, *gy;
    clg_tensor *tx, *y;
    int64_t ny;
} pool_run;

START_TEST(pool_grid) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    static const pool_case global_case = {"global", 2, 3, 5, 4, {0}, false};
    pool_run runs[2 * N_GRID + 1];
    int nr = 0;
    clg_tensor *loss = NULL;
    for (int i = 0; i < 2 * N_GRID + 1; ++i) {
        pool_run *r = &runs[nr++];
        r->kind = i == 2 * N_GRID ? POOL_GLOBAL : (i % 2 ? POOL_AVG : POOL_MAX);
        r->pc = r->kind == POOL_GLOBAL ? &global_case : &grid[i / 2];
        const pool_case *pc = r->pc;
        int64_t nx = pc->n * pc->c * pc->h * pc->w, oh = 1, ow = 1;
        if (r->kind != POOL_GLOBAL) out_size(pc, &oh, &ow);
        r->ny = pc->n * pc->c * oh * ow;
        r->x = alloc_f(nx);
        r->xin = alloc_f(nx);
        r->gy = alloc_f(r->ny);
        fill_distinct(r->x, nx, 10 + (uint64_t)i, 0.01f);
        fill(r->gy, r->ny, 50 + (uint64_t)i, 0.5f, 1.5f);
        if (pc->transposed_x) {
            transpose_hw(r->x, pc->n * pc->c, pc->h, pc->w, r->xin);
            r->tx = clg_input(g, "xt", CLG_F32, 4, (int64_t[]){pc->n, pc->c, pc->w, pc->h});
        } else {
            memcpy(r->xin, r->x, (size_t)nx * sizeof *r->x);
            r->tx = clg_input(g, "x", CLG_F32, 4, (int64_t[]){pc->n, pc->c, pc->h, pc->w});
        }
        clg_assert_ok(clg_requires_grad(r->tx));
        clg_tensor *x = pc->transposed_x ? clg_transpose(g, r->tx, 2, 3) : r->tx;
        r->y = r->kind == POOL_MAX   ? clg_max_pool2d(g, x, &pc->p)
               : r->kind == POOL_AVG ? clg_avg_pool2d(g, x, &pc->p)
                                     : clg_global_avg_pool2d(g, x);
        ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s: %s", pc->name, clg_graph_error(g));
        const int64_t ys[4] = {pc->n, pc->c, oh, ow};
        ck_assert_int_eq(clg_tensor_ndim(r->y), 4);
        for (int d = 0; d < 4; ++d)
            ck_assert_msg(clg_tensor_shape(r->y)[d] == ys[d],
                          "%s: output dim %d is %lld, want %lld", pc->name, d,
                          (long long)clg_tensor_shape(r->y)[d], (long long)ys[d]);
        clg_tensor *term =
            clg_sum(g, clg_mul(g, r->y, clg_constant(g, CLG_F32, 4, ys, r->gy)), 0, NULL, false);
        loss = loss ? clg_add(g, loss, term) : term;
        clg_assert_ok(clg_graph_output(g, r->y));
    }
    clg_assert_ok(clg_backward(g, loss));
    for (int i = 0; i < nr; ++i)
        clg_assert_ok(clg_graph_output(g, clg_grad(g, runs[i].tx)));
    clg_compile_options opts = {.guard_bytes = 64};
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &opts, &p));
    for (int i = 0; i < nr; ++i)
        clg_assert_ok(clg_plan_write(p, runs[i].tx, runs[i].xin,
                                     (size_t)clg_tensor_numel(runs[i].tx) * sizeof(float)));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_finish(p));
    clg_assert_ok(clg_plan_check_guards(p));
    static const char *kind_name[] = {"max_pool2d", "avg_pool2d", "global_avg_pool2d"};
    for (int i = 0; i < nr; ++i) {
        pool_run *r = &runs[i];
        const pool_case *pc = r->pc;
        int64_t nx = pc->n * pc->c * pc->h * pc->w;
        float *y = alloc_f(r->ny), *dx = alloc_f(nx);
        if (r->kind == POOL_GLOBAL) {
            pool_case whole = *pc;
            whole.p = (clg_pool2d_params){(int)pc->h, (int)pc->w, 1, 1, 0, 0};
            pool_ref(POOL_AVG, &whole, r->x, r->gy, y, dx);
        } else {
            pool_ref(r->kind, pc, r->x, r->gy, y, dx);
        }
        if (pc->transposed_x) {
            float *t = alloc_f(nx);
            transpose_hw(dx, pc->n * pc->c, pc->h, pc->w, t);
            free(dx);
            dx = t;
        }
        char what[200];
        snprintf(what, sizeof what, "%s %s: forward", kind_name[r->kind], pc->name);
        check_tensor(p, r->y, y, r->ny, 1e-6, 1e-5, what);
        snprintf(what, sizeof what, "%s %s: d/dx", kind_name[r->kind], pc->name);
        check_tensor(p, clg_grad(g, r->tx), dx, nx, 1e-6, 1e-5, what);
        free(y);
        free(dx);
        free(r->x);
        free(r->xin);
        free(r->gy);
    }
    clg_plan_free(p);
    clg_graph_free(g);
}
END_TEST

/* A NaN wins every window it is in, as in PyTorch. */
START_TEST(max_pool_nan) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float x[16];
    fill_distinct(x, 16, 3, 0.1f);
    x[5] = NAN; /* row 1, column 1 */
    clg_tensor *tx = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 1, 4, 4});
    clg_tensor *y = clg_max_pool2d(g, tx, &(clg_pool2d_params){3, 3, 1, 1, 1, 1});
    clg_assert_ok(clg_graph_output(g, y));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, tx, x, sizeof x));
    clg_assert_ok(clg_plan_run(p));
    float got[16];
    clg_assert_ok(clg_plan_read(p, y, got, sizeof got));
    for (int i = 0; i < 16; ++i) {
        int oy = i / 4, ox = i % 4;
        bool covers = oy <= 2 && ox <= 2; /* windows centred within 1 of (1, 1) */
        ck_assert_msg(covers == (bool)isnan(got[i]), "output (%d, %d) is %g", oy, ox,
                      (double)got[i]);
    }
    clg_graph_free(g);
}
END_TEST

/* The 2 x 2 kernels' NaN rule, forward and backward, in their scalar and four-window vector
 * paths (rows of ten windows: two vector steps and a scalar tail): a NaN takes the lead from a
 * number wherever it sits in the window, and the first of two NaNs keeps it. */
START_TEST(max_pool_nan_2x2) {
    const pool_case pc = {"2x2 with NaN", 1, 2, 4, 20, {.kernel_h = 2, .kernel_w = 2}, false};
    float x[160], gy[40], y[40], dx[160];
    fill_distinct(x, 160, 4, 0.1f);
    fill(gy, 40, 44, 0.5f, 1.5f);
    x[3] = NAN;            /* window (0, 1), position 1 */
    x[24] = NAN;           /* window (0, 2), position 2 */
    x[25] = NAN;           /* window (0, 2), position 3: the first NaN keeps the lead */
    x[80 + 18] = NAN;      /* plane 1, window (0, 9), position 0 (scalar tail) */
    x[80 + 67] = NAN;      /* plane 1, window (1, 3), position 3 */
    pool_ref(POOL_MAX, &pc, x, gy, y, dx);
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_tensor *tx = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 2, 4, 20});
    clg_assert_ok(clg_requires_grad(tx));
    clg_tensor *ty = clg_max_pool2d(g, tx, &pc.p);
    clg_tensor *loss = clg_sum(
        g, clg_mul(g, ty, clg_constant(g, CLG_F32, 4, (int64_t[]){1, 2, 2, 10}, gy)), 0, NULL, false);
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_graph_output(g, ty));
    clg_assert_ok(clg_graph_output(g, clg_grad(g, tx)));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, tx, x, sizeof x));
    clg_assert_ok(clg_plan_run(p));
    check_tensor(p, ty, y, 40, 0.0, 0.0, "max_pool2d 2x2 with NaN: forward");
    check_tensor(p, clg_grad(g, tx), dx, 160, 0.0, 0.0, "max_pool2d 2x2 with NaN: d/dx");
    clg_plan_free(p);
    clg_graph_free(g);
}
END_TEST

/* loss = sum(pool(x)): the incoming gradient is a broadcast scalar, which has no buffer. */
START_TEST(pool_gradient_of_plain_sum) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float x[32];
    fill_distinct(x, 32, 5, 0.1f);
    clg_tensor *tx = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 2, 4, 4});
    clg_tensor *ta = clg_input(g, "xa", CLG_F32, 4, (int64_t[]){1, 2, 4, 4});
    clg_assert_ok(clg_requires_grad(tx));
    clg_assert_ok(clg_requires_grad(ta));
    clg_pool2d_params p2 = {.kernel_h = 2, .kernel_w = 2};
    clg_tensor *loss = clg_add(g, clg_sum(g, clg_max_pool2d(g, tx, &p2), 0, NULL, false),
                               clg_sum(g, clg_avg_pool2d(g, ta, &p2), 0, NULL, false));
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_graph_output(g, clg_grad(g, tx)));
    clg_assert_ok(clg_graph_output(g, clg_grad(g, ta)));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, tx, x, sizeof x));
    /* (ta is not written: the gradient of a sum of window means does not read its values) */
    clg_assert_ok(clg_plan_run(p));
    pool_case pc = {"2x2", 1, 2, 4, 4, p2, false};
    float ones[8], y[8], dx[32], da[32];
    for (int i = 0; i < 8; ++i)
        ones[i] = 1.0f;
    pool_ref(POOL_MAX, &pc, x, ones, y, dx);
    pool_ref(POOL_AVG, &pc, x, ones, y, da); /* da does not depend on x */
    check_tensor(p, clg_grad(g, tx), dx, 32, 0.0, 0.0, "max_pool2d: d sum / dx");
    check_tensor(p, clg_grad(g, ta), da, 32, 0.0, 0.0, "avg_pool2d: d sum / dx");
    clg_graph_free(g);
}
END_TEST

/* relu -> max_pool2d, the conv net pattern, whose relu gate runs inside the pooling's backward
 * kernel: gradients against relu then pooling in C, on windows that are disjoint 2 x 2, disjoint
 * 3 x 3 and overlapping; the first plane is all negative, so there every window's maximum is
 * relu's 0 and the gate must stop its gradient. The fused plan has one kernel fewer than relu
 * and pooling counted apart: exactly relu's forward kernel more than pooling alone. */
START_TEST(relu_pool_gradient) {
    static const pool_case cases[] = {
        {"2x2", 2, 3, 6, 8, {.kernel_h = 2, .kernel_w = 2}, false},
        {"3x3 stride 3", 2, 3, 9, 7, {3, 3, 3, 3, 0, 0}, false},
        {"3x3 stride 1 pad 1", 2, 3, 5, 6, {3, 3, 1, 1, 1, 1}, false},
    };
    for (int ci = 0; ci < 3; ++ci) {
        const pool_case *pc = &cases[ci];
        int64_t nx = pc->n * pc->c * pc->h * pc->w, oh, ow;
        out_size(pc, &oh, &ow);
        int64_t ny = pc->n * pc->c * oh * ow, plane = pc->h * pc->w;
        const int64_t xs[4] = {pc->n, pc->c, pc->h, pc->w}, ys[4] = {pc->n, pc->c, oh, ow};
        float *x = alloc_f(nx), *r = alloc_f(nx), *gy = alloc_f(ny), *y = alloc_f(ny);
        float *dx = alloc_f(nx);
        fill_distinct(x, nx, 70 + (uint64_t)ci, 0.01f);
        for (int64_t i = 0; i < plane; ++i) x[i] = -fabsf(x[i]) - 0.001f;
        fill(gy, ny, 80 + (uint64_t)ci, 0.5f, 1.5f);
        for (int64_t i = 0; i < nx; ++i) r[i] = x[i] > 0.0f ? x[i] : 0.0f;
        pool_ref(POOL_MAX, pc, r, gy, y, dx);
        for (int64_t i = 0; i < nx; ++i)
            if (!(r[i] > 0.0f)) dx[i] = 0.0f;
        size_t kernels[2];
        for (int relu = 1; relu >= 0; --relu) {
            clg_graph *g = clg_graph_new(clg_test_context());
            ck_assert_ptr_nonnull(g);
            clg_tensor *tx = clg_input(g, "x", CLG_F32, 4, xs);
            clg_assert_ok(clg_requires_grad(tx));
            clg_tensor *h = relu ? clg_relu(g, tx) : tx;
            clg_tensor *ty = clg_max_pool2d(g, h, &pc->p);
            clg_tensor *loss = clg_sum(g, clg_mul(g, ty, clg_constant(g, CLG_F32, 4, ys, gy)), 0,
                                       NULL, false);
            clg_assert_ok(clg_backward(g, loss));
            clg_assert_ok(clg_graph_output(g, ty));
            clg_assert_ok(clg_graph_output(g, clg_grad(g, tx)));
            clg_compile_options opts = {.guard_bytes = 64};
            clg_plan *p = NULL;
            clg_assert_ok(clg_graph_compile(g, &opts, &p));
            kernels[relu] = clg_plan_kernel_count(p);
            if (relu) {
                clg_assert_ok(clg_plan_write(p, tx, x, (size_t)nx * sizeof *x));
                clg_assert_ok(clg_plan_run(p));
                clg_assert_ok(clg_plan_check_guards(p));
                char what[100];
                snprintf(what, sizeof what, "relu -> max_pool2d %s: forward", pc->name);
                check_tensor(p, ty, y, ny, 0.0, 0.0, what);
                snprintf(what, sizeof what, "relu -> max_pool2d %s: d/dx", pc->name);
                check_tensor(p, clg_grad(g, tx), dx, nx, 1e-6, 1e-6, what);
            }
            clg_plan_free(p);
            clg_graph_free(g);
        }
        ck_assert_msg(kernels[1] == kernels[0] + 1,
                      "%s: relu -> pool runs %zu kernels, pool alone %zu: relu's gate should "
                      "run inside the pooling's backward kernel",
                      pc->name, kernels[1], kernels[0]);
        free(x);
        free(r);
        free(gy);
        free(y);
        free(dx);
    }
}
END_TEST

/* The max-pool inputs are spaced 0.05 apart and the step is 0.01, so no window's maximum
 * moves; every loss is then linear in each element and the differences are exact up to
 * rounding. */
#define GC_EPS 0.01f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-3f

START_TEST(pool_gradcheck) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float xm[50], xa[40], xg[36];
    fill_distinct(xm, 50, 21, 0.05f);
    fill(xa, 40, 22, -1.0f, 1.0f);
    fill(xg, 36, 23, -1.0f, 1.0f);
    clg_gc_input in[3] = {
        {clg_input(g, "xm", CLG_F32, 4, (int64_t[]){1, 2, 5, 5}), xm, "max_pool2d 3x3/2 pad 1 x"},
        {clg_input(g, "xa", CLG_F32, 4, (int64_t[]){1, 2, 5, 4}), xa, "avg_pool2d 3x3/2 pad 1 x"},
        {clg_input(g, "xg", CLG_F32, 4, (int64_t[]){2, 2, 3, 3}), xg, "global_avg_pool2d x"},
    };
    clg_gc_require(in, 3);
    clg_pool2d_params p = {3, 3, 2, 2, 1, 1};
    clg_tensor *l1 = clg_gc_weighted_sum(g, clg_max_pool2d(g, in[0].tensor, &p), 31);
    clg_tensor *l2 = clg_gc_weighted_sum(g, clg_avg_pool2d(g, in[1].tensor, &p), 32);
    clg_tensor *l3 = clg_gc_weighted_sum(g, clg_global_avg_pool2d(g, in[2].tensor), 33);
    clg_tensor *loss = clg_add(g, clg_add(g, l1, l2), l3);
    ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s", clg_graph_error(g));
    clg_gradcheck(g, loss, in, 3, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

static void expect_error(const char *op, const int64_t *shape, int nd, const clg_pool2d_params *p,
                         const char *needle) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_tensor *x = clg_input(g, "x", CLG_F32, nd, shape);
    clg_tensor *y = strcmp(op, "max_pool2d") == 0   ? clg_max_pool2d(g, x, p)
                    : strcmp(op, "avg_pool2d") == 0 ? clg_avg_pool2d(g, x, p)
                                                    : clg_global_avg_pool2d(g, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_msg(clg_graph_status(g) != CLG_OK, "%s: expected an error (%s)", op, needle);
    const char *msg = clg_graph_error(g);
    ck_assert_msg(strstr(msg, op) && strstr(msg, needle), "message '%s' should name %s and '%s'",
                  msg, op, needle);
    clg_graph_free(g);
}

START_TEST(pool_errors) {
    const int64_t s4[4] = {1, 2, 4, 4}, s3[3] = {2, 4, 4};
    expect_error("max_pool2d", s4, 4, &(clg_pool2d_params){2, 2, 2, 2, 2, 0},
                 "pool2d{kernel=2x2 stride=2x2 pad=2x0}");
    expect_error("avg_pool2d", s4, 4, &(clg_pool2d_params){5, 5, 1, 1, 0, 0}, "[1, 2, 4, 4]");
    expect_error("max_pool2d", s3, 3, &(clg_pool2d_params){2, 2, 0, 0, 0, 0}, "[2, 4, 4]");
    expect_error("avg_pool2d", s4, 4, &(clg_pool2d_params){0, 2, 0, 0, 0, 0},
                 "pool2d{kernel=0x2 stride=0x2 pad=0x0}");
    expect_error("max_pool2d", s4, 4, NULL, "NULL");
    expect_error("global_avg_pool2d", s3, 3, NULL, "[2, 4, 4]");
}
END_TEST

int main(void) {
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, pool_errors);
    tcase_add_test(tc, pool_grid);
    tcase_add_test(tc, max_pool_nan);
    tcase_add_test(tc, max_pool_nan_2x2);
    tcase_add_test(tc, pool_gradient_of_plain_sum);
    tcase_add_test(tc, relu_pool_gradient);
    tcase_add_test(tc, pool_gradcheck);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
