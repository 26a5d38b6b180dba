/* What an op's lower() callback gets to turn a node into kernels: its operands resolved to
 * (buffer, offset, strides) and functions that append launches to the plan. */
#ifndef CLG_COMPILE_LOWERING_H
#define CLG_COMPILE_LOWERING_H

#include <CL/cl.h>

#include "core/kernel_args.h"
#include "core/owners.h"
#include "gemm/gemm.h"
#include "graph/graph_internal.h"

struct clg_operand {
    const clg_tensor *node;
    bool is_scalar; /* a 0-d scalar (value below), no buffer */
    float scalar;
    cl_mem mem;
    int64_t offset; /* in elements */
    int ndim;
    int64_t shape[CLG_MAX_DIMS];
    int64_t strides[CLG_MAX_DIMS]; /* in elements */
    clg_dtype dtype;
};

clg_context *clg_lowering_context(clg_lowering *lw);
/* The variant the op's choose callback picked for node in this plan (0 without one). */
int clg_lowering_variant(const clg_lowering *lw, const clg_tensor *node);

/* Append a kernel launch. The plan takes ownership of k (also on failure). local may be NULL. */
clg_status clg_lower_kernel(clg_lowering *lw, cl_kernel k, cl_uint work_dim,
                            const size_t *global, const size_t *local, const char *label);
/* The same, queued only on runs r with r % every == phase (every N-th run, say). */
clg_status clg_lower_kernel_every(clg_lowering *lw, cl_kernel k, cl_uint work_dim,
                                  const size_t *global, const size_t *local, const char *label,
                                  uint32_t every, uint32_t phase);
/* The same for a kernel that draws random numbers: before each run, arguments counter_arg and
 * counter_arg + 1 get the run counter (low, high words), as in generated random kernels. */
clg_status clg_lower_kernel_random(clg_lowering *lw, cl_kernel k, cl_uint work_dim,
                                   const size_t *global, const size_t *local, const char *label,
                                   int counter_arg);
/* A device buffer that lives as long as the plan (scratch, accumulated gradients). */
clg_status clg_lower_buffer(clg_lowering *lw, size_t bytes, const char *what, cl_mem *out);
/* A callback run before each run's steps are queued, given the number of earlier runs (to set
 * per-run kernel arguments); the plan frees user with free_user (may be NULL), also when this
 * fails. */
typedef clg_status (*clg_lower_hook_fn)(uint64_t run, void *user);
clg_status clg_lower_hook(clg_lowering *lw, clg_lower_hook_fn hook, void *user,
                          clg_free_fn free_user);
/* Append a GEMM (clg_gemm_prepare chooses its backend and creates its kernels; the plan owns
 * them, also on failure) or a CLBlast convgemm call. */
clg_status clg_lower_gemm(clg_lowering *lw, clg_gemm_call *call, const char *label);
clg_status clg_lower_convgemm(clg_lowering *lw, const clg_convgemm_call *call, const char *label);
/* dst <- src elementwise over dst's shape (src may broadcast with zero strides). */
clg_status clg_lower_copy(clg_lowering *lw, const clg_operand *dst, const clg_operand *src);
/* Fill every element of dst's view with value (f32 bits, or the int value for i32). */
clg_status clg_lower_fill(clg_lowering *lw, const clg_operand *dst, float value);
/* A piece of clg_lower_pieces: src placed along the axis at start + step * j. */
typedef struct clg_piece {
    const clg_operand *src;
    int64_t start, step;
} clg_piece;
/* Whether clg_lower_pieces can place these pieces in one launch: dst dense, at most four
 * pieces, each of dst's rank and readable as [outer, along axis, inner] with one stride each. */
bool clg_lower_pieces_fit(const clg_operand *dst, int axis, int n, const clg_piece *pieces);
/* dst <- the pieces (disjoint) along axis, value everywhere else, in one kernel. */
clg_status clg_lower_pieces(clg_lowering *lw, const clg_operand *dst, int axis, int n,
                            const clg_piece *pieces, float value);
/* Whether o reads a dense row-major block from its offset (size-1 dims' strides ignored). */
bool clg_operand_dense(const clg_operand *o);
/* dst viewed with a different offset/shape/strides (e.g. a slice of the output). */
clg_operand clg_operand_view(const clg_operand *base, int64_t offset, int ndim,
                             const int64_t *shape, const int64_t *strides);

/* clg_args_done on a's kernel, then clg_lower_kernel: the plan takes the kernel, also on
 * failure. label names the step in profiles and the kernel in argument errors. */
clg_status clg_lower_args(clg_lowering *lw, const clg_args *a, cl_uint work_dim,
                          const size_t *global, const size_t *local, const char *label);
/* Local size for a kernel with one work-item per element of an image plane in dimension 0:
 * on a CPU device the whole plane as one work-group (plane, 1, 1), written to local, which
 * pocl runs as one vectorised loop (it chooses much smaller groups itself); NULL elsewhere,
 * or when the plane exceeds the device's work-group size, to let the driver choose. */
const size_t *clg_plane_local(clg_lowering *lw, size_t plane, size_t local[3]);

#endif
