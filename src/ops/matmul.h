/* What the compiler needs to fuse a bias add and an activation into a matrix product. */
#ifndef CLG_OPS_MATMUL_H
#define CLG_OPS_MATMUL_H

#include "compile/lowering.h"
#include "gemm/gemm.h"

bool clg_is_matmul(const clg_tensor *t);
/* Lower matmul node into out (which may belong to a later node that absorbed the product),
 * with C = act(A B + bias) when bias is given (an operand broadcast over out's shape, constant
 * along the batch dims) or act is not NONE. */
clg_status clg_matmul_lower_fused(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                  const clg_operand *out, const clg_operand *bias,
                                  clg_gemm_act act);
/* Can bias (read over out's shape) be a GEMM epilogue bias: a buffer, constant along batch? */
bool clg_matmul_bias_ok(const clg_operand *bias, int out_ndim);

/* elementwise.c: the GEMM activation code of an activation node, or -1; is t an add? */
int clg_elementwise_activation(const clg_tensor *t);
bool clg_elementwise_is_add(const clg_tensor *t);

#endif
