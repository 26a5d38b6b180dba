/* softmax, log_softmax and logsumexp. Over the last axis they are row kernels (ops/rows.c:
 * one kernel forward, one backward); over another axis, or with CLGRAD_ROWS=composite, they
 * are composed from reductions and elementwise ops, so that their gradients come from the
 * parts and fusion sees through them. Stability: the max is subtracted first and detached,
 * since the result does not depend on it mathematically. */
#include "graph/graph_internal.h"
#include "ops/node.h"
#include "ops/rows.h"

/* Whether x's axis is its last and the row kernels take it (g poisoned on a bad axis or
 * CLGRAD_ROWS value: the caller checks g->error). */
static bool by_rows(clg_graph *g, clg_tensor *x, int axis) {
    int a;
    return clg_norm_axis(axis, x->ndim, &a) && a == x->ndim - 1 && clg_rows_fused(g);
}

/* m = max over axis (keepdims, no gradient) and s = sum(exp(x - m)) over axis (keepdims). */
static bool shifted_sum(clg_graph *g, clg_tensor *x, int axis, clg_tensor **m, clg_tensor **s) {
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a)) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "softmax: axis %d out of range for rank %d", axis,
                       x->ndim);
        return false;
    }
    *m = clg_detach(g, clg_max(g, x, 1, &a, true));
    *s = clg_sum(g, clg_exp(g, clg_sub(g, x, *m)), 1, &a, true);
    return !g->error;
}

clg_tensor *clg_log_softmax(clg_graph *g, clg_tensor *x, int axis) {
    CLG_GUARD(g, "log_softmax", 1, x);
    if (by_rows(g, x, axis)) return clg_rows_softmax(g, x, CLG_ROWS_LOG_SOFTMAX);
    clg_tensor *m, *s;
    if (!shifted_sum(g, x, axis, &m, &s)) return g->poison;
    return clg_sub(g, clg_sub(g, x, m), clg_log(g, s));
}

clg_tensor *clg_softmax(clg_graph *g, clg_tensor *x, int axis) {
    CLG_GUARD(g, "softmax", 1, x);
    if (by_rows(g, x, axis)) return clg_rows_softmax(g, x, CLG_ROWS_SOFTMAX);
    clg_tensor *m, *s;
    if (!shifted_sum(g, x, axis, &m, &s)) return g->poison;
    return clg_div(g, clg_exp(g, clg_sub(g, x, m)), s);
}

clg_tensor *clg_logsumexp(clg_graph *g, clg_tensor *x, int axis, bool keepdims) {
    CLG_GUARD(g, "logsumexp", 1, x);
    clg_tensor *m, *s, *r;
    if (by_rows(g, x, axis)) {
        r = clg_rows_softmax(g, x, CLG_ROWS_LOGSUMEXP);
    } else {
        if (!shifted_sum(g, x, axis, &m, &s)) return g->poison;
        r = clg_add(g, m, clg_log(g, s));
    }
    if (keepdims) return r;
    int a;
    clg_norm_axis(axis, x->ndim, &a);
    return clg_squeeze(g, r, a);
}
