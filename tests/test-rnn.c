/* Recurrent layers (nn/rnn.c) on the device: LSTM, GRU and RNN layers loaded from PyTorch
 * state dicts against PyTorch's outputs and final states (fixtures made by
 * tools/make_rnn_fixture.py, packed sequences included); stacked and bidirectional layers
 * against a plain-C reference in double; gradients of the inputs, initial states and every
 * parameter of 2-layer bidirectional GRU and LSTM layers against finite differences;
 * PyTorch's state-dict names and shapes in a saved checkpoint; errors on bad configs and
 * inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradcheck.h"
#include "harness.h"
#include "io/safetensors.h"

/* A context of its own: a checkpoint holds every parameter of its context. */
static clg_context *new_context(void) {
    clg_context *ctx = NULL;
    clg_status st = clg_context_create(NULL, &ctx);
    if (st == CLG_ERR_NO_PLATFORM) {
        fprintf(stderr, "SKIP: no OpenCL device: %s\n", clg_last_error());
        exit(77);
    }
    clg_assert_ok(st);
    return ctx;
}

static int cell_gates(clg_cell_kind cell) {
    return cell == CLG_CELL_LSTM ? 4 : cell == CLG_CELL_GRU ? 3 : 1;
}
static int n_layers(const clg_rnn_config *c) {
    return c->num_layers ? c->num_layers : 1;
}
static int n_dirs(const clg_rnn_config *c) {
    return c->bidirectional ? 2 : 1;
}

/* ---- One forward pass on the device ---- */

typedef struct run_io {
    int64_t steps, batch;
    const float *x, *h0, *c0; /* h0, c0 NULL: not given */
    const int32_t *lengths;   /* NULL: full length */
    float *out, *h_n, *c_n;   /* results (malloc'ed by run_layer; c_n for LSTM) */
} run_io;

static void run_layer(clg_context *ctx, const clg_rnn *l, run_io *io, bool training,
                      uint64_t seed) {
    const clg_rnn_config *c = &l->config;
    const int64_t T = io->steps, B = io->batch, H = c->hidden_size;
    const int64_t ld = n_layers(c) * n_dirs(c), out_n = T * B * n_dirs(c) * H;
    clg_graph *g = clg_graph_new(ctx);
    int64_t xs[3] = {c->batch_first ? B : T, c->batch_first ? T : B, c->input_size};
    int64_t ss[3] = {ld, B, H};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, xs);
    clg_rnn_state init = {0}, fin = {0};
    if (io->h0) init.h = clg_input(g, "h0", CLG_F32, 3, ss);
    if (io->c0) init.c = clg_input(g, "c0", CLG_F32, 3, ss);
    clg_tensor *len = io->lengths ? clg_input(g, "lengths", CLG_I32, 1, &B) : NULL;
    clg_tensor *y = clg_rnn_forward(g, l, x, &init, len, training, seed, &fin);
    clg_assert_ok(clg_graph_status(g));
    ck_assert_int_eq(clg_tensor_ndim(y), 3);
    ck_assert_int_eq(clg_tensor_numel(y), out_n);
    ck_assert(clg_tensor_dim(y, c->batch_first ? 1 : 0) == T);
    ck_assert(clg_tensor_numel(fin.h) == ld * B * H);
    ck_assert((fin.c != NULL) == (c->cell == CLG_CELL_LSTM));
    clg_assert_ok(clg_graph_output(g, y));
    clg_assert_ok(clg_graph_output(g, fin.h));
    if (fin.c) clg_assert_ok(clg_graph_output(g, fin.c));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    size_t sb = (size_t)(ld * B * H) * sizeof(float);
    clg_assert_ok(clg_plan_write(p, x, io->x, (size_t)(T * B * c->input_size) * sizeof(float)));
    if (init.h) clg_assert_ok(clg_plan_write(p, init.h, io->h0, sb));
    if (init.c) clg_assert_ok(clg_plan_write(p, init.c, io->c0, sb));
    if (len) clg_assert_ok(clg_plan_write(p, len, io->lengths, (size_t)B * sizeof(int32_t)));
    clg_assert_ok(clg_plan_run(p));
    io->out = malloc((size_t)out_n * sizeof(float));
    io->h_n = malloc(sb);
    io->c_n = fin.c ? malloc(sb) : NULL;
    clg_assert_ok(clg_plan_read(p, y, io->out, (size_t)out_n * sizeof(float)));
    clg_assert_ok(clg_plan_read(p, fin.h, io->h_n, sb));
    if (fin.c) clg_assert_ok(clg_plan_read(p, fin.c, io->c_n, sb));
    clg_graph_free(g);
}

static void run_io_free(run_io *io) {
    free(io->out);
    free(io->h_n);
    free(io->c_n);
}

/* ---- PyTorch fixtures (tools/make_rnn_fixture.py) ---- */

typedef struct fixture_case {
    const char *name, *prefix;
    clg_rnn_config config;
} fixture_case;

