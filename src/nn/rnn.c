/* Recurrent layers: torch.nn.RNN, LSTM and GRU as parameters plus a forward pass built from
 * ops. Per layer and direction, the input's part of every step's gates is one GEMM over the
 * whole sequence; the steps themselves are clg_recurrent's (its kernels and its backward). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "clgrad/nn.h"
#include "graph/graph_internal.h"

/* The i-th output of splitmix64 seeded with seed: one Philox key per tensor. */
static uint64_t nth_seed(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int rnn_layers(const clg_rnn_config *c) {
    return c->num_layers ? c->num_layers : 1;
}
static int rnn_dirs(const clg_rnn_config *c) {
    return c->bidirectional ? 2 : 1;
}

static const char *cell_name(clg_cell_kind cell) {
    switch (cell) {
    case CLG_CELL_RNN_TANH:
        return "RNN_TANH";
    case CLG_CELL_RNN_RELU:
        return "RNN_RELU";
    case CLG_CELL_LSTM:
        return "LSTM";
    case CLG_CELL_GRU:
        return "GRU";
    default:
        return "?";
    }
}

/* The four tensors of one layer and direction, in PyTorch's state-dict order. */
enum { RNN_W_IH, RNN_W_HH, RNN_B_IH, RNN_B_HH, RNN_TENSORS };
static const char *const rnn_tensor_names[RNN_TENSORS] = {"weight_ih", "weight_hh", "bias_ih",
                                                          "bias_hh"};

static clg_param **rnn_slot(clg_rnn *l, int kind, int k, int d) {
    switch (kind) {
    case RNN_W_IH:
        return &l->weight_ih[k][d];
    case RNN_W_HH:
        return &l->weight_hh[k][d];
    case RNN_B_IH:
        return &l->bias_ih[k][d];
    default:
        return &l->bias_hh[k][d];
    }
}

static clg_status check_config(const char *name, const clg_rnn_config *c) {
    int gates = (unsigned)c->cell < CLG_CELL_KIND_COUNT ? clg_cell_gates(c->cell) : -1;
    if (gates < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_rnn_init('%s'): unknown cell kind %d", name,
                        (int)c->cell);
    if (c->input_size < 1 || c->hidden_size < 1)
        return clg_fail(CLG_ERR_SHAPE, "clg_rnn_init('%s'): bad sizes input %lld, hidden %lld",
                        name, (long long)c->input_size, (long long)c->hidden_size);
    if (c->num_layers < 0 || c->num_layers > CLG_RNN_MAX_LAYERS)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_rnn_init('%s'): num_layers %d is not in 1 .. %d (0 means 1)", name,
                        c->num_layers, CLG_RNN_MAX_LAYERS);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_rnn_init('%s'): dropout %g is not in [0, 1)",
                        name, (double)c->dropout);
    /* The widest weight: [G H, max(I, dirs H)]; its element count must fit a kernel's i32. */
    int64_t gh = (int64_t)gates * c->hidden_size;
    int64_t in =
        c->input_size > rnn_dirs(c) * c->hidden_size ? c->input_size : rnn_dirs(c) * c->hidden_size;
    if (c->hidden_size > INT32_MAX / gates || in > INT32_MAX / gh)
        return clg_fail(CLG_ERR_SHAPE, "clg_rnn_init('%s'): %s weights [%lld, %lld] are too many",
                        name, cell_name(c->cell), (long long)gh, (long long)in);
    return CLG_OK;
}

static void rnn_param_name(char *buf, size_t size, const char *name, int kind, int k, int d) {
    snprintf(buf, size, "%s%s%s_l%d%s", name, *name ? "." : "", rnn_tensor_names[kind], k,
             d ? "_reverse" : "");
}

