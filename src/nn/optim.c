/* Optimizers: configuration, parameter groups, learning-rate schedules and the device state of
 * each parameter (its moments). The update itself is a graph op, built by clg_optimizer_apply
 * (optim_apply.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "nn/optim_internal.h"

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

static void optimizer_destroy(clg_optimizer *o) {
    clFinish(o->ctx->queue);
    for (size_t i = 0; i < o->n_states; ++i)
        for (int b = 0; b < o->states[i].n_bufs; ++b) clg_buffer_release(o->ctx, o->states[i].buf[b]);
    free(o->states);
    for (size_t g = 0; g < o->n_groups; ++g) free(o->groups[g].params);
    free(o->groups);
    free(o);
}

void clg_optimizer_retain(clg_optimizer *o) {
    o->refs++;
}

void clg_optimizer_release(clg_optimizer *o) {
    if (--o->refs == 0) optimizer_destroy(o);
}

/* The context's free function: the caller's hold ends with the context. */
static void optimizer_free_owned(void *object) {
    clg_optimizer *o = object;
    o->owned_by_ctx = false;
    clg_optimizer_release(o);
}

void clg_optimizer_free(clg_optimizer *o) {
    if (!o || !o->owned_by_ctx) return;
    clg_context_disown(o->ctx, o);
    optimizer_free_owned(o);
}

/* A group's parameters: f32, trainable, of ctx, in no other group of o, no repeats. */
static clg_status check_group_params(const clg_optimizer *o, clg_param *const *params, size_t n,
                                     const char *fn) {
    if (n && !params) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: params is NULL", fn);
    for (size_t i = 0; i < n; ++i) {
        const clg_param *p = params[i];
        if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: parameter %zu is NULL", fn, i);
        if (p->ctx != o->ctx)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "%s: parameter '%s' belongs to another context", fn, p->name);
        if (p->dtype != CLG_F32 || !p->trainable)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "%s: parameter '%s' is %s: an optimizer updates trainable f32 "
                            "parameters",
                            fn, p->name, p->dtype != CLG_F32 ? "i32" : "frozen");
        for (size_t j = 0; j < i; ++j)
            if (params[j] == p)
                return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: parameter '%s' is listed twice",
                                fn, p->name);
        for (size_t g = 0; g < o->n_groups; ++g)
            for (size_t k = 0; k < o->groups[g].n; ++k)
                if (o->groups[g].params[k] == p)
                    return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                                    "%s: parameter '%s' is already in group %zu", fn, p->name, g);
    }
    return CLG_OK;
}

static clg_status add_group(clg_optimizer *o, clg_param *const *params, size_t n,
                            const clg_optimizer_config *cfg) {
    clg_opt_group *ng = realloc(o->groups, (o->n_groups + 1) * sizeof *ng);
    if (!ng) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "optimizer: out of host memory");
    o->groups = ng;
    clg_opt_group *grp = &o->groups[o->n_groups];
    *grp = (clg_opt_group){.cfg = *cfg};
    if (n) {
        grp->params = malloc(n * sizeof *grp->params);
        if (!grp->params) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "optimizer: out of host memory");
        memcpy(grp->params, params, n * sizeof *params);
        grp->n = n;
    }
    o->n_groups++;
    return CLG_OK;
}

static clg_optimizer *optimizer_new(clg_context *ctx, const clg_optimizer_config *config,
                                    clg_param *const *params, size_t n, bool catch_all,
                                    const char *fn) {
    if (!ctx || !config) {
        clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: ctx and config are required", fn);
        return NULL;
    }
    if (check_config(config) != CLG_OK) return NULL;
    clg_optimizer *o = calloc(1, sizeof *o);
    if (!o) {
        clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
        return NULL;
    }
    o->ctx = ctx;
    o->refs = 1;
    o->catch_all = catch_all;
    clg_status st = check_group_params(o, params, n, fn);
    if (st == CLG_OK) st = add_group(o, params, n, config);
    if (st == CLG_OK) st = clg_context_own(ctx, o, optimizer_free_owned, false);
    if (st != CLG_OK) {
        optimizer_destroy(o);
        return NULL;
    }
    o->owned_by_ctx = true;
    return o;
}

clg_optimizer *clg_optimizer_new(clg_context *ctx, const clg_optimizer_config *config) {
    return optimizer_new(ctx, config, NULL, 0, true, "clg_optimizer_new");
}

clg_optimizer *clg_optimizer_new_params(clg_context *ctx, const clg_optimizer_config *config,
                                        clg_param *const *params, size_t n) {
    return optimizer_new(ctx, config, params, n, false, "clg_optimizer_new_params");
}

clg_status clg_optimizer_add_group(clg_optimizer *o, clg_param *const *params, size_t n,
                                   const clg_optimizer_config *config, size_t *group) {
    const char *fn = "clg_optimizer_add_group";
    if (!o) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: opt is NULL", fn);
    const clg_optimizer_config *base = &o->groups[0].cfg;
    if (!config) config = base;
    if (check_config(config) != CLG_OK) return CLG_ERR_INVALID_ARGUMENT;
    if (config->kind != base->kind || config->clip_norm != base->clip_norm)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "%s: a group's kind and clip_norm must be the optimizer's (%d, %g); got "
                        "%d, %g",
                        fn, (int)base->kind, (double)base->clip_norm, (int)config->kind,
                        (double)config->clip_norm);
    if (n == 0) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: a group needs parameters", fn);
    clg_status st = check_group_params(o, params, n, fn);
    if (st == CLG_OK) st = add_group(o, params, n, config);
    if (st == CLG_OK && group) *group = o->n_groups - 1;
    return st;
}

