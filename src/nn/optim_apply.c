/* An optimizer's update as a graph op: clg_optimizer_apply adds one "update" node, a side
 * effect that writes every parameter it updates (its first inputs; its gradients follow). Its
 * lowering appends ordinary steps: with accumulation a kernel per parameter that adds the
 * run's gradient into a buffer; on the runs that update, one norm kernel per parameter when
 * clipping and one update kernel per parameter (cl/optim.cl); and a per-run hook that sets
 * the scheduled learning rate, Adam's bias corrections and the accumulation phase. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/lowering.h"
#include "core/program.h"
#include "nn/optim_internal.h"
#include "ops/node.h"

typedef struct update_attrs {
    clg_optimizer *opt; /* held by the node */
    uint32_t accumulate; /* update every N-th run (>= 1) */
    size_t n;            /* parameters: inputs [0, n); their gradients: inputs [n, 2n) */
} update_attrs;

static size_t update_device_bytes(const clg_tensor *node, char *what, size_t size);
static void free_update_attrs(clg_tensor *node);
static clg_status lower_update(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out);

static const clg_op_info op_update = {.name = "update",
                                      .kind = CLG_KIND_KERNEL,
                                      .lower = lower_update,
                                      .device_bytes = update_device_bytes,
                                      .free_attrs = free_update_attrs};

static void free_update_attrs(clg_tensor *node) {
    update_attrs *a = node->attrs.opaque.ptr;
    if (!a) return;
    clg_optimizer_release(a->opt);
    free(a);
    node->attrs.opaque.ptr = NULL;
}

/* The parameters an update node writes. */
static clg_param *param_at(const clg_tensor *node, size_t i) {
    return node->in[i]->param;
}

/* New state, the clipping norms and accumulated gradients: allocated by lower_update. */
static size_t update_device_bytes(const clg_tensor *node, char *what, size_t size) {
    const update_attrs *a = node->attrs.opaque.ptr;
    clg_param **list = malloc(a->n * sizeof *list);
    if (!list) return 0;
    size_t acc = 0;
    for (size_t i = 0; i < a->n; ++i) {
        list[i] = param_at(node, i);
        if (a->accumulate > 1) acc += (size_t)list[i]->numel * sizeof(float);
    }
    size_t bytes = clg_optimizer_new_state_bytes(a->opt, a->n, list, what, size);
    free(list);
    if (!bytes && size) snprintf(what, size, "the optimizer update's buffers");
    const clg_optimizer_config *c = clg_optimizer_get_config(a->opt);
    return bytes + acc + (c->clip_norm > 0.0f ? a->n * sizeof(float) : 0);
}

/* ---- building ---- */

