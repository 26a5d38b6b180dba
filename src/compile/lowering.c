/* Helpers for ops lowered to their own kernels: strided copy and fill (cl/copy.cl, in runs on
 * a CPU device), operand views, launching a kernel whose arguments were set. */
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

/* ---- strided copies and fills (cl/copy.cl) ---- */

/* Elements per work-item of a copy or fill on a CPU device, as for generated elementwise
 * kernels (codegen.c's runs form): there a work-item costs a few nanoseconds whatever it does,
 * so each loops over a run; elsewhere one element per work-item. */
#define CPU_RUN 1024

/* What a copy or fill walks: dst's shape and strides, and src's strides (a copy). */
typedef struct move_layout {
    int nd;
    int64_t shape[CLG_MAX_DIMS], dst_st[CLG_MAX_DIMS], src_st[CLG_MAX_DIMS];
} move_layout;

/* Drop size-1 dims and merge neighbours both sides step over contiguously: most copies
 * become one or two dims, so the kernel divides less and runs are long. */
static void collapse(move_layout *l) {
    int nd = 0;
    for (int d = 0; d < l->nd; ++d) {
        if (l->shape[d] == 1) continue;
        if (nd > 0 && l->dst_st[nd - 1] == l->dst_st[d] * l->shape[d] &&
            l->src_st[nd - 1] == l->src_st[d] * l->shape[d]) {
            l->shape[nd - 1] *= l->shape[d];
            l->dst_st[nd - 1] = l->dst_st[d];
            l->src_st[nd - 1] = l->src_st[d];
            continue;
        }
        l->shape[nd] = l->shape[d];
        l->dst_st[nd] = l->dst_st[d];
        l->src_st[nd] = l->src_st[d];
        ++nd;
    }
    l->nd = nd;
}

/* v padded to 8 dims at the front with pad. */
static cl_int8 to8(int nd, const int64_t *v, cl_int pad) {
    cl_int8 r;
    for (int i = 0; i < 8; ++i) {
        int j = i - (8 - nd);
        r.s[i] = j < 0 ? pad : (cl_int)v[j];
    }
    return r;
}

/* The launch over l (collapsed): on a CPU device a work-item takes a run of up to CPU_RUN
 * elements (part of a long row or several short rows); elsewhere one element, in work-groups
 * spread along the inner dim first. */
typedef struct move_grid {
    cl_int rows, ch, rp;
    size_t global[2], local[2];
} move_grid;

static move_grid grid_of(clg_lowering *lw, const move_layout *l) {
    move_grid gr;
    int64_t inner = l->nd ? l->shape[l->nd - 1] : 1;
    int64_t rows = clg_shape_numel(l->nd, l->shape) / inner;
    gr.rows = (cl_int)rows;
    if (clg_long_work_items(clg_lowering_context(lw))) {
        int64_t rp = inner < CPU_RUN ? (CPU_RUN + inner - 1) / inner : 1;
        gr.ch = (cl_int)(inner < CPU_RUN ? inner : CPU_RUN);
        gr.rp = (cl_int)(rp < rows ? rp : rows);
        gr.local[0] = gr.local[1] = 1;
        gr.global[0] = (size_t)((inner + gr.ch - 1) / gr.ch);
        gr.global[1] = (size_t)((rows + gr.rp - 1) / gr.rp);
    } else {
        gr.ch = gr.rp = 1;
        size_t l0 = 1, l1;
        while (l0 < (size_t)inner && l0 < WG) l0 *= 2;
        for (l1 = WG / l0; l1 > 1 && l1 / 2 >= (size_t)rows; l1 /= 2) {}
        gr.local[0] = l0;
        gr.local[1] = l1;
        gr.global[0] = ((size_t)inner + l0 - 1) / l0 * l0;
        gr.global[1] = ((size_t)rows + l1 - 1) / l1 * l1;
    }
    return gr;
}

static void arg_grid(clg_args *a, const move_grid *gr) {
    clg_arg_int(a, gr->rows);
    clg_arg_int(a, gr->ch);
    clg_arg_int(a, gr->rp);
}

clg_status clg_lower_copy(clg_lowering *lw, const clg_operand *dst, const clg_operand *src) {
    if (src->is_scalar) return clg_lower_fill(lw, dst, src->scalar);
    move_layout l = {.nd = dst->ndim};
    /* align src to dst's rank, broadcasting missing or size-1 dims with stride 0 */
    for (int d = 0; d < dst->ndim; ++d) {
        int j = d - (dst->ndim - src->ndim);
        l.shape[d] = dst->shape[d];
        l.dst_st[d] = dst->strides[d];
        l.src_st[d] = (j < 0 || src->shape[j] == 1) ? 0 : src->strides[j];
    }
    collapse(&l);
    move_grid gr = grid_of(lw, &l);
    cl_int8 dst8 = to8(l.nd, l.dst_st, 0), src8 = to8(l.nd, l.src_st, 0);
    cl_int8 shape8 = to8(l.nd, l.shape, 1);
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
    arg_grid(&a, &gr);
    return clg_lower_args(lw, &a, 2, gr.global, gr.local, "copy");
}

