/* CartPole-v1 stepped on the device for a batch of environments (kernels in cl/cartpole.cl,
 * built after cl/random.cl for Philox): two side effects on parameters that hold the
 * environments, so that observing, acting and stepping N environments is one plan run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/lowering.h"
#include "core/context.h"
#include "core/kernel_source.h"
#include "core/program.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

static clg_status lower_reset(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                              const clg_operand *out);
static clg_status lower_step(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                             const clg_operand *out);

/* attrs.random.seed keys the resets */
static const clg_op_info op_reset = {
    .name = "cartpole_reset", .kind = CLG_KIND_KERNEL, .lower = lower_reset};
static const clg_op_info op_step = {
    .name = "cartpole_step", .kind = CLG_KIND_KERNEL, .lower = lower_step};

/* cl/random.cl then cl/cartpole.cl, doubles where the device has them. */
static clg_status cartpole_kernel(clg_context *ctx, const char *name, cl_kernel *out) {
    char *rnd = NULL, *cp = NULL;
    size_t nr = 0, nc = 0;
    clg_status st = clg_kernel_source("random", &rnd, &nr);
    if (st == CLG_OK) st = clg_kernel_source("cartpole", &cp, &nc);
    char *text = st == CLG_OK ? malloc(nr + nc + 2) : NULL;
    if (st == CLG_OK && !text) st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "cartpole: out of host memory");
    cl_program p = NULL;
    if (st == CLG_OK) {
        memcpy(text, rnd, nr);
        text[nr] = '\n';
        memcpy(text + nr + 1, cp, nc);
        text[nr + nc + 1] = '\0';
        const char *opts = clg_context_device(ctx)->fp64 ? "-DCLG_CARTPOLE_FP64=1" : "";
        st = clg_program_get(ctx, "cartpole", text, nr + nc + 1, opts, &p);
    }
    free(rnd);
    free(cp);
    free(text);
    if (st != CLG_OK) return st;
    cl_int err;
    *out = clCreateKernel(p, name, &err);
    if (!*out) return clg_fail_cl(err, "creating kernel %s from cl/cartpole.cl", name);
    return CLG_OK;
}

/* The shapes both effects share: state i32 [N, 8], counters i32 [N, 2], obs f32 [N, 4]. */
static bool check_env(clg_graph *g, const char *op, const clg_param *state,
                      const clg_param *counters, const clg_param *obs, int64_t *n) {
    const clg_param *ps[3] = {state, counters, obs};
    const char *names[3] = {"state", "counters", "obs"};
    const int64_t cols[3] = {8, 2, 4};
    const clg_dtype types[3] = {CLG_I32, CLG_I32, CLG_F32};
    for (int k = 0; k < 3; ++k)
        if (!ps[k]) {
            clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "%s: %s is NULL", op, names[k]);
            return false;
        }
    *n = state->shape[0];
    for (int k = 0; k < 3; ++k) {
        const clg_param *p = ps[k];
        if (p->ndim != 2 || p->shape[0] != *n || p->shape[1] != cols[k] || p->dtype != types[k] ||
            *n > INT32_MAX) {
            char b[200];
            clg_graph_fail(g, CLG_ERR_SHAPE,
                           "%s: %s '%s' is %s %s, want [N, %lld] %s with N = %lld (state's)", op,
                           names[k], p->name, clg_shape_str(p->ndim, p->shape, b, sizeof b),
                           clg_dtype_name(p->dtype), (long long)cols[k], clg_dtype_name(types[k]),
                           (long long)*n);
            return false;
        }
    }
    return true;
}

static clg_status add_effect(clg_graph *g, const clg_op_info *info, int n_targets, int n_in,
                             clg_tensor *const *xs, uint64_t seed) {
    const int64_t one = 1;
    clg_tensor *t = clg_kernel_node(g, info, CLG_I32, 1, &one, n_in, xs);
    if (t == g->poison) return g->error;
    t->attrs = (clg_attrs){.kind = CLG_ATTRS_RANDOM, .random = {.seed = seed}};
    t->is_effect = true;
    t->n_targets = n_targets;
    return CLG_OK;
}

