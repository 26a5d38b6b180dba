/* Indexing ops: index_select / embedding (gather along an axis), scatter_add (its adjoint,
 * deterministic), take_along_axis (a per-line gather: Q(s, a), top-k values) and its
 * deterministic adjoint, one_hot and arange. Kernels in cl/gather.cl. */
#include <stdio.h>
#include <string.h>

#include "compile/codegen.h"
#include "compile/lowering.h"
#include "core/program.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

static void bw_index_select(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_scatter_add(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_index_select(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                     const clg_operand *out);
static clg_status lower_scatter_add(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                    const clg_operand *out);
static void emit_arange(clg_codegen *cg, const clg_tensor *node, const char *const *operands,
                        char *out, size_t size);
static void bw_take_along(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_take_along_backward(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_take_along(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                   const clg_operand *out);
static clg_status lower_take_along_backward(clg_lowering *lw, clg_tensor *node,
                                            const clg_operand *in, const clg_operand *out);

/* attrs.axis */
static const clg_op_info op_index_select = {.name = "index_select", .kind = CLG_KIND_KERNEL,
                                            .backward = bw_index_select,
                                            .lower = lower_index_select};
/* attrs.axis */
static size_t scatter_add_bytes(const clg_tensor *node, char *what, size_t what_size);
static const clg_op_info op_scatter_add = {.name = "scatter_add", .kind = CLG_KIND_KERNEL,
                                           .backward = bw_scatter_add,
                                           .lower = lower_scatter_add,
                                           .device_bytes = scatter_add_bytes};
static const clg_op_info op_arange = {.name = "arange", .kind = CLG_KIND_ELEMENTWISE,
                                      .emit = emit_arange};
/* (x, index) of one shape but along attrs.axis (broadcasts are views by then) */
static const clg_op_info op_take_along = {.name = "take_along_axis", .kind = CLG_KIND_KERNEL,
                                          .backward = bw_take_along,
                                          .lower = lower_take_along};
/* (gout, index) -> dx of x's shape, attrs.axis */
static const clg_op_info op_take_along_backward = {.name = "take_along_axis_backward",
                                                   .kind = CLG_KIND_KERNEL,
                                                   .backward = bw_take_along_backward,
                                                   .lower = lower_take_along_backward};

static clg_tensor *dense(clg_graph *g, clg_tensor *x) {
    return clg_is_contiguous(x) ? x : clg_contiguous(g, x);
}

static bool check_index(clg_graph *g, const char *op, clg_tensor *index) {
    if (index->dtype != CLG_I32) {
        clg_graph_fail(g, CLG_ERR_DTYPE, "%s: index must be i32, got %s", op,
                       clg_dtype_name(index->dtype));
        return false;
    }
    if (index->ndim != 1) {
        char b[200];
        clg_graph_fail(g, CLG_ERR_SHAPE, "%s: index must be 1-D, got %s", op,
                       clg_shape_str(index->ndim, index->shape, b, sizeof b));
        return false;
    }
    return true;
}

clg_tensor *clg_index_select(clg_graph *g, clg_tensor *x, int axis, clg_tensor *index) {
    CLG_GUARD(g, "index_select", 2, x, index);
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "index_select: axis %d out of range for rank %d",
                              axis, x->ndim);
    if (!check_index(g, "index_select", index)) return g->poison;
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[a] = index->shape[0];
    clg_tensor *ins[2] = {dense(g, x), dense(g, index)};
    clg_tensor *t = clg_kernel_node(g, &op_index_select, x->dtype, x->ndim, shape, 2, ins);
    if (t != g->poison) t->attrs = (clg_attrs){.kind = CLG_ATTRS_AXIS, .axis = {a}};
    return t;
}

clg_tensor *clg_embedding(clg_graph *g, clg_tensor *table, clg_tensor *index) {
    CLG_GUARD(g, "embedding", 2, table, index);
    if (table->ndim != 2) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "embedding: table must be [V, D], got %s",
                              clg_shape_str(table->ndim, table->shape, b, sizeof b));
    }
    if (index->ndim + 1 > CLG_MAX_DIMS)
        return clg_graph_fail(g, CLG_ERR_SHAPE, "embedding: index has too many dimensions");
    int64_t flat = clg_tensor_numel(index);
    clg_tensor *rows = clg_index_select(g, table, 0, clg_reshape(g, index, 1, &flat));
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, index->shape, (size_t)index->ndim * sizeof *shape);
    shape[index->ndim] = table->shape[1];
    return clg_reshape(g, rows, index->ndim + 1, shape);
}

