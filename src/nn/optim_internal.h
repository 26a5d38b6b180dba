/* The optimizer's insides, shared by the optimizer itself (optim.c: configuration, groups,
 * schedules, device state) and its update as a graph op (optim_apply.c). */
#ifndef CLG_NN_OPTIM_INTERNAL_H
#define CLG_NN_OPTIM_INTERNAL_H

#include "clgrad/optim.h"
#include "core/context.h"
#include "graph/graph_internal.h"

#define CLG_OPT_MAX_STATE 2

/* One parameter's moments on the device ("fc1.weight.exp_avg", ...). */
typedef struct clg_opt_state {
    clg_param *param;
    int n_bufs;
    cl_mem buf[CLG_OPT_MAX_STATE];
    char name[CLG_OPT_MAX_STATE][320];
} clg_opt_state;

typedef struct clg_opt_group {
    clg_optimizer_config cfg;
    clg_param **params; /* group 0 with every other trainable parameter: none */
    size_t n;
} clg_opt_group;

struct clg_optimizer {
    clg_context *ctx;
    /* The caller's hold (until clg_optimizer_free) plus one per graph update and plan that
     * uses the optimizer: the last release frees it. */
    int refs;
    bool owned_by_ctx;
    bool catch_all; /* group 0 takes every trainable parameter no other group holds */
    clg_opt_group *groups;
    size_t n_groups;
    int64_t steps;
    clg_opt_state *states; /* reallocated as it grows: keep indices, not pointers */
    size_t n_states, cap_states;
};

void clg_optimizer_retain(clg_optimizer *opt);
void clg_optimizer_release(clg_optimizer *opt);

/* The state of p, created (zeroed) when missing; *index is its place in opt->states. */
clg_status clg_optimizer_ensure_state(clg_optimizer *opt, clg_param *p, size_t *index);
/* Device bytes the states of params[0 .. n) that do not exist yet will take; first (may be
 * "") names the first one's buffer. */
size_t clg_optimizer_new_state_bytes(const clg_optimizer *opt, size_t n, clg_param *const *params,
                                     char *first, size_t first_size);
/* Release the states created from index `from` on (a failed call leaves the use it found). */
void clg_optimizer_drop_states_from(clg_optimizer *opt, size_t from);

/* Learning rate at update number step (0-based) under a group's schedule. */
float clg_optimizer_lr_at(const clg_optimizer_config *cfg, int64_t step);

#endif
