/* conv2d on the device against a direct plain-C convolution: forward and input/weight/bias
 * gradients for a grid of shapes (kernel 1/3/5, stride 1/2, same/valid/explicit asymmetric
 * padding, dilation 2, groups 2 and depthwise, batch 1, odd sizes, channels 3/5/7, a
 * strided input view), each through both column layouts and CLBlast's convgemm, all in one
 * graph; then central
 * finite differences (clg_gradcheck) on small shapes and the builder's error messages. */
#define _XOPEN_SOURCE 700 /* nftw, to remove a test's cache folder */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm/gemm_internal.h"
#include "gradcheck.h"
#include "graph/graph_internal.h"
#include "harness.h"
#include "ops/conv.h"
#include "runtime/plan.h"

/* ---- plain-C reference ---- */

typedef struct conv_case {
    const char *name;
    int64_t n, c, h, w, o, kh, kw;
    clg_conv2d_params p;
    bool bias;
    bool transposed_x; /* x is a transposed view of an input [N, C, W, H] */
} conv_case;

/* Resolved geometry: strides, dilations, groups, top/left padding, output size. */
typedef struct ref_geo {
    int64_t sh, sw, dh, dw, G, pt, pl, oh, ow;
} ref_geo;

static int64_t or1(int v) {
    return v ? v : 1;
}

/* Padding per axis as the header documents it, computed independently of the library. */
static void ref_axis(clg_padding mode, int64_t in, int64_t k, int64_t s, int64_t d, int64_t lo,
                     int64_t hi, int64_t *pad_lo, int64_t *out) {
    int64_t span = d * (k - 1) + 1;
    if (mode == CLG_PADDING_VALID) lo = hi = 0;
    if (mode == CLG_PADDING_SAME) {
        int64_t o = (in + s - 1) / s, total = (o - 1) * s + span - in;
        if (total < 0) total = 0;
        lo = total / 2;
        hi = total - lo;
    }
    *pad_lo = lo;
    *out = (in + lo + hi - span) / s + 1;
}

static ref_geo ref_resolve(const conv_case *cs) {
    ref_geo r = {.sh = or1(cs->p.stride_h),
                 .sw = or1(cs->p.stride_w),
                 .dh = or1(cs->p.dilation_h),
                 .dw = or1(cs->p.dilation_w),
                 .G = or1(cs->p.groups)};
    ref_axis(cs->p.padding, cs->h, cs->kh, r.sh, r.dh, cs->p.pad_top, cs->p.pad_bottom, &r.pt,
             &r.oh);
    ref_axis(cs->p.padding, cs->w, cs->kw, r.sw, r.dw, cs->p.pad_left, cs->p.pad_right, &r.pl,
             &r.ow);
    return r;
}

/* Visit every (output element, tap inside the image) pair: the loops of a direct
 * convolution. y[n,o,oy,ox] += x[n, g*Cg+cc, iy, ix] * w[o, cc, ki, kj]. */
#define CONV_LOOPS(cs, r, BODY)                                                                    \
    for (int64_t n = 0; n < (cs)->n; ++n)                                                          \
        for (int64_t o = 0; o < (cs)->o; ++o)                                                      \
            for (int64_t oy = 0; oy < (r).oh; ++oy)                                                \
                for (int64_t ox = 0; ox < (r).ow; ++ox) {                                          \
                    int64_t Cg = (cs)->c / (r).G, gi = o / ((cs)->o / (r).G);                      \
                    int64_t yi = ((n * (cs)->o + o) * (r).oh + oy) * (r).ow + ox;                  \
                    for (int64_t cc = 0; cc < Cg; ++cc)                                            \
                        for (int64_t ki = 0; ki < (cs)->kh; ++ki)                                  \
                            for (int64_t kj = 0; kj < (cs)->kw; ++kj) {                            \
                                int64_t iy = oy * (r).sh - (r).pt + ki * (r).dh;                   \
                                int64_t ix = ox * (r).sw - (r).pl + kj * (r).dw;                   \
                                if (iy < 0 || iy >= (cs)->h || ix < 0 || ix >= (cs)->w) continue;  \
                                int64_t xi =                                                       \
                                    ((n * (cs)->c + gi * Cg + cc) * (cs)->h + iy) * (cs)->w + ix;  \
                                int64_t wi = ((o * Cg + cc) * (cs)->kh + ki) * (cs)->kw + kj;      \
                                BODY                                                               \
                            }                                                                      \
                }

static void conv_ref(const conv_case *cs, const float *x, const float *w, const float *b,
                     float *y) {
    ref_geo r = ref_resolve(cs);
    int64_t ny = cs->n * cs->o * r.oh * r.ow;
    double *acc = calloc((size_t)ny, sizeof *acc);
    ck_assert_ptr_nonnull(acc);
    CONV_LOOPS(cs, r, { acc[yi] += (double)x[xi] * (double)w[wi]; })
    for (int64_t i = 0; i < ny; ++i) {
        int64_t o = i / (r.oh * r.ow) % cs->o;
        y[i] = (float)(acc[i] + (b ? b[o] : 0.0));
    }
    free(acc);
}