#define FX_I 5
#define FX_H 7
static const fixture_case fixture_cases[] = {
    {"lstm_bi2", "", {.cell = CLG_CELL_LSTM, FX_I, FX_H, .num_layers = 2, .bidirectional = true}},
    {"gru_bf2", "gru", {.cell = CLG_CELL_GRU, FX_I, FX_H, .num_layers = 2, .batch_first = true}},
    {"gru_bf1", "enc.gru", {.cell = CLG_CELL_GRU, FX_I, FX_H, .batch_first = true}},
    {"rnn_tanh", "rnn", {.cell = CLG_CELL_RNN_TANH, FX_I, FX_H, .num_layers = 2, .no_bias = true}},
    {"rnn_relu",
     "",
     {.cell = CLG_CELL_RNN_RELU, FX_I, FX_H, .num_layers = 1, .bidirectional = true}},
    {"lstm_packed",
     "lstm",
     {.cell = CLG_CELL_LSTM, FX_I, FX_H, .num_layers = 2, .bidirectional = true}},
    {"gru_packed",
     "",
     {.cell = CLG_CELL_GRU,
      FX_I,
      FX_H,
      .num_layers = 1,
      .bidirectional = true,
      .batch_first = true}},
};
#define N_FIXTURES (int)(sizeof fixture_cases / sizeof fixture_cases[0])

static const clg_st_view *io_find(const clg_safetensors *st, const char *cs, const char *what) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", cs, what);
    return clg_safetensors_find(st, key);
}

static const clg_st_view *io_need(const clg_safetensors *st, const char *cs, const char *what,
                                  clg_st_dtype dtype, int64_t numel) {
    const clg_st_view *v = io_find(st, cs, what);
    ck_assert_msg(v != NULL, "fixture has no %s.%s", cs, what);
    ck_assert_int_eq(v->dtype, dtype);
    ck_assert_int_eq(v->numel, numel);
    return v;
}

START_TEST(torch_fixture) {
    const fixture_case *fc = &fixture_cases[_i];
    const clg_rnn_config *c = &fc->config;
    clg_context *ctx = new_context();
    clg_rnn l;
    clg_assert_ok(clg_rnn_init(ctx, &l, fc->prefix, c, 7));
    char path[128];
    snprintf(path, sizeof path, "fixtures/rnn_%s.safetensors", fc->name);
    /* every parameter must be in the file and every file tensor a parameter: PyTorch's names */
    clg_assert_ok(clg_checkpoint_load(ctx, clg_test_path(path), NULL));
    clg_safetensors *st = NULL;
    clg_assert_ok(clg_safetensors_load(clg_test_path("fixtures/rnn_io.safetensors"), &st));
    const clg_st_view *xv = io_find(st, fc->name, "x");
    ck_assert_ptr_nonnull(xv);
    ck_assert_int_eq(xv->ndim, 3);
    run_io io = {.steps = xv->shape[c->batch_first ? 1 : 0],
                 .batch = xv->shape[c->batch_first ? 0 : 1],
                 .x = xv->data};
    const int64_t ld = n_layers(c) * n_dirs(c), sn = ld * io.batch * FX_H;
    if (io_find(st, fc->name, "h0"))
        io.h0 = io_need(st, fc->name, "h0", CLG_ST_DTYPE_F32, sn)->data;
    if (io_find(st, fc->name, "c0"))
        io.c0 = io_need(st, fc->name, "c0", CLG_ST_DTYPE_F32, sn)->data;
    if (io_find(st, fc->name, "lengths"))
        io.lengths = io_need(st, fc->name, "lengths", CLG_ST_DTYPE_I32, io.batch)->data;
    run_layer(ctx, &l, &io, false, 0);
    const int64_t on = io.steps * io.batch * n_dirs(c) * FX_H;
    clg_assert_close(io.out, io_need(st, fc->name, "out", CLG_ST_DTYPE_F32, on)->data, (size_t)on,
                     2e-6, 1e-5);
    clg_assert_close(io.h_n, io_need(st, fc->name, "h_n", CLG_ST_DTYPE_F32, sn)->data, (size_t)sn,
                     2e-6, 1e-5);
    if (c->cell == CLG_CELL_LSTM)
        clg_assert_close(io.c_n, io_need(st, fc->name, "c_n", CLG_ST_DTYPE_F32, sn)->data,
                         (size_t)sn, 2e-6, 1e-5);
    run_io_free(&io);
    clg_safetensors_free(st);
    clg_context_free(ctx);
}
END_TEST

/* ---- Plain-C reference in double ---- */

/* Host weights of a layer: w[k][d][0..3] = w_ih, w_hh, b_ih, b_hh (biases NULL: none). */
typedef struct ref_weights {
    float *w[CLG_RNN_MAX_LAYERS][2][4];
} ref_weights;

static clg_param *layer_tensor(const clg_rnn *l, int k, int d, int t) {
    return t == 0   ? l->weight_ih[k][d]
           : t == 1 ? l->weight_hh[k][d]
           : t == 2 ? l->bias_ih[k][d]
                    : l->bias_hh[k][d];
}

