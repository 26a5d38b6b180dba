/* Optimizers: SGD (with momentum and Nesterov), Adam, AdamW (decoupled weight decay) and
 * RMSprop, with optional clipping of the global gradient norm and learning-rate schedules.
 * Formulas follow PyTorch's torch.optim, so hyper-parameters carry over.
 *
 * An optimizer is a consumer of gradients: clg_optimizer_apply adds its update to a graph
 * (after clg_backward), as ordinary steps that every plan compiled from that graph runs at the
 * end of each run (or of every N-th run, accumulating gradients in between). A graph without
 * one trains nothing (evaluation, inference); several optimizers can update disjoint
 * parameters of one graph, and one optimizer can serve several graphs.
 *
 * Parameter groups (as torch.optim's param_groups): group 0 is made with the optimizer and
 * holds its own parameters or, by default, every trainable parameter no other group of the
 * optimizer holds; more groups hold named parameters with their own hyper-parameters (nanoGPT
 * decays matrices but not biases, norms and embeddings). Frozen parameters
 * (clg_param_set_requires_grad false) get no gradient and are never updated.
 *
 * Ownership: the optimizer belongs to its context (clg_context_free frees it); its state
 * (moments) lives on the device, one set per parameter, created when a plan that updates the
 * parameter is compiled. Graphs and plans that use it keep it alive: clg_optimizer_free may come
 * first; the memory goes with the last of them. */
#ifndef CLGRAD_OPTIM_H
#define CLGRAD_OPTIM_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum clg_optimizer_kind {
    CLG_OPT_SGD,
    CLG_OPT_ADAM,
    CLG_OPT_ADAMW,
    CLG_OPT_RMSPROP,
    CLG_OPT_KIND_COUNT
} clg_optimizer_kind;

typedef enum clg_lr_schedule {
    CLG_LR_CONSTANT, /* lr */
    CLG_LR_STEP,     /* lr * gamma^floor(step / step_size) */
    CLG_LR_COSINE,   /* linear warm-up over warmup_steps, then cosine from lr to min_lr at
                        total_steps (held at min_lr after) */
    CLG_LR_SCHEDULE_COUNT
} clg_lr_schedule;

typedef struct clg_optimizer_config {
    clg_optimizer_kind kind;
    float lr;
    float momentum;     /* SGD and RMSprop */
    bool nesterov;      /* SGD */
    float beta1, beta2; /* Adam, AdamW */
    float eps;          /* Adam, AdamW, RMSprop */
    float alpha;        /* RMSprop smoothing constant */
    float weight_decay; /* L2 added to the gradient; decoupled for AdamW */
    float clip_norm;    /* > 0: scale gradients so their global L2 norm is at most this */
    clg_lr_schedule schedule;
    int64_t warmup_steps, total_steps; /* cosine */
    float min_lr;                      /* cosine */
    int64_t step_size;                 /* step schedule */
    float gamma;                       /* step schedule */
} clg_optimizer_config;

/* PyTorch's defaults for kind (lr 0.01 for SGD and RMSprop, 0.001 for Adam/AdamW; AdamW's
 * weight decay 0.01; constant schedule, no clipping). */
clg_optimizer_config clg_optimizer_defaults(clg_optimizer_kind kind);

/* NULL on a bad configuration (message says which field) or out of memory. Group 0 takes
 * config and every trainable parameter that no other group of the optimizer holds. */
clg_optimizer *clg_optimizer_new(clg_context *ctx, const clg_optimizer_config *config);
/* The same with group 0 holding exactly params[0 .. n) (for two optimizers in one graph, or a
 * subset of a model). */
clg_optimizer *clg_optimizer_new_params(clg_context *ctx, const clg_optimizer_config *config,
                                        clg_param *const *params, size_t n);
/* Give up the caller's hold on the optimizer: it leaves the context, and its memory and state
 * go once no graph or plan uses it. NULL: no-op. */
void clg_optimizer_free(clg_optimizer *opt);

/* Add group (returned in *group, may be NULL) holding params[0 .. n) with config (NULL: group
 * 0's); config's kind and clip_norm must be group 0's (the norm is clipped over all of them).
 * A parameter of another group of this optimizer, or a frozen or i32 one, is an error. Groups
 * are added before the optimizer is applied to a graph. */
clg_status clg_optimizer_add_group(clg_optimizer *opt, clg_param *const *params, size_t n,
                                   const clg_optimizer_config *config, size_t *group);
size_t clg_optimizer_group_count(const clg_optimizer *opt);
/* A group's configuration and parameters (group 0's parameters are its explicit ones: none when
 * it takes every other trainable parameter). NULL / 0 for a bad group. */
const clg_optimizer_config *clg_optimizer_group_config(const clg_optimizer *opt, size_t group);
size_t clg_optimizer_group_size(const clg_optimizer *opt, size_t group);
clg_param *clg_optimizer_group_param(const clg_optimizer *opt, size_t group, size_t index);
/* The group that updates p: its explicit group, else 0 when group 0 takes the rest; -1 when
 * the optimizer does not update p (frozen, i32, or outside an explicit group 0). */
int clg_optimizer_group_of(const clg_optimizer *opt, const clg_param *p);

typedef struct clg_apply_options {
    /* 0 or 1: update at the end of every run. N > 1: gradient accumulation: runs add their
     * gradients into a buffer, and every N-th run updates with the mean of the N (equal to one
     * run of an N times larger batch when the loss is a mean over the batch). */
    int accumulate;
} clg_apply_options;

/* Add to g (after clg_backward) the update of every parameter of opt that has a gradient in g,
 * each with its group's settings. Every plan compiled from g then runs it (it is a side
 * effect, as clg_assign); the step counter advances once per update. opts may be NULL.
 * Applying one optimizer twice to a graph, or two that update the same parameter, is
 * CLG_ERR_GRAPH; so is a graph without gradients. */
clg_status clg_optimizer_apply(clg_optimizer *opt, clg_graph *g, const clg_apply_options *opts);

/* Updates applied so far (the step counter that bias correction and schedules use). */
int64_t clg_optimizer_steps(const clg_optimizer *opt);
/* Learning rate the next update will use (group 0's; clg_optimizer_group_lr for another). */
float clg_optimizer_lr(const clg_optimizer *opt);
float clg_optimizer_group_lr(const clg_optimizer *opt, size_t group);
const clg_optimizer_config *clg_optimizer_get_config(const clg_optimizer *opt);

/* State tensors, for checkpoints: names like "fc1.weight.exp_avg" (PyTorch's state keys
 * appended to the parameter's name). index runs over 0 .. clg_optimizer_state_count()-1. */
size_t clg_optimizer_state_count(const clg_optimizer *opt);
/* Name and element count of state tensor index (shape is its parameter's). */
const char *clg_optimizer_state_name(const clg_optimizer *opt, size_t index);
const clg_param *clg_optimizer_state_param(const clg_optimizer *opt, size_t index);
clg_status clg_optimizer_state_read(clg_optimizer *opt, size_t index, float *host, size_t bytes);
clg_status clg_optimizer_state_write(clg_optimizer *opt, size_t index, const float *host,
                                     size_t bytes);
/* Create the state of every parameter the optimizer updates now (normally done when a plan is
 * compiled), e.g. before loading a checkpoint. */
clg_status clg_optimizer_init_state(clg_optimizer *opt);
/* Set the step counter (resuming from a checkpoint). */
clg_status clg_optimizer_set_steps(clg_optimizer *opt, int64_t steps);

#ifdef __cplusplus
}
#endif

#endif