/* Gradients of sum(y * gy). */
static void conv_ref_backward(const conv_case *cs, const float *x, const float *w, const float *gy,
                              float *dx, float *dw, float *db) {
    ref_geo r = ref_resolve(cs);
    int64_t nx = cs->n * cs->c * cs->h * cs->w, nw = cs->o * (cs->c / r.G) * cs->kh * cs->kw;
    double *ax = calloc((size_t)nx, sizeof *ax), *aw = calloc((size_t)nw, sizeof *aw);
    double *ab = calloc((size_t)cs->o, sizeof *ab);
    ck_assert(ax && aw && ab);
    CONV_LOOPS(cs, r, {
        ax[xi] += (double)gy[yi] * (double)w[wi];
        aw[wi] += (double)gy[yi] * (double)x[xi];
    })
    for (int64_t i = 0; i < cs->n * cs->o * r.oh * r.ow; ++i)
        ab[i / (r.oh * r.ow) % cs->o] += gy[i];
    for (int64_t i = 0; i < nx; ++i)
        dx[i] = (float)ax[i];
    for (int64_t i = 0; i < nw; ++i)
        dw[i] = (float)aw[i];
    for (int64_t i = 0; i < cs->o; ++i)
        db[i] = (float)ab[i];
    free(ax);
    free(aw);
    free(ab);
}

/* ---- the grid ---- */

#define EXPLICIT(t, b, l, r)                                                                       \
    .padding = CLG_PADDING_EXPLICIT, .pad_top = t, .pad_bottom = b, .pad_left = l, .pad_right = r

static const conv_case grid[] = {
    {"3x3 same, C3 -> O5, odd 7x6",
     2,
     3,
     7,
     6,
     5,
     3,
     3,
     {.padding = CLG_PADDING_SAME},
     true,
     false},
    {"1x1 valid (pointwise), batch 1",
     1,
     5,
     4,
     5,
     7,
     1,
     1,
     {.padding = CLG_PADDING_VALID},
     true,
     false},
    {"1x1 stride 2", 2, 3, 5, 5, 4, 1, 1, {.stride_h = 2, .stride_w = 2}, false, false},
    {"5x5 stride 2 same, 9x8",
     3,
     3,
     9,
     8,
     4,
     5,
     5,
     {.stride_h = 2, .stride_w = 2, .padding = CLG_PADDING_SAME},
     true,
     false},
    {"3x3 stride 2, explicit asymmetric (1,0,2,1), C7",
     2,
     7,
     8,
     7,
     3,
     3,
     3,
     {.stride_h = 2, .stride_w = 2, EXPLICIT(1, 0, 2, 1)},
     true,
     false},
    {"3x3 dilation 2 same, batch 1",
     1,
     3,
     9,
     9,
     5,
     3,
     3,
     {.dilation_h = 2, .dilation_w = 2, .padding = CLG_PADDING_SAME},
     true,
     false},
    {"3x3 groups 2, explicit 1",
     2,
     4,
     5,
     6,
     6,
     3,
     3,
     {.groups = 2, EXPLICIT(1, 1, 1, 1)},
     true,
     false},
    {"3x3 groups 2, dilation 2 same, batch 1",
     1,
     4,
     5,
     5,
     4,
     3,
     3,
     {.groups = 2, .dilation_h = 2, .dilation_w = 2, .padding = CLG_PADDING_SAME},
     true,
     false},
    {"3x3 depthwise same, C5",
     2,
     5,
     6,
     5,
     5,
     3,
     3,
     {.groups = 5, .padding = CLG_PADDING_SAME},
     false,
     false},
    {"3x3 depthwise x2, stride 2 valid",
     1,
     3,
     7,
     7,
     6,
     3,
     3,
     {.groups = 3, .stride_h = 2, .stride_w = 2, .padding = CLG_PADDING_VALID},
     true,
     false},
    {"3x3 valid to 1x1, C1 -> O1",
     1,
     1,
     3,
     3,
     1,
     3,
     3,
     {.padding = CLG_PADDING_VALID},
     true,
     false},
    {"1x3, stride (2,1), dilation (1,2), same",
     2,
     3,
     6,
     7,
     2,
     1,
     3,
     {.stride_h = 2, .dilation_w = 2, .padding = CLG_PADDING_SAME},
     true,
     false},
    {"5x5 valid, C5 -> O7, odd 11x9",
     3,
     5,
     11,
     9,
     7,
     5,
     5,
     {.padding = CLG_PADDING_VALID},
     true,
     false},
    {"3x3 same on a transposed view",
     2,
     3,
     5,
     6,
     4,
     3,
     3,
     {.padding = CLG_PADDING_SAME},
     true,
     true},
    /* images large enough that im2col (81 output rows per work-item) and col2im (9 image rows
     * per work-item) split them into bands */
    {"3x3 same on 100x100, C1 -> O2", 1, 1, 100, 100, 2, 3, 3, {.padding = CLG_PADDING_SAME},
     true, false},
    {"3x3 stride 2, explicit (2,1,1,2) on 100x90", 1, 2, 100, 90, 2, 3, 3,
     {.stride_h = 2, .stride_w = 2, EXPLICIT(2, 1, 1, 2)}, false, false},
};
#define N_GRID (int)(sizeof grid / sizeof grid[0])

