/* Transformer layers (clgrad/transformer.h): embeddings, layer norm, multi-head attention,
 * the MLP and residual blocks, each a set of named parameters plus a forward pass built from
 * ops (clg_attention, clg_layer_norm, clg_linear_forward, clg_dropout), so gradients and
 * fusion come from the engine. The GPT and the KV cache are in transformer_gpt.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/ops.h"
#include "clgrad/transformer.h"
#include "core/error.h"
#include "graph/graph_internal.h"
#include "nn/transformer_internal.h"

/* clg_param_new failed: a duplicate name or no memory, as its message says. */
#define PARAM_FAILED CLG_ERR_INVALID_ARGUMENT

uint64_t clg_tf_seed(uint64_t seed, uint64_t k) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (k + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void clg_tf_rollback(clg_context *ctx, size_t n0) {
    while (clg_param_count(ctx) > n0)
        clg_param_discard(clg_param_at(ctx, clg_param_count(ctx) - 1));
}

/* ---- Embeddings ---- */

clg_status clg_embed_init(clg_context *ctx, clg_embed *e, const char *name, int64_t num,
                          int64_t dim, float std, uint64_t seed) {
    if (!ctx || !e || !name || !*name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_embed_init: ctx, e and a name are required");
    memset(e, 0, sizeof *e);
    char wname[512];
    snprintf(wname, sizeof wname, "%s.weight", name);
    int64_t shape[2] = {num, dim};
    clg_param *w = clg_param_new(ctx, wname, CLG_F32, 2, shape);
    if (!w) return PARAM_FAILED;
    clg_status st = clg_init_normal(w, 0.0f, std > 0 ? std : CLG_TRANSFORMER_INIT_STD, seed);
    if (st != CLG_OK) {
        clg_param_discard(w);
        return st;
    }
    *e = (clg_embed){.weight = w, .num = num, .dim = dim};
    return CLG_OK;
}

clg_tensor *clg_embed_forward(clg_graph *g, const clg_embed *e, clg_tensor *index) {
    if (!g) return NULL;
    if (!e || !e->weight)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "embed: the layer has no weight");
    return clg_embedding(g, clg_param_tensor(g, e->weight), index);
}

clg_tensor *clg_sinusoidal_encoding(clg_graph *g, int64_t T, int64_t C) {
    if (!g) return NULL;
    if (g->error) return g->poison;
    if (T < 1 || C < 2 || C % 2 || T > INT32_MAX / C)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "sinusoidal_encoding: T %lld, C %lld (C even, both >= 1)",
                              (long long)T, (long long)C);
    float *pe = malloc((size_t)(T * C) * sizeof *pe);
    if (!pe) return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "sinusoidal_encoding: out of memory");
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < C / 2; ++i) {
            double angle = (double)t / pow(10000.0, (double)(2 * i) / (double)C);
            pe[t * C + 2 * i] = (float)sin(angle);
            pe[t * C + 2 * i + 1] = (float)cos(angle);
        }
    int64_t shape[2] = {T, C};
    clg_tensor *out = clg_constant(g, CLG_F32, 2, shape, pe);
    free(pe);
    return out;
}

/* ---- Layer norm ---- */

clg_status clg_layernorm_init(clg_context *ctx, clg_layernorm *ln, const char *name, int64_t dim,
                              bool bias) {
    if (!ctx || !ln || !name || !*name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_layernorm_init: ctx, ln and a name are required");
    memset(ln, 0, sizeof *ln);
    size_t n0 = clg_param_count(ctx);
    char nm[512];
    snprintf(nm, sizeof nm, "%s.weight", name);
    clg_param *w = clg_param_new(ctx, nm, CLG_F32, 1, &dim);
    clg_status st = w ? clg_init_constant(w, 1.0f) : PARAM_FAILED;
    clg_param *b = NULL;
    if (st == CLG_OK && bias) {
        snprintf(nm, sizeof nm, "%s.bias", name);
        b = clg_param_new(ctx, nm, CLG_F32, 1, &dim); /* zero-filled */
        if (!b) st = PARAM_FAILED;
    }
    if (st != CLG_OK) {
        clg_tf_rollback(ctx, n0);
        return st;
    }
    *ln = (clg_layernorm){.weight = w, .bias = b, .dim = dim, .eps = 1e-5f};
    return CLG_OK;
}

clg_tensor *clg_layernorm_forward(clg_graph *g, const clg_layernorm *ln, clg_tensor *x) {
    if (!g) return NULL;
    if (!ln || !ln->weight)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "layernorm: the layer has no weight");
    return clg_layer_norm(g, x, 1, clg_param_tensor(g, ln->weight),
                          ln->bias ? clg_param_tensor(g, ln->bias) : NULL, ln->eps);
}