clg_status clg_optimizer_apply(clg_optimizer *o, clg_graph *g, const clg_apply_options *opts) {
    const char *fn = "clg_optimizer_apply";
    if (!o || !g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: opt and graph are required", fn);
    if (g->error) return clg_fail(g->error, "%s", g->error_msg);
    if (o->ctx != g->ctx)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: optimizer and graph belong to two contexts",
                        fn);
    if (!g->backward_done)
        return clg_fail(CLG_ERR_GRAPH, "%s: the update needs gradients: call clg_backward first",
                        fn);
    int accumulate = opts ? opts->accumulate : 0;
    if (accumulate < 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: accumulate %d must be >= 0", fn, accumulate);
    size_t n = 0;
    clg_tensor **ins = malloc(2 * (g->n_nodes ? g->n_nodes : 1) * sizeof *ins);
    bool *taken = calloc(g->n_nodes ? g->n_nodes : 1, sizeof *taken);
    update_attrs *a = calloc(1, sizeof *a);
    clg_status st = ins && taken && a ? CLG_OK
                                      : clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    /* the parameters other updates of this graph already write */
    for (size_t i = 0; st == CLG_OK && i < g->n_nodes; ++i) {
        const clg_tensor *u = g->nodes[i];
        if (u->info != &op_update) continue;
        const update_attrs *ua = u->attrs.opaque.ptr;
        if (ua->opt == o)
            st = clg_fail(CLG_ERR_GRAPH, "%s: this optimizer already updates this graph", fn);
        for (int k = 0; k < u->n_targets; ++k) taken[u->in[k]->id] = true;
    }
    for (size_t i = 0; st == CLG_OK && i < g->n_nodes; ++i) {
        clg_tensor *t = g->nodes[i];
        if (!t->param || !t->grad || clg_optimizer_group_of(o, t->param) < 0) continue;
        if (taken[i])
            st = clg_fail(CLG_ERR_GRAPH,
                          "%s: parameter '%s' is already updated by another optimizer in this "
                          "graph (give the optimizers disjoint parameters: "
                          "clg_optimizer_new_params)",
                          fn, t->param->name);
        ins[n++] = t;
    }
    free(taken);
    if (st == CLG_OK && n == 0)
        st = clg_fail(CLG_ERR_GRAPH,
                      "%s: no parameter of this optimizer has a gradient in the graph (frozen "
                      "parameters have none; did the loss depend on the others?)",
                      fn);
    if (st != CLG_OK) {
        free(ins);
        free(a);
        return st;
    }
    for (size_t i = 0; i < n; ++i) ins[n + i] = ins[i]->grad;
    clg_tensor *t = clg_kernel_node(g, &op_update, CLG_F32, 0, NULL, (int)(2 * n), ins);
    free(ins);
    if (t == g->poison) {
        free(a);
        return g->error;
    }
    clg_optimizer_retain(o);
    *a = (update_attrs){.opt = o, .accumulate = accumulate > 1 ? (uint32_t)accumulate : 1, .n = n};
    t->attrs = (clg_attrs){.kind = CLG_ATTRS_OPAQUE, .opaque = {a}};
    t->is_effect = true;
    t->n_targets = (int)n;
    return CLG_OK;
}

/* ---- lowering ---- */

/* What a plan's hook needs per run: the kernels whose arguments change. */
typedef struct binding {
    clg_optimizer *opt; /* held by the plan */
    uint32_t accumulate;
    size_t n;
    cl_kernel *update;     /* per parameter (owned by the plan) */
    cl_kernel *accumulator; /* per parameter, with accumulation */
    int *group;            /* per parameter */
} binding;

static void free_binding(void *user) {
    binding *b = user;
    if (b->opt) clg_optimizer_release(b->opt);
    free(b->update);
    free(b->accumulator);
    free(b->group);
    free(b);
}

/* Argument index of the learning rate (and of Adam's bias corrections) per kernel, and of the
 * accumulator's "first run" flag. */
enum { SGD_LR = 5, ADAM_LR = 6, ADAM_BC1 = 12, ADAM_BC2 = 13, RMS_LR = 6, ACC_FIRST = 4 };

static clg_status before_run(uint64_t run, void *user) {
    binding *b = user;
    clg_optimizer *o = b->opt;
    uint32_t phase = (uint32_t)(run % b->accumulate);
    for (size_t i = 0; b->accumulator && i < b->n; ++i) {
        cl_int first = phase == 0;
        cl_int e = clSetKernelArg(b->accumulator[i], ACC_FIRST, sizeof first, &first);
        if (e != CL_SUCCESS) return clg_fail_cl(e, "setting the gradient accumulation phase");
    }
    if (phase != b->accumulate - 1) return CLG_OK;
    double t = (double)(o->steps + 1);
    for (size_t i = 0; i < b->n; ++i) {
        const clg_optimizer_config *c = &o->groups[b->group[i]].cfg;
        float lr = clg_optimizer_lr_at(c, o->steps);
        float bc1 = (float)(1.0 - pow(c->beta1, t)), bc2 = (float)(1.0 - pow(c->beta2, t));
        cl_kernel k = b->update[i];
        cl_int e = CL_SUCCESS;
        switch (c->kind) {
        case CLG_OPT_SGD:
            e = clSetKernelArg(k, SGD_LR, sizeof lr, &lr);
            break;
        case CLG_OPT_ADAM:
        case CLG_OPT_ADAMW:
            e = clSetKernelArg(k, ADAM_LR, sizeof lr, &lr);
            if (e == CL_SUCCESS) e = clSetKernelArg(k, ADAM_BC1, sizeof bc1, &bc1);
            if (e == CL_SUCCESS) e = clSetKernelArg(k, ADAM_BC2, sizeof bc2, &bc2);
            break;
        case CLG_OPT_RMSPROP:
            e = clSetKernelArg(k, RMS_LR, sizeof lr, &lr);
            break;
        default:
            break;
        }
        if (e != CL_SUCCESS) return clg_fail_cl(e, "setting the optimizer's learning rate");
    }
    o->steps++;
    return CLG_OK;
}

#define UPDATE_RUN 1024

static size_t pow2_floor(size_t x) {
    size_t p = 1;
    while (p * 2 <= x) p *= 2;
    return p;
}

/* Elements per work-item: on a CPU device a run long enough that the work-item's cost
 * vanishes, one element elsewhere; local is 1 on CPU devices (each work-item is a loop). */
static void update_range(clg_context *ctx, int64_t numel, size_t *run, size_t *global,
                         size_t *local) {
    bool cpu = clg_long_work_items(ctx);
    *run = cpu ? UPDATE_RUN : 1;
    size_t items = ((size_t)numel + *run - 1) / *run;
    *local = cpu ? 1 : 64;
    *global = (items + *local - 1) / *local * *local;
}

static clg_status add_accumulate(clg_lowering *lw, const clg_operand *grad, cl_mem acc,
                                 int64_t numel, cl_kernel *out) {
    clg_context *ctx = clg_lowering_context(lw);
    cl_kernel k;
    clg_status st = clg_kernel_new(ctx, "optim", "grad_accumulate", &k);
    if (st != CLG_OK) return st;
    size_t run, global, local;
    update_range(ctx, numel, &run, &global, &local);
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, acc);
    clg_arg_mem(&a, grad->mem);
    clg_arg_int(&a, grad->offset);
    clg_arg_int(&a, numel);
    clg_arg_int(&a, 1);
    clg_arg_int(&a, (int64_t)run);
    *out = k;
    return clg_lower_args(lw, &a, 1, &global, &local, "grad_accumulate");
}