clg_tensor *clg_scatter_add(clg_graph *g, clg_tensor *src, int axis, clg_tensor *index,
                            int64_t dim_size) {
    CLG_GUARD(g, "scatter_add", 2, src, index);
    int a;
    if (!clg_norm_axis(axis, src->ndim, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "scatter_add: axis %d out of range for rank %d",
                              axis, src->ndim);
    if (!check_index(g, "scatter_add", index)) return g->poison;
    if (index->shape[0] != src->shape[a] || dim_size < 1) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "scatter_add: %lld indices for axis %d of %s (dim_size %lld)",
                              (long long)index->shape[0], axis,
                              clg_shape_str(src->ndim, src->shape, b, sizeof b),
                              (long long)dim_size);
    }
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[a] = dim_size;
    clg_tensor *ins[2] = {dense(g, clg_cast(g, src, CLG_F32)), dense(g, index)};
    clg_tensor *t = clg_kernel_node(g, &op_scatter_add, CLG_F32, src->ndim, shape, 2, ins);
    if (t != g->poison) t->attrs = (clg_attrs){.kind = CLG_ATTRS_AXIS, .axis = {a}};
    return t;
}

static void bw_index_select(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    int a = node->attrs.axis.axis;
    clg_grad_accumulate(g, x, clg_scatter_add(g, gout, a, node->in[1], x->shape[a]));
}

static void bw_scatter_add(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, node->in[0],
                        clg_index_select(g, gout, node->attrs.axis.axis, node->in[1]));
}

/* [outer, dim, inner] view of a contiguous tensor around axis a. */
static void split3(const int64_t *shape, int ndim, int a, int64_t *outer, int64_t *inner) {
    *outer = clg_shape_numel(a, shape);
    *inner = clg_shape_numel(ndim - a - 1, shape + a + 1);
}

static clg_status lower_gather_kernel(clg_lowering *lw, const char *kernel, const clg_tensor *node,
                                      const clg_operand *data, const clg_operand *index,
                                      const clg_operand *out, int64_t dim) {
    int a = node->attrs.axis.axis;
    int64_t outer, inner;
    split3(out->shape, out->ndim, a, &outer, &inner);
    int64_t n = clg_shape_numel(out->ndim, out->shape);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "gather", kernel, &k);
    if (st != CLG_OK) return st;
    clg_args args = clg_args_begin(k);
    clg_arg_mem(&args, out->mem);
    clg_arg_int(&args, out->offset);
    clg_arg_mem(&args, data->mem);
    clg_arg_int(&args, data->offset);
    clg_arg_mem(&args, index->mem);
    clg_arg_int(&args, index->offset);
    clg_arg_int(&args, dim);
    clg_arg_int(&args, index->shape[0]);
    clg_arg_int(&args, inner);
    clg_arg_int(&args, n);
    (void)outer;
    size_t global = ((size_t)n + 63) / 64 * 64, local = 64;
    return clg_lower_args(lw, &args, 1, &global, &local, kernel);
}

static clg_status lower_index_select(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                     const clg_operand *out) {
    return lower_gather_kernel(lw, "index_select", node, &in[0], &in[1], out,
                               in[0].shape[node->attrs.axis.axis]);
}

static size_t scatter_add_bytes(const clg_tensor *node, char *what, size_t what_size) {
    snprintf(what, what_size, "scatter_add positions");
    return ((size_t)node->in[1]->shape[0] + 2 * (size_t)node->shape[node->attrs.axis.axis]) *
           sizeof(cl_int);
}

/* Two kernels: the positions of each row's indices (scatter_add_rows), then every output
 * element sums its row's positions; both scratch arrays live with the plan. */
static clg_status lower_scatter_add(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                    const clg_operand *out) {
    const clg_operand *src = &in[0], *index = &in[1];
    int a = node->attrs.axis.axis;
    int64_t outer, inner, dim = out->shape[a], count = index->shape[0];
    split3(out->shape, out->ndim, a, &outer, &inner);
    int64_t n = clg_shape_numel(out->ndim, out->shape);
    clg_context *ctx = clg_lowering_context(lw);
    cl_mem perm, range;
    clg_status st = clg_lower_buffer(lw, (size_t)count * sizeof(cl_int), "scatter_add positions",
                                     &perm);
    if (st == CLG_OK)
        st = clg_lower_buffer(lw, (size_t)dim * 2 * sizeof(cl_int), "scatter_add rows", &range);
    cl_kernel k;
    if (st == CLG_OK) st = clg_kernel_new(ctx, "gather", "scatter_add_rows", &k);
    if (st != CLG_OK) return st;
    clg_args args = clg_args_begin(k);
    clg_arg_mem(&args, index->mem);
    clg_arg_int(&args, index->offset);
    clg_arg_int(&args, dim);
    clg_arg_int(&args, count);
    clg_arg_mem(&args, perm);
    clg_arg_mem(&args, range);
    size_t global = ((size_t)dim + 63) / 64 * 64, local = 64;
    st = clg_lower_args(lw, &args, 1, &global, &local, "scatter_add_rows");
    if (st == CLG_OK) st = clg_kernel_new(ctx, "gather", "scatter_add", &k);
    if (st != CLG_OK) return st;
    args = clg_args_begin(k);
    clg_arg_mem(&args, out->mem);
    clg_arg_int(&args, out->offset);
    clg_arg_mem(&args, src->mem);
    clg_arg_int(&args, src->offset);
    clg_arg_mem(&args, perm);
    clg_arg_mem(&args, range);
    clg_arg_int(&args, dim);
    clg_arg_int(&args, count);
    clg_arg_int(&args, inner);
    clg_arg_int(&args, n);
    (void)outer;
    global = ((size_t)n + 63) / 64 * 64;
    return clg_lower_args(lw, &args, 1, &global, &local, "scatter_add");
}