/* Random weights into the layer's parameters and their host copy. */
static void ref_weights_fill(const clg_rnn *l, ref_weights *rw, uint64_t seed) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    memset(rw, 0, sizeof *rw);
    for (int k = 0; k < n_layers(&l->config); ++k)
        for (int d = 0; d < n_dirs(&l->config); ++d)
            for (int t = 0; t < 4; ++t) {
                clg_param *p = layer_tensor(l, k, d, t);
                if (!p) continue;
                size_t n = (size_t)clg_param_numel(p);
                rw->w[k][d][t] = malloc(n * sizeof(float));
                clg_test_fill(&r, rw->w[k][d][t], n, -0.6f, 0.6f);
                clg_assert_ok(clg_param_write(p, rw->w[k][d][t], n * sizeof(float)));
            }
}

static void ref_weights_free(ref_weights *rw) {
    for (int k = 0; k < CLG_RNN_MAX_LAYERS; ++k)
        for (int d = 0; d < 2; ++d)
            for (int t = 0; t < 4; ++t)
                free(rw->w[k][d][t]);
}

static double sigm(double v) {
    return 1.0 / (1.0 + exp(-v));
}

/* PyTorch's recurrences, one sequence element at a time. out, h_n, c_n as the layer's. */
static void ref_forward(const clg_rnn_config *c, const ref_weights *rw, const run_io *io,
                        double *out, double *h_n, double *c_n) {
    const int64_t T = io->steps, B = io->batch, H = c->hidden_size;
    const int L = n_layers(c), D = n_dirs(c), G = cell_gates(c->cell);
    double *seq = malloc((size_t)(T * B * D * H) * sizeof *seq);   /* [T, B, I_k] */
    double *next = malloc((size_t)(T * B * D * H) * sizeof *next); /* [T, B, D H] */
    double *seq0 = malloc((size_t)(T * B * c->input_size) * sizeof *seq0);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < c->input_size; ++i)
                seq0[(t * B + b) * c->input_size + i] =
                    io->x[(c->batch_first ? b * T + t : t * B + b) * c->input_size + i];
    double h[64], cc[64], gx[256], gh[256];
    ck_assert(H <= 64 && G * H <= 256);
    const double *in = seq0;
    for (int k = 0; k < L; ++k) {
        const int64_t I = k == 0 ? c->input_size : D * H;
        for (int d = 0; d < D; ++d) {
            float *const *w = rw->w[k][d];
            const int64_t idx = (int64_t)k * D + d;
            for (int64_t b = 0; b < B; ++b) {
                for (int64_t j = 0; j < H; ++j) {
                    h[j] = io->h0 ? io->h0[(idx * B + b) * H + j] : 0.0;
                    cc[j] = io->c0 ? io->c0[(idx * B + b) * H + j] : 0.0;
                }
                for (int64_t s = 0; s < T; ++s) {
                    const int64_t t = d ? T - 1 - s : s;
                    double *o = next + (t * B + b) * D * H + d * H;
                    if (io->lengths && t >= io->lengths[b]) {
                        for (int64_t j = 0; j < H; ++j)
                            o[j] = 0.0;
                        continue;
                    }
                    const double *xt = in + (t * B + b) * I;
                    for (int64_t r = 0; r < G * H; ++r) {
                        double a = w[2] ? w[2][r] : 0.0, e = w[3] ? w[3][r] : 0.0;
                        for (int64_t i = 0; i < I; ++i)
                            a += w[0][r * I + i] * xt[i];
                        for (int64_t i = 0; i < H; ++i)
                            e += w[1][r * H + i] * h[i];
                        gx[r] = a;
                        gh[r] = e;
                    }
                    for (int64_t j = 0; j < H; ++j) {
                        switch (c->cell) {
                        case CLG_CELL_RNN_TANH:
                            h[j] = tanh(gx[j] + gh[j]);
                            break;
                        case CLG_CELL_RNN_RELU:
                            h[j] = fmax(0.0, gx[j] + gh[j]);
                            break;
                        case CLG_CELL_LSTM: {
                            double ig = sigm(gx[j] + gh[j]), fg = sigm(gx[H + j] + gh[H + j]);
                            double gg = tanh(gx[2 * H + j] + gh[2 * H + j]);
                            double og = sigm(gx[3 * H + j] + gh[3 * H + j]);
                            cc[j] = fg * cc[j] + ig * gg;
                            h[j] = og * tanh(cc[j]);
                            break;
                        }
                        default: {
                            double rg = sigm(gx[j] + gh[j]), zg = sigm(gx[H + j] + gh[H + j]);
                            double ng = tanh(gx[2 * H + j] + rg * gh[2 * H + j]);
                            h[j] = (1.0 - zg) * ng + zg * h[j];
                        }
                        }
                    }
                    for (int64_t j = 0; j < H; ++j)
                        o[j] = h[j];
                }
                for (int64_t j = 0; j < H; ++j) {
                    h_n[(idx * B + b) * H + j] = h[j];
                    if (c_n) c_n[(idx * B + b) * H + j] = cc[j];
                }
            }
        }
        memcpy(seq, next, (size_t)(T * B * D * H) * sizeof *seq);
        in = seq;
    }
    for (int64_t t = 0; t < T; ++t)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < D * H; ++j)
                out[(c->batch_first ? b * T + t : t * B + b) * D * H + j] =
                    seq[(t * B + b) * D * H + j];
    free(seq);
    free(next);
    free(seq0);
}

