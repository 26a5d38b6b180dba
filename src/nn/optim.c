/* Optimizers: device state per parameter, update kernels appended to training plans (one
 * kernel per parameter, plus one norm kernel per parameter when clipping), and a per-run hook
 * that sets the scheduled learning rate and Adam's bias corrections as kernel arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/program.h"
#include "nn/optim_internal.h"

#define MAX_STATE 2

typedef struct opt_state {
    clg_param *param;
    int n_bufs;
    cl_mem buf[MAX_STATE];
    char name[MAX_STATE][320];
} opt_state;

typedef struct opt_binding {
    clg_plan *plan;
    size_t *update_steps; /* indices of this optimizer's update kernels in the plan */
    size_t n_updates;
    cl_mem norm; /* per-parameter squared norms when clipping */
} opt_binding;

struct clg_optimizer {
    clg_context *ctx;
    clg_optimizer_config cfg;
    int64_t steps;
    opt_state *states;
    size_t n_states, cap_states;
    opt_binding *bindings;
    size_t n_bindings;
};

clg_optimizer_config clg_optimizer_defaults(clg_optimizer_kind kind) {
    clg_optimizer_config c = {.kind = kind, .schedule = CLG_LR_CONSTANT, .gamma = 0.1f,
                              .step_size = 1};
    switch (kind) {
    case CLG_OPT_SGD:
        c.lr = 0.01f;
        break;
    case CLG_OPT_ADAM:
    case CLG_OPT_ADAMW:
        c.lr = 0.001f;
        c.beta1 = 0.9f;
        c.beta2 = 0.999f;
        c.eps = 1e-8f;
        c.weight_decay = kind == CLG_OPT_ADAMW ? 0.01f : 0.0f;
        break;
    case CLG_OPT_RMSPROP:
        c.lr = 0.01f;
        c.alpha = 0.99f;
        c.eps = 1e-8f;
        break;
    default:
        break;
    }
    return c;
}

static clg_status check_config(const clg_optimizer_config *c) {
#define BAD(cond, ...)                                                                         \
    if (cond) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_optimizer_new: " __VA_ARGS__)
    BAD((int)c->kind < 0 || c->kind >= CLG_OPT_KIND_COUNT, "unknown kind %d", (int)c->kind);
    BAD(!(c->lr >= 0.0f) || !isfinite(c->lr), "lr %g must be >= 0", (double)c->lr);
    BAD(!(c->momentum >= 0.0f && c->momentum < 1.0f), "momentum %g must be in [0, 1)",
        (double)c->momentum);
    BAD(c->nesterov && c->momentum == 0.0f, "nesterov needs a momentum above 0");
    BAD(!(c->weight_decay >= 0.0f), "weight_decay %g must be >= 0", (double)c->weight_decay);
    BAD(!(c->clip_norm >= 0.0f), "clip_norm %g must be >= 0 (0 = off)", (double)c->clip_norm);
    if (c->kind == CLG_OPT_ADAM || c->kind == CLG_OPT_ADAMW) {
        BAD(!(c->beta1 >= 0.0f && c->beta1 < 1.0f), "beta1 %g must be in [0, 1)", (double)c->beta1);
        BAD(!(c->beta2 >= 0.0f && c->beta2 < 1.0f), "beta2 %g must be in [0, 1)", (double)c->beta2);
        BAD(!(c->eps > 0.0f), "eps %g must be > 0", (double)c->eps);
    }
    if (c->kind == CLG_OPT_RMSPROP) {
        BAD(!(c->alpha >= 0.0f && c->alpha < 1.0f), "alpha %g must be in [0, 1)", (double)c->alpha);
        BAD(!(c->eps > 0.0f), "eps %g must be > 0", (double)c->eps);
    }
    BAD((int)c->schedule < 0 || c->schedule >= CLG_LR_SCHEDULE_COUNT, "unknown schedule %d",
        (int)c->schedule);
    BAD(c->schedule == CLG_LR_STEP && (c->step_size < 1 || !(c->gamma > 0.0f)),
        "the step schedule needs step_size >= 1 and gamma > 0");
    BAD(c->schedule == CLG_LR_COSINE &&
            (c->warmup_steps < 0 || c->total_steps <= c->warmup_steps || !(c->min_lr >= 0.0f)),
        "the cosine schedule needs 0 <= warmup_steps < total_steps and min_lr >= 0");
#undef BAD
    return CLG_OK;
}

