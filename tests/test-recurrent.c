/* clg_recurrent against a plain-C reference of the cell equations (double accumulation):
 * every cell kind, with and without bias, h0 and c0, both directions, unequal lengths (0 and
 * full among them), awkward sizes, guard bytes around the buffers; gradients of xproj, w_hh,
 * b_hh, h0 and c0 against central differences; a plan whose kernels grow by four per step and
 * whose programs do not grow with T; errors. CLGRAD_RECURRENT_BENCH=1 also times an LSTM
 * forward and backward step (T 64, B 12, H 256). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/program.h" /* program cache statistics: programs must not grow with T */
#include "gradcheck.h"
#include "harness.h"

typedef struct rec_case {
    const char *name;
    clg_cell_kind cell;
    int64_t T, B, H;
    bool bias, h0, c0, reverse;
    const int32_t *len; /* NULL: every sequence full */
} rec_case;

static const int32_t len3a[] = {7, 0, 3}, len3b[] = {4, 7, 0}, len2[] = {1, 4};
static const int32_t len4[] = {6, 6, 2, 0};

static const rec_case grid[] = {
    {"lstm, bias, h0, c0", CLG_CELL_LSTM, 7, 3, 5, true, true, true, false, NULL},
    {"lstm, bare", CLG_CELL_LSTM, 6, 2, 4, false, false, false, false, NULL},
    {"lstm reverse, lengths 7 0 3", CLG_CELL_LSTM, 7, 3, 5, true, true, true, true, len3a},
    {"lstm, lengths 7 0 3, h0 only", CLG_CELL_LSTM, 7, 3, 5, true, true, false, false, len3a},
    {"lstm T 1 B 1 H 1", CLG_CELL_LSTM, 1, 1, 1, true, true, true, false, NULL},
    {"lstm H 33", CLG_CELL_LSTM, 4, 2, 33, true, false, false, false, len2},
    {"gru, bias, h0, lengths 4 7 0", CLG_CELL_GRU, 7, 3, 5, true, true, false, false, len3b},
    {"gru reverse, bare", CLG_CELL_GRU, 5, 2, 6, false, false, false, true, NULL},
    {"gru reverse, lengths", CLG_CELL_GRU, 6, 4, 3, true, true, false, true, len4},
    {"rnn tanh, h0, lengths", CLG_CELL_RNN_TANH, 6, 4, 3, true, true, false, false, len4},
    {"rnn relu reverse, lengths", CLG_CELL_RNN_RELU, 7, 3, 5, true, false, false, true, len3a},
    {"rnn relu, h0", CLG_CELL_RNN_RELU, 5, 2, 17, false, true, false, false, NULL},
};
#define N_GRID (int)(sizeof grid / sizeof grid[0])

static double sigm(double x) {
    return 1.0 / (1.0 + exp(-x));
}

/* The layer in double: out [T, B, H], h_n and c_n [B, H]. */
static void reference(const rec_case *c, const float *x, const float *w, const float *bias,
                      const float *h0, const float *c0, float *out, float *hn, float *cn) {
    int64_t T = c->T, B = c->B, H = c->H, G = clg_cell_gates(c->cell), GH = G * H;
    double *h = calloc((size_t)H, sizeof *h), *cs = calloc((size_t)H, sizeof *cs);
    double *pre = calloc((size_t)GH, sizeof *pre), *hid = calloc((size_t)GH, sizeof *hid);
    double *hnew = calloc((size_t)H, sizeof *hnew);
    ck_assert(h && cs && pre && hid && hnew);
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t j = 0; j < H; ++j) {
            h[j] = h0 ? h0[b * H + j] : 0.0;
            cs[j] = c0 ? c0[b * H + j] : 0.0;
        }
        for (int64_t s = 0; s < T; ++s) {
            int64_t t = c->reverse ? T - 1 - s : s;
            float *o = out + (t * B + b) * H;
            if (c->len && t >= c->len[b]) {
                for (int64_t j = 0; j < H; ++j)
                    o[j] = 0.0f;
                continue;
            }
            for (int64_t r = 0; r < GH; ++r) {
                double acc = bias ? bias[r] : 0.0;
                for (int64_t i = 0; i < H; ++i)
                    acc += (double)w[r * H + i] * h[i];
                hid[r] = acc;
                pre[r] = x[(t * B + b) * GH + r] + acc;
            }
            for (int64_t j = 0; j < H; ++j) {
                switch (c->cell) {
                case CLG_CELL_LSTM: {
                    double ig = sigm(pre[j]), fg = sigm(pre[H + j]), gg = tanh(pre[2 * H + j]);
                    double og = sigm(pre[3 * H + j]);
                    cs[j] = fg * cs[j] + ig * gg;
                    hnew[j] = og * tanh(cs[j]);
                    break;
                }
                case CLG_CELL_GRU: {
                    double r = sigm(pre[j]), z = sigm(pre[H + j]);
                    double n = tanh(x[(t * B + b) * GH + 2 * H + j] + r * hid[2 * H + j]);
                    hnew[j] = (1.0 - z) * n + z * h[j];
                    break;
                }
                case CLG_CELL_RNN_TANH:
                    hnew[j] = tanh(pre[j]);
                    break;
                default:
                    hnew[j] = pre[j] > 0.0 ? pre[j] : 0.0;
                    break;
                }
            }
            for (int64_t j = 0; j < H; ++j) {
                h[j] = hnew[j];
                o[j] = (float)h[j];
            }
        }
        for (int64_t j = 0; j < H; ++j) {
            hn[b * H + j] = (float)h[j];
            if (cn) cn[b * H + j] = (float)cs[j];
        }
    }
    free(h);
    free(cs);
    free(pre);
    free(hid);
    free(hnew);
}