clg_status clg_lower_fill(clg_lowering *lw, const clg_operand *dst, float value) {
    cl_uint bits;
    if (dst->dtype == CLG_I32) {
        cl_int iv = (cl_int)value;
        memcpy(&bits, &iv, sizeof bits);
    } else {
        memcpy(&bits, &value, sizeof bits);
    }
    move_layout l = {.nd = dst->ndim};
    memcpy(l.shape, dst->shape, (size_t)dst->ndim * sizeof *l.shape);
    memcpy(l.dst_st, dst->strides, (size_t)dst->ndim * sizeof *l.dst_st);
    collapse(&l);
    move_grid gr = grid_of(lw, &l);
    cl_int8 dst8 = to8(l.nd, l.dst_st, 0), shape8 = to8(l.nd, l.shape, 1);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "copy", "fill_strided", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, dst->mem);
    clg_arg_int(&a, dst->offset);
    clg_arg_raw(&a, sizeof dst8, &dst8);
    clg_arg_raw(&a, sizeof shape8, &shape8);
    arg_grid(&a, &gr);
    clg_arg_uint(&a, bits);
    return clg_lower_args(lw, &a, 2, gr.global, gr.local, "fill");
}

/* ---- pieces along one axis (embed_pieces) ---- */

/* Pieces one embed_pieces launch takes (its arguments stay under OpenCL's minimum 1024 bytes). */
#define PIECES_BATCH 4

/* The stride of o over dims [d0, d1) taken as one (size-1 dims skipped), or -1 if they do not
 * merge. 0 for no dims or all of size 1. */
static int64_t merged_stride(const clg_operand *o, int d0, int d1) {
    int64_t st = -1, span = 1;
    for (int d = d1 - 1; d >= d0; --d) {
        if (o->shape[d] == 1) continue;
        if (st < 0) st = o->strides[d];
        else if (o->strides[d] != st * span) return -1;
        span *= o->shape[d];
    }
    return st < 0 ? 0 : st;
}

bool clg_lower_pieces_fit(const clg_operand *dst, int axis, int n, const clg_piece *pieces) {
    if (n < 1 || n > PIECES_BATCH || !clg_operand_dense(dst)) return false;
    for (int k = 0; k < n; ++k) {
        const clg_operand *s = pieces[k].src;
        if (s->is_scalar || s->ndim != dst->ndim || merged_stride(s, 0, axis) < 0 ||
            merged_stride(s, axis + 1, s->ndim) < 0)
            return false;
    }
    return true;
}

clg_status clg_lower_pieces(clg_lowering *lw, const clg_operand *dst, int axis, int n,
                            const clg_piece *pieces, float value) {
    cl_uint bits;
    memcpy(&bits, &value, sizeof bits);
    if (dst->dtype == CLG_I32) {
        cl_int iv = (cl_int)value;
        memcpy(&bits, &iv, sizeof bits);
    }
    int64_t rows = clg_shape_numel(axis, dst->shape), A = dst->shape[axis];
    int64_t inner = clg_shape_numel(dst->ndim - axis - 1, dst->shape + axis + 1);
    move_layout l = {.nd = 2, .shape = {rows, A * inner}};
    move_grid gr = grid_of(lw, &l);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "copy", "embed_pieces", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, dst->mem);
    clg_arg_int(&a, dst->offset);
    clg_arg_int(&a, A);
    clg_arg_int(&a, inner);
    arg_grid(&a, &gr);
    clg_arg_uint(&a, bits);
    for (int i = 0; i < PIECES_BATCH; ++i) {
        /* unused slots: no elements, of a buffer that exists */
        const clg_operand *s = pieces[i < n ? i : 0].src;
        clg_arg_mem(&a, s->mem);
        clg_arg_int(&a, i < n ? s->offset : 0);
        clg_arg_int(&a, i < n ? merged_stride(s, 0, axis) : 0);
        clg_arg_int(&a, i < n ? s->strides[axis] : 0);
        clg_arg_int(&a, i < n ? merged_stride(s, axis + 1, s->ndim) : 0);
        clg_arg_int(&a, i < n ? pieces[i].start : 0);
        clg_arg_int(&a, i < n ? pieces[i].step : 1);
        clg_arg_int(&a, i < n ? s->shape[axis] : 0);
    }
    return clg_lower_args(lw, &a, 2, gr.global, gr.local, "embed");
}
