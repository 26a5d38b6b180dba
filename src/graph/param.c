/* Parameters: named device tensors owned by the context and shared by every graph that uses
 * them (training and evaluation graphs, a DQN's online and target networks). The context's
 * table keeps them in creation order and finds them by name in constant time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/kernel_args.h"
#include "core/program.h"
#include "graph/graph_internal.h"

/* Creation order, and an open-addressing index of names (a power-of-two table of indices + 1,
 * kept at most half full), so finding or adding a name costs the same with 10 parameters or
 * 10,000 (an unrolled network names one per layer and step). */
struct clg_param_table {
    clg_context *ctx;
    clg_param **params;
    size_t n, cap;
    size_t *slots;
    size_t n_slots;
    size_t n_aliases; /* parameters with an alias: names are checked against them too */
};

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; ++s) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The slot holding name, or the empty slot where it would go. */
static size_t slot_of(const clg_param_table *t, const char *name) {
    size_t mask = t->n_slots - 1, i = (size_t)name_hash(name) & mask;
    while (t->slots[i] && strcmp(t->params[t->slots[i] - 1]->name, name) != 0) i = (i + 1) & mask;
    return i;
}

/* Rebuild the index with n_slots slots (in place when the size stays: never fails then). */
static bool reindex(clg_param_table *t, size_t n_slots) {
    if (n_slots == t->n_slots) {
        memset(t->slots, 0, n_slots * sizeof *t->slots);
    } else {
        size_t *slots = calloc(n_slots, sizeof *slots);
        if (!slots) return false;
        free(t->slots);
        t->slots = slots;
        t->n_slots = n_slots;
    }
    for (size_t k = 0; k < t->n; ++k) t->slots[slot_of(t, t->params[k]->name)] = k + 1;
    return true;
}

static void table_free(void *object) {
    clg_param_table *t = object;
    for (size_t i = 0; i < t->n; ++i) clg_param_destroy(t->params[i]);
    free(t->params);
    free(t->slots);
    t->ctx->params = NULL;
    free(t);
}

/* The context's table, made (and owned by the context) on first use. */
static clg_param_table *table_of(clg_context *ctx) {
    if (ctx->params) return ctx->params;
    clg_param_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ctx = ctx;
    if (!reindex(t, 64) || clg_context_own(ctx, t, table_free, true) != CLG_OK) {
        free(t->slots);
        free(t);
        return NULL;
    }
    ctx->params = t;
    return t;
}

static clg_status table_add(clg_param_table *t, clg_param *p) {
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 16;
        clg_param **np = realloc(t->params, nc * sizeof *np);
        if (!np) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_param_new: out of host memory");
        t->params = np;
        t->cap = nc;
    }
    if (2 * (t->n + 1) > t->n_slots && !reindex(t, 2 * t->n_slots))
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_param_new: out of host memory");
    t->params[t->n++] = p;
    t->slots[slot_of(t, p->name)] = t->n;
    return CLG_OK;
}

/* The parameter whose alias is name, or NULL; aliases are few (tied weights), so a scan
 * that only runs when some exist. */
clg_param *clg_param_alias_owner(clg_context *ctx, const char *name) {
    const clg_param_table *t = ctx->params;
    for (size_t i = 0; t && t->n_aliases && i < t->n; ++i)
        if (t->params[i]->alias && strcmp(t->params[i]->alias, name) == 0) return t->params[i];
    return NULL;
}

void clg_param_discard(clg_param *p) {
    if (!p) return;
    clg_param_table *t = p->ctx->params;
    clFinish(p->ctx->queue);
    for (size_t i = 0; t && i < t->n; ++i) {
        if (t->params[i] != p) continue;
        if (p->alias) t->n_aliases--;
        memmove(t->params + i, t->params + i + 1, (t->n - i - 1) * sizeof *t->params);
        t->n--;
        reindex(t, t->n_slots);
        break;
    }
    clg_param_destroy(p);
}