clg_optimizer *clg_optimizer_new(clg_context *ctx, const clg_optimizer_config *config) {
    if (!ctx || !config) {
        clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_optimizer_new: ctx and config are required");
        return NULL;
    }
    if (check_config(config) != CLG_OK) return NULL;
    clg_optimizer *o = calloc(1, sizeof *o);
    if (!o || clg_context_add_optimizer(ctx, o) != CLG_OK) {
        free(o);
        clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_optimizer_new: out of host memory");
        return NULL;
    }
    o->ctx = ctx;
    o->cfg = *config;
    return o;
}

void clg_optimizer_free(clg_optimizer *o) {
    if (!o) return;
    clFinish(o->ctx->queue);
    while (o->n_bindings) clg_plan_free(o->bindings[o->n_bindings - 1].plan);
    free(o->bindings);
    for (size_t i = 0; i < o->n_states; ++i)
        for (int b = 0; b < o->states[i].n_bufs; ++b)
            clg_buffer_release(o->ctx, o->states[i].buf[b]);
    free(o->states);
    clg_context_remove_optimizer(o->ctx, o);
    free(o);
}

float clg_optimizer_lr_at(const clg_optimizer_config *c, int64_t step) {
    switch (c->schedule) {
    case CLG_LR_STEP:
        return c->lr * powf(c->gamma, (float)(step / c->step_size));
    case CLG_LR_COSINE: {
        if (step < c->warmup_steps) return c->lr * (float)(step + 1) / (float)c->warmup_steps;
        double span = (double)(c->total_steps - c->warmup_steps);
        double progress = (double)(step - c->warmup_steps) / span;
        if (progress > 1.0) progress = 1.0;
        return (float)(c->min_lr + 0.5 * (c->lr - c->min_lr) * (1.0 + cos(3.14159265358979323846 * progress)));
    }
    default:
        return c->lr;
    }
}

int64_t clg_optimizer_steps(const clg_optimizer *o) {
    return o ? o->steps : 0;
}

float clg_optimizer_lr(const clg_optimizer *o) {
    return o ? clg_optimizer_lr_at(&o->cfg, o->steps) : 0.0f;
}

const clg_optimizer_config *clg_optimizer_get_config(const clg_optimizer *o) {
    return o ? &o->cfg : NULL;
}

