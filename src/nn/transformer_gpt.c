/* nanoGPT's GPT (clgrad/transformer.h) and generation with a KV cache: the caches are
 * parameters that one compiled plan updates in place, a row per run, at the position an i32
 * input gives, so the same plan serves every position. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/ops.h"
#include "clgrad/transformer.h"
#include "core/error.h"
#include "graph/graph_internal.h"
#include "nn/transformer_internal.h"

/* ---- KV cache ---- */

clg_status clg_kv_cache_init(clg_context *ctx, clg_kv_cache *c, const char *name, int64_t batch,
                             int64_t n_head, int64_t max_len, int64_t head_dim) {
    if (!ctx || !c || !name || !*name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_kv_cache_init: ctx, c and a name are required");
    memset(c, 0, sizeof *c);
    size_t n0 = clg_param_count(ctx);
    int64_t shape[4] = {batch, n_head, max_len, head_dim};
    char nm[512];
    clg_param *kv[2];
    for (int i = 0; i < 2; ++i) {
        snprintf(nm, sizeof nm, "%s.%s", name, i ? "v" : "k");
        kv[i] = clg_param_new(ctx, nm, CLG_F32, 4, shape);
        if (!kv[i]) {
            clg_tf_rollback(ctx, n0);
            return CLG_ERR_INVALID_ARGUMENT; /* bad shape or duplicate: the message says */
        }
        clg_param_set_requires_grad(kv[i], false);
        clg_param_set_persistent(kv[i], false);
    }
    *c = (clg_kv_cache){.k = kv[0],
                        .v = kv[1],
                        .batch = batch,
                        .n_head = n_head,
                        .max_len = max_len,
                        .head_dim = head_dim};
    return CLG_OK;
}

/* cache [B, H, L, D] with row pos replaced by new [B, H, 1, D], written back into the cache
 * parameter at this point of the plan; the result feeds the attention. sel: [1, 1, L, 1] with
 * a 1 at row pos. */
static clg_tensor *cache_update(clg_graph *g, clg_param *cache, clg_tensor *sel,
                                clg_tensor *new_row) {
    clg_tensor *full = clg_where(g, sel, new_row, clg_param_tensor(g, cache));
    clg_assign(g, cache, full);
    return full;
}

clg_tensor *clg_mha_forward_cached(clg_graph *g, const clg_mha *m, const clg_kv_cache *c,
                                   clg_tensor *x, clg_tensor *pos) {
    CLG_GUARD(g, "mha_cached", 2, x, pos);
    if (!m || !m->c_attn.weight || !c || !c->k)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "mha_cached: needs an initialised self-attention and cache");
    int64_t C = m->n_embd, H = m->n_head;
    if (x->ndim != 3 || x->shape[1] != 1 || x->shape[2] != C || x->shape[0] != c->batch ||
        c->n_head != H || c->head_dim != C / H || pos->dtype != CLG_I32 ||
        clg_tensor_numel(pos) != 1) {
        char a[200], b[200];
        return clg_graph_fail(
            g, CLG_ERR_SHAPE,
            "mha_cached('%s'): x %s, pos %s; want x [%lld, 1, %lld] and pos i32 [1] for a cache "
            "of %lld heads of %lld",
            clg_param_name(m->c_proj.weight), clg_tensor_describe(x, a, sizeof a),
            clg_tensor_describe(pos, b, sizeof b), (long long)c->batch, (long long)C,
            (long long)c->n_head, (long long)c->head_dim);
    }
    clg_tensor *qkv[3];
    clg_chunk(g, clg_linear_forward(g, &m->c_attn, x), 3, 2, qkv);
    clg_tensor *q = clg_tf_split_heads(g, qkv[0], H); /* [B, H, 1, D] */
    clg_tensor *k = clg_tf_split_heads(g, qkv[1], H);
    clg_tensor *v = clg_tf_split_heads(g, qkv[2], H);
    int64_t L = c->max_len;
    clg_tensor *rows = clg_arange(g, L, CLG_F32);
    clg_tensor *p = clg_cast(g, clg_reshape(g, pos, 1, (int64_t[]){1}), CLG_F32);
    clg_tensor *sel = clg_reshape(g, clg_eq(g, rows, p), 4, (int64_t[]){1, 1, L, 1});
    clg_tensor *keys = cache_update(g, c->k, sel, k);
    clg_tensor *values = cache_update(g, c->v, sel, v);
    /* Rows past pos hold stale or zero entries: hidden, as the causal mask would. */
    clg_tensor *mask =
        clg_where(g, clg_le(g, rows, p), clg_scalar(g, 0.0f), clg_scalar(g, -INFINITY));
    mask = clg_reshape(g, mask, 4, (int64_t[]){1, 1, 1, L});
    clg_tensor *y = clg_attention(g, q, keys, values, mask, 0.0f, false); /* [B, H, 1, D] */
    y = clg_reshape(g, clg_transpose(g, y, 1, 2), 3, (int64_t[]){x->shape[0], 1, C});
    return clg_linear_forward(g, &m->c_proj, y);
}

