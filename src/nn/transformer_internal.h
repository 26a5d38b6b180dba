/* Pieces shared by the transformer layers (transformer.c) and the GPT with its KV cache
 * (transformer_gpt.c). */
#ifndef CLG_NN_TRANSFORMER_INTERNAL_H
#define CLG_NN_TRANSFORMER_INTERNAL_H

#include <stdint.h>

#include "clgrad/transformer.h"

/* A seed for sub-part k of something seeded with seed (a splitmix64 step). */
uint64_t clg_tf_seed(uint64_t seed, uint64_t k);
/* Discard the parameters ctx gained since it had n0 (a failed initialiser leaves none). */
void clg_tf_rollback(clg_context *ctx, size_t n0);
/* "<prefix>.<name>" as torch.nn.Linear with nanoGPT's initialisation: N(0, std^2), bias 0. */
clg_status clg_tf_linear(clg_context *ctx, clg_linear *l, const char *prefix, const char *name,
                         int64_t in, int64_t out, bool bias, float std, uint64_t seed);
/* [B, T, C] -> [B, H, T, C / H], a view. */
clg_tensor *clg_tf_split_heads(clg_graph *g, clg_tensor *x, int64_t H);
/* softmax(q k^T / sqrt(D) + mask) v, with dropout on the weights when training (then
 * materialised; else the fused clg_attention). */
clg_tensor *clg_tf_attend(clg_graph *g, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                          clg_tensor *mask, bool causal, float dropout, bool training,
                          uint64_t seed);

#endif
