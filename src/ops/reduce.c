/* Reductions over any set of axes: sum (and mean, as a scaled sum), max, min, argmax, and
 * variance composed from them. One generated kernel per reduction, with the elementwise work
 * that feeds it fused in. */
#include <string.h>

#include "graph/graph_internal.h"
#include "ops/node.h"

static void bw_sum(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_extreme(clg_graph *g, clg_tensor *node, clg_tensor *gout);

/* A reduce node keeps the input's rank (reduced dims have size 1); attrs.reduce: the reduced
 * axes and the scale applied to a sum (1/N for a mean). */
static const clg_op_info op_sum = {
    .name = "sum", .kind = CLG_KIND_REDUCE, .reduce = CLG_REDUCE_SUM, .backward = bw_sum};
static const clg_op_info op_max = {
    .name = "max", .kind = CLG_KIND_REDUCE, .reduce = CLG_REDUCE_MAX, .backward = bw_extreme};
static const clg_op_info op_min = {
    .name = "min", .kind = CLG_KIND_REDUCE, .reduce = CLG_REDUCE_MIN, .backward = bw_extreme};
static const clg_op_info op_argmax = {
    .name = "argmax", .kind = CLG_KIND_REDUCE, .reduce = CLG_REDUCE_ARGMAX};

/* Build the keepdims reduce node, then drop reduced dims unless keepdims. */
static clg_tensor *reduce(clg_graph *g, const clg_op_info *op, clg_tensor *x, int naxes,
                          const int *axes, bool keepdims, float scale_by_count) {
    CLG_GUARD(g, op->name, 1, x);
    if (naxes < 0 || naxes > x->ndim || (naxes > 0 && !axes))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "%s: bad axis list (%d axes)",
                              op->name, naxes);
    uint32_t mask = 0;
    if (naxes == 0) {
        mask = (1u << x->ndim) - 1;
    } else {
        for (int i = 0; i < naxes; ++i) {
            int a;
            if (!clg_norm_axis(axes[i], x->ndim, &a)) {
                char b[200];
                return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: axis %d out of range for shape %s",
                                      op->name, axes[i],
                                      clg_shape_str(x->ndim, x->shape, b, sizeof b));
            }
            if (mask & (1u << a))
                return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "%s: axis %d given twice",
                                      op->name, axes[i]);
            mask |= 1u << a;
        }
    }
    if (op->reduce != CLG_REDUCE_ARGMAX && x->dtype != CLG_F32) x = clg_cast(g, x, CLG_F32);
    int64_t kshape[CLG_MAX_DIMS], count = 1;
    int nd = 0;
    int64_t dshape[CLG_MAX_DIMS];
    for (int i = 0; i < x->ndim; ++i) {
        bool red = mask & (1u << i);
        kshape[i] = red ? 1 : x->shape[i];
        if (red) count *= x->shape[i];
        if (!red) dshape[nd++] = x->shape[i];
    }
    clg_dtype dt = op->reduce == CLG_REDUCE_ARGMAX ? CLG_I32 : CLG_F32;
    clg_tensor *t = clg_node_new(g, op, dt, x->ndim, kshape, 1, &x);
    if (t == g->poison) return t;
    t->attrs = (clg_attrs){
        .kind = CLG_ATTRS_REDUCE,
        .reduce = {.axes_mask = mask,
                   .scale = scale_by_count != 0.0f ? scale_by_count / (float)count : 1.0f}};
    if (keepdims || nd == x->ndim) return t;
    return clg_reshape(g, t, nd, dshape);
}

clg_tensor *clg_sum(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims) {
    return reduce(g, &op_sum, x, naxes, axes, keepdims, 0.0f);
}

clg_tensor *clg_mean(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims) {
    return reduce(g, &op_sum, x, naxes, axes, keepdims, 1.0f);
}

clg_tensor *clg_max(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims) {
    return reduce(g, &op_max, x, naxes, axes, keepdims, 0.0f);
}

clg_tensor *clg_min(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims) {
    return reduce(g, &op_min, x, naxes, axes, keepdims, 0.0f);
}

clg_tensor *clg_argmax(clg_graph *g, clg_tensor *x, int axis, bool keepdims) {
    return reduce(g, &op_argmax, x, 1, &axis, keepdims, 0.0f);
}

clg_tensor *clg_variance(clg_graph *g, clg_tensor *x, int naxes, const int *axes,
                         bool keepdims, int correction) {
    CLG_GUARD(g, "variance", 1, x);
    clg_tensor *mu = clg_mean(g, x, naxes, axes, true);
    if (g->error) return g->poison;
    int64_t count = clg_tensor_numel(x) / clg_tensor_numel(mu);
    if (correction < 0 || count - correction <= 0)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "variance: correction %d leaves no degrees of freedom (N = %lld)",
                              correction, (long long)count);
    clg_tensor *ss = clg_sum(g, clg_square(g, clg_sub(g, x, mu)), naxes, axes, keepdims);
    return clg_mul_scalar(g, ss, 1.0f / (float)(count - correction));
}

/* d sum / dx = broadcast of gout (times the mean's scale). */
static void bw_sum(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    float scale = node->attrs.reduce.scale;
    clg_tensor *s = scale == 1.0f ? gout : clg_mul_scalar(g, gout, scale);
    clg_grad_accumulate(g, x, clg_broadcast_to(g, s, x->ndim, x->shape));
}

/* The gradient goes to the elements equal to the extreme, split evenly among ties. */
static void bw_extreme(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    int axes[CLG_MAX_DIMS], n = 0;
    for (int i = 0; i < x->ndim; ++i)
        if (node->attrs.reduce.axes_mask & (1u << i)) axes[n++] = i;
    clg_tensor *mask = clg_eq(g, x, node);
    clg_tensor *ties = clg_sum(g, mask, n, axes, true);
    clg_grad_accumulate(g, x, clg_mul(g, mask, clg_div(g, gout, ties)));
}
