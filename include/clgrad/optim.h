/* Optimizers that update parameters on the device at the end of every plan run: SGD (with
 * momentum and Nesterov), Adam, AdamW (decoupled weight decay) and RMSprop, with optional
 * clipping of the global gradient norm and learning-rate schedules. Formulas follow PyTorch's
 * torch.optim, so hyper-parameters carry over.
 * Ownership: the optimizer belongs to its context (clg_context_free frees it); its state
 * (moments) lives on the device, one set per parameter, created when a plan is compiled. */
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

/* NULL on a bad configuration (message says which field) or out of memory. */
clg_optimizer *clg_optimizer_new(clg_context *ctx, const clg_optimizer_config *config);
/* Free the optimizer and its state; plans that use it must be freed first. NULL: no-op. */
void clg_optimizer_free(clg_optimizer *opt);

/* Updates applied so far (the step counter that bias correction and schedules use). */
int64_t clg_optimizer_steps(const clg_optimizer *opt);
/* Learning rate the next update will use. */
float clg_optimizer_lr(const clg_optimizer *opt);
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
/* Create the state of every trainable parameter of the context now (normally done when a plan
 * is compiled), e.g. before loading a checkpoint. */
clg_status clg_optimizer_init_state(clg_optimizer *opt);
/* Set the step counter (resuming from a checkpoint). */
clg_status clg_optimizer_set_steps(clg_optimizer *opt, int64_t steps);

#ifdef __cplusplus
}
#endif

#endif