static void emit_arange(clg_codegen *cg, const clg_tensor *node, const char *const *operands,
                        char *out, size_t size) {
    (void)operands;
    clg_cg_format(out, size, node->dtype == CLG_F32 ? "((float)(%s))" : "(%s)",
                  clg_cg_linear_index(cg));
}

clg_tensor *clg_arange(clg_graph *g, int64_t n, clg_dtype dtype) {
    CLG_GUARD(g, "arange", 0, NULL);
    if ((int)dtype < 0 || dtype >= CLG_DTYPE_COUNT)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "arange: unknown dtype %d", (int)dtype);
    return clg_node_new(g, &op_arange, dtype, 1, &n, 0, NULL);
}

clg_tensor *clg_one_hot(clg_graph *g, clg_tensor *index, int64_t classes) {
    CLG_GUARD(g, "one_hot", 1, index);
    if (index->dtype != CLG_I32)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "one_hot: index must be i32, got %s",
                              clg_dtype_name(index->dtype));
    if (classes < 1)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "one_hot: %lld classes",
                              (long long)classes);
    return clg_eq(g, clg_unsqueeze(g, index, -1), clg_arange(g, classes, CLG_I32));
}

/* ---- take_along_axis ---- */

clg_tensor *clg_take_along_axis(clg_graph *g, clg_tensor *x, clg_tensor *index, int axis) {
    CLG_GUARD(g, "take_along_axis", 2, x, index);
    char sx[200], si[200];
    clg_shape_str(x->ndim, x->shape, sx, sizeof sx);
    clg_shape_str(index->ndim, index->shape, si, sizeof si);
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "take_along_axis: axis %d out of range for x %s (rank %d)", axis, sx,
                              x->ndim);
    if (index->dtype != CLG_I32)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "take_along_axis: index %s must be i32, got %s",
                              si, clg_dtype_name(index->dtype));
    if (index->ndim != x->ndim)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "take_along_axis: index %s must have the rank of x %s", si, sx);
    /* x and index broadcast against each other outside the axis (NumPy's rule) */
    int64_t xs[CLG_MAX_DIMS], shape[CLG_MAX_DIMS];
    for (int d = 0; d < x->ndim; ++d) {
        int64_t n = x->shape[d], m = index->shape[d];
        if (d == a) {
            xs[d] = n;
            shape[d] = m;
        } else if (n == m || n == 1 || m == 1) {
            xs[d] = shape[d] = n > m ? n : m;
        } else {
            return clg_graph_fail(g, CLG_ERR_SHAPE,
                                  "take_along_axis: index %s does not match x %s outside axis %d",
                                  si, sx, a);
        }
    }
    clg_tensor *ins[2] = {clg_broadcast_to(g, x, x->ndim, xs),
                          clg_broadcast_to(g, index, x->ndim, shape)};
    clg_tensor *t = clg_kernel_node(g, &op_take_along, x->dtype, x->ndim, shape, 2, ins);
    if (t != g->poison) t->attrs = (clg_attrs){.kind = CLG_ATTRS_AXIS, .axis = {a}};
    return t;
}

static void bw_take_along(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    if (x->dtype != CLG_F32) return;
    clg_tensor *ins[2] = {gout, node->in[1]};
    clg_tensor *dx = clg_kernel_node(g, &op_take_along_backward, CLG_F32, x->ndim, x->shape, 2, ins);
    if (dx == g->poison) return;
    dx->attrs = node->attrs;
    clg_grad_accumulate(g, x, dx);
}

/* The adjoint of a scatter along an axis is the gather along it. */
static void bw_take_along_backward(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, node->in[0],
                        clg_take_along_axis(g, gout, node->in[1], node->attrs.axis.axis));
}