/* ---- Masks ---- */

clg_tensor *clg_attention_padding_mask(clg_graph *g, clg_tensor *valid) {
    CLG_GUARD(g, "attention_padding_mask", 1, valid);
    if (valid->ndim != 2) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "attention_padding_mask: valid is %s, want [B, S]",
                              clg_tensor_describe(valid, b, sizeof b));
    }
    clg_tensor *m = clg_where(g, valid, clg_scalar(g, 0.0f), clg_scalar(g, -INFINITY));
    int64_t shape[4] = {valid->shape[0], 1, 1, valid->shape[1]};
    return clg_reshape(g, m, 4, shape);
}

/* ---- Linear layers with nanoGPT's initialisation ---- */

clg_status clg_tf_linear(clg_context *ctx, clg_linear *l, const char *prefix, const char *name,
                         int64_t in, int64_t out, bool bias, float std, uint64_t seed) {
    char nm[512];
    snprintf(nm, sizeof nm, "%s.%s", prefix, name);
    clg_status st = clg_linear_init(ctx, l, nm, in, out, bias, seed);
    if (st == CLG_OK) st = clg_init_normal(l->weight, 0.0f, std, seed);
    if (st == CLG_OK && l->bias) st = clg_init_zeros(l->bias);
    return st;
}

static float std_of(const clg_transformer_layer_config *cfg) {
    return cfg->init_std > 0 ? cfg->init_std : CLG_TRANSFORMER_INIT_STD;
}

static float proj_std_of(const clg_transformer_layer_config *cfg) {
    return cfg->proj_std > 0 ? cfg->proj_std : std_of(cfg);
}

static clg_status check_config(const clg_transformer_layer_config *cfg, const char *fn,
                               const char *name) {
    if (!cfg) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s('%s'): config is NULL", fn, name);
    if (cfg->n_embd < 1 || cfg->n_head < 1 || cfg->n_embd % cfg->n_head || cfg->mlp_hidden < 0)
        return clg_fail(CLG_ERR_SHAPE,
                        "%s('%s'): n_embd %lld must be a positive multiple of "
                        "n_head %lld",
                        fn, name, (long long)cfg->n_embd, (long long)cfg->n_head);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s('%s'): dropout %g is not in [0, 1)", fn, name,
                        (double)cfg->dropout);
    return CLG_OK;
}

/* ---- Multi-head attention ---- */

