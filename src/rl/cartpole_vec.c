/* The device batch of CartPole environments as an object: its parameters, and small plans
 * that reset it or step it with host actions (a training loop adds the step to its own plan
 * instead, with clg_cartpole_vec_add_step). */
#include <stdio.h>
#include <stdlib.h>

#include "clgrad/dqn.h"
#include "clgrad/ops.h"
#include "core/error.h"

struct clg_cartpole_vec {
    clg_context *ctx;
    int64_t n;
    uint64_t seed;
    clg_param *state, *counters, *obs, *info;
    clg_graph *reset_g, *step_g;
    clg_plan *reset_plan, *step_plan;
    clg_tensor *step_action;
};

static clg_param *make(clg_context *ctx, const char *name, const char *part, clg_dtype dtype,
                       int64_t n, int64_t cols) {
    char full[256];
    snprintf(full, sizeof full, "%s.%s", name, part);
    const int64_t shape[2] = {n, cols};
    clg_param *p = clg_param_new(ctx, full, dtype, 2, shape);
    if (p) clg_param_set_requires_grad(p, false);
    return p;
}

clg_status clg_cartpole_vec_new(clg_context *ctx, const char *name, int64_t n, uint64_t seed,
                                clg_cartpole_vec **out) {
    if (!out || !ctx || !name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_vec_new: NULL argument");
    *out = NULL;
    if (n < 1 || n > INT32_MAX)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_cartpole_vec_new: n %lld outside "
                        "[1, 2^31)",
                        (long long)n);
    clg_cartpole_vec *v = calloc(1, sizeof *v);
    if (!v) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_cartpole_vec_new: out of memory");
    v->ctx = ctx;
    v->n = n;
    v->seed = seed;
    v->state = make(ctx, name, "state", CLG_I32, n, 8);
    v->counters = v->state ? make(ctx, name, "counters", CLG_I32, n, 2) : NULL;
    v->obs = v->counters ? make(ctx, name, "obs", CLG_F32, n, 4) : NULL;
    v->info = v->obs ? make(ctx, name, "info", CLG_F32, n, 8) : NULL;
    if (!v->info) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", clg_last_error());
        free(v);
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_vec_new: %s", msg);
    }
    clg_status st = clg_init_zeros(v->counters);
    if (st == CLG_OK) st = clg_init_zeros(v->info);
    if (st == CLG_OK) {
        v->reset_g = clg_graph_new(ctx);
        st = clg_cartpole_batch_reset(v->reset_g, v->state, v->counters, v->obs, seed);
    }
    if (st == CLG_OK) st = clg_graph_compile(v->reset_g, NULL, &v->reset_plan);
    if (st == CLG_OK) {
        v->step_g = clg_graph_new(ctx);
        const int64_t shape[1] = {n};
        v->step_action = clg_input(v->step_g, "action", CLG_I32, 1, shape);
        st = clg_cartpole_vec_add_step(v, v->step_g, v->step_action);
    }
    if (st == CLG_OK) st = clg_graph_compile(v->step_g, NULL, &v->step_plan);
    if (st == CLG_OK) st = clg_cartpole_vec_reset(v);
    if (st != CLG_OK) {
        clg_cartpole_vec_free(v);
        return st;
    }
    *out = v;
    return CLG_OK;
}

void clg_cartpole_vec_free(clg_cartpole_vec *v) {
    if (!v) return;
    clg_graph_free(v->reset_g);
    clg_graph_free(v->step_g);
    free(v);
}

int64_t clg_cartpole_vec_size(const clg_cartpole_vec *v) {
    return v ? v->n : 0;
}
clg_param *clg_cartpole_vec_obs(const clg_cartpole_vec *v) {
    return v ? v->obs : NULL;
}
clg_param *clg_cartpole_vec_state(const clg_cartpole_vec *v) {
    return v ? v->state : NULL;
}
clg_param *clg_cartpole_vec_counters(const clg_cartpole_vec *v) {
    return v ? v->counters : NULL;
}
clg_param *clg_cartpole_vec_info(const clg_cartpole_vec *v) {
    return v ? v->info : NULL;
}

clg_status clg_cartpole_vec_add_step(clg_cartpole_vec *v, clg_graph *g, clg_tensor *action) {
    if (!v) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_vec_add_step: vec is NULL");
    return clg_cartpole_batch_step(g, v->state, v->counters, v->obs, v->info, action, v->seed);
}

clg_status clg_cartpole_vec_reset(clg_cartpole_vec *v) {
    if (!v) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_vec_reset: vec is NULL");
    return clg_plan_run(v->reset_plan);
}

clg_status clg_cartpole_vec_step(clg_cartpole_vec *v, const int32_t *actions) {
    if (!v || !actions)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_vec_step: NULL argument");
    clg_status st =
        clg_plan_write(v->step_plan, v->step_action, actions, (size_t)v->n * sizeof *actions);
    return st != CLG_OK ? st : clg_plan_run(v->step_plan);
}
