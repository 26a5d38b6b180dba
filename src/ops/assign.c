/* clg_assign: a side effect of a plan run, writing a value into a parameter (batch norm's
 * running statistics, a soft target-network update). The node is a root of every plan of its
 * graph; it is lowered to a copy into the parameter's buffer at its place in the schedule. */
#include "compile/lowering.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

static clg_status lower_assign(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    (void)node;
    (void)out;
    return clg_lower_copy(lw, &in[0], &in[1]);
}

static const clg_op_info op_assign = {.name = "assign", .kind = CLG_KIND_KERNEL,
                                      .lower = lower_assign};

clg_status clg_assign(clg_graph *g, clg_param *target, clg_tensor *value) {
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_assign: graph is NULL");
    clg_tensor *p = clg_param_tensor(g, target);
    clg_tensor *const xs[2] = {p, value};
    if (!clg_check_inputs(g, "assign", 2, xs)) return clg_fail(g->error, "%s", g->error_msg);
    if (!clg_same_shape(p, value) || p->dtype != value->dtype) {
        char a[200], b[200];
        clg_graph_fail(g, CLG_ERR_SHAPE, "assign: parameter '%s' is %s, value is %s",
                       target->name, clg_tensor_describe(p, a, sizeof a),
                       clg_tensor_describe(value, b, sizeof b));
        return g->error;
    }
    clg_tensor *t = clg_kernel_node(g, &op_assign, p->dtype, p->ndim, p->shape, 2, xs);
    if (t == g->poison) return g->error;
    t->is_effect = true;
    t->n_targets = 1;
    return CLG_OK;
}
