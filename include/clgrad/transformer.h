/* Transformer layers on top of the graph engine: embeddings (token, learned position,
 * sinusoidal), layer norm, multi-head attention (self and cross, causal and padding masks),
 * the position-wise MLP, residual blocks (pre-LN or post-LN, with an optional cross-attention
 * sublayer for decoders) and nanoGPT's GPT with a KV cache for generation.
 * Parameter names and layouts follow nanoGPT's model.py (state-dict keys such as
 * "transformer.h.0.attn.c_attn.weight"), and initialisation too: weights N(0, 0.02), biases 0,
 * the residual projections (c_proj) N(0, 0.02 / sqrt(2 n_layer)), layer norms 1 and 0.
 * Ownership: layers hold parameters owned by their context; clg_gpt and clg_gpt_cache hold a
 * host array of blocks or caches freed by their _free (NULL-safe; the parameters stay with
 * the context). Forward builders follow ops.h: a user error poisons the graph with a message
 * naming the layer and the shapes. Shapes: B batch, T (queries) and S (keys) positions,
 * C = n_embd, H = n_head, D = C / H. */
#ifndef CLGRAD_TRANSFORMER_H
#define CLGRAD_TRANSFORMER_H

#include <stdbool.h>
#include <stdint.h>

#include "graph.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* nanoGPT's initial standard deviation of weights and embeddings. */
#define CLG_TRANSFORMER_INIT_STD 0.02f

/* ---- Embeddings ---- */

/* A lookup table "<name>.weight" [num, dim] (torch.nn.Embedding). */
typedef struct clg_embed {
    clg_param *weight;
    int64_t num, dim;
} clg_embed;

/* Create "<name>.weight" [num, dim], N(0, std^2) from seed (std 0: CLG_TRANSFORMER_INIT_STD).
 * Fails (nothing created) on a duplicate name or bad sizes. */
clg_status clg_embed_init(clg_context *ctx, clg_embed *e, const char *name, int64_t num,
                          int64_t dim, float std, uint64_t seed);
/* index i32 of any shape S -> [S..., dim] (clg_embedding; out-of-range indices read 0). */
clg_tensor *clg_embed_forward(clg_graph *g, const clg_embed *e, clg_tensor *index);
/* The fixed encoding of "Attention is all you need", [T, C] f32 (C even):
 * pe[t, 2i] = sin(t / 10000^(2i/C)), pe[t, 2i+1] = cos(t / 10000^(2i/C)); a constant, no
 * parameters. */
clg_tensor *clg_sinusoidal_encoding(clg_graph *g, int64_t T, int64_t C);

/* ---- Layer norm ---- */

/* torch.nn.LayerNorm(dim, bias=...) over the last axis: "<name>.weight" (1) and
 * "<name>.bias" (0, absent without bias), eps 1e-5. */
typedef struct clg_layernorm {
    clg_param *weight, *bias;
    int64_t dim;
    float eps;
} clg_layernorm;

clg_status clg_layernorm_init(clg_context *ctx, clg_layernorm *ln, const char *name,
                              int64_t dim, bool bias);
/* x [..., dim] -> the same shape (one fused kernel, clg_layer_norm). */
clg_tensor *clg_layernorm_forward(clg_graph *g, const clg_layernorm *ln, clg_tensor *x);

/* ---- Masks ---- */

/* A padding mask for attention from valid [B, S] f32 (1: a real key, 0: padding): the additive
 * [B, 1, 1, S] mask (0 where valid, -INFINITY where padded), broadcastable to the scores
 * [B, H, T, S] of clg_mha_forward. A query row whose keys are all padding attends to nothing
 * and gives zeros. No gradient. */
clg_tensor *clg_attention_padding_mask(clg_graph *g, clg_tensor *valid);

/* ---- Multi-head attention ---- */

/* Self-attention as nanoGPT's CausalSelfAttention: "<name>.c_attn" [3C, C] projects x to the
 * packed q, k, v (in that order along the output features), "<name>.c_proj" [C, C] mixes the
 * heads. Cross-attention (cross true): "<name>.c_q" [C, C] projects the queries from x,
 * "<name>.c_kv" [2C, C] the packed keys and values from the memory (the encoder's output);
 * c_attn is then unused (weight NULL). */
typedef struct clg_mha {
    clg_linear c_attn;    /* self-attention: x -> q | k | v */
    clg_linear c_q, c_kv; /* cross-attention: x -> q, memory -> k | v */
    clg_linear c_proj;
    int64_t n_embd, n_head;
    float attn_dropout;  /* on the attention weights (nanoGPT's attn_dropout) */
    float resid_dropout; /* on the output, after c_proj (nanoGPT's resid_dropout) */
    bool cross;
} clg_mha;

