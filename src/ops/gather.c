/* Indexing ops: index_select / embedding (gather along an axis), scatter_add (its adjoint,
 * deterministic), one_hot and arange. Kernels in cl/gather.cl. */
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

/* attrs.axis */
static const clg_op_info op_index_select = {.name = "index_select", .kind = CLG_KIND_KERNEL,
                                            .backward = bw_index_select,
                                            .lower = lower_index_select};
/* attrs.axis */
static const clg_op_info op_scatter_add = {.name = "scatter_add", .kind = CLG_KIND_KERNEL,
                                           .backward = bw_scatter_add,
                                           .lower = lower_scatter_add};
static const clg_op_info op_arange = {.name = "arange", .kind = CLG_KIND_ELEMENTWISE,
                                      .emit = emit_arange};

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

static clg_status lower_scatter_add(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                    const clg_operand *out) {
    return lower_gather_kernel(lw, "scatter_add", node, &in[0], &in[1], out,
                               out->shape[node->attrs.axis.axis]);
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