clg_status clg_rnn_init(clg_context *ctx, clg_rnn *layer, const char *name,
                        const clg_rnn_config *config, uint64_t seed) {
    if (!ctx || !layer || !name || !config)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_rnn_init: ctx, layer, name (may be empty) and config are required");
    const clg_rnn_config c = *config; /* config may point into *layer */
    memset(layer, 0, sizeof *layer);
    clg_status st = check_config(name, &c);
    if (st != CLG_OK) return st;
    const int layers = rnn_layers(&c), dirs = rnn_dirs(&c), kinds = c.no_bias ? 2 : RNN_TENSORS;
    const int64_t gh = clg_cell_gates(c.cell) * c.hidden_size;
    char pname[600];
    for (int k = 0; k < layers; ++k)
        for (int d = 0; d < dirs; ++d)
            for (int t = 0; t < kinds; ++t) {
                rnn_param_name(pname, sizeof pname, name, t, k, d);
                if (clg_param_find(ctx, pname))
                    return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                                    "clg_rnn_init: a parameter named '%s' already exists", pname);
            }
    /* PyTorch's reset_parameters: every tensor U(-1/sqrt(H), 1/sqrt(H)). */
    const float bound = (float)(1.0 / sqrt((double)c.hidden_size));
    clg_rnn made = {.config = c};
    clg_param *created[CLG_RNN_MAX_LAYERS * 2 * RNN_TENSORS];
    int n = 0;
    for (int k = 0; k < layers && st == CLG_OK; ++k)
        for (int d = 0; d < dirs && st == CLG_OK; ++d)
            for (int t = 0; t < kinds && st == CLG_OK; ++t) {
                rnn_param_name(pname, sizeof pname, name, t, k, d);
                int64_t in = k == 0 ? c.input_size : dirs * c.hidden_size;
                int64_t shape[2] = {gh, t == RNN_W_IH ? in : c.hidden_size};
                clg_param *p = clg_param_new(ctx, pname, CLG_F32, t < RNN_B_IH ? 2 : 1, shape);
                if (!p) {
                    st = CLG_ERR_OUT_OF_MEMORY; /* the sizes were checked: the message says */
                    break;
                }
                created[n] = p;
                st = clg_init_uniform(p, -bound, bound, nth_seed(seed, (uint64_t)n));
                n++;
                *rnn_slot(&made, t, k, d) = p;
            }
    if (st != CLG_OK) {
        while (n > 0)
            clg_param_discard(created[--n]);
        return st;
    }
    *layer = made;
    return CLG_OK;
}

/* ---- forward ---- */

static clg_tensor *rnn_fail(clg_rnn_state *final, clg_tensor *poison) {
    if (final) *final = (clg_rnn_state){.h = poison, .c = poison};
    return poison;
}

/* A state tensor must be [layers * dirs, B, H] f32. */
static bool state_ok(const clg_tensor *s, int64_t ld, int64_t batch, int64_t hidden) {
    return s->dtype == CLG_F32 && s->ndim == 3 && s->shape[0] == ld && s->shape[1] == batch &&
           s->shape[2] == hidden;
}

/* Entry k of a state [L D, B, H] as [B, H], or NULL. */
static clg_tensor *state_at(clg_graph *g, clg_tensor *s, int64_t k) {
    if (!s) return NULL;
    return clg_squeeze(g, clg_slice(g, s, 0, k, k + 1, 1), 0);
}