/* Sizes, dropout and initialisation shared by the attention, MLP and block initialisers.
 * Zero fields take the defaults noted. */
typedef struct clg_transformer_layer_config {
    int64_t n_embd, n_head; /* n_embd divisible by n_head */
    int64_t mlp_hidden;     /* 0: 4 n_embd */
    float dropout;          /* attention-weight, residual and MLP dropout probability */
    bool bias;              /* biases in the linear layers and layer norms */
    bool post_ln;           /* blocks: post-LN (the original paper) instead of pre-LN */
    bool cross;             /* blocks: a cross-attention sublayer after self-attention */
    float init_std;         /* 0: CLG_TRANSFORMER_INIT_STD */
    float proj_std;         /* c_proj weights; 0: init_std (a GPT uses init_std / sqrt(2 L)) */
} clg_transformer_layer_config;

/* Create the attention's parameters under name (self or cross per cross): weights
 * N(0, init_std^2), c_proj's N(0, proj_std^2), biases 0. Fails (nothing created) on a
 * duplicate name or bad sizes. */
clg_status clg_mha_init(clg_context *ctx, clg_mha *m, const char *name,
                        const clg_transformer_layer_config *cfg, bool cross, uint64_t seed);
/* x [B, T, C] -> [B, T, C]. Keys and values come from x (self) or from memory [B, S, C]
 * (cross; NULL for self). mask: NULL or an additive f32 mask broadcastable to [B, H, T, S]
 * (clg_attention_padding_mask, say); causal: query i sees keys j <= i + (S - T). training
 * turns the dropouts on, drawn from seed (with attention dropout the weights are materialised:
 * the composite path instead of the fused kernel). */
clg_tensor *clg_mha_forward(clg_graph *g, const clg_mha *m, clg_tensor *x, clg_tensor *memory,
                            clg_tensor *mask, bool causal, bool training, uint64_t seed);

/* ---- Position-wise MLP ---- */

/* nanoGPT's MLP: "<name>.c_fc" [hidden, C], exact GELU, "<name>.c_proj" [C, hidden], dropout. */
typedef struct clg_mlp {
    clg_linear c_fc, c_proj;
    float dropout;
} clg_mlp;

clg_status clg_mlp_init(clg_context *ctx, clg_mlp *m, const char *name,
                        const clg_transformer_layer_config *cfg, uint64_t seed);
/* x [..., C] -> [..., C]. */
clg_tensor *clg_mlp_forward(clg_graph *g, const clg_mlp *m, clg_tensor *x, bool training,
                            uint64_t seed);

/* ---- Blocks ---- */

/* A residual block, nanoGPT's names: "<name>.ln_1", "<name>.attn", "<name>.ln_2", "<name>.mlp",
 * and with cross-attention "<name>.ln_cross", "<name>.cross_attn" between them.
 * Pre-LN:  x += attn(ln_1(x)); x += cross_attn(ln_cross(x), memory); x += mlp(ln_2(x)).
 * Post-LN: x = ln_1(x + attn(x)); x = ln_cross(x + cross_attn(x, memory));
 *          x = ln_2(x + mlp(x)). */
typedef struct clg_block {
    clg_layernorm ln_1, ln_cross, ln_2;
    clg_mha attn, cross_attn;
    clg_mlp mlp;
    bool post_ln, cross;
} clg_block;

clg_status clg_block_init(clg_context *ctx, clg_block *b, const char *name,
                          const clg_transformer_layer_config *cfg, uint64_t seed);
/* x [B, T, C] -> [B, T, C]. self_mask, causal: the self-attention's (clg_mha_forward); memory
 * [B, S, C] and memory_mask (broadcastable to [B, H, T, S]) feed the cross-attention (memory
 * must be given exactly when the block has one). */
clg_tensor *clg_block_forward(clg_graph *g, const clg_block *b, clg_tensor *x,
                              clg_tensor *self_mask, bool causal, clg_tensor *memory,
                              clg_tensor *memory_mask, bool training, uint64_t seed);

/* ---- KV cache: one new position per plan run ----
 * A layer's cache is two non-persistent, frozen parameters k and v [B, H, max_len, D]. A
 * cached forward takes the new position's x [B, 1, C] and pos, an i32 [1] input holding the
 * position p (0 <= p < max_len): it computes that position's k and v, writes them into row p
 * of the caches (a clg_assign of the caches with row p replaced), and attends from the new
 * query to rows 0..p only (rows past p are masked out). So one compiled plan serves every
 * position, and a token costs one step over the cache instead of a re-run of the prefix. */