/* clgrad's two column layouts, and CLBlast's convgemm (where it supports the case: one group,
 * symmetric padding; the other cases take im2col again under that name) */
#define N_LOWERINGS 3
static const clg_conv_layout layouts[N_LOWERINGS] = {
    CLG_CONV_LAYOUT_BATCHED, CLG_CONV_LAYOUT_FOLDED, CLG_CONV_LAYOUT_CONVGEMM};
static const char *layout_name[N_LOWERINGS] = {"batched", "folded", "convgemm"};

typedef struct conv_run {
    const conv_case *cs;
    ref_geo r;
    float *x, *w, *b, *gy; /* x dense [N, C, H, W] */
    float *xin;            /* what is written to the input (x, or its transpose) */
    clg_tensor *tx, *tw, *tb, *y;
} conv_run;

static void fill(float *v, int64_t n, uint64_t seed, float lo, float hi) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, (size_t)n, lo, hi);
}

static float *alloc_f(int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Read t (of n elements) and compare with want. */
static void check_tensor(clg_plan *p, clg_tensor *t, const float *want, int64_t n, double atol,
                         double rtol, const char *what, const char *layout) {
    ck_assert_msg(t != NULL, "%s (%s): no tensor", what, layout);
    ck_assert_int_eq(clg_tensor_numel(t), n);
    float *got = alloc_f(n);
    clg_assert_ok(clg_plan_read(p, t, got, (size_t)n * sizeof *got));
    for (int64_t i = 0; i < n; ++i) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= atol + rtol * fabs((double)want[i]))) {
            double gv = got[i], wv = want[i];
            free(got);
            ck_abort_msg("%s (%s layout): element %lld of %lld is %.7g, want %.7g", what, layout,
                         (long long)i, (long long)n, gv, wv);
        }
    }
    free(got);
}

