/* Decoding for the seq2seq example: greedy and beam search over a scorer, a compiled plan
 * that maps (source, source mask, decoder input [rows, T]) to log-probabilities
 * [rows, T, vocab] under a causal mask. Position t's output depends on the decoder input up
 * to t only, so one plan over the full target length, re-run once per decoded position with
 * the tokens chosen so far, decodes it; the answers here are at most digits + 2 tokens long,
 * so re-running the encoder and the whole prefix each time costs little. */
#ifndef CLG_EXAMPLES_SEQ2SEQ_DECODE_H
#define CLG_EXAMPLES_SEQ2SEQ_DECODE_H

#include <clgrad/clgrad.h>

#include "seq2seq_task.h"

typedef struct s2s_scorer {
    clg_graph *graph; /* the plan's, when s2s_scorer_build made it */
    clg_plan *plan;
    clg_tensor *src, *src_mask, *tgt_in, *logp; /* logp: [rows, tgt_len, vocab] */
    clg_tensor *src_place, *src_seg; /* NULL unless the model takes place-value positions */
    int rows, src_len, tgt_len, vocab;
    /* host staging, owned: rows * tgt_len * vocab log-probabilities, and the inputs */
    float *host_logp, *host_mask;
    int32_t *host_src, *host_tgt, *host_place, *host_seg;
} s2s_scorer;

/* Allocate the staging buffers once the plan and its tensors are set (false: no memory). */
bool s2s_scorer_alloc(s2s_scorer *s);
void s2s_scorer_free(s2s_scorer *s);

/* One run over n <= rows examples (the rest of the rows are padding): host_logp gets the
 * log-probabilities of every position. src [n, src_len], src_mask [n, src_len] (additive),
 * tgt_in [n, tgt_len]. */
clg_status s2s_scorer_run(s2s_scorer *s, int n, const int32_t *src, const float *src_mask,
                          const int32_t *tgt_in);

/* Greedy decoding of n <= rows examples (src [n, src_len], src_mask [n, src_len]): out
 * [n, tgt_len] gets each row's tokens, EOS included, then PAD. */
clg_status s2s_greedy(s2s_scorer *s, int n, const int32_t *src, const float *src_mask,
                      int32_t *out);

/* Beam search of width beam (n * beam <= rows): every step extends each live hypothesis by
 * every token, and the beam best of those and of the hypotheses already ended by EOS
 * survive; scores are sums of log-probabilities, not normalised by length (the answer's
 * length is fixed by the operands, so there is no length bias to correct). Stops when every
 * survivor has ended or at tgt_len tokens. out [n, tgt_len] gets the best hypothesis (PAD
 * after EOS), score [n] its log-probability (may be NULL). */
clg_status s2s_beam(s2s_scorer *s, int n, int beam, const int32_t *src, const float *src_mask,
                    int32_t *out, float *score);

/* The model's log-probability of tokens [n, tgt_len] (up to and including the first EOS, or
 * all tgt_len) for each row, by teacher forcing: one run. */
clg_status s2s_sequence_logp(s2s_scorer *s, int n, const int32_t *src, const float *src_mask,
                             const int32_t *tokens, float *logp);

#endif
