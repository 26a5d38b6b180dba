/* Per-layer convolution timings for the classic MNIST CNN (conv1: 1 -> 32, conv2: 32 -> 64,
 * 3x3 'same', batch 64): forward and forward + backward plans for both column layouts of
 * clgrad's im2col + GEMM lowering, against CLBlast's convgemm for the forward pass (checked to
 * agree). Medians of --runs timed runs after one warm-up run; --profile adds clgrad's
 * per-kernel breakdown (CLGRAD_PROFILE) on stderr.
 * usage: bench-conv [--runs N] [--batch N] [--profile] [--more] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/clgrad.h"
#include "core/clock.h"
#include "core/context.h"
#include "gemm/gemm.h"
#include "ops/conv.h"

typedef struct layer {
    const char *name;
    int64_t c, o, h, w;
    bool input_grad; /* conv1 reads the data: no input gradient in training */
    int groups;      /* 0: 1; CLBlast's convgemm has no groups, so it sits those out */
} layer;

static const layer layers[] = {
    {"conv1", 1, 32, 28, 28, false, 0},
    {"conv2", 32, 64, 14, 14, true, 0},
    /* --more: shapes between the two, to see where the layouts cross over */
    {"c3-16", 3, 16, 32, 32, true, 0},
    {"c8-16", 8, 16, 28, 28, true, 0},
    {"c16-32", 16, 32, 14, 14, true, 0},
    {"c64-64", 64, 64, 7, 7, true, 0},
    {"dw32", 32, 32, 14, 14, true, 32},
};

static void fill(float *v, size_t n, unsigned seed) {
    uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

static void check(clg_status st, const char *what) {
    if (st == CLG_OK) return;
    fprintf(stderr, "bench-conv: %s: %s: %s\n", what, clg_status_name(st), clg_last_error());
    exit(1);
}

typedef struct host_data {
    float *x, *w, *b, *gy;
    int64_t nx, nw, ny;
} host_data;

/* One thing to time: a plan run, or a CLBlast convgemm call. */
typedef struct candidate {
    clg_plan *plan;
    const clg_convgemm_call *convgemm;
    double first; /* the untimed first run (kernel builds included) */
    double *t;    /* per timed run */
} candidate;

static void run_once(clg_context *ctx, candidate *c) {
    if (c->plan) {
        check(clg_plan_run(c->plan), "run");
        check(clg_plan_finish(c->plan), "finish");
    } else {
        check(clg_gemm_convgemm(ctx, c->convgemm, NULL), "convgemm");
        clFinish(ctx->queue);
    }
}

/* Time the candidates round-robin, so that other load on the machine spreads over all of them
 * alike; medians in c[i].t[0] after sorting. */
static void time_all(clg_context *ctx, candidate *c, int n, int runs) {
    for (int i = 0; i < n; ++i) {
        double t0 = clg_now_ms();
        run_once(ctx, &c[i]);
        c[i].first = clg_now_ms() - t0;
        c[i].t = malloc((size_t)runs * sizeof *c[i].t);
    }
    for (int r = 0; r < runs; ++r)
        for (int i = 0; i < n; ++i) {
            double t0 = clg_now_ms();
            run_once(ctx, &c[i]);
            c[i].t[r] = clg_now_ms() - t0;
        }
}

static clg_param *make_param(clg_context *ctx, const char *layer, const char *lowering,
                             const char *what, int nd, const int64_t *shape, const float *v,
                             size_t n) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s.%s", layer, lowering, what);
    clg_param *p = clg_param_new(ctx, name, CLG_F32, nd, shape);
    if (!p) check(CLG_ERR_INTERNAL, name);
    check(clg_param_write(p, v, n * sizeof *v), name);
    return p;
}

/* Plans of one layout: forward with bias, forward without bias made dense (what convgemm
 * computes; *y_out is that output's node), and a training step of the layer (forward, then
 * the weight, bias and, for inner layers, input gradients). */