START_TEST(conv2d_grid) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    conv_run runs[N_LOWERINGS * N_GRID];
    clg_tensor *loss = NULL;
    for (int i = 0; i < N_LOWERINGS * N_GRID; ++i) {
        conv_run *cr = &runs[i];
        const conv_case *cs = &grid[i / N_LOWERINGS];
        cr->cs = cs;
        cr->r = ref_resolve(cs);
        int64_t nx = cs->n * cs->c * cs->h * cs->w;
        int64_t nw = cs->o * (cs->c / cr->r.G) * cs->kh * cs->kw;
        int64_t ny = cs->n * cs->o * cr->r.oh * cr->r.ow;
        cr->x = alloc_f(nx);
        cr->xin = alloc_f(nx);
        cr->w = alloc_f(nw);
        cr->b = alloc_f(cs->o);
        cr->gy = alloc_f(ny);
        fill(cr->x, nx, 100 + (uint64_t)i, -1.0f, 1.0f);
        fill(cr->w, nw, 200 + (uint64_t)i, -1.0f, 1.0f);
        fill(cr->b, cs->o, 300 + (uint64_t)i, -1.0f, 1.0f);
        fill(cr->gy, ny, 400 + (uint64_t)i, 0.5f, 1.5f);
        if (cs->transposed_x) {
            /* input [N, C, W, H]; the conv reads its transpose */
            for (int64_t nc = 0; nc < cs->n * cs->c; ++nc)
                for (int64_t y = 0; y < cs->h; ++y)
                    for (int64_t x = 0; x < cs->w; ++x)
                        cr->xin[(nc * cs->w + x) * cs->h + y] = cr->x[(nc * cs->h + y) * cs->w + x];
            cr->tx = clg_input(g, "xt", CLG_F32, 4, (int64_t[]){cs->n, cs->c, cs->w, cs->h});
        } else {
            memcpy(cr->xin, cr->x, (size_t)nx * sizeof *cr->x);
            cr->tx = clg_input(g, "x", CLG_F32, 4, (int64_t[]){cs->n, cs->c, cs->h, cs->w});
        }
        cr->tw = clg_input(g, "w", CLG_F32, 4, (int64_t[]){cs->o, cs->c / cr->r.G, cs->kh, cs->kw});
        cr->tb = cs->bias ? clg_input(g, "b", CLG_F32, 1, &cs->o) : NULL;
        clg_assert_ok(clg_requires_grad(cr->tx));
        clg_assert_ok(clg_requires_grad(cr->tw));
        if (cr->tb) clg_assert_ok(clg_requires_grad(cr->tb));
        clg_tensor *x = cs->transposed_x ? clg_transpose(g, cr->tx, 2, 3) : cr->tx;
        cr->y = clg_conv2d_layout(g, x, cr->tw, cr->tb, &cs->p, layouts[i % N_LOWERINGS]);
        ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s: %s", cs->name, clg_graph_error(g));
        const int64_t ys[4] = {cs->n, cs->o, cr->r.oh, cr->r.ow};
        ck_assert_int_eq(clg_tensor_ndim(cr->y), 4);
        for (int d = 0; d < 4; ++d)
            ck_assert_msg(clg_tensor_shape(cr->y)[d] == ys[d],
                          "%s: output dim %d is %lld, want %lld", cs->name, d,
                          (long long)clg_tensor_shape(cr->y)[d], (long long)ys[d]);
        clg_tensor *gyc = clg_constant(g, CLG_F32, 4, ys, cr->gy);
        clg_tensor *term = clg_sum(g, clg_mul(g, cr->y, gyc), 0, NULL, false);
        loss = loss ? clg_add(g, loss, term) : term;
        clg_assert_ok(clg_graph_output(g, cr->y));
    }
    clg_assert_ok(clg_backward(g, loss));
    for (int i = 0; i < N_LOWERINGS * N_GRID; ++i) {
        clg_assert_ok(clg_graph_output(g, clg_grad(g, runs[i].tx)));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, runs[i].tw)));
        if (runs[i].tb) clg_assert_ok(clg_graph_output(g, clg_grad(g, runs[i].tb)));
    }
    clg_compile_options opts = {.guard_bytes = 64};
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &opts, &p));
    size_t convgemms = 0;
    for (size_t i = 0; i < p->n_steps; ++i)
        convgemms += p->steps[i].kind == CLG_STEP_CONVGEMM;
    ck_assert_msg(convgemms > 0, "no case of the grid went through CLBlast's convgemm");
    for (int i = 0; i < N_LOWERINGS * N_GRID; ++i) {
        conv_run *cr = &runs[i];
        const conv_case *cs = cr->cs;
        clg_assert_ok(
            clg_plan_write(p, cr->tx, cr->xin, (size_t)clg_tensor_numel(cr->tx) * sizeof(float)));
        clg_assert_ok(
            clg_plan_write(p, cr->tw, cr->w, (size_t)clg_tensor_numel(cr->tw) * sizeof(float)));
        if (cr->tb) clg_assert_ok(clg_plan_write(p, cr->tb, cr->b, (size_t)cs->o * sizeof(float)));
    }
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_finish(p));
    clg_assert_ok(clg_plan_check_guards(p));
    for (int i = 0; i < N_LOWERINGS * N_GRID; ++i) {
        conv_run *cr = &runs[i];
        const conv_case *cs = cr->cs;
        const char *ln = layout_name[i % N_LOWERINGS];
        int64_t nx = cs->n * cs->c * cs->h * cs->w;
        int64_t nw = cs->o * (cs->c / cr->r.G) * cs->kh * cs->kw;
        int64_t ny = cs->n * cs->o * cr->r.oh * cr->r.ow;
        float *want = alloc_f(ny), *dx = alloc_f(nx), *dw = alloc_f(nw), *db = alloc_f(cs->o);
        conv_ref(cs, cr->x, cr->w, cs->bias ? cr->b : NULL, want);
        char what[200];
        snprintf(what, sizeof what, "%s: forward", cs->name);
        check_tensor(p, cr->y, want, ny, 1e-4, 1e-4, what, ln);
        conv_ref_backward(cs, cr->x, cr->w, cr->gy, dx, dw, db);
        if (cs->transposed_x) { /* the gradient is the input's: [N, C, W, H] */
            float *t = alloc_f(nx);
            for (int64_t nc = 0; nc < cs->n * cs->c; ++nc)
                for (int64_t y = 0; y < cs->h; ++y)
                    for (int64_t x = 0; x < cs->w; ++x)
                        t[(nc * cs->w + x) * cs->h + y] = dx[(nc * cs->h + y) * cs->w + x];
            free(dx);
            dx = t;
        }
        snprintf(what, sizeof what, "%s: d/dx", cs->name);
        check_tensor(p, clg_grad(g, cr->tx), dx, nx, 1e-4, 1e-4, what, ln);
        snprintf(what, sizeof what, "%s: d/dw", cs->name);
        check_tensor(p, clg_grad(g, cr->tw), dw, nw, 1e-4, 1e-4, what, ln);
        if (cr->tb) {
            snprintf(what, sizeof what, "%s: d/dbias", cs->name);
            check_tensor(p, clg_grad(g, cr->tb), db, cs->o, 1e-4, 1e-4, what, ln);
        }
        free(want);
        free(dx);
        free(dw);
        free(db);
        free(cr->x);
        free(cr->xin);
        free(cr->w);
        free(cr->b);
        free(cr->gy);
    }
    clg_plan_free(p);
    clg_graph_free(g);
}
END_TEST

