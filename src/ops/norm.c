/* Batch normalisation, composed from reductions and elementwise ops (the compiler fuses the
 * elementwise work into the reductions; gradients come from autograd). Training updates the
 * running statistics through clg_assign effects. */
#include "graph/graph_internal.h"
#include "ops/node.h"

static bool check_affine(clg_graph *g, const char *op, const char *what, clg_tensor *t, int64_t C,
                         const char *sx) {
    if (!t) return true;
    if (!clg_check_inputs(g, op, 1, &t)) return false;
    if (t->ndim != 1 || t->shape[0] != C) {
        char b[200];
        clg_graph_fail(g, CLG_ERR_SHAPE, "%s: %s must be [%lld] for x %s, got %s", op, what,
                       (long long)C, sx, clg_shape_str(t->ndim, t->shape, b, sizeof b));
        return false;
    }
    return true;
}

static bool check_running(clg_graph *g, const char *op, const char *what, const clg_param *p,
                          int64_t C, const char *sx) {
    if (!p) return true;
    if (p->ctx != g->ctx || p->dtype != CLG_F32 || p->ndim != 1 || p->shape[0] != C) {
        char b[200];
        clg_graph_fail(g, CLG_ERR_SHAPE,
                       "%s: %s '%s' must be an f32 parameter [%lld] of this context for x %s, "
                       "got %s %s",
                       op, what, p->name, (long long)C, sx,
                       clg_shape_str(p->ndim, p->shape, b, sizeof b), clg_dtype_name(p->dtype));
        return false;
    }
    return true;
}

/* r <- (1 - momentum) r + momentum s, s of shape [1, C, 1...]. */
static void update_running(clg_graph *g, clg_param *r, clg_tensor *s, float momentum, int64_t C) {
    clg_tensor *old = clg_param_tensor(g, r);
    clg_tensor *v = clg_add(g, clg_mul_scalar(g, old, 1.0f - momentum),
                            clg_mul_scalar(g, clg_reshape(g, s, 1, &C), momentum));
    if (!g->error) clg_assign(g, r, v);
}

/* x [N, C, ...]: statistics over every axis but 1. */
static clg_tensor *batch_norm(clg_graph *g, const char *op, int min_rank, int max_rank,
                              clg_tensor *x, clg_tensor *weight, clg_tensor *bias,
                              clg_param *running_mean, clg_param *running_var, float momentum,
                              float eps, bool training) {
    CLG_GUARD(g, op, 1, x);
    char sx[200];
    clg_shape_str(x->ndim, x->shape, sx, sizeof sx);
    if (x->ndim < min_rank || x->ndim > max_rank)
        return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: x must be %s, got %s", op,
                              min_rank == 4 ? "[N, C, H, W]" : "[N, C] or [N, C, L]", sx);
    int64_t C = x->shape[1];
    if (!check_affine(g, op, "weight", weight, C, sx) ||
        !check_affine(g, op, "bias", bias, C, sx) ||
        !check_running(g, op, "running_mean", running_mean, C, sx) ||
        !check_running(g, op, "running_var", running_var, C, sx))
        return g->poison;
    if (!(eps >= 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "%s: eps %g must be >= 0 and momentum %g in [0, 1] (x %s)", op,
                              (double)eps, (double)momentum, sx);
    if ((running_mean == NULL) != (running_var == NULL))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "%s: give both running_mean and running_var, or neither (x %s)", op,
                              sx);
    if (x->dtype != CLG_F32) x = clg_cast(g, x, CLG_F32);
    int axes[CLG_MAX_DIMS], na = 0;
    int64_t pshape[CLG_MAX_DIMS]; /* [1, C, 1, ...] */
    for (int i = 0; i < x->ndim; ++i) {
        pshape[i] = i == 1 ? C : 1;
        if (i != 1) axes[na++] = i;
    }
    int64_t count = clg_tensor_numel(x) / C;
    bool batch_stats = training || !running_mean;
    clg_tensor *xhat;
    if (batch_stats) {
        if (count < 2)
            return clg_graph_fail(g, CLG_ERR_SHAPE,
                                  "%s: batch statistics need more than one value per channel, "
                                  "x is %s",
                                  op, sx);
        clg_tensor *mean = clg_mean(g, x, na, axes, true);
        clg_tensor *d = clg_sub(g, x, mean);
        clg_tensor *var = clg_mean(g, clg_square(g, d), na, axes, true); /* biased */
        xhat = clg_mul(g, d, clg_rsqrt(g, clg_add_scalar(g, var, eps)));
        if (training && running_mean) {
            update_running(g, running_mean, mean, momentum, C);
            clg_tensor *unbiased = clg_mul_scalar(g, var, (float)count / (float)(count - 1));
            update_running(g, running_var, unbiased, momentum, C);
        }
    } else {
        clg_tensor *mean = clg_reshape(g, clg_param_tensor(g, running_mean), x->ndim, pshape);
        clg_tensor *var = clg_reshape(g, clg_param_tensor(g, running_var), x->ndim, pshape);
        xhat = clg_mul(g, clg_sub(g, x, mean), clg_rsqrt(g, clg_add_scalar(g, var, eps)));
    }
    clg_tensor *y = xhat;
    if (weight) y = clg_mul(g, y, clg_reshape(g, weight, x->ndim, pshape));
    if (bias) y = clg_add(g, y, clg_reshape(g, bias, x->ndim, pshape));
    return g->error ? g->poison : y;
}

clg_tensor *clg_batch_norm2d(clg_graph *g, clg_tensor *x, clg_tensor *weight, clg_tensor *bias,
                             clg_param *running_mean, clg_param *running_var, float momentum,
                             float eps, bool training) {
    return batch_norm(g, "batch_norm2d", 4, 4, x, weight, bias, running_mean, running_var, momentum,
                      eps, training);
}

clg_tensor *clg_batch_norm1d(clg_graph *g, clg_tensor *x, clg_tensor *weight, clg_tensor *bias,
                             clg_param *running_mean, clg_param *running_var, float momentum,
                             float eps, bool training) {
    return batch_norm(g, "batch_norm1d", 2, 3, x, weight, bias, running_mean, running_var, momentum,
                      eps, training);
}
