/* Node building shared by the op families (ops/node.c): kernel nodes, and what backward rules
 * use to add their contributions. */
#ifndef CLG_OPS_NODE_H
#define CLG_OPS_NODE_H

#include "clgrad/ops.h"
#include "graph/graph_internal.h"

/* A node of an op lowered to its own kernels (CLG_KIND_KERNEL): operands that are broadcast
 * scalars (no buffer) are materialised first, unless info->scalar_operands. */
clg_tensor *clg_kernel_node(clg_graph *g, const clg_op_info *info, clg_dtype dtype, int ndim,
                            const int64_t *shape, int n_in, clg_tensor *const *in);

/* Does t lead to anything whose gradient was asked for? */
bool clg_needs_grad(const clg_tensor *t);
/* t->grad += contribution (contribution's shape must be t's). */
void clg_grad_accumulate(clg_graph *g, clg_tensor *t, clg_tensor *contribution);
/* The gradients of slices a and b (each slice_grad nodes, ops/movement.c) as one node writing
 * both into place, when they lie along the same axis and do not overlap; else NULL. */
clg_tensor *clg_pieces_merge(clg_graph *g, clg_tensor *a, clg_tensor *b);
/* Sum grad over the broadcast dimensions so it takes target's shape. */
clg_tensor *clg_sum_to_shape(clg_graph *g, clg_tensor *grad, int ndim, const int64_t *shape);

#endif