/* The input gradient (col2im) gathers without atomics: two runs agree to the bit. */
START_TEST(conv2d_backward_deterministic) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    const conv_case cs = {"5x5 stride 2 same",
                          4,
                          6,
                          13,
                          11,
                          8,
                          5,
                          5,
                          {.stride_h = 2, .stride_w = 2, .padding = CLG_PADDING_SAME},
                          true,
                          false};
    int64_t nx = cs.n * cs.c * cs.h * cs.w, nw = cs.o * cs.c * cs.kh * cs.kw;
    float *x = alloc_f(nx), *w = alloc_f(nw), *a = alloc_f(nx), *b = alloc_f(nx);
    fill(x, nx, 7, -1.0f, 1.0f);
    fill(w, nw, 8, -1.0f, 1.0f);
    clg_tensor *tx = clg_input(g, "x", CLG_F32, 4, (int64_t[]){cs.n, cs.c, cs.h, cs.w});
    clg_tensor *tw = clg_input(g, "w", CLG_F32, 4, (int64_t[]){cs.o, cs.c, cs.kh, cs.kw});
    clg_assert_ok(clg_requires_grad(tx));
    clg_tensor *y = clg_conv2d(g, tx, tw, NULL, &cs.p);
    clg_tensor *loss = clg_gc_weighted_sum(g, clg_square(g, y), 3);
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_graph_output(g, clg_grad(g, tx)));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, tx, x, (size_t)nx * sizeof *x));
    clg_assert_ok(clg_plan_write(p, tw, w, (size_t)nw * sizeof *w));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, clg_grad(g, tx), a, (size_t)nx * sizeof *a));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, clg_grad(g, tx), b, (size_t)nx * sizeof *b));
    ck_assert_msg(memcmp(a, b, (size_t)nx * sizeof *a) == 0,
                  "two runs of the input gradient differ");
    free(x);
    free(w);
    free(a);
    free(b);
    clg_graph_free(g);
}
END_TEST

/* ---- finite differences on small shapes ---- */

/* The loss is linear in each single input element (conv is bilinear in x and w), so central
 * differences are exact up to rounding and a large step keeps the rounding small. */
#define GC_EPS 0.25f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-3f

static clg_tensor *gc_input(clg_graph *g, clg_gc_input *in, int *n, const char *label, int nd,
                            const int64_t *shape, uint64_t seed) {
    int64_t m = 1;
    for (int d = 0; d < nd; ++d)
        m *= shape[d];
    clg_gc_input *e = &in[(*n)++];
    e->values = alloc_f(m);
    fill(e->values, m, seed, -1.0f, 1.0f);
    e->tensor = clg_input(g, label, CLG_F32, nd, shape);
    e->label = label;
    return e->tensor;
}

START_TEST(conv2d_gradcheck) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[9];
    int n = 0;
    /* Order matters with clg_gradcheck as it stands: it reads input i's analytic gradient
     * after the finite-difference runs of input i - 1, whose last run left that input's last
     * element at x - eps. So no input's gradient may depend on the input before it: images,
     * then biases, then weights (dw depends on x, dx on w, the bias gradient on neither). */
    clg_tensor *x1 =
        gc_input(g, in, &n, "x (stride 2, pads 1,0,2,1)", 4, (int64_t[]){2, 3, 5, 4}, 1);
    clg_tensor *b1 = gc_input(g, in, &n, "bias (stride 2, pads 1,0,2,1)", 1, (int64_t[]){2}, 3);
    clg_tensor *x2 = gc_input(g, in, &n, "x (groups 2, dilation 2)", 4, (int64_t[]){1, 4, 5, 5}, 4);
    clg_tensor *b2 = gc_input(g, in, &n, "bias (groups 2, dilation 2)", 1, (int64_t[]){4}, 6);
    clg_tensor *x3 = gc_input(g, in, &n, "x (depthwise, folded)", 4, (int64_t[]){2, 3, 4, 5}, 7);
    clg_tensor *b3 = gc_input(g, in, &n, "bias (depthwise, folded)", 1, (int64_t[]){3}, 9);
    clg_tensor *w1 =
        gc_input(g, in, &n, "w (stride 2, pads 1,0,2,1)", 4, (int64_t[]){2, 3, 3, 3}, 2);
    clg_tensor *w2 = gc_input(g, in, &n, "w (groups 2, dilation 2)", 4, (int64_t[]){4, 2, 3, 3}, 5);
    clg_tensor *w3 = gc_input(g, in, &n, "w (depthwise, folded)", 4, (int64_t[]){3, 1, 3, 3}, 8);
    clg_gc_require(in, n);
    /* stride 2 with asymmetric explicit padding; groups 2 with dilation 2 and 'same';
     * depthwise through the folded layout */
    clg_conv2d_params p1 = {.stride_h = 2, .stride_w = 2, EXPLICIT(1, 0, 2, 1)};
    clg_conv2d_params p2 = {
        .groups = 2, .dilation_h = 2, .dilation_w = 2, .padding = CLG_PADDING_SAME};
    clg_conv2d_params p3 = {.groups = 3, .padding = CLG_PADDING_SAME};
    clg_tensor *l1 = clg_gc_weighted_sum(g, clg_conv2d(g, x1, w1, b1, &p1), 11);
    clg_tensor *l2 = clg_gc_weighted_sum(g, clg_conv2d(g, x2, w2, b2, &p2), 12);
    clg_tensor *l3 =
        clg_gc_weighted_sum(g, clg_conv2d_layout(g, x3, w3, b3, &p3, CLG_CONV_LAYOUT_FOLDED), 13);
    clg_tensor *loss = clg_add(g, clg_add(g, l1, l2), l3);
    ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s", clg_graph_error(g));
    clg_gradcheck(g, loss, in, n, GC_EPS, GC_ATOL, GC_RTOL);
    for (int i = 0; i < n; ++i)
        free(in[i].values);
    clg_graph_free(g);
}
END_TEST