/* ---- GPT ---- */

clg_gpt_config clg_gpt_config_default(void) {
    return (clg_gpt_config){.vocab_size = 50304,
                            .block_size = 1024,
                            .n_layer = 12,
                            .n_head = 12,
                            .n_embd = 768,
                            .dropout = 0.0f,
                            .bias = true};
}

void clg_gpt_free(clg_gpt *m) {
    if (!m) return;
    free(m->h);
    m->h = NULL;
}

clg_status clg_gpt_init(clg_context *ctx, clg_gpt *m, const clg_gpt_config *cfg, uint64_t seed) {
    if (!ctx || !m || !cfg)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_gpt_init: ctx, m and cfg are required");
    memset(m, 0, sizeof *m);
    if (cfg->vocab_size < 1 || cfg->block_size < 1 || cfg->n_layer < 1 || cfg->n_layer > 4096)
        return clg_fail(CLG_ERR_SHAPE, "clg_gpt_init: vocab %lld, block %lld, %lld layers",
                        (long long)cfg->vocab_size, (long long)cfg->block_size,
                        (long long)cfg->n_layer);
    clg_transformer_layer_config lc = {
        .n_embd = cfg->n_embd,
        .n_head = cfg->n_head,
        .dropout = cfg->dropout,
        .bias = cfg->bias,
        .init_std = CLG_TRANSFORMER_INIT_STD,
        /* nanoGPT: "apply special scaled init to the residual projections, per GPT-2 paper" */
        .proj_std = CLG_TRANSFORMER_INIT_STD / sqrtf(2.0f * (float)cfg->n_layer)};
    size_t n0 = clg_param_count(ctx);
    m->h = calloc((size_t)cfg->n_layer, sizeof *m->h);
    if (!m->h) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_gpt_init: out of host memory");
    clg_status st = clg_embed_init(ctx, &m->wte, "transformer.wte", cfg->vocab_size, cfg->n_embd,
                                   0.0f, clg_tf_seed(seed, 0));
    if (st == CLG_OK)
        st = clg_embed_init(ctx, &m->wpe, "transformer.wpe", cfg->block_size, cfg->n_embd, 0.0f,
                            clg_tf_seed(seed, 1));
    for (int64_t i = 0; st == CLG_OK && i < cfg->n_layer; ++i) {
        char nm[64];
        snprintf(nm, sizeof nm, "transformer.h.%lld", (long long)i);
        st = clg_block_init(ctx, &m->h[i], nm, &lc, clg_tf_seed(seed, 100 + (uint64_t)i));
    }
    if (st == CLG_OK)
        st = clg_layernorm_init(ctx, &m->ln_f, "transformer.ln_f", cfg->n_embd, cfg->bias);
    if (st == CLG_OK && cfg->untie_head) {
        clg_embed head;
        st = clg_embed_init(ctx, &head, "lm_head", cfg->vocab_size, cfg->n_embd, 0.0f,
                            clg_tf_seed(seed, 2));
        m->lm_head = head.weight;
    } else if (st == CLG_OK) {
        m->lm_head = m->wte.weight;
        st = clg_param_set_alias(m->wte.weight, "lm_head.weight");
    }
    if (st != CLG_OK) {
        clg_tf_rollback(ctx, n0);
        free(m->h);
        memset(m, 0, sizeof *m);
        return st;
    }
    m->config = *cfg;
    return CLG_OK;
}