static void assert_close_d(const float *got, const double *want, int64_t n, double atol,
                           double rtol) {
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; ++i)
        w[i] = (float)want[i];
    clg_assert_close(got, w, (size_t)n, atol, rtol);
    free(w);
}

typedef struct ref_case {
    clg_rnn_config config;
    int64_t steps, batch;
    bool h0, c0;
    int32_t lengths[4]; /* all 0: none */
} ref_case;

static const ref_case ref_cases[] = {
    /* dropout is between layers in training only: this forward is not training */
    {{.cell = CLG_CELL_LSTM, 5, 4, .num_layers = 2, .bidirectional = true, .dropout = 0.5f},
     6,
     3,
     true,
     true,
     {0}},
    {{.cell = CLG_CELL_GRU, 3, 5, .num_layers = 2, .bidirectional = true, .batch_first = true},
     7,
     3,
     true,
     false,
     {5, 2, 7}},
    {{.cell = CLG_CELL_LSTM, 4, 3, .num_layers = 3, .batch_first = true},
     5,
     2,
     false,
     false,
     {3, 5}},
    {{.cell = CLG_CELL_RNN_TANH, 6, 5, .num_layers = 2, .bidirectional = true},
     1,
     1,
     true,
     false,
     {0}},
    {{.cell = CLG_CELL_GRU, 2, 1, .num_layers = 1, .no_bias = true},
     6,
     4,
     false,
     false,
     {6, 0, 1, 3}},
};
#define N_REF (int)(sizeof ref_cases / sizeof ref_cases[0])

static float *rand_vec(int64_t n, float lo, float hi, uint64_t seed) {
    float *v = malloc((size_t)n * sizeof *v);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, (size_t)n, lo, hi);
    return v;
}

START_TEST(against_reference) {
    const ref_case *rc = &ref_cases[_i];
    const clg_rnn_config *c = &rc->config;
    clg_context *ctx = clg_test_context();
    char name[32];
    snprintf(name, sizeof name, "ref%d", _i);
    clg_rnn l;
    clg_assert_ok(clg_rnn_init(ctx, &l, name, c, 11));
    ref_weights rw;
    ref_weights_fill(&l, &rw, 100 + (uint64_t)_i);
    const int64_t T = rc->steps, B = rc->batch, H = c->hidden_size;
    const int64_t sn = n_layers(c) * n_dirs(c) * B * H, on = T * B * n_dirs(c) * H;
    run_io io = {.steps = T, .batch = B};
    float *x = rand_vec(T * B * c->input_size, -1.5f, 1.5f, 200 + (uint64_t)_i);
    float *h0 = rand_vec(sn, -0.8f, 0.8f, 300 + (uint64_t)_i);
    float *c0 = rand_vec(sn, -0.8f, 0.8f, 400 + (uint64_t)_i);
    io.x = x;
    io.h0 = rc->h0 ? h0 : NULL;
    io.c0 = rc->c0 ? c0 : NULL;
    bool has_len = false;
    for (int b = 0; b < 4; ++b)
        has_len |= rc->lengths[b] != 0;
    io.lengths = has_len ? rc->lengths : NULL;
    double *out = malloc((size_t)on * sizeof *out), *hn = malloc((size_t)sn * sizeof *hn);
    double *cn = malloc((size_t)sn * sizeof *cn);
    ref_forward(c, &rw, &io, out, hn, c->cell == CLG_CELL_LSTM ? cn : NULL);
    run_layer(ctx, &l, &io, false, 0);
    assert_close_d(io.out, out, on, 1e-5, 1e-4);
    assert_close_d(io.h_n, hn, sn, 1e-5, 1e-4);
    if (c->cell == CLG_CELL_LSTM) assert_close_d(io.c_n, cn, sn, 1e-5, 1e-4);
    run_io_free(&io);
    free(out);
    free(hn);
    free(cn);
    free(x);
    free(h0);
    free(c0);
    ref_weights_free(&rw);
}
END_TEST

/* Dropout acts between layers in training only: a 1-layer layer's training output equals its
 * evaluation output, a 2-layer one's does not. */
START_TEST(dropout_between_layers) {
    clg_context *ctx = clg_test_context();
    const int64_t T = 4, B = 3;
    float *x = rand_vec(T * B * 5, -1.0f, 1.0f, 9);
    for (int layers = 1; layers <= 2; ++layers) {
        clg_rnn_config c = {.cell = CLG_CELL_GRU, 5, 6, .num_layers = layers, .dropout = 0.5f};
        char name[32];
        snprintf(name, sizeof name, "drop%d", layers);
        clg_rnn l;
        clg_assert_ok(clg_rnn_init(ctx, &l, name, &c, 3));
        run_io eval = {.steps = T, .batch = B, .x = x}, tr = eval;
        run_layer(ctx, &l, &eval, false, 5);
        run_layer(ctx, &l, &tr, true, 5);
        int64_t n = T * B * 6;
        double diff = 0.0;
        for (int64_t i = 0; i < n; ++i)
            diff = fmax(diff, fabs(tr.out[i] - eval.out[i]));
        if (layers == 1)
            clg_assert_close(tr.out, eval.out, (size_t)n, 0.0, 0.0);
        else
            ck_assert_msg(diff > 1e-3, "2 layers: dropout changed nothing (max diff %g)", diff);
        run_io_free(&eval);
        run_io_free(&tr);
    }
    free(x);
}
END_TEST