static float *rand_f(int64_t n, float lo, float hi, uint64_t seed) {
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, (size_t)n, lo, hi);
    return v;
}

/* One case's graph inputs, host values and results. */
typedef struct rec_run {
    const rec_case *c;
    int64_t nx, nw, nb, ns; /* elements of xproj, w_hh, b_hh, one state */
    float *x, *w, *bias, *h0, *c0;
    clg_tensor *tx, *tw, *tb, *th, *tc, *out, *hn, *cn;
} rec_run;

static void run_values(rec_run *r, const rec_case *c, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->c = c;
    int64_t G = clg_cell_gates(c->cell);
    r->nx = c->T * c->B * G * c->H;
    r->nw = G * c->H * c->H;
    r->nb = G * c->H;
    r->ns = c->B * c->H;
    r->x = rand_f(r->nx, -1.5f, 1.5f, seed);
    float ws = 1.5f / sqrtf((float)c->H);
    r->w = rand_f(r->nw, -ws, ws, seed + 1);
    r->bias = rand_f(r->nb, -0.5f, 0.5f, seed + 2);
    r->h0 = rand_f(r->ns, -1.0f, 1.0f, seed + 3);
    r->c0 = rand_f(r->ns, -1.0f, 1.0f, seed + 4);
}

static void run_inputs(clg_graph *g, rec_run *r) {
    const rec_case *c = r->c;
    int64_t G = clg_cell_gates(c->cell);
    r->tx = clg_input(g, "xproj", CLG_F32, 3, (int64_t[]){c->T, c->B, G * c->H});
    r->tw = clg_input(g, "w_hh", CLG_F32, 2, (int64_t[]){G * c->H, c->H});
    r->tb = c->bias ? clg_input(g, "b_hh", CLG_F32, 1, (int64_t[]){G * c->H}) : NULL;
    r->th = c->h0 ? clg_input(g, "h0", CLG_F32, 2, (int64_t[]){c->B, c->H}) : NULL;
    r->tc = c->c0 ? clg_input(g, "c0", CLG_F32, 2, (int64_t[]){c->B, c->H}) : NULL;
}

static void run_layer(clg_graph *g, rec_run *r) {
    const rec_case *c = r->c;
    clg_tensor *len = c->len ? clg_constant(g, CLG_I32, 1, &c->B, c->len) : NULL;
    clg_assert_ok(clg_recurrent(g, c->cell, r->tx, r->tw, r->tb, r->th, r->tc, len, c->reverse,
                                &r->out, &r->hn, &r->cn));
    ck_assert(c->cell == CLG_CELL_LSTM ? r->cn != NULL : r->cn == NULL);
}

static void run_write(clg_plan *p, const rec_run *r) {
    clg_assert_ok(clg_plan_write(p, r->tx, r->x, (size_t)r->nx * sizeof(float)));
    clg_assert_ok(clg_plan_write(p, r->tw, r->w, (size_t)r->nw * sizeof(float)));
    if (r->tb) clg_assert_ok(clg_plan_write(p, r->tb, r->bias, (size_t)r->nb * sizeof(float)));
    if (r->th) clg_assert_ok(clg_plan_write(p, r->th, r->h0, (size_t)r->ns * sizeof(float)));
    if (r->tc) clg_assert_ok(clg_plan_write(p, r->tc, r->c0, (size_t)r->ns * sizeof(float)));
}

