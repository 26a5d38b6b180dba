/* Setting a kernel's arguments in order, with the first failure reported once at the end
 * (clg_args_done names the argument and the kernel), for every file that launches kernels:
 * ops' lowerings, generated kernels, initialisers, optimizer updates. */
#ifndef CLG_CORE_KERNEL_ARGS_H
#define CLG_CORE_KERNEL_ARGS_H

#include <stdint.h>

#include <CL/cl.h>

#include "clgrad/status.h"

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
/* CLG_OK, or the first argument that failed (CLG_ERR_OPENCL naming it and label). */
clg_status clg_args_done(const clg_args *a, const char *label);

#endif
