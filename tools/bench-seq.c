/* Sequence models on the selected device: the probes of issue 13, each a whole training step
 * (forward, backward, Adam) of
 *   rnn T     unrolled tanh RNN, batch 32, hidden 256, vocabulary 65, a loss on every step
 *   lstm T    LSTM from one GEMM of [x_t, h] and four slices of the gate matrix, same sizes
 *   lstm-layer T  the same LSTM in cuDNN's form: one GEMM for every step's input part, then
 *             clg_recurrent (one GEMM and one cell kernel per step), one GEMM for the readout
 *   block     one pre-norm Transformer block, batch 12, T 64, C 128, 4 heads, causal, GELU MLP
 *   stack     four such blocks
 * (the blocks embed 65 tokens plus positions and end in a layer norm and a 65-way head), and
 * for each: nodes, kernels per step (and how many are fills and copies), programs, time to the end of the first step in a process
 * with empty caches (cold: a fresh machine) and with the caches it filled (warm), and the
 * median ms per step. tools/bench-seq.py runs the same models in PyTorch alongside.
 *   bench-seq [--probes rnn:64,rnn:256,lstm:64,lstm:256,lstm-layer:64,block,stack] [--runs N]
 *   bench-seq --child PROBE T  (what the parent runs; prints one result line) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

#include "bench-child.h"
#include "core/clock.h"
#include "core/program.h"
#include "runtime/plan.h"

#define V 65

static int RUNS = 5;

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if ((x) != CLG_OK) {                                                                   \
            fprintf(stderr, "bench-seq: %s: %s\n", #x, clg_last_error());                     \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

typedef struct model {
    clg_context *ctx;
    clg_graph *g;
    clg_tensor *x, *y, *loss; /* tokens and targets (i32), the mean loss */
    int64_t tokens;           /* elements of x and y */
    int n_params;
} model;

static clg_tensor *param(model *m, const char *name, int ndim, const int64_t *shape, float std) {
    clg_param *p = clg_param_new(m->ctx, name, CLG_F32, ndim, shape);
    if (!p) CHECK(CLG_ERR_OUT_OF_MEMORY);
    /* std > 0: normal; 0: zeros; < 0: ones (a norm's weight) */
    ++m->n_params;
    if (std > 0.0f) CHECK(clg_init_normal(p, 0.0f, std, (uint64_t)m->n_params));
    else CHECK(clg_init_constant(p, std < 0.0f ? 1.0f : 0.0f));
    return clg_param_tensor(m->g, p);
}

#define P(name, std, ...)                                                                      \
    param(m, name, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                \
          (int64_t[]){__VA_ARGS__}, std)

static clg_tensor *step_slice(clg_graph *g, clg_tensor *x, int t, int64_t B) {
    return clg_reshape(g, clg_slice(g, x, 0, t, t + 1, 1), 1, (int64_t[]){B});
}