static void run_free(rec_run *r) {
    free(r->x);
    free(r->w);
    free(r->bias);
    free(r->h0);
    free(r->c0);
}

/* Every case in one graph and one plan with guard bytes: out, h_n and c_n. */
START_TEST(forward_grid) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    rec_run runs[N_GRID];
    for (int i = 0; i < N_GRID; ++i) {
        run_values(&runs[i], &grid[i], 100 + 10 * (uint64_t)i);
        run_inputs(g, &runs[i]);
        run_layer(g, &runs[i]);
        clg_assert_ok(clg_graph_output(g, runs[i].out));
        clg_assert_ok(clg_graph_output(g, runs[i].hn));
        if (runs[i].cn) clg_assert_ok(clg_graph_output(g, runs[i].cn));
    }
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 64}, &p));
    for (int i = 0; i < N_GRID; ++i)
        run_write(p, &runs[i]);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_finish(p));
    clg_assert_ok(clg_plan_check_guards(p));
    for (int i = 0; i < N_GRID; ++i) {
        rec_run *r = &runs[i];
        const rec_case *c = r->c;
        int64_t no = c->T * r->ns;
        float *want = malloc((size_t)no * sizeof(float)), *got = malloc((size_t)no * sizeof(float));
        float *whn = malloc((size_t)r->ns * sizeof(float)),
              *wcn = malloc((size_t)r->ns * sizeof(float));
        float *ghn = malloc((size_t)r->ns * sizeof(float));
        ck_assert(want && got && whn && wcn && ghn);
        reference(c, r->x, r->w, c->bias ? r->bias : NULL, c->h0 ? r->h0 : NULL,
                  c->c0 ? r->c0 : NULL, want, whn, c->cell == CLG_CELL_LSTM ? wcn : NULL);
        fprintf(stderr, "forward: %s\n", c->name);
        clg_assert_ok(clg_plan_read(p, r->out, got, (size_t)no * sizeof(float)));
        clg_assert_close(got, want, (size_t)no, 1e-5, 1e-4);
        clg_assert_ok(clg_plan_read(p, r->hn, ghn, (size_t)r->ns * sizeof(float)));
        clg_assert_close(ghn, whn, (size_t)r->ns, 1e-5, 1e-4);
        if (r->cn) {
            clg_assert_ok(clg_plan_read(p, r->cn, ghn, (size_t)r->ns * sizeof(float)));
            clg_assert_close(ghn, wcn, (size_t)r->ns, 1e-5, 1e-4);
        }
        free(want);
        free(got);
        free(whn);
        free(wcn);
        free(ghn);
        run_free(r);
    }
    clg_plan_free(p);
    clg_graph_free(g);
}
END_TEST

/* Gradients of every input against central differences through a loss that reads out, h_n
 * and c_n (each weighted differently), or only some of them (grad_uses). */
static const rec_case grad_cases[] = {
    {"lstm, lengths 5 2 0", CLG_CELL_LSTM, 5, 3, 3, true, true, true, false,
     (const int32_t[]){5, 2, 0}},
    {"lstm reverse, bare", CLG_CELL_LSTM, 6, 2, 3, true, false, false, true, NULL},
    {"lstm reverse, lengths 3 6", CLG_CELL_LSTM, 6, 2, 2, true, true, true, true,
     (const int32_t[]){3, 6}},
    {"gru, lengths 5 0 3", CLG_CELL_GRU, 5, 3, 3, true, true, false, false,
     (const int32_t[]){5, 0, 3}},
    {"gru reverse", CLG_CELL_GRU, 5, 2, 3, true, true, false, true, NULL},
    {"rnn tanh, lengths 5 1", CLG_CELL_RNN_TANH, 5, 2, 4, true, true, false, false,
     (const int32_t[]){5, 1}},
    {"rnn relu reverse", CLG_CELL_RNN_RELU, 5, 2, 4, true, true, false, true, NULL},
    {"lstm, h_n only", CLG_CELL_LSTM, 5, 2, 3, true, true, true, false, (const int32_t[]){4, 5}},
    {"lstm, c_n only", CLG_CELL_LSTM, 5, 2, 3, false, true, true, true, NULL},
    {"gru, out only", CLG_CELL_GRU, 5, 2, 3, true, true, false, false, NULL},
};
/* Which results the loss reads (bit 0 out, 1 h_n, 2 c_n), by case. */
static const int grad_uses[] = {7, 7, 7, 7, 7, 7, 7, 2, 4, 1};

_Static_assert(sizeof grad_uses / sizeof grad_uses[0] == sizeof grad_cases / sizeof grad_cases[0],
               "one grad_uses entry per case");