/* ---- Gradients against central finite differences ---- */

typedef struct fd_target {
    const char *label;
    float *values;
    int64_t n;
    clg_tensor *input; /* an input, or */
    clg_param *param;  /* a parameter */
    clg_tensor *grad;
} fd_target;

static void fd_write(clg_plan *p, const fd_target *t) {
    size_t bytes = (size_t)t->n * sizeof(float);
    if (t->input)
        clg_assert_ok(clg_plan_write(p, t->input, t->values, bytes));
    else
        clg_assert_ok(clg_param_write(t->param, t->values, bytes));
}

static float fd_loss(clg_plan *p, clg_tensor *loss) {
    clg_assert_ok(clg_plan_run(p));
    float v = 0.0f;
    clg_assert_ok(clg_plan_read(p, loss, &v, sizeof v));
    return v;
}

typedef struct grad_case {
    clg_rnn_config config;
    int64_t steps, batch;
    bool c0;
    int32_t lengths[2];
} grad_case;

static const grad_case grad_cases[] = {
    {{.cell = CLG_CELL_GRU, 3, 3, .num_layers = 2, .bidirectional = true}, 5, 2, false, {5, 3}},
    {{.cell = CLG_CELL_LSTM, 2, 3, .num_layers = 2, .bidirectional = true, .batch_first = true},
     5,
     2,
     true,
     {0, 0}},
};

START_TEST(gradients) {
    const grad_case *gc = &grad_cases[_i];
    const clg_rnn_config *c = &gc->config;
    clg_context *ctx = new_context(); /* parameters of other tests would get no gradient */
    clg_rnn l;
    clg_assert_ok(clg_rnn_init(ctx, &l, "g", c, 21));
    const int64_t T = gc->steps, B = gc->batch, H = c->hidden_size;
    const int64_t ld = n_layers(c) * n_dirs(c);
    clg_graph *g = clg_graph_new(ctx);
    int64_t xs[3] = {c->batch_first ? B : T, c->batch_first ? T : B, c->input_size};
    int64_t ss[3] = {ld, B, H};
    fd_target tg[4 + 4 * 2 * CLG_RNN_MAX_LAYERS];
    int n = 0;
    tg[n++] = (fd_target){"x",
                          rand_vec(T * B * c->input_size, -1, 1, 1),
                          T * B * c->input_size,
                          clg_input(g, "x", CLG_F32, 3, xs),
                          NULL,
                          NULL};
    tg[n++] = (fd_target){"h0",       rand_vec(ld * B * H, -0.5f, 0.5f, 2),
                          ld * B * H, clg_input(g, "h0", CLG_F32, 3, ss),
                          NULL,       NULL};
    if (gc->c0)
        tg[n++] = (fd_target){"c0",       rand_vec(ld * B * H, -0.5f, 0.5f, 3),
                              ld * B * H, clg_input(g, "c0", CLG_F32, 3, ss),
                              NULL,       NULL};
    const int n_inputs = n;
    for (int k = 0; k < n_layers(c); ++k)
        for (int d = 0; d < n_dirs(c); ++d)
            for (int t = 0; t < 4; ++t) {
                clg_param *p = layer_tensor(&l, k, d, t);
                int64_t m = clg_param_numel(p);
                float *v = rand_vec(m, -0.7f, 0.7f, 10 + (uint64_t)n);
                tg[n++] = (fd_target){clg_param_name(p), v, m, NULL, p, NULL};
            }
    for (int i = 0; i < n_inputs; ++i)
        clg_assert_ok(clg_requires_grad(tg[i].input));
    clg_tensor *len = gc->lengths[0] ? clg_input(g, "lengths", CLG_I32, 1, &B) : NULL;
    clg_rnn_state init = {tg[1].input, gc->c0 ? tg[2].input : NULL}, fin;
    clg_tensor *y = clg_rnn_forward(g, &l, tg[0].input, &init, len, false, 0, &fin);
    /* every result: the output at every step, h_n (and c_n) */
    clg_tensor *loss = clg_add(g, clg_gc_weighted_sum(g, y, 1), clg_gc_weighted_sum(g, fin.h, 2));
    if (fin.c) loss = clg_add(g, loss, clg_gc_weighted_sum(g, fin.c, 3));
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    for (int i = 0; i < n; ++i) {
        tg[i].grad = tg[i].input ? clg_grad(g, tg[i].input) : clg_param_grad(g, tg[i].param);
        ck_assert_msg(tg[i].grad != NULL, "%s: no gradient", tg[i].label);
        clg_assert_ok(clg_graph_output(g, tg[i].grad));
    }
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    for (int i = 0; i < n; ++i)
        fd_write(p, &tg[i]);
    if (len) clg_assert_ok(clg_plan_write(p, len, gc->lengths, (size_t)B * sizeof(int32_t)));
    fd_loss(p, loss);
    const float eps = 3e-3f;
    for (int i = 0; i < n; ++i) {
        float *a = malloc((size_t)tg[i].n * sizeof *a);
        clg_assert_ok(clg_plan_read(p, tg[i].grad, a, (size_t)tg[i].n * sizeof *a));
        for (int64_t e = 0; e < tg[i].n; ++e) {
            float keep = tg[i].values[e];
            tg[i].values[e] = keep + eps;
            fd_write(p, &tg[i]);
            float lp = fd_loss(p, loss);
            tg[i].values[e] = keep - eps;
            fd_write(p, &tg[i]);
            float lm = fd_loss(p, loss);
            tg[i].values[e] = keep;
            fd_write(p, &tg[i]);
            double num = ((double)lp - (double)lm) / (2.0 * eps);
            ck_assert_msg(fabs(a[e] - num) <= 3e-3 + 2e-2 * fabs(num),
                          "gradient of %s, element %lld: analytic %.7g, numeric %.7g", tg[i].label,
                          (long long)e, (double)a[e], num);
        }
        free(a);
    }
    for (int i = 0; i < n; ++i)
        free(tg[i].values);
    clg_graph_free(g);
    clg_context_free(ctx);
}
END_TEST