clg_status clg_optimizer_set_steps(clg_optimizer *o, int64_t steps) {
    if (!o || steps < 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_optimizer_set_steps: bad arguments");
    o->steps = steps;
    return CLG_OK;
}

/* ---- state ---- */

static int state_names(const clg_optimizer_config *c, const char **names) {
    switch (c->kind) {
    case CLG_OPT_SGD:
        names[0] = "momentum_buffer";
        return c->momentum != 0.0f ? 1 : 0;
    case CLG_OPT_ADAM:
    case CLG_OPT_ADAMW:
        names[0] = "exp_avg";
        names[1] = "exp_avg_sq";
        return 2;
    case CLG_OPT_RMSPROP:
        names[0] = "square_avg";
        names[1] = "momentum_buffer";
        return c->momentum > 0.0f ? 2 : 1;
    default:
        return 0;
    }
}

static opt_state *find_state(const clg_optimizer *o, const clg_param *p) {
    for (size_t i = 0; i < o->n_states; ++i)
        if (o->states[i].param == p) return &o->states[i];
    return NULL;
}

static clg_status ensure_state(clg_optimizer *o, clg_param *p, opt_state **out) {
    opt_state *s = find_state(o, p);
    if (s) {
        *out = s;
        return CLG_OK;
    }
    if (o->n_states == o->cap_states) {
        size_t nc = o->cap_states ? o->cap_states * 2 : 16;
        opt_state *ns = realloc(o->states, nc * sizeof *ns);
        if (!ns) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "optimizer: out of host memory");
        o->states = ns;
        o->cap_states = nc;
    }
    s = &o->states[o->n_states];
    memset(s, 0, sizeof *s);
    s->param = p;
    const char *names[MAX_STATE];
    int n = state_names(&o->cfg, names);
    size_t bytes = (size_t)p->numel * 4;
    for (int b = 0; b < n; ++b) {
        snprintf(s->name[b], sizeof s->name[b], "%s.%s", p->name, names[b]);
        char what[340];
        snprintf(what, sizeof what, "optimizer state %s", s->name[b]);
        clg_status st = clg_buffer_create(o->ctx, bytes, what, &s->buf[b]);
        const cl_uint zero = 0;
        if (st == CLG_OK) {
            cl_int err = clEnqueueFillBuffer(o->ctx->queue, s->buf[b], &zero, sizeof zero, 0,
                                             bytes, 0, NULL, NULL);
            if (err != CL_SUCCESS) st = clg_fail_cl(err, "zeroing optimizer state %s", s->name[b]);
        }
        if (st != CLG_OK) {
            for (int k = 0; k <= b; ++k) clg_buffer_release(o->ctx, s->buf[k]);
            return st;
        }
        s->n_bufs = b + 1;
    }
    o->n_states++;
    *out = s;
    return CLG_OK;
}

/* Release the states created from index `from` on: a call that failed half-way leaves the
 * device memory it found, so a retry under a raised cap starts from the same use. */
static void drop_states_from(clg_optimizer *o, size_t from) {
    while (o->n_states > from) {
        opt_state *s = &o->states[--o->n_states];
        for (int b = 0; b < s->n_bufs; ++b) clg_buffer_release(o->ctx, s->buf[b]);
    }
}

clg_status clg_optimizer_init_state(clg_optimizer *o) {
    if (!o) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_optimizer_init_state: NULL");
    size_t n0 = o->n_states;
    for (size_t i = 0; i < o->ctx->n_params; ++i) {
        clg_param *p = o->ctx->params[i];
        if (!p->trainable) continue;
        opt_state *s;
        clg_status st = ensure_state(o, p, &s);
        if (st != CLG_OK) {
            drop_states_from(o, n0);
            return st;
        }
    }
    return CLG_OK;
}

size_t clg_optimizer_attach_bytes(const clg_optimizer *o, size_t n, clg_param *const *params,
                                  char *first, size_t first_size) {
    const char *names[MAX_STATE] = {""};
    size_t per_elem = (size_t)state_names(&o->cfg, names) * 4, total = 0;
    if (first_size) first[0] = '\0';
    for (size_t i = 0; i < n; ++i) {
        bool seen = find_state(o, params[i]) != NULL;
        for (size_t j = 0; j < i && !seen; ++j) seen = params[j] == params[i];
        if (seen || !per_elem) continue;
        if (!total && first_size) snprintf(first, first_size, "%s.%s", params[i]->name, names[0]);
        total += (size_t)params[i]->numel * per_elem;
    }
    if (o->cfg.clip_norm > 0.0f && n > 0) total += n * sizeof(float); /* gradient norms */
    return total;
}

size_t clg_optimizer_state_count(const clg_optimizer *o) {
    size_t n = 0;
    for (size_t i = 0; o && i < o->n_states; ++i) n += (size_t)o->states[i].n_bufs;
    return n;
}

static const opt_state *state_at(const clg_optimizer *o, size_t index, int *buf) {
    for (size_t i = 0; o && i < o->n_states; ++i) {
        if (index < (size_t)o->states[i].n_bufs) {
            *buf = (int)index;
            return &o->states[i];
        }
        index -= (size_t)o->states[i].n_bufs;
    }
    return NULL;
}

const char *clg_optimizer_state_name(const clg_optimizer *o, size_t index) {
    int b;
    const opt_state *s = state_at(o, index, &b);
    return s ? s->name[b] : NULL;
}

