/* Character language models' shared pieces (char_lm, gpt_char): a text read whole, its byte
 * vocabulary (recorded in checkpoints as hex), the 90 / 10 training and validation split,
 * random windows of it, flag parsing, and the loss plans, evaluation and training loop with
 * the examples' output conventions (progress bar, train and validation loss over fixed random
 * windows, CSV log, checkpoint at each evaluation, last line "validation loss N.NNN"). */
#ifndef CLG_EXAMPLES_CHAR_TEXT_H
#define CLG_EXAMPLES_CHAR_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clgrad/clgrad.h"

#define CHAR_MAX_VOCAB 256

/* ---- vocabulary ---- */

typedef struct char_vocab {
    int64_t size;
    unsigned char chars[CHAR_MAX_VOCAB]; /* id -> byte, ascending */
    int id_of[256];                      /* byte -> id, -1 when absent */
} char_vocab;

/* The distinct bytes of text, ascending. */
void char_vocab_build(char_vocab *v, const unsigned char *text, size_t n);
/* As hex (metadata must be UTF-8; any byte text must survive the trip): out holds
 * 2 * CHAR_MAX_VOCAB + 1 bytes. */
void char_vocab_hex(const char_vocab *v, char *out);
bool char_vocab_from_hex(char_vocab *v, const char *hex);
/* prompt's bytes as ids (n = strlen(prompt)); false, with a message, for a byte outside v. */
bool char_vocab_encode(const char_vocab *v, const char *prompt, int32_t *ids);

/* ---- the text ---- */

/* The whole file (caller frees); NULL with a message on stderr. */
unsigned char *char_read_file(const char *path, size_t *size);

/* The text as ids: ids[0 .. n_train) for training, then n_val for validation. */
typedef struct char_corpus {
    char_vocab vocab;
    int32_t *ids;
    int64_t n_train, n_val;
} char_corpus;

/* Read path, split 90 / 10 (each split must hold windows of block + 1), print a line about
 * it. 0 on success; 1 with a message. */
int char_corpus_load(char_corpus *c, const char *path, int block);
void char_corpus_free(char_corpus *c);

/* splitmix64: the host's window positions, reproducible from a seed. */
uint64_t char_next_random(uint64_t *s);
/* B random windows of T + 1 ids of split (n ids): inputs x and targets y (the next id),
 * time-first [T, B] or batch-first [B, T]. */
void char_fill_windows(const int32_t *split, int64_t n, int T, int B, uint64_t *rng,
                       bool time_first, int32_t *x, int32_t *y);

/* ---- flags ---- */

bool char_parse_int(const char *s, long lo, long hi, long *out);
bool char_parse_float(const char *s, double lo, double hi, float *out);

/* Flags that take a number in a range, for a program's table of them. */
typedef struct char_int_flag {
    const char *name;
    int *value;
    long lo, hi;
} char_int_flag;

typedef struct char_float_flag {
    const char *name;
    float *value;
    double lo, hi;
} char_float_flag;

/* Parse value into the table entry named flag: 1 when one takes it, 0 when none is named so,
 * -1 when the value is out of its range or not a number. */
int char_table_flag(const char *flag, const char *value, const char_int_flag *ints, size_t n_ints,
                    const char_float_flag *floats, size_t n_floats);

/* ---- training ---- */

/* logits [.., V] of ids (x's shape): the model's forward pass. */
typedef clg_tensor *(*char_forward_fn)(clg_graph *g, const void *model, clg_tensor *x,
                                       bool training);

/* The mean cross-entropy of windows (ids x, targets y, shape [T, B] or [B, T]). With opt the
 * graph also trains (backward, the optimizer's update); without it only evaluates. */
typedef struct char_loss_plan {
    clg_graph *g;
    clg_plan *p;
    clg_tensor *x, *y, *loss;
} char_loss_plan;

clg_status char_loss_plan_build(clg_context *ctx, char_forward_fn forward, const void *model,
                                const int64_t shape[2], clg_optimizer *opt, char_loss_plan *lp);
void char_loss_plan_free(char_loss_plan *lp);
clg_status char_loss_plan_run(char_loss_plan *lp, const int32_t *x, const int32_t *y,
                              float *loss);

/* What the training loop needs: the recipe's sizes, the data, the two plans and a callback
 * that writes the checkpoint after each evaluation. */
typedef struct char_trainer {
    int iters, batch, block, eval_interval, eval_windows;
    bool time_first;
    uint64_t seed;
    const char *log_path, *checkpoint;
    const char_corpus *corpus;
    clg_optimizer *opt;
    char_loss_plan train, eval;
    int (*save)(void *user, int64_t step, double val_loss); /* 0 on success */
    void *user;
} char_trainer;

/* Train for iters steps on random windows; every eval_interval steps (and at the end) the
 * loss of eval_windows fixed windows of each split (drawn once from their own stream, so the
 * curve shows the model, not the draw), a log line, a checkpoint. Prints the timing and the
 * last line "validation loss N.NNN". 0 on success, 1 on an error (message printed). */
int char_train(char_trainer *t);

#endif