clg_status clg_mha_init(clg_context *ctx, clg_mha *m, const char *name,
                        const clg_transformer_layer_config *cfg, bool cross, uint64_t seed) {
    if (!ctx || !m || !name || !*name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mha_init: ctx, m and a name are required");
    memset(m, 0, sizeof *m);
    clg_status st = check_config(cfg, "clg_mha_init", name);
    if (st != CLG_OK) return st;
    size_t n0 = clg_param_count(ctx);
    int64_t C = cfg->n_embd;
    float std = std_of(cfg);
    if (cross) {
        st = clg_tf_linear(ctx, &m->c_q, name, "c_q", C, C, cfg->bias, std, clg_tf_seed(seed, 0));
        if (st == CLG_OK)
            st = clg_tf_linear(ctx, &m->c_kv, name, "c_kv", C, 2 * C, cfg->bias, std,
                               clg_tf_seed(seed, 1));
    } else {
        st = clg_tf_linear(ctx, &m->c_attn, name, "c_attn", C, 3 * C, cfg->bias, std,
                           clg_tf_seed(seed, 0));
    }
    if (st == CLG_OK)
        st = clg_tf_linear(ctx, &m->c_proj, name, "c_proj", C, C, cfg->bias, proj_std_of(cfg),
                           clg_tf_seed(seed, 2));
    if (st != CLG_OK) {
        clg_tf_rollback(ctx, n0);
        memset(m, 0, sizeof *m);
        return st;
    }
    m->n_embd = C;
    m->n_head = cfg->n_head;
    m->attn_dropout = m->resid_dropout = cfg->dropout;
    m->cross = cross;
    return CLG_OK;
}

clg_tensor *clg_tf_split_heads(clg_graph *g, clg_tensor *x, int64_t H) {
    int64_t B = clg_tensor_dim(x, 0), T = clg_tensor_dim(x, 1), C = clg_tensor_dim(x, 2);
    int64_t s[4] = {B, T, H, C / H};
    return clg_transpose(g, clg_reshape(g, x, 4, s), 1, 2);
}

/* [B, H, T, D] -> [B, T, C] */
static clg_tensor *merge_heads(clg_graph *g, clg_tensor *y) {
    int64_t B = clg_tensor_dim(y, 0), H = clg_tensor_dim(y, 1), T = clg_tensor_dim(y, 2),
            D = clg_tensor_dim(y, 3);
    int64_t s[3] = {B, T, H * D};
    return clg_reshape(g, clg_transpose(g, y, 1, 2), 3, s);
}

static bool check_inputs_memory(clg_graph *g, clg_tensor *memory) {
    clg_tensor *const xs[1] = {memory};
    return clg_check_inputs(g, "mha", 1, xs);
}

static bool check_bt(clg_graph *g, const char *layer, const char *label, clg_tensor *x, int64_t C) {
    if (x->ndim == 3 && x->shape[2] == C) return true;
    char b[200];
    clg_graph_fail(g, CLG_ERR_SHAPE, "mha('%s'): %s is %s, want [B, T, %lld]", layer, label,
                   clg_tensor_describe(x, b, sizeof b), (long long)C);
    return false;
}

clg_tensor *clg_tf_attend(clg_graph *g, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                          clg_tensor *mask, bool causal, float dropout, bool training,
                          uint64_t seed) {
    if (!(training && dropout > 0.0f)) return clg_attention(g, q, k, v, mask, 0.0f, causal);
    float scale = 1.0f / sqrtf((float)clg_tensor_dim(q, -1));
    clg_tensor *att = clg_matmul(g, q, k, false, true); /* [B, H, T, S] */
    att = clg_softmax_masked(g, att, scale, mask, causal);
    att = clg_dropout(g, att, dropout, true, seed);
    return clg_matmul(g, att, v, false, false);
}

clg_tensor *clg_mha_forward(clg_graph *g, const clg_mha *m, clg_tensor *x, clg_tensor *memory,
                            clg_tensor *mask, bool causal, bool training, uint64_t seed) {
    CLG_GUARD(g, "mha", 1, x);
    if (!m || !m->c_proj.weight)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "mha: the layer is not initialised");
    const char *name = clg_param_name(m->c_proj.weight);
    if (!check_bt(g, name, "x", x, m->n_embd)) return g->poison;
    if (m->cross != (memory != NULL))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "mha('%s'): %s", name,
                              m->cross ? "cross-attention needs memory"
                                       : "self-attention takes no memory");
    int64_t C = m->n_embd, H = m->n_head;
    clg_tensor *q, *k, *v;
    if (m->cross) {
        if (!check_inputs_memory(g, memory) || !check_bt(g, name, "memory", memory, C))
            return g->poison;
        if (memory->shape[0] != x->shape[0]) {
            char a[200], b[200];
            return clg_graph_fail(g, CLG_ERR_SHAPE, "mha('%s'): x %s and memory %s differ in B",
                                  name, clg_tensor_describe(x, a, sizeof a),
                                  clg_tensor_describe(memory, b, sizeof b));
        }
        q = clg_linear_forward(g, &m->c_q, x);
        clg_tensor *kv[2];
        clg_chunk(g, clg_linear_forward(g, &m->c_kv, memory), 2, 2, kv);
        k = kv[0];
        v = kv[1];
    } else {
        clg_tensor *qkv[3];
        clg_chunk(g, clg_linear_forward(g, &m->c_attn, x), 3, 2, qkv);
        q = qkv[0];
        k = qkv[1];
        v = qkv[2];
    }
    q = clg_tf_split_heads(g, q, H);
    k = clg_tf_split_heads(g, k, H);
    v = clg_tf_split_heads(g, v, H);
    clg_tensor *y =
        clg_tf_attend(g, q, k, v, mask, causal, m->attn_dropout, training, clg_tf_seed(seed, 10));
    y = clg_linear_forward(g, &m->c_proj, merge_heads(g, y));
    return clg_dropout(g, y, m->resid_dropout, training, clg_tf_seed(seed, 11));
}

