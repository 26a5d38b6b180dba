/* What an op's lower() callback gets to turn a node into kernels: its operands resolved to
 * (buffer, offset, strides) and functions that append launches to the plan. */
#ifndef CLG_COMPILE_LOWERING_H
#define CLG_COMPILE_LOWERING_H

#include <CL/cl.h>

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

/* Append a kernel launch. The plan takes ownership of k (also on failure). local may be NULL. */
clg_status clg_lower_kernel(clg_lowering *lw, cl_kernel k, cl_uint work_dim,
                            const size_t *global, const size_t *local, const char *label);
/* Append a GEMM (clg_gemm_prepare chooses its backend and creates its kernels; the plan owns
 * them, also on failure) or a CLBlast convgemm call. */
clg_status clg_lower_gemm(clg_lowering *lw, clg_gemm_call *call, const char *label);
clg_status clg_lower_convgemm(clg_lowering *lw, const clg_convgemm_call *call, const char *label);
/* dst <- src elementwise over dst's shape (src may broadcast with zero strides). */
clg_status clg_lower_copy(clg_lowering *lw, const clg_operand *dst, const clg_operand *src);
/* Fill every element of dst's view with value (f32 bits, or the int value for i32). */
clg_status clg_lower_fill(clg_lowering *lw, const clg_operand *dst, float value);
/* Whether o reads a dense row-major block from its offset (size-1 dims' strides ignored). */
bool clg_operand_dense(const clg_operand *o);
/* dst viewed with a different offset/shape/strides (e.g. a slice of the output). */
clg_operand clg_operand_view(const clg_operand *base, int64_t offset, int ndim,
                             const int64_t *shape, const int64_t *strides);

/* Sequential kernel-argument setter: call clg_arg_* in order, then clg_args_done, which
 * reports the first argument that failed. */
typedef struct clg_args {
    cl_kernel kernel;
    cl_uint next;
    cl_uint failed_at;
    cl_int err;
} clg_args;

static inline clg_args clg_args_begin(cl_kernel k) {
    return (clg_args){k, 0, 0, CL_SUCCESS};
}
static inline void clg_arg_raw(clg_args *a, size_t size, const void *value) {
    cl_int e = clSetKernelArg(a->kernel, a->next, size, value);
    if (e != CL_SUCCESS && a->err == CL_SUCCESS) {
        a->err = e;
        a->failed_at = a->next;
    }
    a->next++;
}
static inline void clg_arg_mem(clg_args *a, cl_mem m) {
    clg_arg_raw(a, sizeof m, &m);
}
static inline void clg_arg_int(clg_args *a, int64_t v) {
    cl_int x = (cl_int)v;
    clg_arg_raw(a, sizeof x, &x);
}
static inline void clg_arg_uint(clg_args *a, uint32_t v) {
    cl_uint x = v;
    clg_arg_raw(a, sizeof x, &x);
}
static inline void clg_arg_float(clg_args *a, float v) {
    clg_arg_raw(a, sizeof v, &v);
}
static inline void clg_arg_local(clg_args *a, size_t bytes) {
    clg_arg_raw(a, bytes, NULL);
}
clg_status clg_args_done(const clg_args *a, const char *label);
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