const clg_param *clg_optimizer_state_param(const clg_optimizer *o, size_t index) {
    int b;
    const opt_state *s = state_at(o, index, &b);
    return s ? s->param : NULL;
}

static clg_status state_io(clg_optimizer *o, size_t index, void *host, size_t bytes, bool write) {
    int b;
    const opt_state *s = state_at(o, index, &b);
    if (!s || !host)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "optimizer state %zu does not exist", index);
    size_t want = (size_t)s->param->numel * 4;
    if (bytes != want)
        return clg_fail(CLG_ERR_SHAPE, "optimizer state %s has %zu bytes, got %zu", s->name[b],
                        want, bytes);
    cl_int err = write ? clEnqueueWriteBuffer(o->ctx->queue, s->buf[b], CL_TRUE, 0, bytes, host,
                                              0, NULL, NULL)
                       : clEnqueueReadBuffer(o->ctx->queue, s->buf[b], CL_TRUE, 0, bytes, host,
                                             0, NULL, NULL);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "%s optimizer state %s", write ? "writing" : "reading", s->name[b]);
    return CLG_OK;
}

clg_status clg_optimizer_state_read(clg_optimizer *o, size_t index, float *host, size_t bytes) {
    return state_io(o, index, host, bytes, false);
}

clg_status clg_optimizer_state_write(clg_optimizer *o, size_t index, const float *host,
                                     size_t bytes) {
    return state_io(o, index, (void *)host, bytes, true);
}

/* ---- plans ---- */

static opt_binding *find_binding(clg_optimizer *o, const clg_plan *plan) {
    for (size_t i = 0; i < o->n_bindings; ++i)
        if (o->bindings[i].plan == plan) return &o->bindings[i];
    return NULL;
}

/* Argument index of the learning rate (and of Adam's bias corrections) per kernel. */
enum { SGD_LR = 5, ADAM_LR = 6, ADAM_BC1 = 12, ADAM_BC2 = 13, RMS_LR = 6 };