static void build_plans(clg_context *ctx, const layer *L, int64_t N, clg_conv_layout lay,
                        const char *lname, const host_data *d, clg_plan **fwd,
                        clg_plan **fwd_nobias, clg_tensor **y_out, clg_plan **train) {
    const int64_t G = L->groups ? L->groups : 1;
    const int64_t xs[4] = {N, L->c, L->h, L->w}, ws[4] = {L->o, L->c / G, 3, 3};
    const clg_conv2d_params same = {.padding = CLG_PADDING_SAME, .groups = (int)G};
    const int64_t ys[4] = {N, L->o, L->h, L->w};
    clg_param *pw = make_param(ctx, L->name, lname, "weight", 4, ws, d->w, (size_t)d->nw);
    clg_param *pb = make_param(ctx, L->name, lname, "bias", 1, &L->o, d->b, (size_t)L->o);
    for (int variant = 0; variant < 3; ++variant) {
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *x = clg_input(g, "x", CLG_F32, 4, xs);
        if (variant == 2 && L->input_grad) check(clg_requires_grad(x), "requires_grad");
        clg_tensor *b = variant == 1 ? NULL : clg_param_tensor(g, pb);
        clg_tensor *y = clg_conv2d_layout(g, x, clg_param_tensor(g, pw), b, &same, lay);
        if (variant == 1 && lay == CLG_CONV_LAYOUT_FOLDED) y = clg_contiguous(g, y);
        if (variant < 2) {
            check(clg_graph_output(g, y), "output");
        } else {
            clg_tensor *gy = clg_constant(g, CLG_F32, 4, ys, d->gy);
            check(clg_backward(g, clg_sum(g, clg_mul(g, y, gy), 0, NULL, false)), "backward");
            check(clg_graph_output(g, clg_param_grad(g, pw)), "output");
            check(clg_graph_output(g, clg_param_grad(g, pb)), "output");
            if (L->input_grad) check(clg_graph_output(g, clg_grad(g, x)), "output");
        }
        clg_plan *p = NULL;
        check(clg_graph_compile(g, NULL, &p), "compile");
        check(clg_plan_write(p, x, d->x, (size_t)d->nx * sizeof *d->x), "write x");
        *(variant == 0 ? fwd : variant == 1 ? fwd_nobias : train) = p;
        if (variant == 1) *y_out = y;
    }
}

static double mean_abs(const float *a, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i)
        s += fabs((double)a[i]);
    return s / (double)n;
}

