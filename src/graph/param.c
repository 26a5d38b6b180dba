/* Parameters: named device tensors owned by the context and shared by every graph that uses
 * them (training and evaluation graphs, a DQN's online and target networks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "graph/graph_internal.h"

clg_param *clg_param_new(clg_context *ctx, const char *name, clg_dtype dtype, int ndim,
                         const int64_t *shape) {
    if (!ctx || !name || !*name) {
        clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_param_new: ctx and a non-empty name are required");
        return NULL;
    }
    if (clg_param_find(ctx, name)) {
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
    if (ctx->n_params == ctx->cap_params) {
        size_t nc = ctx->cap_params ? ctx->cap_params * 2 : 16;
        clg_param **np = realloc(ctx->params, nc * sizeof *np);
        if (!np) {
            clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_param_new: out of host memory");
            return NULL;
        }
        ctx->params = np;
        ctx->cap_params = nc;
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
    ctx->params[ctx->n_params++] = p;
    return p;
}

void clg_param_destroy(clg_param *p) {
    if (!p) return;
    clg_buffer_release(p->ctx, p->buffer);
    free(p->name);
    free(p);
}

clg_param *clg_param_find(clg_context *ctx, const char *name) {
    if (!ctx || !name) return NULL;
    for (size_t i = 0; i < ctx->n_params; ++i)
        if (strcmp(ctx->params[i]->name, name) == 0) return ctx->params[i];
    return NULL;
}

size_t clg_param_count(const clg_context *ctx) {
    return ctx ? ctx->n_params : 0;
}

clg_param *clg_param_at(clg_context *ctx, size_t index) {
    return ctx && index < ctx->n_params ? ctx->params[index] : NULL;
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

void clg_param_set_trainable(clg_param *p, bool trainable) {
    if (p) p->trainable = trainable && p->dtype == CLG_F32;
}

bool clg_param_trainable(const clg_param *p) {
    return p && p->trainable;
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
