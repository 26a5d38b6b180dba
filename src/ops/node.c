/* What every op family uses to build its nodes: kernel nodes whose operands have buffers, and
 * the gradient helpers backward rules call (they build ops themselves, so they live here, not
 * in the autograd walk that calls the rules). */
#include <string.h>

#include "clgrad/ops.h"
#include "ops/node.h"

clg_tensor *clg_kernel_node(clg_graph *g, const clg_op_info *info, clg_dtype dtype, int ndim,
                            const int64_t *shape, int n_in, clg_tensor *const *in) {
    if (g->error) return g->poison;
    /* Ops lowered to their own kernels read buffers; a broadcast scalar (clg_full) has none,
     * so it is materialised first (before this node, to keep creation order topological). */
    clg_tensor *small[16], **fixed = NULL;
    if (!info->scalar_operands) {
        fixed = n_in <= 16 ? small : malloc((size_t)n_in * sizeof *fixed);
        if (!fixed)
            return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", info->name);
        for (int i = 0; i < n_in; ++i) {
            fixed[i] = in[i];
            if (in[i]->base->info->kind == CLG_KIND_SCALAR) fixed[i] = clg_contiguous(g, in[i]);
        }
        in = fixed;
    }
    clg_tensor *t = clg_node_new(g, info, dtype, ndim, shape, n_in, in);
    if (fixed && fixed != small) free(fixed);
    return t;
}

bool clg_needs_grad(const clg_tensor *t) {
    return t->needs_grad;
}

void clg_grad_accumulate(clg_graph *g, clg_tensor *t, clg_tensor *contribution) {
    if (g->error) return;
    if (!clg_same_shape(t, contribution)) {
        char a[200], b[200];
        clg_graph_fail(g, CLG_ERR_INTERNAL,
                       "backward of %s: gradient shape %s does not match the tensor's %s",
                       t->info->name,
                       clg_shape_str(contribution->ndim, contribution->shape, a, sizeof a),
                       clg_shape_str(t->ndim, t->shape, b, sizeof b));
        return;
    }
    /* slices of one tensor (gates, chunks) each give a piece: one node places them all */
    clg_tensor *merged = t->grad ? clg_pieces_merge(g, t->grad, contribution) : NULL;
    if (g->error) return;
    if (merged) t->grad = merged;
    else t->grad = t->grad ? clg_add(g, t->grad, contribution) : contribution;
}

clg_tensor *clg_sum_to_shape(clg_graph *g, clg_tensor *grad, int ndim, const int64_t *shape) {
    if (g->error) return g->poison;
    int lead = grad->ndim - ndim;
    int axes[CLG_MAX_DIMS], n = 0;
    for (int i = 0; i < grad->ndim; ++i) {
        bool reduce = i < lead || (shape[i - lead] == 1 && grad->shape[i] != 1);
        if (reduce) axes[n++] = i;
    }
    clg_tensor *r = n ? clg_sum(g, grad, n, axes, true) : grad;
    if (r->ndim == ndim && memcmp(r->shape, shape, (size_t)ndim * sizeof *shape) == 0) return r;
    return clg_reshape(g, r, ndim, shape);
}

