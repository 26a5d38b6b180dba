/* Helpers for ops lowered to their own kernels: strided copy and fill (cl/copy.cl), operand
 * views, launching a kernel whose arguments were set. */
#include <string.h>

#include "compile/compile_internal.h"
#include "core/program.h"

#define WG 64

clg_status clg_lower_args(clg_lowering *lw, const clg_args *a, cl_uint work_dim,
                          const size_t *global, const size_t *local, const char *label) {
    clg_status st = clg_args_done(a, label);
    if (st != CLG_OK) {
        clReleaseKernel(a->kernel);
        return st;
    }
    return clg_lower_kernel(lw, a->kernel, work_dim, global, local, label);
}

const size_t *clg_plane_local(clg_lowering *lw, size_t plane, size_t local[3]) {
    const clg_context *ctx = clg_lowering_context(lw);
    if (!clg_long_work_items(ctx) || plane > ctx->info.max_work_group_size) return NULL;
    local[0] = plane;
    local[1] = local[2] = 1;
    return local;
}

bool clg_operand_dense(const clg_operand *o) {
    int64_t s = 1;
    for (int i = o->ndim - 1; i >= 0; --i) {
        if (o->shape[i] != 1 && o->strides[i] != s) return false;
        s *= o->shape[i];
    }
    return true;
}

clg_operand clg_operand_view(const clg_operand *base, int64_t offset, int ndim,
                             const int64_t *shape, const int64_t *strides) {
    clg_operand o = *base;
    o.offset = offset;
    o.ndim = ndim;
    memcpy(o.shape, shape, (size_t)ndim * sizeof *shape);
    memcpy(o.strides, strides, (size_t)ndim * sizeof *strides);
    return o;
}

/* Pad shape and strides to 8 dims (leading size-1 dims). */
static void to8(int ndim, const int64_t *shape, const int64_t *strides, cl_int8 *s8,
                cl_int8 *st8) {
    for (int i = 0; i < 8; ++i) {
        int j = i - (8 - ndim);
        s8->s[i] = j < 0 ? 1 : (cl_int)shape[j];
        st8->s[i] = j < 0 ? 0 : (cl_int)strides[j];
    }
}

clg_status clg_lower_copy(clg_lowering *lw, const clg_operand *dst, const clg_operand *src) {
    int64_t n = clg_shape_numel(dst->ndim, dst->shape);
    if (src->is_scalar) return clg_lower_fill(lw, dst, src->scalar);
    /* align src to dst's rank, broadcasting missing or size-1 dims with stride 0 */
    int64_t sst[CLG_MAX_DIMS];
    for (int d = 0; d < dst->ndim; ++d) {
        int j = d - (dst->ndim - src->ndim);
        sst[d] = (j < 0 || src->shape[j] == 1) ? 0 : src->strides[j];
    }
    cl_int8 shape8, dst8, src8, unused;
    to8(dst->ndim, dst->shape, dst->strides, &shape8, &dst8);
    to8(dst->ndim, dst->shape, sst, &unused, &src8);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "copy", "copy_strided", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, dst->mem);
    clg_arg_int(&a, dst->offset);
    clg_arg_raw(&a, sizeof dst8, &dst8);
    clg_arg_mem(&a, src->mem);
    clg_arg_int(&a, src->offset);
    clg_arg_raw(&a, sizeof src8, &src8);
    clg_arg_raw(&a, sizeof shape8, &shape8);
    clg_arg_int(&a, n);
    size_t global = ((size_t)n + WG - 1) / WG * WG, local = WG;
    return clg_lower_args(lw, &a, 1, &global, &local, "copy");
}

clg_status clg_lower_fill(clg_lowering *lw, const clg_operand *dst, float value) {
    int64_t n = clg_shape_numel(dst->ndim, dst->shape);
    cl_uint bits;
    if (dst->dtype == CLG_I32) {
        cl_int iv = (cl_int)value;
        memcpy(&bits, &iv, sizeof bits);
    } else {
        memcpy(&bits, &value, sizeof bits);
    }
    cl_int8 shape8, dst8;
    to8(dst->ndim, dst->shape, dst->strides, &shape8, &dst8);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "copy", "fill_strided", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, dst->mem);
    clg_arg_int(&a, dst->offset);
    clg_arg_raw(&a, sizeof dst8, &dst8);
    clg_arg_raw(&a, sizeof shape8, &shape8);
    clg_arg_int(&a, n);
    clg_arg_uint(&a, bits);
    size_t global = ((size_t)n + WG - 1) / WG * WG, local = WG;
    return clg_lower_args(lw, &a, 1, &global, &local, "fill");
}