/* ---- State dict ---- */

/* A clgrad checkpoint of the layer holds exactly the tensors of PyTorch's state dict (names,
 * shapes, F32), and loads back into a new context value for value. */
START_TEST(state_dict_names) {
    static const int cases[] = {0, 3, 6}; /* lstm_bi2 (bare keys), rnn_tanh (no bias), gru_packed */
    const fixture_case *fc = &fixture_cases[cases[_i]];
    clg_context *ctx = new_context();
    clg_rnn l;
    clg_assert_ok(clg_rnn_init(ctx, &l, fc->prefix, &fc->config, 5));
    char path[64], tpath[128];
    snprintf(path, sizeof path, "/tmp/clgrad-test-rnn-%d-%d.safetensors", (int)getpid(), _i);
    snprintf(tpath, sizeof tpath, "fixtures/rnn_%s.safetensors", fc->name);
    clg_assert_ok(clg_checkpoint_save(ctx, path, NULL));
    clg_safetensors *mine = NULL, *torch = NULL;
    clg_assert_ok(clg_safetensors_load(path, &mine));
    clg_assert_ok(clg_safetensors_load(clg_test_path(tpath), &torch));
    ck_assert_uint_eq(clg_safetensors_count(mine), clg_safetensors_count(torch));
    for (size_t i = 0; i < clg_safetensors_count(torch); ++i) {
        const clg_st_view *t = clg_safetensors_at(torch, i);
        const clg_st_view *m = clg_safetensors_find(mine, t->name);
        ck_assert_msg(m != NULL, "clgrad saved no '%s'", t->name);
        ck_assert_int_eq(m->dtype, CLG_ST_DTYPE_F32);
        ck_assert_int_eq(m->ndim, t->ndim);
        for (int d = 0; d < t->ndim; ++d)
            ck_assert(m->shape[d] == t->shape[d]);
    }
    clg_context *ctx2 = new_context();
    clg_rnn l2;
    clg_assert_ok(clg_rnn_init(ctx2, &l2, fc->prefix, &fc->config, 99));
    clg_assert_ok(clg_checkpoint_load(ctx2, path, NULL));
    for (size_t i = 0; i < clg_param_count(ctx2); ++i) {
        clg_param *p = clg_param_at(ctx2, i);
        const clg_st_view *m = clg_safetensors_find(mine, clg_param_name(p));
        float *v = malloc((size_t)clg_param_numel(p) * sizeof *v);
        clg_assert_ok(clg_param_read(p, v, (size_t)clg_param_numel(p) * sizeof *v));
        clg_assert_close(v, m->data, (size_t)clg_param_numel(p), 0.0, 0.0);
        free(v);
    }
    clg_safetensors_free(mine);
    clg_safetensors_free(torch);
    remove(path);
    clg_context_free(ctx2);
    clg_context_free(ctx);
}
END_TEST

/* PyTorch's initialisation: every tensor U(-1/sqrt(H), 1/sqrt(H)), each from its own seed,
 * the same seed giving the same values. */