/* ---- MLP ---- */

clg_status clg_mlp_init(clg_context *ctx, clg_mlp *m, const char *name,
                        const clg_transformer_layer_config *cfg, uint64_t seed) {
    if (!ctx || !m || !name || !*name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mlp_init: ctx, m and a name are required");
    memset(m, 0, sizeof *m);
    clg_status st = check_config(cfg, "clg_mlp_init", name);
    if (st != CLG_OK) return st;
    size_t n0 = clg_param_count(ctx);
    int64_t C = cfg->n_embd, hidden = cfg->mlp_hidden ? cfg->mlp_hidden : 4 * C;
    st = clg_tf_linear(ctx, &m->c_fc, name, "c_fc", C, hidden, cfg->bias, std_of(cfg),
                       clg_tf_seed(seed, 0));
    if (st == CLG_OK)
        st = clg_tf_linear(ctx, &m->c_proj, name, "c_proj", hidden, C, cfg->bias, proj_std_of(cfg),
                           clg_tf_seed(seed, 1));
    if (st != CLG_OK) {
        clg_tf_rollback(ctx, n0);
        memset(m, 0, sizeof *m);
        return st;
    }
    m->dropout = cfg->dropout;
    return CLG_OK;
}

clg_tensor *clg_mlp_forward(clg_graph *g, const clg_mlp *m, clg_tensor *x, bool training,
                            uint64_t seed) {
    if (!g) return NULL;
    if (!m || !m->c_fc.weight)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "mlp: the layer is not initialised");
    clg_tensor *h = clg_gelu_exact(g, clg_linear_forward(g, &m->c_fc, x));
    h = clg_linear_forward(g, &m->c_proj, h);
    return clg_dropout(g, h, m->dropout, training, seed);
}

/* ---- Blocks ---- */