static clg_status add_norm(clg_lowering *lw, cl_mem g, int64_t g_off, int64_t numel, cl_mem norm,
                           int slot, uint32_t every) {
    clg_context *ctx = clg_lowering_context(lw);
    cl_kernel k;
    clg_status st = clg_kernel_new(ctx, "optim", "grad_sumsq", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, g);
    clg_arg_int(&a, g_off);
    clg_arg_int(&a, numel);
    clg_arg_mem(&a, norm);
    clg_arg_int(&a, slot);
    st = clg_args_done(&a, "grad_sumsq");
    if (st != CLG_OK) {
        clReleaseKernel(k);
        return st;
    }
    size_t maxwg = ctx->info.max_work_group_size;
    size_t local = pow2_floor(maxwg < 256 ? maxwg : 256), global = local;
    return clg_lower_kernel_every(lw, k, 1, &global, &local, "grad_sumsq", every, every - 1);
}

static clg_status add_update(clg_lowering *lw, const clg_optimizer *o, const clg_opt_state *s,
                             const clg_optimizer_config *c, cl_mem g, int64_t g_off, cl_mem norm,
                             int n_norm, uint32_t every, cl_kernel *out) {
    static const char *const kernel_names[CLG_OPT_KIND_COUNT] = {
        "sgd_update", "adam_update", "adam_update", "rmsprop_update"};
    clg_param *p = s->param;
    const char *kname = kernel_names[c->kind];
    cl_kernel k;
    clg_status st = clg_kernel_new(o->ctx, "optim", kname, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, p->buffer);
    clg_arg_mem(&a, g);
    clg_arg_int(&a, g_off);
    switch (c->kind) {
    case CLG_OPT_SGD:
        clg_arg_mem(&a, s->n_bufs ? s->buf[0] : p->buffer);
        clg_arg_int(&a, p->numel);
        clg_arg_float(&a, c->lr);
        clg_arg_float(&a, c->momentum);
        clg_arg_int(&a, c->nesterov);
        clg_arg_float(&a, c->weight_decay);
        break;
    case CLG_OPT_ADAM:
    case CLG_OPT_ADAMW:
        clg_arg_mem(&a, s->buf[0]);
        clg_arg_mem(&a, s->buf[1]);
        clg_arg_int(&a, p->numel);
        clg_arg_float(&a, c->lr);
        clg_arg_float(&a, c->beta1);
        clg_arg_float(&a, c->beta2);
        clg_arg_float(&a, c->eps);
        clg_arg_float(&a, c->weight_decay);
        clg_arg_int(&a, c->kind == CLG_OPT_ADAMW);
        clg_arg_float(&a, 1.0f);
        clg_arg_float(&a, 1.0f);
        break;
    case CLG_OPT_RMSPROP:
        clg_arg_mem(&a, s->buf[0]);
        clg_arg_mem(&a, s->n_bufs > 1 ? s->buf[1] : p->buffer);
        clg_arg_int(&a, p->numel);
        clg_arg_float(&a, c->lr);
        clg_arg_float(&a, c->alpha);
        clg_arg_float(&a, c->eps);
        clg_arg_float(&a, c->momentum);
        clg_arg_float(&a, c->weight_decay);
        break;
    default:
        break;
    }
    clg_arg_mem(&a, norm ? norm : p->buffer); /* unused without clipping */
    clg_arg_int(&a, n_norm);
    clg_arg_float(&a, c->clip_norm);
    clg_arg_float(&a, 1.0f / (float)every);
    size_t run, global, local;
    update_range(o->ctx, p->numel, &run, &global, &local);
    clg_arg_int(&a, (int64_t)run);
    st = clg_args_done(&a, kname);
    if (st != CLG_OK) {
        clReleaseKernel(k);
        return st;
    }
    *out = k;
    return clg_lower_kernel_every(lw, k, 1, &global, &local, kname, every, every - 1);
}