typedef struct clg_kv_cache {
    clg_param *k, *v;
    int64_t batch, n_head, max_len, head_dim;
} clg_kv_cache;

/* Create "<name>.k" and "<name>.v" [batch, n_head, max_len, head_dim], zero, frozen and not
 * persistent (checkpoints skip them). */
clg_status clg_kv_cache_init(clg_context *ctx, clg_kv_cache *c, const char *name, int64_t batch,
                             int64_t n_head, int64_t max_len, int64_t head_dim);
/* Self-attention of the new position x [B, 1, C] at pos (see above) over the cache -> [B, 1, C]
 * (no dropout). */
clg_tensor *clg_mha_forward_cached(clg_graph *g, const clg_mha *m, const clg_kv_cache *c,
                                   clg_tensor *x, clg_tensor *pos);
/* The block's forward for one new position with its self-attention over the cache (the
 * cross-attention, if any, reads memory [B, S, C] as in clg_block_forward). */
clg_tensor *clg_block_forward_cached(clg_graph *g, const clg_block *b, const clg_kv_cache *c,
                                     clg_tensor *x, clg_tensor *pos, clg_tensor *memory,
                                     clg_tensor *memory_mask);

/* ---- GPT (nanoGPT's model.py) ---- */

typedef struct clg_gpt_config {
    int64_t vocab_size, block_size;
    int64_t n_layer, n_head, n_embd;
    float dropout;
    bool bias;       /* biases in linear layers and layer norms (nanoGPT's default true) */
    bool untie_head; /* false (nanoGPT): lm_head.weight is transformer.wte.weight */
} clg_gpt_config;

/* nanoGPT's GPTConfig defaults: vocab 50304, block 1024, 12 layers, 12 heads, 768, dropout
 * 0, bias true, tied head. */
clg_gpt_config clg_gpt_config_default(void);

/* Parameters, nanoGPT's keys: "transformer.wte.weight" [V, C], "transformer.wpe.weight"
 * [block, C], blocks "transformer.h.<i>." (clg_block: ln_1, attn.c_attn, attn.c_proj, ln_2,
 * mlp.c_fc, mlp.c_proj), "transformer.ln_f", "lm_head.weight" [V, C] (no bias). Tied (the
 * default), the head is the token embedding: one parameter, with "lm_head.weight" as its alias
 * (clg_param_set_alias), so checkpoints hold both keys as nanoGPT's state_dict does. */
typedef struct clg_gpt {
    clg_gpt_config config;
    clg_embed wte, wpe;
    clg_block *h; /* n_layer blocks */
    clg_layernorm ln_f;
    clg_param *lm_head; /* wte.weight when tied */
} clg_gpt;

/* Create the model's parameters in ctx, initialised as nanoGPT (see the top of this file),
 * every tensor from its own seed derived from seed. Fails (nothing kept in *m) on bad sizes
 * or duplicate names. */
clg_status clg_gpt_init(clg_context *ctx, clg_gpt *m, const clg_gpt_config *cfg, uint64_t seed);
/* Free the host array of blocks (the parameters belong to the context). NULL: no-op. */
void clg_gpt_free(clg_gpt *m);
/* idx [B, T] i32 token ids (T <= block_size) -> logits [B, T, V]: wte(idx) + wpe(0..T-1),
 * dropout, the blocks (causal), ln_f, lm_head. */
clg_tensor *clg_gpt_forward(clg_graph *g, const clg_gpt *m, clg_tensor *idx, bool training,
                            uint64_t seed);

/* One cache per layer for generation, for batch sequences of up to block_size positions. */
typedef struct clg_gpt_cache {
    clg_kv_cache *layers; /* n_layer */
    int64_t n_layer;
} clg_gpt_cache;

/* Create the caches "kv_cache.h.<i>.k/v" (after loading a checkpoint: they are not persistent
 * but they are parameters of ctx). */
clg_status clg_gpt_cache_init(clg_context *ctx, const clg_gpt *m, int64_t batch,
                              clg_gpt_cache *c);
/* Free the host array (the cache parameters stay with the context). NULL: no-op. */
void clg_gpt_cache_free(clg_gpt_cache *c);
/* One position: idx [B] i32 tokens at pos (i32 [1], 0 <= p < block_size) -> logits [B, V],
 * writing that position's keys and values into the caches. Running it for p = 0, 1, ..., t
 * gives the logits clg_gpt_forward gives at position t (no dropout). */
clg_tensor *clg_gpt_forward_cached(clg_graph *g, const clg_gpt *m, const clg_gpt_cache *c,
                                   clg_tensor *idx, clg_tensor *pos);

#ifdef __cplusplus
}
#endif

#endif