START_TEST(gradients) {
    const rec_case *c = &grad_cases[_i];
    fprintf(stderr, "gradients: %s\n", c->name);
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    rec_run r;
    run_values(&r, c, 500 + 10 * (uint64_t)_i);
    run_inputs(g, &r);
    clg_gc_input in[5];
    int n = 0;
    in[n++] = (clg_gc_input){r.tx, r.x, "xproj"};
    in[n++] = (clg_gc_input){r.tw, r.w, "w_hh"};
    if (r.tb) in[n++] = (clg_gc_input){r.tb, r.bias, "b_hh"};
    if (r.th) in[n++] = (clg_gc_input){r.th, r.h0, "h0"};
    if (r.tc) in[n++] = (clg_gc_input){r.tc, r.c0, "c0"};
    clg_gc_require(in, n);
    run_layer(g, &r);
    clg_tensor *parts[3] = {r.out, r.hn, r.cn}, *loss = NULL;
    for (int k = 0; k < 3; ++k) {
        if (!parts[k] || !(grad_uses[_i] & (1 << k))) continue;
        clg_tensor *l = clg_gc_weighted_sum(g, parts[k], 7 + (unsigned)k);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    bool relu = c->cell == CLG_CELL_RNN_RELU;
    clg_gradcheck(g, loss, in, n, relu ? 1e-3f : 1e-2f, relu ? 2e-3f : 1e-3f, 5e-3f);
    clg_graph_free(g);
    run_free(&r);
}
END_TEST

/* An LSTM layer of T steps, forward and backward with every gradient wanted: its plan's
 * kernels, and the programs the context built for it. */
static size_t plan_kernels(int64_t T, unsigned *programs) {
    clg_context *ctx = clg_test_context();
    rec_case c = {"count", CLG_CELL_LSTM, T, 2, 4, true, true, true, false, NULL};
    clg_graph *g = clg_graph_new(ctx);
    ck_assert_ptr_nonnull(g);
    rec_run r;
    run_values(&r, &c, 900);
    run_inputs(g, &r);
    clg_tensor *grads_of[5] = {r.tx, r.tw, r.tb, r.th, r.tc};
    for (int k = 0; k < 5; ++k)
        clg_assert_ok(clg_requires_grad(grads_of[k]));
    run_layer(g, &r);
    clg_tensor *loss =
        clg_add(g, clg_add(g, clg_sum(g, r.out, 0, NULL, false), clg_sum(g, r.hn, 0, NULL, false)),
                clg_sum(g, r.cn, 0, NULL, false));
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    for (int k = 0; k < 5; ++k)
        clg_assert_ok(clg_graph_output(g, clg_grad(g, grads_of[k])));
    clg_program_stats before = clg_program_cache_stats(ctx);
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 64}, &p));
    run_write(p, &r);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_finish(p));
    clg_assert_ok(clg_plan_check_guards(p));
    clg_program_stats after = clg_program_cache_stats(ctx);
    *programs = (after.disk_hits + after.disk_misses) - (before.disk_hits + before.disk_misses);
    size_t n = clg_plan_kernel_count(p);
    clg_plan_free(p);
    clg_graph_free(g);
    run_free(&r);
    return n;
}

/* Per step: the forward's GEMM and cell kernel, the backward's cell kernel and GEMM (a GEMM
 * call is one step of the plan); the rest (initial states, the weight gradient's one GEMM
 * and the bias gradient's reduction, the loss) does not grow with T, nor do the programs. */
START_TEST(kernel_counts) {
    unsigned p8 = 0, p32 = 0;
    plan_kernels(8, &p8); /* first builds of everything */
    size_t k8 = plan_kernels(8, &p8), k32 = plan_kernels(32, &p32);
    fprintf(stderr, "kernel_counts: T 8 %zu, T 32 %zu kernels; T 32 built %u programs\n", k8, k32,
            p32);
    ck_assert_msg(k32 - k8 == 4 * 24, "T 8: %zu kernels, T 32: %zu (want 4 more per step)", k8,
                  k32);
    ck_assert_msg(k8 <= 4 * 8 + 16, "T 8: %zu kernels, more than 4 per step and 16", k8);
    ck_assert_msg(p32 == 0, "T 32 built %u programs that T 8 did not", p32);
}
END_TEST

/* Bad arguments poison the graph with a message naming the op and the shapes; the results
 * are the poison. */