size_t clg_optimizer_group_count(const clg_optimizer *o) {
    return o ? o->n_groups : 0;
}

const clg_optimizer_config *clg_optimizer_group_config(const clg_optimizer *o, size_t group) {
    return o && group < o->n_groups ? &o->groups[group].cfg : NULL;
}

size_t clg_optimizer_group_size(const clg_optimizer *o, size_t group) {
    return o && group < o->n_groups ? o->groups[group].n : 0;
}

clg_param *clg_optimizer_group_param(const clg_optimizer *o, size_t group, size_t index) {
    return o && group < o->n_groups && index < o->groups[group].n ? o->groups[group].params[index]
                                                                 : NULL;
}

int clg_optimizer_group_of(const clg_optimizer *o, const clg_param *p) {
    if (!o || !p || p->dtype != CLG_F32 || !p->trainable) return -1;
    for (size_t g = 0; g < o->n_groups; ++g)
        for (size_t k = 0; k < o->groups[g].n; ++k)
            if (o->groups[g].params[k] == p) return (int)g;
    return o->catch_all && p->ctx == o->ctx ? 0 : -1;
}

/* ---- schedules ---- */

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

float clg_optimizer_group_lr(const clg_optimizer *o, size_t group) {
    return o && group < o->n_groups ? clg_optimizer_lr_at(&o->groups[group].cfg, o->steps) : 0.0f;
}

float clg_optimizer_lr(const clg_optimizer *o) {
    return clg_optimizer_group_lr(o, 0);
}

const clg_optimizer_config *clg_optimizer_get_config(const clg_optimizer *o) {
    return o ? &o->groups[0].cfg : NULL;
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

static const clg_optimizer_config *config_of(const clg_optimizer *o, const clg_param *p) {
    int g = clg_optimizer_group_of(o, p);
    return &o->groups[g < 0 ? 0 : g].cfg;
}

static bool find_state(const clg_optimizer *o, const clg_param *p, size_t *index) {
    for (size_t i = 0; i < o->n_states; ++i)
        if (o->states[i].param == p) {
            *index = i;
            return true;
        }
    return false;
}

clg_status clg_optimizer_ensure_state(clg_optimizer *o, clg_param *p, size_t *index) {
    if (find_state(o, p, index)) return CLG_OK;
    if (o->n_states == o->cap_states) {
        size_t nc = o->cap_states ? o->cap_states * 2 : 16;
        clg_opt_state *ns = realloc(o->states, nc * sizeof *ns);
        if (!ns) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "optimizer: out of host memory");
        o->states = ns;
        o->cap_states = nc;
    }
    clg_opt_state *s = &o->states[o->n_states];
    memset(s, 0, sizeof *s);
    s->param = p;
    const char *names[CLG_OPT_MAX_STATE];
    int n = state_names(config_of(o, p), names);
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
    *index = o->n_states++;
    return CLG_OK;
}

void clg_optimizer_drop_states_from(clg_optimizer *o, size_t from) {
    while (o->n_states > from) {
        clg_opt_state *s = &o->states[--o->n_states];
        for (int b = 0; b < s->n_bufs; ++b) clg_buffer_release(o->ctx, s->buf[b]);
    }
}

size_t clg_optimizer_new_state_bytes(const clg_optimizer *o, size_t n, clg_param *const *params,
                                     char *first, size_t first_size) {
    size_t total = 0, index;
    if (first_size) first[0] = '\0';
    for (size_t i = 0; i < n; ++i) {
        const char *names[CLG_OPT_MAX_STATE] = {""};
        size_t per_elem = (size_t)state_names(config_of(o, params[i]), names) * 4;
        bool seen = find_state(o, params[i], &index);
        for (size_t j = 0; j < i && !seen; ++j) seen = params[j] == params[i];
        if (seen || !per_elem) continue;
        if (!total && first_size)
            snprintf(first, first_size, "optimizer state %s.%s", params[i]->name, names[0]);
        total += (size_t)params[i]->numel * per_elem;
    }
    return total;
}

clg_status clg_optimizer_init_state(clg_optimizer *o) {
    if (!o) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_optimizer_init_state: NULL");
    size_t n0 = o->n_states, index;
    for (size_t i = 0; i < clg_param_count(o->ctx); ++i) {
        clg_param *p = clg_param_at(o->ctx, i);
        if (clg_optimizer_group_of(o, p) < 0) continue;
        clg_status st = clg_optimizer_ensure_state(o, p, &index);
        if (st != CLG_OK) {
            clg_optimizer_drop_states_from(o, n0);
            return st;
        }
    }
    return CLG_OK;
}

size_t clg_optimizer_state_count(const clg_optimizer *o) {
    size_t n = 0;
    for (size_t i = 0; o && i < o->n_states; ++i) n += (size_t)o->states[i].n_bufs;
    return n;
}

static const clg_opt_state *state_at(const clg_optimizer *o, size_t index, int *buf) {
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
    const clg_opt_state *s = state_at(o, index, &b);
    return s ? s->name[b] : NULL;
}

const clg_param *clg_optimizer_state_param(const clg_optimizer *o, size_t index) {
    int b;
    const clg_opt_state *s = state_at(o, index, &b);
    return s ? s->param : NULL;
}

static clg_status state_io(clg_optimizer *o, size_t index, void *host, size_t bytes, bool write) {
    int b;
    const clg_opt_state *s = state_at(o, index, &b);
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