clg_status clg_block_init(clg_context *ctx, clg_block *b, const char *name,
                          const clg_transformer_layer_config *cfg, uint64_t seed) {
    if (!ctx || !b || !name || !*name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_block_init: ctx, b and a name are required");
    memset(b, 0, sizeof *b);
    clg_status st = check_config(cfg, "clg_block_init", name);
    if (st != CLG_OK) return st;
    size_t n0 = clg_param_count(ctx);
    char nm[512];
#define SUB(s) (snprintf(nm, sizeof nm, "%s.%s", name, s), nm)
    st = clg_layernorm_init(ctx, &b->ln_1, SUB("ln_1"), cfg->n_embd, cfg->bias);
    if (st == CLG_OK)
        st = clg_mha_init(ctx, &b->attn, SUB("attn"), cfg, false, clg_tf_seed(seed, 0));
    if (st == CLG_OK && cfg->cross)
        st = clg_layernorm_init(ctx, &b->ln_cross, SUB("ln_cross"), cfg->n_embd, cfg->bias);
    if (st == CLG_OK && cfg->cross)
        st = clg_mha_init(ctx, &b->cross_attn, SUB("cross_attn"), cfg, true, clg_tf_seed(seed, 1));
    if (st == CLG_OK) st = clg_layernorm_init(ctx, &b->ln_2, SUB("ln_2"), cfg->n_embd, cfg->bias);
    if (st == CLG_OK) st = clg_mlp_init(ctx, &b->mlp, SUB("mlp"), cfg, clg_tf_seed(seed, 2));
#undef SUB
    if (st != CLG_OK) {
        clg_tf_rollback(ctx, n0);
        memset(b, 0, sizeof *b);
        return st;
    }
    b->post_ln = cfg->post_ln;
    b->cross = cfg->cross;
    return CLG_OK;
}

/* One residual sublayer: pre-LN x + f(ln(x)), post-LN ln(x + f(x)). The sublayer f is given
 * as the attention (with its mask) or, with attn NULL, the MLP. */
typedef struct sublayer {
    const clg_mha *attn;
    const clg_kv_cache *cache; /* cached self-attention */
    clg_tensor *memory, *mask, *pos;
    bool causal;
} sublayer;

static clg_tensor *run_sub(clg_graph *g, const clg_block *b, const sublayer *s, clg_tensor *x,
                           bool training, uint64_t seed) {
    if (s->cache) return clg_mha_forward_cached(g, s->attn, s->cache, x, s->pos);
    if (s->attn)
        return clg_mha_forward(g, s->attn, x, s->memory, s->mask, s->causal, training, seed);
    return clg_mlp_forward(g, &b->mlp, x, training, seed);
}

static clg_tensor *residual(clg_graph *g, const clg_block *b, const clg_layernorm *ln,
                            const sublayer *s, clg_tensor *x, bool training, uint64_t seed) {
    if (b->post_ln)
        return clg_layernorm_forward(g, ln, clg_add(g, x, run_sub(g, b, s, x, training, seed)));
    return clg_add(g, x, run_sub(g, b, s, clg_layernorm_forward(g, ln, x), training, seed));
}

static clg_tensor *block_forward(clg_graph *g, const clg_block *b, const clg_kv_cache *cache,
                                 clg_tensor *pos, clg_tensor *x, clg_tensor *self_mask, bool causal,
                                 clg_tensor *memory, clg_tensor *memory_mask, bool training,
                                 uint64_t seed) {
    CLG_GUARD(g, "block", 1, x);
    if (!b || !b->attn.c_proj.weight)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "block: the block is not initialised");
    if (b->cross != (memory != NULL))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "block('%s'): %s",
                              clg_param_name(b->ln_1.weight),
                              b->cross ? "a block with cross-attention needs memory"
                                       : "a block without cross-attention takes no memory");
    sublayer self = {
        .attn = &b->attn, .cache = cache, .mask = self_mask, .pos = pos, .causal = causal};
    x = residual(g, b, &b->ln_1, &self, x, training, clg_tf_seed(seed, 0));
    if (b->cross) {
        sublayer cross = {.attn = &b->cross_attn, .memory = memory, .mask = memory_mask};
        x = residual(g, b, &b->ln_cross, &cross, x, training, clg_tf_seed(seed, 1));
    }
    sublayer mlp = {0};
    return residual(g, b, &b->ln_2, &mlp, x, training, clg_tf_seed(seed, 2));
}

clg_tensor *clg_block_forward(clg_graph *g, const clg_block *b, clg_tensor *x,
                              clg_tensor *self_mask, bool causal, clg_tensor *memory,
                              clg_tensor *memory_mask, bool training, uint64_t seed) {
    return block_forward(g, b, NULL, NULL, x, self_mask, causal, memory, memory_mask, training,
                         seed);
}

clg_tensor *clg_block_forward_cached(clg_graph *g, const clg_block *b, const clg_kv_cache *c,
                                     clg_tensor *x, clg_tensor *pos, clg_tensor *memory,
                                     clg_tensor *memory_mask) {
    if (g && !c)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "block_forward_cached: cache is NULL");
    return block_forward(g, b, c, pos, x, NULL, false, memory, memory_mask, false, 0);
}