static void expect_error(clg_cell_kind cell, const int64_t *xs, const int64_t *ws, bool c0,
                         clg_dtype len_dtype, clg_status want, const char *needle) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, xs);
    clg_tensor *w = clg_input(g, "w", CLG_F32, 2, ws);
    clg_tensor *st = clg_input(g, "s", CLG_F32, 2, (int64_t[]){xs[1], ws[1]});
    clg_tensor *len = clg_input(g, "len", len_dtype, 1, &xs[1]);
    clg_tensor *out = NULL, *hn = NULL, *cn = NULL;
    clg_status got =
        clg_recurrent(g, cell, x, w, NULL, st, c0 ? st : NULL, len, false, &out, &hn, &cn);
    ck_assert_int_eq(got, want);
    ck_assert_msg(strstr(clg_graph_error(g), needle) != NULL, "message '%s' lacks '%s'",
                  clg_graph_error(g), needle);
    ck_assert_msg(strstr(clg_graph_error(g), "recurrent") != NULL, "message names no op");
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_eq(out, hn);
    ck_assert_ptr_eq(out, cn);
    clg_graph_free(g);
}

START_TEST(errors) {
    int64_t x[3] = {4, 2, 12}, w[2] = {12, 3};
    expect_error(CLG_CELL_GRU, x, w, false, CLG_I32, CLG_ERR_SHAPE, "[12, 3]");
    expect_error(CLG_CELL_LSTM, (int64_t[]){4, 2, 8}, (int64_t[]){8, 3}, false, CLG_I32,
                 CLG_ERR_SHAPE, "w_hh [4 H, H]");
    expect_error(CLG_CELL_GRU, (int64_t[]){4, 2, 9}, (int64_t[]){9, 3}, true, CLG_I32,
                 CLG_ERR_INVALID_ARGUMENT, "c0");
    expect_error(CLG_CELL_LSTM, x, w, true, CLG_F32, CLG_ERR_DTYPE, "lengths must be i32");
    expect_error(CLG_CELL_KIND_COUNT, x, w, false, CLG_I32, CLG_ERR_INVALID_ARGUMENT, "cell");
    ck_assert_int_eq(clg_cell_gates(CLG_CELL_KIND_COUNT), -1);
    ck_assert_int_eq(clg_cell_gates(CLG_CELL_LSTM), 4);
    ck_assert_int_eq(clg_cell_gates(CLG_CELL_GRU), 3);
    ck_assert_int_eq(clg_cell_gates(CLG_CELL_RNN_RELU), 1);
}
END_TEST

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CLGRAD_RECURRENT_BENCH=1: the char model's layer, LSTM T 64, B 12, H 256, forward and
 * backward with every gradient, timed over runs after a warm-up; said on stderr. */
START_TEST(bench) {
    const char *e = getenv("CLGRAD_RECURRENT_BENCH");
    if (!e || strcmp(e, "1") != 0) return;
    rec_case c = {"bench", CLG_CELL_LSTM, 64, 12, 256, true, true, true, false, NULL};
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    rec_run r;
    run_values(&r, &c, 77);
    run_inputs(g, &r);
    clg_tensor *grads_of[5] = {r.tx, r.tw, r.tb, r.th, r.tc};
    for (int k = 0; k < 5; ++k)
        clg_assert_ok(clg_requires_grad(grads_of[k]));
    run_layer(g, &r);
    clg_tensor *loss = clg_gc_weighted_sum(g, r.out, 3);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    for (int k = 0; k < 5; ++k)
        clg_assert_ok(clg_graph_output(g, clg_grad(g, grads_of[k])));
    double t0 = now_s();
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    run_write(p, &r);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_finish(p));
    double t1 = now_s();
    int runs = 20;
    for (int i = 0; i < runs; ++i)
        clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_finish(p));
    double ms = (now_s() - t1) * 1e3 / runs;
    fprintf(stderr,
            "bench: LSTM T 64 B 12 H 256 forward+backward: %.2f ms per run, %.3f ms per time "
            "step (%zu kernels; compile and first run %.2f s)\n",
            ms, ms / 64.0, clg_plan_kernel_count(p), t1 - t0);
    clg_plan_free(p);
    clg_graph_free(g);
    run_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("recurrent");
    TCase *tc = tcase_create("recurrent");
    tcase_add_test(tc, forward_grid);
    tcase_add_test(tc, kernel_counts);
    tcase_add_test(tc, errors);
    tcase_add_loop_test(tc, gradients, 0, (int)(sizeof grad_cases / sizeof grad_cases[0]));
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("bench"); /* CK_RUN_CASE=bench runs it alone */
    tcase_add_test(tb, bench);
    suite_add_tcase(s, tb);
    return clg_test_run(s);
}