clg_status clg_cartpole_batch_reset(clg_graph *g, clg_param *state, clg_param *counters,
                                    clg_param *obs, uint64_t seed) {
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_batch_reset: graph is NULL");
    if (g->error) return g->error;
    int64_t n;
    if (!check_env(g, "cartpole_reset", state, counters, obs, &n)) return g->error;
    clg_tensor *const xs[3] = {clg_param_tensor(g, state), clg_param_tensor(g, counters),
                               clg_param_tensor(g, obs)};
    if (!clg_check_inputs(g, "cartpole_reset", 3, xs)) return g->error;
    return add_effect(g, &op_reset, 3, 3, xs, seed);
}

clg_status clg_cartpole_batch_step(clg_graph *g, clg_param *state, clg_param *counters,
                                   clg_param *obs, clg_param *info, clg_tensor *action,
                                   uint64_t seed) {
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_batch_step: graph is NULL");
    if (g->error) return g->error;
    int64_t n;
    if (!check_env(g, "cartpole_step", state, counters, obs, &n)) return g->error;
    char b[200];
    if (!info || info->ndim != 2 || info->shape[0] != n || info->shape[1] != 8 ||
        info->dtype != CLG_F32) {
        if (!info)
            clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "cartpole_step: info is NULL");
        else
            clg_graph_fail(g, CLG_ERR_SHAPE,
                           "cartpole_step: info '%s' is %s %s, want [%lld, 8] f32", info->name,
                           clg_shape_str(info->ndim, info->shape, b, sizeof b),
                           clg_dtype_name(info->dtype), (long long)n);
        return g->error;
    }
    clg_tensor *const xs[5] = {clg_param_tensor(g, state), clg_param_tensor(g, counters),
                               clg_param_tensor(g, obs), clg_param_tensor(g, info), action};
    if (!clg_check_inputs(g, "cartpole_step", 5, xs)) return g->error;
    if (action->dtype != CLG_I32 || clg_tensor_numel(action) != n) {
        clg_graph_fail(g, CLG_ERR_SHAPE,
                       "cartpole_step: action %s %s must be i32 with %lld "
                       "elements (one per environment)",
                       clg_shape_str(action->ndim, action->shape, b, sizeof b),
                       clg_dtype_name(action->dtype), (long long)n);
        return g->error;
    }
    clg_tensor *a = clg_reshape(g, action, 1, &n);
    clg_tensor *const ys[5] = {xs[0], xs[1], xs[2], xs[3], a};
    if (g->error) return g->error;
    return add_effect(g, &op_step, 4, 5, ys, seed);
}

static clg_status launch(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                         const char *name, bool step) {
    clg_context *ctx = clg_lowering_context(lw);
    cl_kernel k;
    clg_status st = cartpole_kernel(ctx, name, &k);
    if (st != CLG_OK) return st;
    int64_t n = in[0].shape[0];
    uint64_t seed = node->attrs.random.seed;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, in[0].mem); /* parameters are whole buffers: offset 0 */
    clg_arg_mem(&a, in[1].mem);
    clg_arg_mem(&a, in[2].mem);
    if (step) {
        clg_arg_mem(&a, in[3].mem);
        clg_arg_mem(&a, in[4].mem);
        clg_arg_int(&a, in[4].offset);
        clg_arg_int(&a, in[4].strides[0]);
    }
    clg_arg_int(&a, n);
    clg_arg_uint(&a, (uint32_t)seed);
    clg_arg_uint(&a, (uint32_t)(seed >> 32));
    size_t global = (size_t)n;
    return clg_lower_args(lw, &a, 1, &global, NULL, name);
}

static clg_status lower_reset(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                              const clg_operand *out) {
    (void)out;
    return launch(lw, node, in, "cartpole_reset", false);
}

static clg_status lower_step(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                             const clg_operand *out) {
    (void)out;
    return launch(lw, node, in, "cartpole_step", true);
}