/* ---- errors ---- */

static void expect_error(clg_tensor *(*build)(clg_graph *), const char *needle1,
                         const char *needle2) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_tensor *t = build(g);
    ck_assert_ptr_nonnull(t);
    ck_assert_msg(clg_graph_status(g) != CLG_OK, "expected an error mentioning '%s'", needle1);
    const char *msg = clg_graph_error(g);
    ck_assert_msg(strstr(msg, "conv2d") && strstr(msg, needle1) && strstr(msg, needle2),
                  "message '%s' should name conv2d, '%s' and '%s'", msg, needle1, needle2);
    clg_graph_free(g);
}

static clg_tensor *bad_groups(clg_graph *g) {
    clg_tensor *x = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 6, 5, 5});
    clg_tensor *w = clg_input(g, "w", CLG_F32, 4, (int64_t[]){4, 3, 3, 3});
    return clg_conv2d(g, x, w, NULL, &(clg_conv2d_params){.groups = 4});
}
static clg_tensor *bad_channels(clg_graph *g) {
    clg_tensor *x = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 3, 5, 5});
    clg_tensor *w = clg_input(g, "w", CLG_F32, 4, (int64_t[]){4, 2, 3, 3});
    return clg_conv2d(g, x, w, NULL, NULL);
}
static clg_tensor *too_big(clg_graph *g) {
    clg_tensor *x = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 3, 4, 4});
    clg_tensor *w = clg_input(g, "w", CLG_F32, 4, (int64_t[]){4, 3, 5, 5});
    return clg_conv2d(g, x, w, NULL, &(clg_conv2d_params){.padding = CLG_PADDING_VALID});
}
static clg_tensor *bad_bias(clg_graph *g) {
    clg_tensor *x = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 3, 4, 4});
    clg_tensor *w = clg_input(g, "w", CLG_F32, 4, (int64_t[]){4, 3, 3, 3});
    clg_tensor *b = clg_input(g, "b", CLG_F32, 1, (int64_t[]){3});
    return clg_conv2d(g, x, w, b, NULL);
}
static clg_tensor *bad_rank(clg_graph *g) {
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, (int64_t[]){3, 4, 4});
    clg_tensor *w = clg_input(g, "w", CLG_F32, 4, (int64_t[]){4, 3, 3, 3});
    return clg_conv2d(g, x, w, NULL, NULL);
}
static clg_tensor *bad_stride(clg_graph *g) {
    clg_tensor *x = clg_input(g, "x", CLG_F32, 4, (int64_t[]){1, 3, 4, 4});
    clg_tensor *w = clg_input(g, "w", CLG_F32, 4, (int64_t[]){4, 3, 3, 3});
    return clg_conv2d(g, x, w, NULL, &(clg_conv2d_params){.stride_h = -1});
}

START_TEST(conv2d_errors) {
    expect_error(bad_groups, "[1, 6, 5, 5]", "[4, 3, 3, 3]");
    expect_error(bad_channels, "[1, 3, 5, 5]", "[4, 2, 3, 3]");
    expect_error(too_big, "5x5", "[1, 3, 4, 4]");
    expect_error(bad_bias, "[4]", "[3]");
    expect_error(bad_rank, "[3, 4, 4]", "[N, C, H, W]");
    expect_error(bad_stride, "stride -1", "[1, 3, 4, 4]");
}
END_TEST

/* Remove a test's cache folder and what the context put in it. */
static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Number of lines of path that start with prefix. */
static int count_lines(const char *path, const char *prefix) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strncmp(line, prefix, strlen(prefix)) == 0;
    fclose(f);
    return n;
}

/* clg_conv2d's forward lowering is measured once per shape and device, cached in the cache
 * folder with both timings, and reused (not measured again) by the next context; either
 * lowering gives the reference's result. */
