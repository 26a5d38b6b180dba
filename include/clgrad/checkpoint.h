/* Checkpoints: a context's parameters, an optimizer's state and step counter, and the random
 * counter, saved to and loaded from a safetensors file with PyTorch's state-dict names
 * ("fc1.weight", "fc1.weight.exp_avg"), so that safetensors.torch.load_file reads what clgrad
 * writes and clgrad loads a state_dict that PyTorch wrote.
 *
 * File layout: one tensor per parameter (its dtype, F32 or I32, and shape); with an optimizer
 * one F32 tensor per state buffer; "__metadata__" holds "clgrad.format" = "clgrad checkpoint
 * v1", "clgrad.rng_offset" (the context's random counter), with an optimizer
 * "clgrad.optimizer" ("sgd", "adam", "adamw", "rmsprop"), "clgrad.optimizer_steps" and every
 * hyper-parameter as "clgrad.optimizer.<field>" (lr, beta1, schedule, total_steps, ...; floats
 * written so they read back exactly), the caller's own entries (a training loop's epoch and
 * data position, say), and "format" = "pt" for PyTorch-side loaders. Saved after a step and
 * loaded into the rebuilt model in a new context, training continues bit for bit as if it had
 * never stopped (on the same device).
 *
 * Files are written atomically: a temporary file in the target's folder (created exclusively,
 * never through a symbolic link), fsync'ed, renamed over the target, then the folder fsync'ed.
 * A reader sees the old checkpoint or the complete new one, never a torn file; a writer killed
 * mid-save leaves at most its temporary, which the next save to the same path removes. */
#ifndef CLGRAD_CHECKPOINT_H
#define CLGRAD_CHECKPOINT_H

#include "graph.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write every persistent parameter of ctx (one with an alias under both keys) and, if opt is not NULL, opt's state (created first for every
 * trainable parameter that has none, as compiling a plan would) to path, atomically: a failed
 * save leaves any previous file at path intact. Waits for queued work. CLG_ERR_IO names the
 * path. */
clg_status clg_checkpoint_save(clg_context *ctx, const char *path, clg_optimizer *opt);

/* A string entry of a checkpoint's metadata. */
typedef struct clg_checkpoint_entry {
    const char *key;
    const char *value;
} clg_checkpoint_entry;

/* clg_checkpoint_save plus the caller's own entries (borrowed for the call): keys non-empty,
 * unique, not "format" and not starting with "clgrad." (clgrad's own), keys and values valid
 * UTF-8; otherwise CLG_ERR_INVALID_ARGUMENT and nothing is written. */
clg_status clg_checkpoint_save_meta(clg_context *ctx, const char *path, clg_optimizer *opt,
                                    const clg_checkpoint_entry *meta, size_t n_meta);

/* Load path into ctx's parameters and, if opt is not NULL, into opt's state and step counter;
 * restore the random counter when the file records one. Everything is checked before
 * anything is written: every persistent parameter must be in the file (under its alias
 * if not its name) with the same dtype and shape
 * (no conversions), every file tensor must belong to the model, and with opt the file must
 * hold opt's kind, step count and every state tensor. Otherwise CLG_ERR_MISMATCH lists every
 * mismatch by name, one per line, and nothing was loaded (opt may have gained the zero state
 * that compiling a plan would create). With opt NULL the file's optimizer tensors are
 * ignored, so a state_dict written by PyTorch (no metadata) loads too; a file without
 * optimizer state loaded with an optimizer is a mismatch naming the missing state (load it
 * with opt NULL to start the optimizer afresh), and so is an optimizer of another kind or with
 * other hyper-parameters than the file records (one line per field). A malformed file is
 * CLG_ERR_FORMAT, an unreadable one CLG_ERR_IO, both naming the path. */
clg_status clg_checkpoint_load(clg_context *ctx, const char *path, clg_optimizer *opt);

/* A checkpoint's metadata, read without a context: what a resuming program needs before it
 * builds its model. Owned by the caller (clg_checkpoint_info_free; NULL is a no-op). */
typedef struct clg_checkpoint_info clg_checkpoint_info;

/* Read and validate path (the whole file, as clg_checkpoint_load would: CLG_ERR_FORMAT or
 * CLG_ERR_IO naming the path). */
clg_status clg_checkpoint_info_read(const char *path, clg_checkpoint_info **out);
void clg_checkpoint_info_free(clg_checkpoint_info *info);
/* Every metadata entry, clgrad's and the caller's, in file order; by key (NULL if absent).
 * Strings are owned by info. */
size_t clg_checkpoint_info_count(const clg_checkpoint_info *info);
const clg_checkpoint_entry *clg_checkpoint_info_at(const clg_checkpoint_info *info, size_t index);
const char *clg_checkpoint_info_get(const clg_checkpoint_info *info, const char *key);
/* The optimizer the file was saved with: its whole configuration (schedule totals included)
 * and step count, so a resumed run rebuilds exactly that optimizer. CLG_ERR_MISMATCH when the
 * file has no optimizer state or predates recorded hyper-parameters. */
clg_status clg_checkpoint_info_optimizer(const clg_checkpoint_info *info,
                                         clg_optimizer_config *config, int64_t *steps);

#ifdef __cplusplus
}
#endif

#endif