static double max_rel_diff(const float *a, const float *b, int64_t n) {
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

int main(int argc, char **argv) {
    int runs = 11;
    int64_t N = 64;
    size_t n_layers = 2;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            N = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--more") == 0) {
            n_layers = sizeof layers / sizeof layers[0];
        } else if (strcmp(argv[i], "--profile") == 0) {
            setenv("CLGRAD_PROFILE", "1", 1);
        } else {
            fprintf(stderr, "usage: %s [--runs N (>= 5)] [--batch N] [--profile] [--more]\n",
                    argv[0]);
            return 2;
        }
    }
    if (runs < 5 || N < 1) {
        fprintf(stderr, "bench-conv: --runs must be >= 5 and --batch >= 1\n");
        return 2;
    }
    clg_context *ctx = NULL;
    check(clg_context_create(NULL, &ctx), "context");
    printf("device: %s | %s\nbatch %lld, 3x3 'same' convolutions, median of %d runs (ms)\n\n",
           ctx->info.name, ctx->info.platform_name, (long long)N, runs);
    printf("fwd: forward with bias; nobias: without bias, dense (what convgemm computes), median "
           "and min; step: forward + backward (weight, bias and, for inner layers, input "
           "gradients); bwd = step - fwd; 1st: the untimed first run\n\n");
    printf("%-6s %-22s %8s %8s %8s %8s %8s %8s\n", "layer", "lowering", "fwd", "nobias", "(min)",
           "step", "bwd", "1st");
    static const clg_conv_layout lays[2] = {CLG_CONV_LAYOUT_BATCHED, CLG_CONV_LAYOUT_FOLDED};
    static const char *lay_names[2] = {"batched", "folded"};
    for (size_t li = 0; li < n_layers; ++li) {
        const layer *L = &layers[li];
        host_data d = {.nx = N * L->c * L->h * L->w,
                       .nw = L->o * L->c / (L->groups ? L->groups : 1) * 9,
                       .ny = N * L->o * L->h * L->w};
        d.x = malloc((size_t)d.nx * 4);
        d.w = malloc((size_t)d.nw * 4);
        d.b = malloc((size_t)L->o * 4);
        d.gy = malloc((size_t)d.ny * 4);
        fill(d.x, (size_t)d.nx, 1);
        fill(d.w, (size_t)d.nw, 2);
        fill(d.b, (size_t)L->o, 3);
        fill(d.gy, (size_t)d.ny, 4);
        /* 0..2 batched fwd / fwd without bias / training step, 3..5 folded, 6 convgemm */
        candidate c[7] = {{0}};
        clg_tensor *ynb[2];
        for (int k = 0; k < 2; ++k)
            build_plans(ctx, L, N, lays[k], lay_names[k], &d, &c[3 * k].plan, &c[3 * k + 1].plan,
                        &ynb[k], &c[3 * k + 2].plan);
        cl_mem im, km, out;
        check(clg_buffer_create(ctx, (size_t)d.nx * 4, "image", &im), "buffer");
        check(clg_buffer_create(ctx, (size_t)d.nw * 4, "kernel", &km), "buffer");
        check(clg_buffer_create(ctx, (size_t)d.ny * 4, "result", &out), "buffer");
        clEnqueueWriteBuffer(ctx->queue, im, CL_TRUE, 0, (size_t)d.nx * 4, d.x, 0, NULL, NULL);
        clEnqueueWriteBuffer(ctx->queue, km, CL_TRUE, 0, (size_t)d.nw * 4, d.w, 0, NULL, NULL);
        const clg_convgemm_call cg = {.channels = (size_t)L->c,
                                      .height = (size_t)L->h,
                                      .width = (size_t)L->w,
                                      .kernel_h = 3,
                                      .kernel_w = 3,
                                      .pad_h = 1,
                                      .pad_w = 1,
                                      .stride_h = 1,
                                      .stride_w = 1,
                                      .dilation_h = 1,
                                      .dilation_w = 1,
                                      .num_kernels = (size_t)L->o,
                                      .batch = (size_t)N,
                                      .im = im,
                                      .kernel = km,
                                      .result = out};
        c[6].convgemm = &cg;
        int nc = L->groups > 1 ? 6 : 7;
        time_all(ctx, c, nc, runs);
        double med[7] = {0}, lo[7] = {0};
        for (int i = 0; i < nc; ++i) {
            med[i] = clg_median(c[i].t, runs);
            lo[i] = c[i].t[0]; /* sorted by clg_median() */
        }
        for (int k = 0; k < 2; ++k) {
            char label[64];
            snprintf(label, sizeof label, "im2col+GEMM %s", lay_names[k]);
            printf("%-6s %-22s %8.2f %8.2f %8.2f %8.2f %8.2f %8.1f\n", L->name, label, med[3 * k],
                   med[3 * k + 1], lo[3 * k + 1], med[3 * k + 2], med[3 * k + 2] - med[3 * k],
                   c[3 * k].first);
        }
        if (nc == 7)
            printf("%-6s %-22s %8s %8.2f %8.2f %8s %8s %8.1f\n", L->name, "CLBlast convgemm", "-",
                   med[6], lo[6], "-", "-", c[6].first);
        /* the three forward results without bias must agree */
        float *y[3];
        for (int k = 0; k < 3; ++k)
            y[k] = malloc((size_t)d.ny * 4);
        for (int k = 0; k < 2; ++k)
            check(clg_plan_read(c[3 * k + 1].plan, ynb[k], y[k], (size_t)d.ny * 4), "read y");
        if (nc == 7)
            clEnqueueReadBuffer(ctx->queue, out, CL_TRUE, 0, (size_t)d.ny * 4, y[2], 0, NULL, NULL);
        double diff_f = max_rel_diff(y[1], y[0], d.ny);
        double diff_c = nc == 7 ? max_rel_diff(y[2], y[0], d.ny) : 0.0;
        int best = med[1] <= med[4] ? 0 : 1;
        bool cg_wins = nc == 7 && med[6] < med[3 * best + 1];
        char cgd[32] = "n/a (groups)";
        if (nc == 7) snprintf(cgd, sizeof cgd, "%.2g", diff_c);
        printf("       agreement with batched, max |a-b|/(1+|b|): folded %.2g, convgemm %s "
               "(mean |y| %.4g)\n",
               diff_f, cgd, mean_abs(y[0], d.ny));
        printf("       forward winner: %s; training step: %s\n\n",
               cg_wins ? "CLBlast convgemm" : lay_names[best],
               med[2] <= med[5] ? lay_names[0] : lay_names[1]);
        if (diff_f > 1e-4 || diff_c > 1e-4) {
            fprintf(stderr, "bench-conv: %s: the lowerings disagree\n", L->name);
            return 1;
        }
        for (int k = 0; k < 3; ++k)
            free(y[k]);
        for (int i = 0; i < 7; ++i) {
            clg_plan_free(c[i].plan);
            free(c[i].t);
        }
        clg_buffer_release(ctx, im);
        clg_buffer_release(ctx, km);
        clg_buffer_release(ctx, out);
        free(d.x);
        free(d.w);
        free(d.b);
        free(d.gy);
    }
    clg_context_free(ctx);
    return 0;
}
