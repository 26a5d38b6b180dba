/* The seq2seq example's task, generated on the host: addition of two numbers of up to
 * `digits` digits written as text ("1234+987" -> "2221"), its tokens, a held-out split by a
 * hash of the operand pair, and padded batches with their masks. Not part of the library. */
#ifndef CLG_EXAMPLES_SEQ2SEQ_TASK_H
#define CLG_EXAMPLES_SEQ2SEQ_TASK_H

#include <stdbool.h>
#include <stdint.h>

/* Tokens: the ten digits are their own values. */
enum {
    S2S_TOK_PLUS = 10,
    S2S_TOK_BOS = 11, /* the decoder's first input */
    S2S_TOK_EOS = 12, /* ends the answer */
    S2S_TOK_PAD = 13,
    S2S_VOCAB = 14
};

#define S2S_MAX_DIGITS 8

typedef struct s2s_task {
    int digits;       /* operands have 1 .. digits digits */
    int test_percent; /* share of operand pairs held out for testing, 1 .. 50 */
} s2s_task;

/* Source: "a+b", at most 2 digits + 1 tokens. Target: the sum (at most digits + 1 digits)
 * then EOS, so the decoder runs over digits + 2 positions. */
int s2s_src_len(const s2s_task *t);
int s2s_tgt_len(const s2s_task *t);

/* A counter-based stream (splitmix64): the batch of step n is a function of (seed, n) alone,
 * so a resumed run draws the batches the uninterrupted one would have. */
typedef struct s2s_rng {
    uint64_t state;
} s2s_rng;
s2s_rng s2s_rng_make(uint64_t seed, uint64_t stream);
uint64_t s2s_rng_next(s2s_rng *r);

/* Whether the pair is held out. The hash is of the unordered pair, so neither a+b nor b+a of
 * a test pair is ever generated for training. */
bool s2s_is_test_pair(const s2s_task *t, int64_t a, int64_t b);
/* A pair from the training side (test false) or the held-out side: the number of digits of
 * each operand uniform in 1 .. digits, then the value uniform among those with that many
 * digits, so short operands are as common as long ones. */
void s2s_draw_pair(const s2s_task *t, s2s_rng *r, bool test, int64_t *a, int64_t *b);
/* n distinct held-out pairs (a[i], b[i]) drawn from seed; false if the held-out side has
 * fewer than n pairs (a tiny task with a small test_percent). */
bool s2s_test_pairs(const s2s_task *t, uint64_t seed, int64_t n, int64_t *a, int64_t *b);

/* Tokens of one example, padded with PAD: src [src_len], the decoder's input tgt_in
 * [tgt_len] (BOS then the answer's digits) and its labels tgt_out [tgt_len] (the digits then
 * EOS). Returns the number of real target positions (digits of the sum + 1). *src_used gets
 * the real source length. */
int s2s_encode(const s2s_task *t, int64_t a, int64_t b, int32_t *src, int *src_used,
               int32_t *tgt_in, int32_t *tgt_out);

/* Place-value positions of source tokens [rows, src_len] (src_len = 2 digits + 1): a digit's
 * place within its operand counted from its last digit (0: units), digits for '+',
 * digits + 1 for padding;
 * and its segment: 0 first operand, 1 '+' or padding, 2 second operand. Digits of equal
 * place in the two operands share a place whatever the operands' lengths. */
void s2s_source_positions(int src_len, const int32_t *src, int rows, int32_t *place,
                          int32_t *segment);

/* A padded batch of rows examples, host side, as the plans take it. */
typedef struct s2s_batch {
    int rows, src_len, tgt_len;
    int32_t *src;       /* [rows, src_len] */
    float *src_mask;    /* [rows, 1, 1, src_len]: 0 on tokens, -INFINITY on padding (additive,
                           for encoder self-attention and cross-attention) */
    int32_t *tgt_in;    /* [rows, tgt_len] */
    int32_t *tgt_out;   /* [rows, tgt_len] */
    float *tgt_weight;  /* [rows, tgt_len]: 1 / (real target tokens in the batch) on real
                           positions, 0 on padding, so sum(weight * CE) is the mean over tokens */
    int64_t *a, *b;     /* the operands of each row */
} s2s_batch;

bool s2s_batch_alloc(s2s_batch *bt, const s2s_task *t, int rows);
void s2s_batch_free(s2s_batch *bt);
/* Fill row i with the pair (a, b) (weights are set by s2s_batch_finish). */
void s2s_batch_set(s2s_batch *bt, const s2s_task *t, int i, int64_t a, int64_t b);
/* Training batch number `step` of the stream seeded by seed. */
void s2s_batch_draw(s2s_batch *bt, const s2s_task *t, uint64_t seed, int64_t step);
/* Set tgt_weight from the rows' target lengths. */
void s2s_batch_finish(s2s_batch *bt);

/* The answer of tokens (up to EOS or len) as text into out (size > len); false when the
 * tokens are not digits then EOS. */
bool s2s_answer_text(const int32_t *tokens, int len, char *out);
/* Whether decoded tokens (len of them, EOS-terminated or cut at len) are exactly a + b's
 * digits followed by EOS. */
bool s2s_answer_correct(const s2s_task *t, int64_t a, int64_t b, const int32_t *tokens, int len);

#endif