static clg_status lower_update(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    (void)out;
    const update_attrs *ua = node->attrs.opaque.ptr;
    clg_optimizer *o = ua->opt;
    size_t n = ua->n;
    uint32_t every = ua->accumulate;
    binding *b = calloc(1, sizeof *b);
    size_t *state = malloc(n * sizeof *state);
    cl_mem *acc = calloc(n, sizeof *acc);
    if (b) {
        b->update = calloc(n, sizeof *b->update);
        b->group = calloc(n, sizeof *b->group);
        if (every > 1) b->accumulator = calloc(n, sizeof *b->accumulator);
    }
    if (!b || !state || !acc || !b->update || !b->group || (every > 1 && !b->accumulator)) {
        if (b) free_binding(b);
        free(state);
        free(acc);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "optimizer update: out of host memory");
    }
    clg_optimizer_retain(o);
    *b = (binding){.opt = o, .accumulate = every, .n = n, .update = b->update,
                   .accumulator = b->accumulator, .group = b->group};
    clg_status st = CLG_OK;
    size_t n0 = o->n_states;
    for (size_t i = 0; i < n && st == CLG_OK; ++i) {
        if (in[n + i].is_scalar)
            st = clg_fail(CLG_ERR_INTERNAL, "the gradient of '%s' has no buffer",
                          param_at(node, i)->name);
        else
            st = clg_optimizer_ensure_state(o, param_at(node, i), &state[i]);
        b->group[i] = clg_optimizer_group_of(o, param_at(node, i));
    }
    /* with accumulation the updates read the buffers the runs add into */
    for (size_t i = 0; i < n && st == CLG_OK && every > 1; ++i) {
        const clg_param *p = param_at(node, i);
        char what[340];
        snprintf(what, sizeof what, "the accumulated gradient of '%s'", p->name);
        st = clg_lower_buffer(lw, (size_t)p->numel * sizeof(float), what, &acc[i]);
        if (st == CLG_OK) st = add_accumulate(lw, &in[n + i], acc[i], p->numel, &b->accumulator[i]);
    }
    cl_mem norm = NULL;
    bool clip = clg_optimizer_get_config(o)->clip_norm > 0.0f;
    if (st == CLG_OK && clip) st = clg_lower_buffer(lw, n * sizeof(float), "gradient norms", &norm);
    for (size_t i = 0; i < n && st == CLG_OK && clip; ++i)
        st = add_norm(lw, every > 1 ? acc[i] : in[n + i].mem, every > 1 ? 0 : in[n + i].offset,
                      param_at(node, i)->numel, norm, (int)i, every);
    for (size_t i = 0; i < n && st == CLG_OK; ++i)
        st = add_update(lw, o, &o->states[state[i]], &o->groups[b->group[i]].cfg,
                        every > 1 ? acc[i] : in[n + i].mem, every > 1 ? 0 : in[n + i].offset, norm,
                        clip ? (int)n : 0, every, &b->update[i]);
    free(acc);
    free(state);
    if (st != CLG_OK) {
        clg_optimizer_drop_states_from(o, n0);
        free_binding(b);
        return st;
    }
    return clg_lower_hook(lw, before_run, b, free_binding);
}