START_TEST(conv2d_lowering_measured_once) {
    if (getenv("CLGRAD_CONV")) { /* forced: nothing is measured, nothing to check */
        fprintf(stderr, "conv2d_lowering_measured_once: not checked, CLGRAD_CONV is set\n");
        return;
    }
    (void)clg_test_context(); /* without any device: exit 77, SKIP */
    char dir[] = "/tmp/clgrad-conv-choice-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *old = getenv("CLGRAD_CACHE_DIR");
    char *saved = old ? strdup(old) : NULL;
    ck_assert_int_eq(setenv("CLGRAD_CACHE_DIR", dir, 1), 0);
    const conv_case cs = {"measured", 3, 2, 9, 11, 4, 3, 3, {.padding = CLG_PADDING_SAME}, true,
                          false};
    const char *key = "conv-n3-c2-9x11-o4-k3x3-s1x1-d1x1-p1x1 ";
    char path[4200] = "";
    for (int round = 0; round < 2; ++round) {
        clg_context *ctx = NULL;
        clg_assert_ok(clg_context_create(NULL, &ctx));
        snprintf(path, sizeof path, "%s", clg_gemm_choices_path(ctx));
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *x = clg_input(g, "x", CLG_F32, 4, (int64_t[]){3, 2, 9, 11});
        clg_tensor *w = clg_input(g, "w", CLG_F32, 4, (int64_t[]){4, 2, 3, 3});
        clg_tensor *b = clg_input(g, "b", CLG_F32, 1, (int64_t[]){4});
        clg_tensor *y = clg_conv2d(g, x, w, b, &cs.p);
        clg_assert_ok(clg_graph_output(g, y));
        clg_plan *p = NULL;
        clg_assert_ok(clg_graph_compile(g, NULL, &p));
        float xv[3 * 2 * 9 * 11], wv[4 * 2 * 9], bv[4], got[3 * 4 * 9 * 11], want[3 * 4 * 9 * 11];
        fill(xv, 3 * 2 * 9 * 11, 71, -1.0f, 1.0f);
        fill(wv, 4 * 2 * 9, 72, -1.0f, 1.0f);
        fill(bv, 4, 73, -1.0f, 1.0f);
        clg_assert_ok(clg_plan_write(p, x, xv, sizeof xv));
        clg_assert_ok(clg_plan_write(p, w, wv, sizeof wv));
        clg_assert_ok(clg_plan_write(p, b, bv, sizeof bv));
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_read(p, y, got, sizeof got));
        conv_ref(&cs, xv, wv, bv, want);
        clg_assert_close(got, want, 3 * 4 * 9 * 11, 1e-4, 1e-4);
        clg_graph_free(g);
        clg_context_free(ctx);
        ck_assert_msg(count_lines(path, key) == 1, "round %d: %d lines for '%s' in %s", round,
                      count_lines(path, key), key, path);
    }
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[512], winner[32] = "";
    double ms0 = 0, ms1 = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            ck_assert_int_eq(sscanf(line + strlen(key), "%31s %lf %lf", winner, &ms0, &ms1), 3);
    fclose(f);
    ck_assert_msg(strcmp(winner, "im2col") == 0 || strcmp(winner, "convgemm") == 0, "winner '%s'",
                  winner);
    ck_assert_msg(ms0 > 0 && (ms1 > 0 || ms1 == -1), "timings %g %g", ms0, ms1);
    ck_assert_msg(strcmp(winner, ms1 > 0 && ms1 < ms0 ? "convgemm" : "im2col") == 0,
                  "%s won with im2col %g ms, convgemm %g ms", winner, ms0, ms1);
    if (saved) {
        setenv("CLGRAD_CACHE_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("CLGRAD_CACHE_DIR");
    }
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}
END_TEST

/* The forward lowering is chosen when a plan is compiled, not when the graph is built: with
 * CLGRAD_CONV forcing either lowering, clg_conv2d builds the same graph, and the plans differ
 * only in the product's steps (convgemm: no im2col at inference; training still makes the
 * columns for the weight's gradient). Both layouts of the product (batched: K = 18; folded:
 * K = 144) give the reference's forward and backward through the convgemm variant. */
static int count_steps(const clg_plan *p, const char *label) {
    int n = 0;
    for (size_t i = 0; i < p->n_steps; ++i) n += strcmp(p->steps[i].label, label) == 0;
    return n;
}