static clg_status before_run(clg_plan *plan, void *user) {
    clg_optimizer *o = user;
    opt_binding *b = find_binding(o, plan);
    if (!b) return CLG_OK;
    float lr = clg_optimizer_lr_at(&o->cfg, o->steps);
    double t = (double)(o->steps + 1);
    float bc1 = (float)(1.0 - pow(o->cfg.beta1, t)), bc2 = (float)(1.0 - pow(o->cfg.beta2, t));
    for (size_t i = 0; i < b->n_updates; ++i) {
        cl_kernel k = plan->steps[b->update_steps[i]].kernel;
        cl_int e = CL_SUCCESS;
        switch (o->cfg.kind) {
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
    return CLG_OK;
}

void clg_optimizer_after_run(clg_optimizer *o, clg_plan *plan) {
    if (find_binding(o, plan)) o->steps++;
}

#define UPDATE_RUN 1024

static size_t pow2_floor(size_t x) {
    size_t p = 1;
    while (p * 2 <= x) p *= 2;
    return p;
}

static clg_status add_update(clg_optimizer *o, clg_plan *plan, opt_binding *b, opt_state *s,
                             const clg_operand *grad, int n_norm) {
    const clg_optimizer_config *c = &o->cfg;
    clg_param *p = s->param;
    static const char *const kernel_names[CLG_OPT_KIND_COUNT] = {
        "sgd_update", "adam_update", "adam_update", "rmsprop_update"};
    const char *kname = kernel_names[c->kind];
    cl_kernel k;
    clg_status st = clg_kernel_new(o->ctx, "optim", kname, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, p->buffer);
    clg_arg_mem(&a, grad->mem);
    clg_arg_int(&a, grad->offset);
    cl_mem norm = b->norm ? b->norm : p->buffer; /* unused without clipping */
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
    clg_arg_mem(&a, norm);
    clg_arg_int(&a, n_norm);
    clg_arg_float(&a, c->clip_norm);
    /* Elements per work-item: on a CPU device a run long enough that the work-item's cost
     * vanishes (the MNIST MLP's 100,352-weight Adam update on pocl: 0.36 -> 0.07 ms), one
     * element elsewhere. */
    bool cpu = clg_long_work_items(o->ctx);
    size_t run = cpu ? UPDATE_RUN : 1, items = ((size_t)p->numel + run - 1) / run;
    clg_arg_int(&a, (int)run);
    st = clg_args_done(&a, kname);
    if (st != CLG_OK) {
        clReleaseKernel(k);
        return st;
    }
    size_t local = cpu ? 1 : 64, global = (items + local - 1) / local * local;
    b->update_steps[b->n_updates++] = plan->n_steps;
    char label[64];
    snprintf(label, sizeof label, "%s", kname);
    return clg_plan_add_kernel(plan, k, 1, &global, &local, label, -1);
}

static clg_status add_norm(clg_optimizer *o, clg_plan *plan, cl_mem norm, const clg_operand *grad,
                           int64_t numel, int slot) {
    cl_kernel k;
    clg_status st = clg_kernel_new(o->ctx, "optim", "grad_sumsq", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, grad->mem);
    clg_arg_int(&a, grad->offset);
    clg_arg_int(&a, numel);
    clg_arg_mem(&a, norm);
    clg_arg_int(&a, slot);
    st = clg_args_done(&a, "grad_sumsq");
    if (st != CLG_OK) {
        clReleaseKernel(k);
        return st;
    }
    size_t maxwg = o->ctx->info.max_work_group_size;
    size_t local = pow2_floor(maxwg < 256 ? maxwg : 256), global = local;
    return clg_plan_add_kernel(plan, k, 1, &global, &local, "grad_sumsq", -1);
}

clg_status clg_optimizer_attach(clg_optimizer *o, clg_plan *plan, size_t n,
                                clg_param *const *params, const clg_operand *grads) {
    if (o->ctx != plan->ctx)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "optimizer and graph belong to two contexts");
    opt_binding *nb = realloc(o->bindings, (o->n_bindings + 1) * sizeof *nb);
    if (!nb) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "optimizer: out of host memory");
    o->bindings = nb;
    opt_binding *b = &o->bindings[o->n_bindings++];
    memset(b, 0, sizeof *b);
    b->plan = plan;
    b->update_steps = malloc((n ? n : 1) * sizeof *b->update_steps);
    if (!b->update_steps) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "optimizer: out of host memory");
    size_t n_states0 = o->n_states;
    clg_status st = CLG_OK;
    if (o->cfg.clip_norm > 0.0f && n > 0) {
        st = clg_buffer_create(o->ctx, n * sizeof(float), "the optimizer's gradient norms", &b->norm);
        for (size_t i = 0; i < n && st == CLG_OK; ++i)
            st = add_norm(o, plan, b->norm, &grads[i], params[i]->numel, (int)i);
    }
    for (size_t i = 0; i < n && st == CLG_OK; ++i) {
        if (grads[i].is_scalar) {
            st = clg_fail(CLG_ERR_INTERNAL, "gradient of '%s' has no buffer", params[i]->name);
            break;
        }
        opt_state *s;
        st = ensure_state(o, params[i], &s);
        if (st == CLG_OK) st = add_update(o, plan, b, s, &grads[i], b->norm ? (int)n : 0);
    }
    if (st == CLG_OK) st = clg_plan_add_hook(plan, before_run, o);
    /* the failed plan is freed next, with the update kernels that name these states */
    if (st != CLG_OK) drop_states_from(o, n_states0);
    return st;
}

void clg_optimizer_detach(clg_optimizer *o, clg_plan *plan) {
    for (size_t i = 0; i < o->n_bindings; ++i) {
        if (o->bindings[i].plan != plan) continue;
        free(o->bindings[i].update_steps);
        clg_buffer_release(o->ctx, o->bindings[i].norm);
        memmove(o->bindings + i, o->bindings + i + 1,
                (o->n_bindings - i - 1) * sizeof *o->bindings);
        o->n_bindings--;
        return;
    }
}