START_TEST(initialisation) {
    clg_context *ctx = clg_test_context();
    clg_rnn_config c = {.cell = CLG_CELL_LSTM, 40, 25, .num_layers = 2, .bidirectional = true};
    clg_rnn a, b, other;
    clg_assert_ok(clg_rnn_init(ctx, &a, "init_a", &c, 42));
    clg_assert_ok(clg_rnn_init(ctx, &b, "init_b", &c, 42));
    clg_assert_ok(clg_rnn_init(ctx, &other, "init_c", &c, 43));
    const double bound = (double)(float)(1.0 / 5.0);
    float *first = NULL;
    for (int k = 0; k < 2; ++k)
        for (int d = 0; d < 2; ++d)
            for (int t = 0; t < 4; ++t) {
                clg_param *pa = layer_tensor(&a, k, d, t), *pb = layer_tensor(&b, k, d, t);
                clg_param *pc = layer_tensor(&other, k, d, t);
                size_t n = (size_t)clg_param_numel(pa);
                float *va = malloc(n * 4), *vb = malloc(n * 4), *vc = malloc(n * 4);
                clg_assert_ok(clg_param_read(pa, va, n * 4));
                clg_assert_ok(clg_param_read(pb, vb, n * 4));
                clg_assert_ok(clg_param_read(pc, vc, n * 4));
                double lo = 1, hi = -1, mean = 0;
                size_t same_c = 0;
                for (size_t i = 0; i < n; ++i) {
                    lo = fmin(lo, va[i]);
                    hi = fmax(hi, va[i]);
                    mean += va[i] / (double)n;
                    same_c += va[i] == vc[i];
                }
                ck_assert_msg(lo >= -bound && hi <= bound, "%s: [%g, %g] outside +-%g",
                              clg_param_name(pa), lo, hi, bound);
                ck_assert_msg(lo < -0.8 * bound && hi > 0.8 * bound && fabs(mean) < 0.05,
                              "%s: [%g, %g], mean %g: not U(+-%g)", clg_param_name(pa), lo, hi,
                              mean, bound);
                clg_assert_close(vb, va, n, 0.0, 0.0);
                ck_assert_msg(same_c < n / 10, "%s: another seed drew the same values",
                              clg_param_name(pa));
                if (!first) {
                    first = va; /* weight_ih_l0: the other tensors must not repeat it */
                } else {
                    size_t m = n < 100 ? n : 100, same = 0;
                    for (size_t i = 0; i < m; ++i)
                        same += va[i] == first[i];
                    ck_assert_msg(same < m / 10, "%s repeats weight_ih_l0's values",
                                  clg_param_name(pa));
                    free(va);
                }
                free(vb);
                free(vc);
            }
    free(first);
}
END_TEST

/* ---- Errors ---- */

static void expect_init_error(clg_context *ctx, const char *name, const clg_rnn_config *c,
                              const char *needle) {
    size_t before = clg_param_count(ctx);
    clg_rnn l;
    clg_status st = clg_rnn_init(ctx, &l, name, c, 1);
    ck_assert_msg(st != CLG_OK, "config accepted (wanted an error with '%s')", needle);
    ck_assert_msg(strstr(clg_last_error(), needle) != NULL, "error '%s' does not say '%s'",
                  clg_last_error(), needle);
    ck_assert_uint_eq(clg_param_count(ctx), before);
    ck_assert_ptr_null(l.weight_ih[0][0]);
}

START_TEST(bad_configs) {
    clg_context *ctx = clg_test_context();
    const clg_rnn_config good = {.cell = CLG_CELL_LSTM, 4, 3, .num_layers = 2};
    clg_rnn_config c = good;
    c.hidden_size = 0;
    expect_init_error(ctx, "bad", &c, "hidden 0");
    c = good;
    c.input_size = -2;
    expect_init_error(ctx, "bad", &c, "input -2");
    c = good;
    c.num_layers = CLG_RNN_MAX_LAYERS + 1;
    expect_init_error(ctx, "bad", &c, "num_layers 17");
    c.num_layers = -1;
    expect_init_error(ctx, "bad", &c, "num_layers -1");
    c = good;
    c.dropout = 1.0f;
    expect_init_error(ctx, "bad", &c, "dropout 1");
    c.dropout = -0.1f;
    expect_init_error(ctx, "bad", &c, "dropout -0.1");
    c.dropout = NAN;
    expect_init_error(ctx, "bad", &c, "dropout");
    c = good;
    c.cell = CLG_CELL_KIND_COUNT;
    expect_init_error(ctx, "bad", &c, "cell kind");
    c = good;
    c.hidden_size = 1 << 20;
    c.input_size = 1 << 20;
    expect_init_error(ctx, "bad", &c, "too many");
    expect_init_error(ctx, NULL, &good, "required");
    clg_rnn l;
    ck_assert_int_ne(clg_rnn_init(ctx, &l, "bad", NULL, 1), CLG_OK);
    ck_assert_int_ne(clg_rnn_init(NULL, &l, "bad", &good, 1), CLG_OK);
    /* a name taken by a parameter of another layer: nothing is created */
    clg_assert_ok(clg_rnn_init(ctx, &l, "dup", &good, 1));
    expect_init_error(ctx, "dup", &good, "dup.weight_ih_l0");
    /* a clash at the last name: none of the earlier ones is created */
    ck_assert_ptr_nonnull(clg_param_new(ctx, "dup2.bias_hh_l1", CLG_F32, 1, (int64_t[]){12}));
    expect_init_error(ctx, "dup2", &good, "dup2.bias_hh_l1");
    ck_assert_ptr_null(clg_param_find(ctx, "dup2.weight_ih_l0"));
}
END_TEST