/* h_t = tanh(E[x_t] + h W_hh + b), logits_t = h_t W_hy + b_y */
static void build_rnn(model *m, int T) {
    const int64_t B = 32, H = 256;
    clg_graph *g = m->g;
    m->x = clg_input(g, "x", CLG_I32, 2, (int64_t[]){T, B});
    m->y = clg_input(g, "y", CLG_I32, 2, (int64_t[]){T, B});
    m->tokens = T * B;
    clg_tensor *emb = P("emb", 0.1f, V, H), *whh = P("w_hh", 0.05f, H, H), *bh = P("b_h", 0, H);
    clg_tensor *why = P("w_hy", 0.05f, H, V), *by = P("b_y", 0, V);
    clg_tensor *h = clg_full(g, 0.0f, 2, (int64_t[]){B, H}), *loss = NULL;
    for (int t = 0; t < T; ++t) {
        clg_tensor *in = clg_embedding(g, emb, step_slice(g, m->x, t, B));
        h = clg_tanh(g, clg_add(g, clg_add(g, in, clg_matmul(g, h, whh, false, false)), bh));
        clg_tensor *logits = clg_add(g, clg_matmul(g, h, why, false, false), by);
        clg_tensor *l = clg_cross_entropy(g, logits, step_slice(g, m->y, t, B), CLG_REDUCTION_MEAN);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    m->loss = clg_mul_scalar(g, loss, 1.0f / (float)T);
}

/* gates = [E[x_t], h] W + b; i, f, g, o = its four column blocks;
 * c = sigmoid(f) c + sigmoid(i) tanh(g), h = sigmoid(o) tanh(c) */
static void build_lstm(model *m, int T) {
    const int64_t B = 32, H = 256;
    clg_graph *g = m->g;
    m->x = clg_input(g, "x", CLG_I32, 2, (int64_t[]){T, B});
    m->y = clg_input(g, "y", CLG_I32, 2, (int64_t[]){T, B});
    m->tokens = T * B;
    clg_tensor *emb = P("emb", 0.1f, V, H), *w = P("w", 0.05f, 2 * H, 4 * H);
    clg_tensor *b = P("b", 0, 4 * H), *why = P("w_hy", 0.05f, H, V), *by = P("b_y", 0, V);
    clg_tensor *h = clg_full(g, 0.0f, 2, (int64_t[]){B, H}), *c = h, *loss = NULL;
    for (int t = 0; t < T; ++t) {
        clg_tensor *in = clg_embedding(g, emb, step_slice(g, m->x, t, B));
        clg_tensor *xh = clg_concat(g, 2, (clg_tensor *const[]){in, h}, 1);
        clg_tensor *gates = clg_add(g, clg_matmul(g, xh, w, false, false), b);
        clg_tensor *gi = clg_sigmoid(g, clg_slice(g, gates, 1, 0, H, 1));
        clg_tensor *gf = clg_sigmoid(g, clg_slice(g, gates, 1, H, 2 * H, 1));
        clg_tensor *gg = clg_tanh(g, clg_slice(g, gates, 1, 2 * H, 3 * H, 1));
        clg_tensor *go = clg_sigmoid(g, clg_slice(g, gates, 1, 3 * H, 4 * H, 1));
        c = clg_add(g, clg_mul(g, gf, c), clg_mul(g, gi, gg));
        h = clg_mul(g, go, clg_tanh(g, c));
        clg_tensor *logits = clg_add(g, clg_matmul(g, h, why, false, false), by);
        clg_tensor *l = clg_cross_entropy(g, logits, step_slice(g, m->y, t, B), CLG_REDUCTION_MEAN);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    m->loss = clg_mul_scalar(g, loss, 1.0f / (float)T);
}

/* The same model as build_lstm (PyTorch's gate order and its two biases, as torch.nn.LSTM)
 * through clg_recurrent: xproj = E[x] W_ih^T + b_ih for all steps, the steps' recurrence, and
 * one readout GEMM and one cross-entropy over all T B positions (the mean of the per-step
 * means, as every step has B rows). */
static void build_lstm_layer(model *m, int T) {
    const int64_t B = 32, H = 256;
    clg_graph *g = m->g;
    m->x = clg_input(g, "x", CLG_I32, 2, (int64_t[]){T, B});
    m->y = clg_input(g, "y", CLG_I32, 2, (int64_t[]){T, B});
    m->tokens = T * B;
    clg_tensor *emb = P("emb", 0.1f, V, H), *wih = P("w_ih", 0.05f, 4 * H, H);
    clg_tensor *bih = P("b_ih", 0, 4 * H), *whh = P("w_hh", 0.05f, 4 * H, H);
    clg_tensor *bhh = P("b_hh", 0, 4 * H), *why = P("w_hy", 0.05f, H, V), *by = P("b_y", 0, V);
    clg_tensor *e = clg_reshape(g, clg_embedding(g, emb, m->x), 2, (int64_t[]){T * B, H});
    clg_tensor *xproj = clg_add(g, clg_matmul(g, e, wih, false, true), bih);
    xproj = clg_reshape(g, xproj, 3, (int64_t[]){T, B, 4 * H});
    clg_tensor *out = NULL, *h_n = NULL;
    CHECK(clg_recurrent(g, CLG_CELL_LSTM, xproj, whh, bhh, NULL, NULL, NULL, false, &out, &h_n,
                        NULL));
    clg_tensor *logits = clg_add(
        g, clg_matmul(g, clg_reshape(g, out, 2, (int64_t[]){T * B, H}), why, false, false), by);
    m->loss = clg_cross_entropy(g, logits, clg_reshape(g, m->y, 1, (int64_t[]){T * B}),
                                CLG_REDUCTION_MEAN);
}

/* Layer norm over the last axis with weight and bias (CLGRAD_ROWS=composite times the
 * composite of mean and variance ops). */
static clg_tensor *layer_norm(model *m, clg_tensor *x, int64_t C, const char *name) {
    char w[48], b[48];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    return clg_layer_norm(m->g, x, 1, param(m, w, 1, &C, -1.0f), param(m, b, 1, &C, 0.0f), 1e-5f);
}

/* x [B T, C] -> x + proj(causal attention(ln1 x)), then + mlp(ln2 x) */
static clg_tensor *block(model *m, clg_tensor *x, int64_t B, int64_t T, int64_t C, int64_t NH,
                         int index) {
    clg_graph *g = m->g;
    const int64_t D = C / NH;
    char n[64];
#define NAME(s) (snprintf(n, sizeof n, "h%d.%s", index, s), n)
    clg_tensor *a = layer_norm(m, x, C, NAME("ln1"));
    clg_tensor *qkv = clg_add(g, clg_matmul(g, a, P(NAME("attn.w"), 0.02f, C, 3 * C), false, false),
                              P(NAME("attn.b"), 0, 3 * C));
    /* [B T, 3C] -> [3, B, NH, T, D] */
    qkv = clg_permute(g, clg_reshape(g, qkv, 5, (int64_t[]){B, T, 3, NH, D}),
                      (int[]){2, 0, 3, 1, 4});
    clg_tensor *q = clg_reshape(g, clg_slice(g, qkv, 0, 0, 1, 1), 4, (int64_t[]){B, NH, T, D});
    clg_tensor *k = clg_reshape(g, clg_slice(g, qkv, 0, 1, 2, 1), 4, (int64_t[]){B, NH, T, D});
    clg_tensor *v = clg_reshape(g, clg_slice(g, qkv, 0, 2, 3, 1), 4, (int64_t[]){B, NH, T, D});
    /* causal, scale 1/sqrt(D); CLGRAD_ATTENTION=composite times the unfused form */
    clg_tensor *o = clg_attention(g, q, k, v, NULL, 0.0f, true); /* [B, NH, T, D] */
    o = clg_reshape(g, clg_permute(g, o, (int[]){0, 2, 1, 3}), 2, (int64_t[]){B * T, C});
    o = clg_add(g, clg_matmul(g, o, P(NAME("proj.w"), 0.02f, C, C), false, false),
                P(NAME("proj.b"), 0, C));
    x = clg_add(g, x, o);
    clg_tensor *f = layer_norm(m, x, C, NAME("ln2"));
    f = clg_gelu(g, clg_add(g, clg_matmul(g, f, P(NAME("fc.w"), 0.02f, C, 4 * C), false, false),
                            P(NAME("fc.b"), 0, 4 * C)));
    f = clg_add(g, clg_matmul(g, f, P(NAME("fc2.w"), 0.02f, 4 * C, C), false, false),
                P(NAME("fc2.b"), 0, C));
#undef NAME
    return clg_add(g, x, f);
}

static void build_blocks(model *m, int layers) {
    const int64_t B = 12, T = 64, C = 128, NH = 4;
    clg_graph *g = m->g;
    m->x = clg_input(g, "x", CLG_I32, 1, (int64_t[]){B * T});
    m->y = clg_input(g, "y", CLG_I32, 1, (int64_t[]){B * T});
    m->tokens = B * T;
    clg_tensor *tok = clg_embedding(g, P("wte", 0.02f, V, C), m->x);
    clg_tensor *pos = P("wpe", 0.02f, T, C);
    clg_tensor *x = clg_reshape(g, clg_add(g, clg_reshape(g, tok, 3, (int64_t[]){B, T, C}), pos),
                                2, (int64_t[]){B * T, C});
    for (int i = 0; i < layers; ++i) x = block(m, x, B, T, C, NH, i);
    x = layer_norm(m, x, C, "ln_f");
    clg_tensor *logits = clg_matmul(g, x, P("head", 0.02f, C, V), false, false);
    m->loss = clg_cross_entropy(g, logits, m->y, CLG_REDUCTION_MEAN);
}

typedef struct result {
    size_t nodes, kernels, programs, fills, copies;
    double first_ms, step_ms;
} result;

static result child(const char *probe, int T) {
    double t0 = clg_now_ms();
    model mm = {0}, *m = &mm;
    CHECK(clg_context_create(NULL, &m->ctx));
    m->g = clg_graph_new(m->ctx);
    if (strcmp(probe, "rnn") == 0) build_rnn(m, T);
    else if (strcmp(probe, "lstm") == 0) build_lstm(m, T);
    else if (strcmp(probe, "lstm-layer") == 0) build_lstm_layer(m, T);
    else if (strcmp(probe, "block") == 0) build_blocks(m, 1);
    else if (strcmp(probe, "stack") == 0) build_blocks(m, 4);
    else {
        fprintf(stderr, "bench-seq: unknown probe '%s'\n", probe);
        exit(2);
    }
    CHECK(clg_graph_output(m->g, m->loss));
    CHECK(clg_graph_status(m->g));
    CHECK(clg_backward(m->g, m->loss));
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAM);
    clg_optimizer *opt = clg_optimizer_new(m->ctx, &oc);
    CHECK(opt ? clg_optimizer_apply(opt, m->g, NULL) : CLG_ERR_OUT_OF_MEMORY);
    clg_plan *plan = NULL;
    CHECK(clg_graph_compile(m->g, NULL, &plan));
    result r = {.nodes = clg_graph_node_count(m->g), .kernels = clg_plan_kernel_count(plan)};
    for (size_t i = 0; i < plan->n_steps; ++i) {
        r.fills += strcmp(plan->steps[i].label, "fill") == 0;
        r.copies += strcmp(plan->steps[i].label, "copy") == 0;
    }
    int32_t *xs = malloc((size_t)m->tokens * sizeof *xs), *ys = malloc((size_t)m->tokens * sizeof *ys);
    for (int64_t i = 0; i < m->tokens; ++i) {
        xs[i] = (int32_t)((i * 7 + 3) % V);
        ys[i] = (int32_t)((i * 11 + 5) % V);
    }
    double ms[16];
    float l = 0.0f;
    for (int k = -1; k < RUNS; ++k) {
        double s0 = clg_now_ms();
        CHECK(clg_plan_write(plan, m->x, xs, (size_t)m->tokens * sizeof *xs));
        CHECK(clg_plan_write(plan, m->y, ys, (size_t)m->tokens * sizeof *ys));
        CHECK(clg_plan_run(plan));
        CHECK(clg_plan_read(plan, m->loss, &l, sizeof l));
        if (k < 0) r.first_ms = clg_now_ms() - t0;
        else ms[k] = clg_now_ms() - s0;
    }
    if (!isfinite(l)) {
        fprintf(stderr, "bench-seq: %s: loss %g\n", probe, (double)l);
        exit(1);
    }
    r.step_ms = clg_median(ms, RUNS);
    clg_program_stats ps = clg_program_cache_stats(m->ctx);
    r.programs = ps.disk_hits + ps.disk_misses;
    free(xs);
    free(ys);
    clg_context_free(m->ctx);
    return r;
}

static bool measure(const char *self, const char *probe, int T, const char *cache, result *r) {
    char t[32], runs[32], line[512];
    snprintf(t, sizeof t, "%d", T);
    snprintf(runs, sizeof runs, "%d", RUNS);
    char *argv[] = {(char *)self, "--child", (char *)probe, t, "--runs", runs, NULL};
    return bench_child_line(argv, cache, line, sizeof line) &&
           sscanf(line, "%zu %zu %zu %zu %zu %lf %lf", &r->nodes, &r->kernels, &r->fills,
                  &r->copies, &r->programs, &r->first_ms, &r->step_ms) == 7;
}

int main(int argc, char **argv) {
    const char *probes = "rnn:64,rnn:256,lstm:64,lstm:256,lstm-layer:64,lstm-layer:256,block,stack";
    const char *child_probe = NULL;
    int child_T = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--probes") == 0 && i + 1 < argc) {
            probes = argv[++i];
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            RUNS = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--child") == 0 && i + 2 < argc) {
            child_probe = argv[++i];
            child_T = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench-seq [--probes rnn:64,lstm:256,lstm-layer:64,block,stack] [--runs N]\n");
            return 2;
        }
    }
    if (RUNS < 1 || RUNS > 16) RUNS = 5;
    if (child_probe) {
        result r = child(child_probe, child_T);
        printf("%zu %zu %zu %zu %zu %.3f %.3f\n", r.nodes, r.kernels, r.fills, r.copies,
               r.programs, r.first_ms, r.step_ms);
        return 0;
    }
    printf("%-15s %8s %8s %12s %9s %14s %14s %9s\n", "probe", "nodes", "kernels",
           "fills/copies", "programs", "first step(c)", "first step(w)", "step ms");
    char *list = strdup(probes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        char name[32];
        int T = 64;
        if (sscanf(tok, "%31[a-z-]:%d", name, &T) < 1) continue;
        char cache[300];
        if (!bench_child_cache_new("clgrad-bench-seq", cache, sizeof cache)) continue;
        result cold, warm;
        bool ok = measure(argv[0], name, T, cache, &cold) && measure(argv[0], name, T, cache, &warm);
        bench_child_cache_remove(cache);
        if (!ok) {
            printf("%-10s failed (run bench-seq --child %s %d to see why)\n", tok, name, T);
            continue;
        }
        char fc[32];
        snprintf(fc, sizeof fc, "%zu/%zu", warm.fills, warm.copies);
        printf("%-15s %8zu %8zu %12s %9zu %12.0f ms %12.0f ms %9.2f\n", tok, warm.nodes,
               warm.kernels, fc, warm.programs, cold.first_ms, warm.first_ms, warm.step_ms);
        fflush(stdout);
    }
    free(list);
    printf("first step: process start to the end of the first training step, with empty "
           "clgrad and pocl caches (c) and with the caches that run filled (w); step: median of "
           "%d steps after it\n",
           RUNS);
    return 0;
}