clg_param *clg_param_new(clg_context *ctx, const char *name, clg_dtype dtype, int ndim,
                         const int64_t *shape) {
    if (!ctx || !name || !*name) {
        clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_new: ctx and a non-empty name are required");
        return NULL;
    }
    if (clg_param_find(ctx, name) || clg_param_alias_owner(ctx, name)) {
        clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_new: a parameter named '%s' already exists",
                 name);
        return NULL;
    }
    if (ndim < 0 || ndim > CLG_MAX_DIMS || (ndim && !shape) || (int)dtype < 0 ||
        dtype >= CLG_DTYPE_COUNT) {
        clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_new('%s'): bad ndim %d, shape or dtype",
                 name, ndim);
        return NULL;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; ++i) {
        if (shape[i] < 1 || numel > INT32_MAX / shape[i]) {
            char b[160];
            clg_fail(CLG_ERR_SHAPE, "clg_param_new('%s'): bad shape %s", name,
                     clg_shape_str(ndim, shape, b, sizeof b));
            return NULL;
        }
        numel *= shape[i];
    }
    clg_param_table *table = table_of(ctx);
    if (!table) {
        clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_param_new: out of host memory");
        return NULL;
    }
    clg_param *p = calloc(1, sizeof *p);
    char *nm = malloc(strlen(name) + 1);
    if (!p || !nm) {
        free(p);
        free(nm);
        clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_param_new: out of host memory");
        return NULL;
    }
    strcpy(nm, name);
    *p = (clg_param){.ctx = ctx, .name = nm, .dtype = dtype, .ndim = ndim, .numel = numel,
                     .trainable = dtype == CLG_F32};
    if (ndim) memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    size_t bytes = (size_t)numel * clg_dtype_size(dtype);
    char what[300];
    snprintf(what, sizeof what, "parameter '%s'", name);
    if (clg_buffer_create(ctx, bytes, what, &p->buffer) != CLG_OK) {
        free(nm);
        free(p);
        return NULL;
    }
    const cl_uint zero = 0;
    cl_int err = clEnqueueFillBuffer(ctx->queue, p->buffer, &zero, sizeof zero, 0, bytes, 0,
                                     NULL, NULL);
    if (err != CL_SUCCESS) {
        clg_fail_cl(err, "zero-filling parameter '%s'", name);
        clg_buffer_release(ctx, p->buffer);
        free(nm);
        free(p);
        return NULL;
    }
    if (table_add(table, p) != CLG_OK) {
        clg_param_destroy(p);
        return NULL;
    }
    return p;
}

void clg_param_destroy(clg_param *p) {
    if (!p) return;
    clg_buffer_release(p->ctx, p->buffer);
    free(p->name);
    free(p->alias);
    free(p);
}

clg_param *clg_param_find(clg_context *ctx, const char *name) {
    if (!ctx || !name || !ctx->params) return NULL;
    const clg_param_table *t = ctx->params;
    size_t k = t->slots[slot_of(t, name)];
    return k ? t->params[k - 1] : NULL;
}

size_t clg_param_count(const clg_context *ctx) {
    return ctx && ctx->params ? ctx->params->n : 0;
}

clg_param *clg_param_at(clg_context *ctx, size_t index) {
    return ctx && ctx->params && index < ctx->params->n ? ctx->params->params[index] : NULL;
}

const char *clg_param_name(const clg_param *p) {
    return p ? p->name : NULL;
}

clg_dtype clg_param_dtype(const clg_param *p) {
    return p ? p->dtype : CLG_F32;
}

int clg_param_ndim(const clg_param *p) {
    return p ? p->ndim : 0;
}

const int64_t *clg_param_shape(const clg_param *p) {
    return p ? p->shape : NULL;
}

int64_t clg_param_numel(const clg_param *p) {
    return p ? p->numel : 0;
}

void clg_param_set_requires_grad(clg_param *p, bool requires_grad) {
    if (p) p->trainable = requires_grad && p->dtype == CLG_F32;
}

bool clg_param_requires_grad(const clg_param *p) {
    return p && p->trainable;
}

clg_status clg_param_set_alias(clg_param *p, const char *alias) {
    if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_set_alias: parameter is NULL");
    clg_param_table *t = p->ctx->params;
    if (!alias) {
        if (p->alias) t->n_aliases--;
        free(p->alias);
        p->alias = NULL;
        return CLG_OK;
    }
    clg_param *owner = clg_param_alias_owner(p->ctx, alias);
    if (!*alias || clg_param_find(p->ctx, alias) || (owner && owner != p))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_param_set_alias('%s'): '%s' is empty or already names a parameter",
                        p->name, alias);
    char *copy = malloc(strlen(alias) + 1);
    if (!copy) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_param_set_alias: out of host memory");
    strcpy(copy, alias);
    if (!p->alias) t->n_aliases++;
    free(p->alias);
    p->alias = copy;
    return CLG_OK;
}

const char *clg_param_alias(const clg_param *p) {
    return p ? p->alias : NULL;
}

void clg_param_set_persistent(clg_param *p, bool persistent) {
    if (p) p->transient = !persistent;
}

bool clg_param_persistent(const clg_param *p) {
    return p && !p->transient;
}

