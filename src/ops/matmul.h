/* The matrix product as other op families reuse it: convolution's product of weights and
 * columns is a matmul node with an info of its own (a second lowering, convgemm) that keeps
 * matmul's shape rule, backward, GEMM lowering and epilogue. */
#ifndef CLG_OPS_MATMUL_H
#define CLG_OPS_MATMUL_H

#include "compile/lowering.h"
#include "ops/node.h"

/* clg_matmul(g, a, b, false, false) as a node of info (matmul's rules apply to in[0] and in[1])
 * with extra appended as in[2] (may be NULL). */
clg_tensor *clg_matmul_node(clg_graph *g, clg_tensor *a, clg_tensor *b, const clg_op_info *info,
                            clg_tensor *extra);
void clg_matmul_backward(clg_graph *g, clg_tensor *node, clg_tensor *gout);
clg_status clg_matmul_lower(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                            const clg_operand *out);
bool clg_matmul_absorb(const clg_tensor *m, const clg_tensor *prev, const clg_tensor *u,
                       clg_epilogue *epi);
clg_status clg_matmul_lower_epilogue(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                     const clg_operand *out, const clg_epilogue *epi,
                                     const clg_operand *bias);

#endif