/* o's shape and strides as int8 (unused leading dims of size 1 and stride 0), with the
 * stride of axis a taken out into *sa (and zeroed) when sa is given. */
static void pack8(const clg_operand *o, int a, cl_int8 *shape, cl_int8 *st, cl_int *sa) {
    int lead = 8 - o->ndim;
    for (int p = 0; p < 8; ++p) {
        int d = p - lead;
        shape->s[p] = d < 0 ? 1 : (cl_int)o->shape[d];
        st->s[p] = d < 0 ? 0 : (cl_int)o->strides[d];
    }
    if (sa) {
        *sa = st->s[lead + a];
        st->s[lead + a] = 0;
    }
}

static clg_status lower_take_along(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                   const clg_operand *out) {
    int a = node->attrs.axis.axis;
    cl_int8 shape, xst, ist, unused;
    cl_int xsa;
    pack8(out, a, &shape, &unused, NULL);
    pack8(&in[0], a, &unused, &xst, &xsa);
    pack8(&in[1], a, &unused, &ist, NULL);
    int64_t n = clg_shape_numel(out->ndim, out->shape);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "gather", "take_along_axis", &k);
    if (st != CLG_OK) return st;
    clg_args args = clg_args_begin(k);
    clg_arg_mem(&args, out->mem);
    clg_arg_int(&args, out->offset);
    clg_arg_int(&args, n);
    clg_arg_raw(&args, sizeof shape, &shape);
    clg_arg_int(&args, 8 - out->ndim + a);
    clg_arg_mem(&args, in[0].mem);
    clg_arg_int(&args, in[0].offset);
    clg_arg_raw(&args, sizeof xst, &xst);
    clg_arg_int(&args, xsa);
    clg_arg_int(&args, in[0].shape[a]);
    clg_arg_mem(&args, in[1].mem);
    clg_arg_int(&args, in[1].offset);
    clg_arg_raw(&args, sizeof ist, &ist);
    size_t global = ((size_t)n + 63) / 64 * 64, local = 64;
    return clg_lower_args(lw, &args, 1, &global, &local, "take_along_axis");
}

/* Up to this many indices per line the adjoint sums per element of dx in one kernel (Q(s, a)
 * has one); beyond, it zeroes dx and walks each line's indices once (top-k's gradient over a
 * vocabulary: 40 indices into 65536 per row), the same sums in the same order. */
#define TAKE_ALONG_PER_ELEMENT_MAX 8

static clg_status lower_take_along_backward(clg_lowering *lw, clg_tensor *node,
                                            const clg_operand *in, const clg_operand *out) {
    int a = node->attrs.axis.axis, pa = 8 - out->ndim + a;
    const clg_operand *gout = &in[0], *index = &in[1];
    int64_t count = gout->shape[a];
    bool lines = count > TAKE_ALONG_PER_ELEMENT_MAX;
    cl_int8 shape, gst, ist, ost, unused;
    cl_int gsa, isa, osa;
    pack8(out, a, &shape, &ost, &osa);
    pack8(gout, a, &unused, &gst, &gsa);
    pack8(index, a, &unused, &ist, &isa);
    int64_t n = clg_shape_numel(out->ndim, out->shape);
    if (lines) {
        clg_status st = clg_lower_fill(lw, out, 0.0f);
        if (st != CLG_OK) return st;
        n /= out->shape[a];
        shape.s[pa] = 1;
    }
    const char *name = lines ? "take_along_axis_backward_lines" : "take_along_axis_backward";
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "gather", name, &k);
    if (st != CLG_OK) return st;
    clg_args args = clg_args_begin(k);
    clg_arg_mem(&args, out->mem);
    clg_arg_int(&args, out->offset);
    clg_arg_int(&args, n);
    clg_arg_raw(&args, sizeof shape, &shape);
    clg_arg_int(&args, pa);
    if (lines) {
        clg_arg_raw(&args, sizeof ost, &ost);
        clg_arg_int(&args, osa);
        clg_arg_int(&args, out->shape[a]);
    }
    clg_arg_mem(&args, gout->mem);
    clg_arg_int(&args, gout->offset);
    clg_arg_raw(&args, sizeof gst, &gst);
    clg_arg_int(&args, gsa);
    clg_arg_int(&args, count);
    clg_arg_mem(&args, index->mem);
    clg_arg_int(&args, index->offset);
    clg_arg_raw(&args, sizeof ist, &ist);
    clg_arg_int(&args, isa);
    size_t global = ((size_t)n + 63) / 64 * 64, local = 64;
    return clg_lower_args(lw, &args, 1, &global, &local, name);
}