clg_tensor *clg_rnn_forward(clg_graph *g, const clg_rnn *layer, clg_tensor *x,
                            const clg_rnn_state *initial, clg_tensor *lengths, bool training,
                            uint64_t seed, clg_rnn_state *final) {
    if (!g) return NULL;
    clg_tensor *h0 = initial ? initial->h : NULL, *c0 = initial ? initial->c : NULL;
    clg_tensor *given[4] = {x};
    int n_given = 1;
    if (h0) given[n_given++] = h0;
    if (c0) given[n_given++] = c0;
    if (lengths) given[n_given++] = lengths;
    if (!clg_check_inputs(g, "rnn", n_given, given)) return rnn_fail(final, g->poison);
    if (!layer || !layer->weight_ih[0][0] || check_config("", &layer->config) != CLG_OK)
        return rnn_fail(final, clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                                              "rnn: the layer is not initialised (clg_rnn_init)"));
    const clg_rnn_config c = layer->config;
    const int layers = rnn_layers(&c), dirs = rnn_dirs(&c);
    const int64_t hidden = c.hidden_size;
    const char *pname = clg_param_name(layer->weight_ih[0][0]);
    char b1[200], b2[200], b3[200];
    if (x->dtype != CLG_F32 || x->ndim != 3 || x->shape[2] != c.input_size)
        return rnn_fail(
            final, clg_graph_fail(
                       g, CLG_ERR_SHAPE, "rnn('%s', %s): x %s is not %s f32 with input_size %lld",
                       pname, cell_name(c.cell), clg_tensor_describe(x, b1, sizeof b1),
                       c.batch_first ? "[B, T, I]" : "[T, B, I]", (long long)c.input_size));
    const int64_t steps = x->shape[c.batch_first ? 1 : 0], batch = x->shape[c.batch_first ? 0 : 1];
    const int64_t ld = (int64_t)layers * dirs;
    for (int i = 0; i < 2; ++i) {
        clg_tensor *s = i ? c0 : h0;
        if (!s) continue;
        if (i && c.cell != CLG_CELL_LSTM)
            return rnn_fail(final, clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                                                  "rnn('%s', %s): an initial c is for LSTM only",
                                                  pname, cell_name(c.cell)));
        if (!state_ok(s, ld, batch, hidden)) {
            int64_t want[3] = {ld, batch, hidden};
            return rnn_fail(final, clg_graph_fail(g, CLG_ERR_SHAPE,
                                                  "rnn('%s', %s): initial %s %s is not %s f32 "
                                                  "(layers * dirs, B, H) for x %s",
                                                  pname, cell_name(c.cell), i ? "c" : "h",
                                                  clg_tensor_describe(s, b1, sizeof b1),
                                                  clg_shape_str(3, want, b2, sizeof b2),
                                                  clg_shape_str(x->ndim, x->shape, b3, sizeof b3)));
        }
    }
    if (lengths && (lengths->dtype != CLG_I32 || lengths->ndim != 1 || lengths->shape[0] != batch))
        return rnn_fail(
            final,
            clg_graph_fail(g, CLG_ERR_SHAPE, "rnn('%s', %s): lengths %s is not i32 [%lld] (B of x)",
                           pname, cell_name(c.cell), clg_tensor_describe(lengths, b1, sizeof b1),
                           (long long)batch));

    clg_tensor *seq = c.batch_first ? clg_transpose(g, x, 0, 1) : x; /* [T, B, I] */
    clg_tensor *hn[CLG_RNN_MAX_LAYERS * 2], *cn[CLG_RNN_MAX_LAYERS * 2];
    const int64_t gh = clg_cell_gates(c.cell) * hidden;
    for (int k = 0; k < layers; ++k) {
        int64_t in = k == 0 ? c.input_size : dirs * hidden;
        clg_tensor *flat = clg_reshape(g, seq, 2, (const int64_t[]){steps * batch, in});
        clg_tensor *outs[2];
        for (int d = 0; d < dirs; ++d) {
            clg_tensor *w_ih = clg_param_tensor(g, layer->weight_ih[k][d]);
            clg_tensor *xp = clg_matmul(g, flat, w_ih, false, true); /* [T B, I] . [G H, I]^T */
            if (layer->bias_ih[k][d])
                xp = clg_add(g, xp, clg_param_tensor(g, layer->bias_ih[k][d]));
            xp = clg_reshape(g, xp, 3, (const int64_t[]){steps, batch, gh});
            clg_tensor *b_hh =
                layer->bias_hh[k][d] ? clg_param_tensor(g, layer->bias_hh[k][d]) : NULL;
            int64_t idx = (int64_t)k * dirs + d;
            cn[idx] = NULL;
            clg_recurrent(g, c.cell, xp, clg_param_tensor(g, layer->weight_hh[k][d]), b_hh,
                          state_at(g, h0, idx), state_at(g, c0, idx), lengths, d == 1, &outs[d],
                          &hn[idx], c.cell == CLG_CELL_LSTM ? &cn[idx] : NULL);
        }
        seq = dirs == 2 ? clg_concat(g, 2, outs, 2) : outs[0]; /* [T, B, dirs H] */
        if (training && c.dropout > 0.0f && k + 1 < layers)
            seq = clg_dropout(g, seq, c.dropout, true, nth_seed(seed, (uint64_t)k));
    }
    if (c.batch_first) seq = clg_transpose(g, seq, 0, 1);
    if (clg_graph_status(g) != CLG_OK) return rnn_fail(final, g->poison);
    if (final) {
        final->h = clg_stack(g, (int)ld, hn, 0);
        final->c = c.cell == CLG_CELL_LSTM ? clg_stack(g, (int)ld, cn, 0) : NULL;
        if (clg_graph_status(g) != CLG_OK) return rnn_fail(final, g->poison);
    }
    return seq;
}