static clg_status check_bytes(const clg_param *p, size_t bytes, const char *fn) {
    if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: parameter is NULL", fn);
    size_t want = (size_t)p->numel * clg_dtype_size(p->dtype);
    if (bytes != want)
        return clg_fail(CLG_ERR_SHAPE, "%s('%s'): %zu bytes given, the parameter has %zu", fn,
                        p->name, bytes, want);
    return CLG_OK;
}

clg_status clg_param_write(clg_param *p, const void *host, size_t bytes) {
    clg_status st = check_bytes(p, bytes, "clg_param_write");
    if (st != CLG_OK) return st;
    if (!host) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_write: host is NULL");
    cl_int err = clEnqueueWriteBuffer(p->ctx->queue, p->buffer, CL_TRUE, 0, bytes, host, 0, NULL,
                                      NULL);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "writing parameter '%s'", p->name);
    return CLG_OK;
}

clg_status clg_param_read(clg_param *p, void *host, size_t bytes) {
    clg_status st = check_bytes(p, bytes, "clg_param_read");
    if (st != CLG_OK) return st;
    if (!host) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_read: host is NULL");
    cl_int err = clEnqueueReadBuffer(p->ctx->queue, p->buffer, CL_TRUE, 0, bytes, host, 0, NULL,
                                     NULL);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "reading parameter '%s'", p->name);
    return CLG_OK;
}

clg_status clg_param_copy(clg_param *dst, const clg_param *src) {
    if (!dst || !src) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_copy: NULL parameter");
    if (dst->ctx != src->ctx)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_copy: parameters of two contexts");
    if (dst->dtype != src->dtype || dst->ndim != src->ndim ||
        memcmp(dst->shape, src->shape, (size_t)dst->ndim * sizeof *dst->shape) != 0) {
        char a[160], b[160];
        return clg_fail(CLG_ERR_SHAPE, "clg_param_copy: '%s' is %s %s but '%s' is %s %s",
                        dst->name, clg_shape_str(dst->ndim, dst->shape, a, sizeof a),
                        clg_dtype_name(dst->dtype), src->name,
                        clg_shape_str(src->ndim, src->shape, b, sizeof b),
                        clg_dtype_name(src->dtype));
    }
    if (dst == src) return CLG_OK;
    size_t bytes = (size_t)dst->numel * clg_dtype_size(dst->dtype);
    cl_int err = clEnqueueCopyBuffer(dst->ctx->queue, src->buffer, dst->buffer, 0, 0, bytes, 0,
                                     NULL, NULL);
    if (err != CL_SUCCESS)
        return clg_fail_cl(err, "copying parameter '%s' to '%s'", src->name, dst->name);
    return CLG_OK;
}

clg_status clg_param_lerp(clg_param *dst, const clg_param *src, float tau) {
    if (!dst || !src) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_lerp: NULL parameter");
    if (!(tau >= 0.0f && tau <= 1.0f))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_lerp('%s', '%s'): tau %g is not in [0, 1]",
                        dst->name, src->name, (double)tau);
    if (dst->ctx != src->ctx)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_lerp: parameters of two contexts");
    if (dst->dtype != CLG_F32 || src->dtype != CLG_F32 || dst->ndim != src->ndim ||
        memcmp(dst->shape, src->shape, (size_t)dst->ndim * sizeof *dst->shape) != 0) {
        char a[160], b[160];
        return clg_fail(CLG_ERR_SHAPE, "clg_param_lerp: '%s' is %s %s but '%s' is %s %s (f32 of one shape needed)",
                        dst->name, clg_shape_str(dst->ndim, dst->shape, a, sizeof a),
                        clg_dtype_name(dst->dtype), src->name,
                        clg_shape_str(src->ndim, src->shape, b, sizeof b),
                        clg_dtype_name(src->dtype));
    }
    if (dst == src) return CLG_OK;
    clg_context *ctx = dst->ctx;
    cl_kernel k;
    clg_status st = clg_kernel_new(ctx, "optim", "param_lerp", &k);
    if (st != CLG_OK) return st;
    size_t run = clg_long_work_items(ctx) ? 1024 : 1;
    size_t global = ((size_t)dst->numel + run - 1) / run;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, dst->buffer);
    clg_arg_mem(&a, src->buffer);
    clg_arg_int(&a, dst->numel);
    clg_arg_float(&a, tau);
    clg_arg_int(&a, (int64_t)run);
    st = clg_args_done(&a, "param_lerp");
    if (st == CLG_OK) {
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            st = clg_fail_cl(err, "clg_param_lerp('%s', '%s')", dst->name, src->name);
    }
    clReleaseKernel(k); /* OpenCL keeps it until the queued launch has run */
    return st;
}
