/* Reverse-mode autograd: walk the forward nodes from the loss back to the leaves, letting
 * each op's backward rule add gradient nodes for its inputs. Gradients are ordinary graph
 * nodes, so the compiler fuses and plans them like the forward pass. */
#include <string.h>

#include "clgrad/ops.h"
#include "graph/graph_internal.h"

clg_status clg_requires_grad(clg_tensor *t) {
    if (!t || t->info->kind == CLG_KIND_POISON)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_requires_grad: not a valid tensor");
    if (t->graph->backward_done)
        return clg_fail(CLG_ERR_GRAPH, "clg_requires_grad: clg_backward already ran on this graph");
    if (t->dtype != CLG_F32)
        return clg_fail(CLG_ERR_DTYPE, "clg_requires_grad: only f32 tensors have gradients");
    t->requires_grad = true;
    return CLG_OK;
}

clg_status clg_backward(clg_graph *g, clg_tensor *loss) {
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_backward: graph is NULL");
    if (g->error) return clg_fail(g->error, "%s", g->error_msg);
    if (!loss || loss->graph != g || loss->info->kind == CLG_KIND_POISON)
        return clg_fail(CLG_ERR_GRAPH, "clg_backward: loss is not a valid node of this graph");
    if (g->backward_done)
        return clg_fail(CLG_ERR_GRAPH, "clg_backward: already called on this graph");
    if (clg_tensor_numel(loss) != 1 || loss->dtype != CLG_F32) {
        char b[200];
        return clg_fail(CLG_ERR_SHAPE, "clg_backward: the loss must be one f32 element, got %s",
                        clg_tensor_describe(loss, b, sizeof b));
    }
    g->backward_done = true;
    for (size_t i = 0; i <= (size_t)loss->id; ++i) {
        clg_tensor *t = g->nodes[i];
        bool needs = (t->param && t->param->trainable) || t->requires_grad;
        if (!needs && t->info->backward && !t->no_grad)
            for (int k = 0; k < t->n_in && !needs; ++k) needs = t->in[k]->needs_grad;
        t->needs_grad = needs;
    }
    if (!loss->needs_grad) return CLG_OK;
    loss->grad = clg_full(g, 1.0f, loss->ndim, loss->shape);
    for (int i = loss->id; i >= 0 && !g->error; --i) {
        clg_tensor *t = g->nodes[i];
        if (t->grad && t->needs_grad && t->info->backward) t->info->backward(g, t, t->grad);
    }
    /* Optimizers update parameters from dense gradient buffers: a gradient that is a view
     * (a broadcast scalar, a transposed product) gets its own contiguous copy. */
    for (int i = 0; i <= loss->id && !g->error; ++i) {
        clg_tensor *t = g->nodes[i];
        if (!t->param || !t->grad) continue;
        clg_tensor *gr = t->grad;
        bool dense = gr->base == gr || (clg_is_contiguous(gr) &&
                                        gr->base->info->kind != CLG_KIND_SCALAR &&
                                        gr->base->info->kind != CLG_KIND_LEAF);
        if (!dense) t->grad = clg_contiguous(g, gr);
    }
    if (g->error) return clg_fail(g->error, "%s", g->error_msg);
    return CLG_OK;
}

clg_tensor *clg_grad(clg_graph *g, const clg_tensor *t) {
    if (!g || !t || t->graph != g) return NULL;
    return t->grad;
}

clg_tensor *clg_param_grad(clg_graph *g, const clg_param *p) {
    if (!g || !p) return NULL;
    const clg_tensor *t = clg_graph_param_node(g, p);
    return t ? t->grad : NULL;
}
