/* Checkpoints: a context's parameters, an optimizer's state and step counter, and the random
 * counter, saved to and loaded from a safetensors file with PyTorch's state-dict names
 * ("fc1.weight", "fc1.weight.exp_avg"), so that safetensors.torch.load_file reads what clgrad
 * writes and clgrad loads a state_dict that PyTorch wrote.
 *
 * File layout: one tensor per parameter (its dtype, F32 or I32, and shape); with an optimizer
 * one F32 tensor per state buffer; "__metadata__" holds "clgrad.format" = "clgrad checkpoint
 * v1", "clgrad.rng_offset" (the context's random counter), with an optimizer
 * "clgrad.optimizer" ("sgd", "adam", "adamw", "rmsprop") and "clgrad.optimizer_steps", and
 * "format" = "pt" for PyTorch-side loaders. The optimizer's hyper-parameters are not stored:
 * resume with an optimizer made from the same configuration. Saved after a step and loaded
 * into the rebuilt model in a new context, training continues bit for bit as if it had never
 * stopped (on the same device). */
#ifndef CLGRAD_CHECKPOINT_H
#define CLGRAD_CHECKPOINT_H

#include "graph.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write every parameter of ctx and, if opt is not NULL, opt's state (created first for every
 * trainable parameter that has none, as compiling a plan would) to path, atomically: a failed
 * save leaves any previous file at path intact. Waits for queued work. CLG_ERR_IO names the
 * path. */
clg_status clg_checkpoint_save(clg_context *ctx, const char *path, clg_optimizer *opt);

/* Load path into ctx's parameters and, if opt is not NULL, into opt's state and step counter;
 * restore the random counter when the file records one. Everything is checked before
 * anything is written: every parameter must be in the file with the same dtype and shape
 * (no conversions), every file tensor must belong to the model, and with opt the file must
 * hold opt's kind, step count and every state tensor. Otherwise CLG_ERR_MISMATCH lists every
 * mismatch by name, one per line, and nothing was loaded (opt may have gained the zero state
 * that compiling a plan would create). With opt NULL the file's optimizer tensors are
 * ignored, so a state_dict written by PyTorch (no metadata) loads too; a file without
 * optimizer state loaded with an optimizer is a mismatch naming the missing state (load it
 * with opt NULL to start the optimizer afresh). A malformed file is CLG_ERR_FORMAT, an
 * unreadable one CLG_ERR_IO, both naming the path. */
clg_status clg_checkpoint_load(clg_context *ctx, const char *path, clg_optimizer *opt);

#ifdef __cplusplus
}
#endif

#endif