/* A forward with a bad input poisons the graph naming rnn and the shapes. */
static void expect_forward_error(clg_context *ctx, const clg_rnn *l, int xd, const int64_t *xs,
                                 clg_dtype xt, const int64_t *hs, const int64_t *cs,
                                 const int64_t *lens, clg_dtype lt, const char *needle) {
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", xt, xd, xs);
    clg_rnn_state init = {hs ? clg_input(g, "h", CLG_F32, 3, hs) : NULL,
                          cs ? clg_input(g, "c", CLG_F32, 3, cs) : NULL};
    clg_tensor *len = lens ? clg_input(g, "len", lt, lens[0], lens + 1) : NULL;
    clg_assert_ok(clg_graph_status(g));
    clg_rnn_state fin;
    clg_tensor *y = clg_rnn_forward(g, l, x, &init, len, true, 0, &fin);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_ne(clg_graph_status(g), CLG_OK);
    ck_assert_ptr_eq(fin.h, y);
    ck_assert_ptr_eq(fin.c, y);
    const char *msg = clg_graph_error(g);
    ck_assert_msg(strstr(msg, "rnn") && strstr(msg, needle), "message '%s' does not say '%s'", msg,
                  needle);
    clg_plan *p = NULL;
    ck_assert_int_ne(clg_graph_compile(g, NULL, &p), CLG_OK);
    ck_assert_ptr_null(p);
    clg_graph_free(g);
}

START_TEST(bad_inputs) {
    clg_context *ctx = clg_test_context();
    clg_rnn_config c = {.cell = CLG_CELL_GRU, 4, 3, .num_layers = 2, .bidirectional = true};
    clg_rnn l;
    clg_assert_ok(clg_rnn_init(ctx, &l, "badin", &c, 1));
    const int64_t x[3] = {6, 2, 4}, h[3] = {4, 2, 3};
    expect_forward_error(ctx, &l, 2, (const int64_t[]){6, 4}, CLG_F32, NULL, NULL, NULL, 0,
                         "[6, 4] f32");
    expect_forward_error(ctx, &l, 3, (const int64_t[]){6, 2, 5}, CLG_F32, NULL, NULL, NULL, 0,
                         "[6, 2, 5]");
    expect_forward_error(ctx, &l, 3, x, CLG_I32, NULL, NULL, NULL, 0, "i32");
    expect_forward_error(ctx, &l, 3, x, CLG_F32, (const int64_t[]){2, 2, 3}, NULL, NULL, 0,
                         "initial h [2, 2, 3]");
    expect_forward_error(ctx, &l, 3, x, CLG_F32, (const int64_t[]){4, 6, 3}, NULL, NULL, 0,
                         "[4, 2, 3]");
    expect_forward_error(ctx, &l, 3, x, CLG_F32, h, h, NULL, 0, "LSTM only");
    expect_forward_error(ctx, &l, 3, x, CLG_F32, h, NULL, (const int64_t[]){1, 2}, CLG_F32,
                         "lengths [2] f32");
    expect_forward_error(ctx, &l, 3, x, CLG_F32, h, NULL, (const int64_t[]){1, 6}, CLG_I32,
                         "lengths [6] i32");
    expect_forward_error(ctx, NULL, 3, x, CLG_F32, NULL, NULL, NULL, 0, "not initialised");
    clg_rnn empty;
    memset(&empty, 0, sizeof empty);
    expect_forward_error(ctx, &empty, 3, x, CLG_F32, NULL, NULL, NULL, 0, "not initialised");
    ck_assert_ptr_null(clg_rnn_forward(NULL, &l, NULL, NULL, NULL, false, 0, NULL));
    /* an x of another graph */
    clg_graph *g1 = clg_graph_new(ctx), *g2 = clg_graph_new(ctx);
    clg_tensor *xo = clg_input(g1, "x", CLG_F32, 3, x);
    clg_rnn_state fin;
    ck_assert_ptr_nonnull(clg_rnn_forward(g2, &l, xo, NULL, NULL, false, 0, &fin));
    ck_assert_int_ne(clg_graph_status(g2), CLG_OK);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(g2), "rnn"));
    clg_graph_free(g1);
    clg_graph_free(g2);
}
END_TEST

static Suite *rnn_suite(void) {
    Suite *s = suite_create("rnn");
    TCase *fwd = tcase_create("forward");
    tcase_add_loop_test(fwd, torch_fixture, 0, N_FIXTURES);
    tcase_add_loop_test(fwd, against_reference, 0, N_REF);
    tcase_add_test(fwd, dropout_between_layers);
    TCase *grad = tcase_create("gradient");
    tcase_add_loop_test(grad, gradients, 0, (int)(sizeof grad_cases / sizeof grad_cases[0]));
    TCase *params = tcase_create("parameters");
    tcase_add_loop_test(params, state_dict_names, 0, 3);
    tcase_add_test(params, initialisation);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, bad_configs);
    tcase_add_test(errors, bad_inputs);
    TCase *all[] = {fwd, grad, params, errors};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) {
        tcase_set_timeout(all[i], 600);
        suite_add_tcase(s, all[i]);
    }
    return s;
}

int main(void) {
    return clg_test_run(rnn_suite());
}
