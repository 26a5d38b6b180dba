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
                for (int64_t j = 0; j < H; ++j) o[j] = 0.0f;
                continue;
            }
            for (int64_t r = 0; r < GH; ++r) {
                double acc = bias ? bias[r] : 0.0;
                for (int64_t i = 0; i < H; ++i) acc += (double)w[r * H + i] * h[i];
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
                case CLG_CELL_RNN_TANH: hnew[j] = tanh(pre[j]); break;
                default: hnew[j] = pre[j] > 0.0 ? pre[j] : 0.0; break;
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
    for (int i = 0; i < N_GRID; ++i) run_write(p, &runs[i]);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_finish(p));
    clg_assert_ok(clg_plan_check_guards(p));
    for (int i = 0; i < N_GRID; ++i) {
        rec_run *r = &runs[i];
        const rec_case *c = r->c;
        int64_t no = c->T * r->ns;
        float *want = malloc((size_t)no * sizeof(float)), *got = malloc((size_t)no * sizeof(float));
        float *whn = malloc((size_t)r->ns * sizeof(float)), *wcn = malloc((size_t)r->ns * sizeof(float));
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

int main(void) {
    Suite *s = suite_create("recurrent");
    TCase *tc = tcase_create("recurrent");
    tcase_add_test(tc, forward_grid);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
