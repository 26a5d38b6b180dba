/* The seq2seq example's model: the encoder-decoder Transformer of "Attention is all you
 * need" (encoder self-attention under the source padding mask; decoder causal
 * self-attention, then cross-attention to the encoder's output under the same mask), built
 * from transformer.h's blocks, with its training plan and the scorer plan decoding runs on.
 * Not part of the library. */
#ifndef CLG_EXAMPLES_SEQ2SEQ_MODEL_H
#define CLG_EXAMPLES_SEQ2SEQ_MODEL_H

#include <clgrad/clgrad.h>
#include <clgrad/transformer.h>

#include "seq2seq_decode.h"
#include "seq2seq_task.h"

#define S2S_MAX_LAYERS 8

/* How source tokens learn where they are (target tokens always get learned positions, or
 * the sinusoidal encoding with S2S_POS_SINUSOIDAL). */
typedef enum s2s_pos {
    S2S_POS_PLACE,      /* learned embeddings of the place value and of the operand
                           (s2s_source_positions): equal places of the two operands share
                           one, so aligning them is given, not learned */
    S2S_POS_LEARNED,    /* learned absolute positions 0 .. src_len - 1 */
    S2S_POS_SINUSOIDAL, /* the paper's fixed encoding of absolute positions */
    S2S_POS_COUNT
} s2s_pos;

typedef struct s2s_config {
    int src_len, tgt_len;
    int64_t n_embd, n_head, n_layer; /* n_layer encoder and n_layer decoder blocks */
    int64_t mlp_hidden;              /* 0: 4 n_embd */
    float dropout;
    bool post_ln;    /* the paper's post-LN blocks instead of pre-LN (then no final norms) */
    s2s_pos pos;
    bool cut_cross;  /* ablation: the decoder's cross-attention reads a zeroed memory, so the
                        decoder cannot see the source (the control of the tests) */
} s2s_config;

typedef struct s2s_model {
    s2s_config cfg;
    clg_embed src_wte, src_wpe, src_wse, tgt_wte, tgt_wpe; /* wse: operand (place only) */
    clg_block enc[S2S_MAX_LAYERS], dec[S2S_MAX_LAYERS];
    clg_layernorm enc_ln, dec_ln; /* pre-LN only: the final norms of each stack */
    clg_linear lm_head;
} s2s_model;

/* Parameters "encoder.*", "decoder.*", "lm_head.weight" in ctx, each from its own seed. */
clg_status s2s_model_init(clg_context *ctx, s2s_model *m, const s2s_config *cfg, uint64_t seed);
/* The source as the model takes it: tokens [B, S] i32, the additive padding mask
 * [B, 1, 1, S], and with S2S_POS_PLACE place and segment [B, S] i32 (else NULL). */
typedef struct s2s_source {
    clg_tensor *tok, *mask, *place, *seg;
} s2s_source;

/* The inputs of a graph over rows examples: the source's and tgt_in [rows, T] i32. */
void s2s_model_inputs(clg_graph *g, const s2s_model *m, int rows, s2s_source *src,
                      clg_tensor **tgt_in);
/* Logits [B, T, V] of the decoder input tgt_in [B, T] given the source. */
clg_tensor *s2s_model_forward(clg_graph *g, const s2s_model *m, const s2s_source *src,
                              clg_tensor *tgt_in, bool training, uint64_t seed);

/* One training step per run: teacher forcing, the token-mean cross-entropy over real target
 * positions (padding weighs 0), backward and opt's update. */
typedef struct s2s_trainer {
    clg_graph *g;
    clg_plan *plan;
    s2s_source src;
    clg_tensor *tgt_in, *tgt_out, *weight, *loss, *pred;
    int rows;
    int32_t *host_pred, *host_place, *host_seg; /* owned */
} s2s_trainer;

clg_status s2s_trainer_build(clg_context *ctx, const s2s_model *m, clg_optimizer *opt,
                             int rows, uint64_t seed, s2s_trainer *t);
/* Upload bt, run one step; *loss and, when correct is given, the number of rows whose
 * teacher-forced predictions are all right. Waits. */
clg_status s2s_trainer_step(s2s_trainer *t, const s2s_batch *bt, float *loss, int *correct);
void s2s_trainer_free(s2s_trainer *t);

/* The decoding plan: log_softmax of the logits for rows examples (no dropout). */
clg_status s2s_scorer_build(clg_context *ctx, const s2s_model *m, int rows, s2s_scorer *s);
void s2s_scorer_destroy(s2s_scorer *s);

#endif