/* x [..., C] -> logits [..., V] through ln_f and the head (x W^T, W [V, C]). */
static clg_tensor *head(clg_graph *g, const clg_gpt *m, clg_tensor *x) {
    x = clg_layernorm_forward(g, &m->ln_f, x);
    return clg_matmul(g, x, clg_param_tensor(g, m->lm_head), false, true);
}

clg_tensor *clg_gpt_forward(clg_graph *g, const clg_gpt *m, clg_tensor *idx, bool training,
                            uint64_t seed) {
    CLG_GUARD(g, "gpt", 1, idx);
    if (!m || !m->h) return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "gpt: not initialised");
    if (idx->ndim != 2 || idx->dtype != CLG_I32 || idx->shape[1] > m->config.block_size) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "gpt: idx %s, want i32 [B, T <= %lld]",
                              clg_tensor_describe(idx, b, sizeof b),
                              (long long)m->config.block_size);
    }
    int64_t T = idx->shape[1];
    clg_tensor *tok = clg_embed_forward(g, &m->wte, idx);                       /* [B, T, C] */
    clg_tensor *pos = clg_embed_forward(g, &m->wpe, clg_arange(g, T, CLG_I32)); /* [T, C] */
    clg_tensor *x =
        clg_dropout(g, clg_add(g, tok, pos), m->config.dropout, training, clg_tf_seed(seed, 0));
    for (int64_t i = 0; i < m->config.n_layer; ++i)
        x = clg_block_forward(g, &m->h[i], x, NULL, true, NULL, NULL, training,
                              clg_tf_seed(seed, 1 + (uint64_t)i));
    return head(g, m, x);
}

clg_status clg_gpt_cache_init(clg_context *ctx, const clg_gpt *m, int64_t batch, clg_gpt_cache *c) {
    if (!ctx || !m || !m->h || !c)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_gpt_cache_init: ctx, an initialised model and c are required");
    memset(c, 0, sizeof *c);
    const clg_gpt_config *cfg = &m->config;
    c->layers = calloc((size_t)cfg->n_layer, sizeof *c->layers);
    if (!c->layers) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_gpt_cache_init: out of memory");
    size_t n0 = clg_param_count(ctx);
    clg_status st = CLG_OK;
    for (int64_t i = 0; st == CLG_OK && i < cfg->n_layer; ++i) {
        char nm[64];
        snprintf(nm, sizeof nm, "kv_cache.h.%lld", (long long)i);
        st = clg_kv_cache_init(ctx, &c->layers[i], nm, batch, cfg->n_head, cfg->block_size,
                               cfg->n_embd / cfg->n_head);
    }
    if (st != CLG_OK) {
        clg_tf_rollback(ctx, n0);
        free(c->layers);
        memset(c, 0, sizeof *c);
        return st;
    }
    c->n_layer = cfg->n_layer;
    return CLG_OK;
}

void clg_gpt_cache_free(clg_gpt_cache *c) {
    if (!c) return;
    free(c->layers);
    c->layers = NULL;
}

clg_tensor *clg_gpt_forward_cached(clg_graph *g, const clg_gpt *m, const clg_gpt_cache *c,
                                   clg_tensor *idx, clg_tensor *pos) {
    CLG_GUARD(g, "gpt_cached", 2, idx, pos);
    if (!m || !m->h || !c || c->n_layer != m->config.n_layer)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "gpt_cached: needs an initialised model and its cache");
    if (idx->ndim != 1 || idx->dtype != CLG_I32) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "gpt_cached: idx %s, want i32 [B]",
                              clg_tensor_describe(idx, b, sizeof b));
    }
    int64_t B = idx->shape[0], C = m->config.n_embd;
    clg_tensor *tok = clg_embed_forward(g, &m->wte, idx); /* [B, C] */
    clg_tensor *pe = clg_embed_forward(g, &m->wpe, clg_reshape(g, pos, 1, (int64_t[]){1}));
    clg_tensor *x = clg_reshape(g, clg_add(g, tok, pe), 3, (int64_t[]){B, 1, C});
    for (int64_t i = 0; i < m->config.n_layer; ++i)
        x = clg_block_forward_cached(g, &m->h[i], &c->layers[i], x, pos, NULL, NULL);
    return clg_reshape(g, head(g, m, x), 2, (int64_t[]){B, m->config.vocab_size});
}