START_TEST(conv2d_lowering_chosen_at_compile) {
    const char *old = getenv("CLGRAD_CONV");
    char *saved = old ? strdup(old) : NULL;
    const conv_case cases[2] = {
        {"batched", 2, 2, 7, 6, 3, 3, 3, {.padding = CLG_PADDING_SAME}, true, false},
        {"folded", 2, 16, 5, 5, 4, 3, 3, {.padding = CLG_PADDING_SAME}, true, false}};
    for (int c = 0; c < 2; ++c) {
        const conv_case *cs = &cases[c];
        size_t nodes[2];
        for (int forced = 0; forced < 2; ++forced) {
            setenv("CLGRAD_CONV", forced ? "convgemm" : "im2col", 1);
            clg_context *ctx = NULL;
            clg_assert_ok(clg_context_create(NULL, &ctx));
            clg_graph *g = clg_graph_new(ctx);
            int64_t xs[4] = {cs->n, cs->c, cs->h, cs->w}, ws[4] = {cs->o, cs->c, 3, 3};
            int64_t nx = cs->n * cs->c * cs->h * cs->w, nw = cs->o * cs->c * 9;
            clg_tensor *x = clg_input(g, "x", CLG_F32, 4, xs);
            clg_tensor *w = clg_input(g, "w", CLG_F32, 4, ws);
            clg_tensor *b = clg_input(g, "b", CLG_F32, 1, (int64_t[]){cs->o});
            clg_tensor *y = clg_conv2d(g, x, w, b, &cs->p);
            clg_assert_ok(clg_graph_output(g, y));
            nodes[forced] = g->n_nodes;
            /* inference */
            clg_plan *p = NULL;
            clg_assert_ok(clg_graph_compile(g, NULL, &p));
            ck_assert_int_eq(count_steps(p, "convgemm"), forced);
            ck_assert_int_eq(count_steps(p, "im2col"), !forced);
            float *xv = alloc_f(nx), *wv = alloc_f(nw), bv[8];
            int64_t ny = cs->n * cs->o * cs->h * cs->w;
            float *got = alloc_f(ny), *want = alloc_f(ny), *gy = alloc_f(ny);
            fill(xv, nx, 81, -1.0f, 1.0f);
            fill(wv, nw, 82, -1.0f, 1.0f);
            fill(bv, cs->o, 83, -1.0f, 1.0f);
            fill(gy, ny, 84, -1.0f, 1.0f);
            clg_assert_ok(clg_plan_write(p, x, xv, (size_t)nx * 4));
            clg_assert_ok(clg_plan_write(p, w, wv, (size_t)nw * 4));
            clg_assert_ok(clg_plan_write(p, b, bv, (size_t)cs->o * 4));
            clg_assert_ok(clg_plan_run(p));
            clg_assert_ok(clg_plan_read(p, y, got, (size_t)ny * 4));
            conv_ref(cs, xv, wv, bv, want);
            clg_assert_close(got, want, (size_t)ny, 1e-4, 1e-4);
            /* training: gradients of sum(y * gy) */
            clg_tensor *gyt = clg_input(g, "gy", CLG_F32, 4, (int64_t[]){cs->n, cs->o, cs->h, cs->w});
            clg_assert_ok(clg_requires_grad(x));
            clg_assert_ok(clg_requires_grad(w));
            clg_tensor *loss = clg_sum(g, clg_mul(g, y, gyt), 0, NULL, false);
            clg_assert_ok(clg_backward(g, loss));
            clg_tensor *dxt = clg_grad(g, x), *dwt = clg_grad(g, w);
            clg_assert_ok(clg_graph_output(g, dxt));
            clg_assert_ok(clg_graph_output(g, dwt));
            clg_plan *pt = NULL;
            clg_assert_ok(clg_graph_compile(g, NULL, &pt));
            ck_assert_int_eq(count_steps(pt, "convgemm"), forced);
            ck_assert_int_ge(count_steps(pt, "im2col"), 1);
            clg_assert_ok(clg_plan_write(pt, x, xv, (size_t)nx * 4));
            clg_assert_ok(clg_plan_write(pt, w, wv, (size_t)nw * 4));
            clg_assert_ok(clg_plan_write(pt, b, bv, (size_t)cs->o * 4));
            clg_assert_ok(clg_plan_write(pt, gyt, gy, (size_t)ny * 4));
            clg_assert_ok(clg_plan_run(pt));
            float *dx = alloc_f(nx), *dw = alloc_f(nw), *wdx = alloc_f(nx), *wdw = alloc_f(nw), db[8];
            clg_assert_ok(clg_plan_read(pt, y, got, (size_t)ny * 4));
            clg_assert_close(got, want, (size_t)ny, 1e-4, 1e-4);
            clg_assert_ok(clg_plan_read(pt, dxt, dx, (size_t)nx * 4));
            clg_assert_ok(clg_plan_read(pt, dwt, dw, (size_t)nw * 4));
            conv_ref_backward(cs, xv, wv, gy, wdx, wdw, db);
            clg_assert_close(dx, wdx, (size_t)nx, 1e-4, 1e-4);
            clg_assert_close(dw, wdw, (size_t)nw, 1e-4, 1e-4);
            free(xv);
            free(wv);
            free(got);
            free(want);
            free(gy);
            free(dx);
            free(dw);
            free(wdx);
            free(wdw);
            clg_context_free(ctx);
        }
        ck_assert_uint_eq(nodes[0], nodes[1]); /* the same graph either way */
    }
    if (saved) {
        setenv("CLGRAD_CONV", saved, 1);
        free(saved);
    } else {
        unsetenv("CLGRAD_CONV");
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("conv2d");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, conv2d_errors);
    tcase_add_test(tc, conv2d_grid);
    tcase_add_test(tc, conv2d_backward_deterministic);
    tcase_add_test(tc, conv2d_gradcheck);
    tcase_add_test(tc, conv2d_lowering_measured_once);
    tcase_add_test(tc, conv2d_lowering_chosen_at_compile);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
