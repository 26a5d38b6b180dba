/* Sequence ops: tril and the causal mask (elementwise, from each element's linear index, so
 * they fuse into the kernels around them and the mask takes no memory of its own), and cumsum
 * (one kernel, cl/scan.cl: a work-item per line, or a work-group per line when the lines are
 * few and long; its backward is the reversed scan). */
#include <math.h>
#include <string.h>

#include "compile/codegen.h"
#include "compile/lowering.h"
#include "core/context.h"
#include "core/program.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

static void bw_tril(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_cumsum(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void emit_tri(clg_codegen *cg, const clg_tensor *node, const char *const *operands,
                     char *out, size_t size);
static clg_status lower_cumsum(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out);

/* Both: attrs.rows with mask causal: in each [rows, cols] matrix of the last two dims,
 * element (i, j) is kept when j <= i + diagonal. tril keeps x there (else 0), causal_mask (no
 * input, [T, S]) is 0 there and -INFINITY elsewhere. */
static const clg_op_info op_tril = {.name = "tril", .kind = CLG_KIND_ELEMENTWISE,
                                    .backward = bw_tril, .emit = emit_tri};
static const clg_op_info op_causal_mask = {.name = "causal_mask", .kind = CLG_KIND_ELEMENTWISE,
                                           .emit = emit_tri};
/* attrs.scan */
static const clg_op_info op_cumsum = {.name = "cumsum", .kind = CLG_KIND_KERNEL,
                                      .backward = bw_cumsum, .lower = lower_cumsum};

static clg_attrs tri_attrs(int64_t rows, int64_t diagonal) {
    return (clg_attrs){.kind = CLG_ATTRS_ROWS,
                       .rows = {.scale = 1.0f, .mask = CLG_ROW_MASK_CAUSAL, .rows = rows,
                                .diagonal = diagonal}};
}

/* (i, j) of the element at linear index l in [.., T, S]: i = (l / S) % T, j = l % S. The
 * sizes and the diagonal are kernel arguments, so every tril shares one kernel body. */
static void emit_tri(clg_codegen *cg, const clg_tensor *node, const char *const *operands,
                     char *out, size_t size) {
    const clg_attr_rows *r = &node->attrs.rows;
    const char *lin = clg_cg_linear_index(cg);
    const char *s = clg_cg_uint_arg(cg, (uint32_t)node->shape[node->ndim - 1]);
    const char *t = clg_cg_uint_arg(cg, (uint32_t)r->rows);
    const char *d = clg_cg_uint_arg(cg, (uint32_t)(int32_t)r->diagonal);
    char keep[400];
    clg_cg_format(keep, sizeof keep, "((int)((uint)(%s) %% %s) - (int)(((uint)(%s) / %s) %% %s) <= (int)%s)",
                  lin, s, lin, s, t, d);
    if (node->info == &op_causal_mask)
        clg_cg_format(out, size, "(%s ? 0.0f : -INFINITY)", keep);
    else
        clg_cg_format(out, size, "(%s ? (%s) : %s)", keep, operands[0],
                      node->dtype == CLG_F32 ? "0.0f" : "0");
}

/* Diagonals beyond the matrix keep everything or nothing; clamped so they fit an int. */
static int64_t clamp_diagonal(int64_t d, int64_t rows, int64_t cols) {
    if (d > cols) return cols;
    if (d < -rows) return -rows;
    return d;
}

clg_tensor *clg_tril(clg_graph *g, clg_tensor *x, int64_t diagonal) {
    CLG_GUARD(g, "tril", 1, x);
    if (x->ndim < 2) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "tril: x %s needs at least 2 dims",
                              clg_shape_str(x->ndim, x->shape, b, sizeof b));
    }
    int64_t rows = x->shape[x->ndim - 2], cols = x->shape[x->ndim - 1];
    clg_tensor *t = clg_node_new(g, &op_tril, x->dtype, x->ndim, x->shape, 1, &x);
    if (t != g->poison) t->attrs = tri_attrs(rows, clamp_diagonal(diagonal, rows, cols));
    return t;
}

static void bw_tril(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, node->in[0], clg_tril(g, gout, node->attrs.rows.diagonal));
}

clg_tensor *clg_causal_mask(clg_graph *g, int64_t T, int64_t S) {
    CLG_GUARD(g, "causal_mask", 0, NULL);
    if (T < 1 || S < 1 || T > INT32_MAX || S > INT32_MAX)
        return clg_graph_fail(g, CLG_ERR_SHAPE, "causal_mask: bad size [%lld, %lld]",
                              (long long)T, (long long)S);
    const int64_t shape[2] = {T, S};
    clg_tensor *t = clg_node_new(g, &op_causal_mask, CLG_F32, 2, shape, 0, NULL);
    if (t != g->poison) t->attrs = tri_attrs(T, S - T);
    return t;
}

/* ---- cumsum ---- */

clg_tensor *clg_cumsum(clg_graph *g, clg_tensor *x, int axis, bool exclusive, bool reverse) {
    CLG_GUARD(g, "cumsum", 1, x);
    char b[200];
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "cumsum: axis %d out of range for x %s", axis,
                              clg_shape_str(x->ndim, x->shape, b, sizeof b));
    if (x->dtype != CLG_F32)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "cumsum: x %s must be f32, got %s",
                              clg_shape_str(x->ndim, x->shape, b, sizeof b),
                              clg_dtype_name(x->dtype));
    clg_tensor *t = clg_kernel_node(g, &op_cumsum, CLG_F32, x->ndim, x->shape, 1, &x);
    if (t != g->poison)
        t->attrs = (clg_attrs){.kind = CLG_ATTRS_SCAN,
                               .scan = {.axis = a, .exclusive = exclusive, .reverse = reverse}};
    return t;
}

/* out[i] sums x[j] over j <= i (j < i when exclusive), so dx[j] sums gout[i] over i >= j
 * (i > j): the same scan run the other way. */
static void bw_cumsum(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    const clg_attr_scan *s = &node->attrs.scan;
    clg_grad_accumulate(g, node->in[0], clg_cumsum(g, gout, s->axis, s->exclusive, !s->reverse));
}

/* o's shape (extent 1 along axis a) and strides as int8, the axis's stride apart in *sa. */
static void pack_lines(const clg_operand *o, int a, cl_int8 *shape, cl_int8 *st, cl_int *sa) {
    int lead = 8 - o->ndim;
    for (int p = 0; p < 8; ++p) {
        int d = p - lead;
        shape->s[p] = d < 0 || d == a ? 1 : (cl_int)o->shape[d];
        st->s[p] = d < 0 || d == a ? 0 : (cl_int)o->strides[d];
    }
    *sa = (cl_int)o->strides[a];
}

/* Lines at or above which each gets one work-item; below, on lines of at least GROUP_MIN_LEN
 * elements, each gets a work-group. A CPU device runs a work-item's loop at full speed, so it
 * keeps to one per line unless the lines cannot occupy its cores at all. */
#define GROUP_MAX_LINES_GPU 4096
#define GROUP_MAX_LINES_CPU 16
#define GROUP_MIN_LEN 512
#define GROUP_MAX_LOCAL 256

static clg_status lower_cumsum(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    clg_context *ctx = clg_lowering_context(lw);
    const clg_attr_scan *s = &node->attrs.scan;
    int a = s->axis;
    cl_int8 shape, ost, xst;
    cl_int osa, xsa;
    pack_lines(out, a, &shape, &ost, &osa);
    pack_lines(&in[0], a, &shape, &xst, &xsa);
    int64_t len = out->shape[a], lines = clg_shape_numel(out->ndim, out->shape) / len;
    int64_t max_lines = clg_long_work_items(ctx) ? GROUP_MAX_LINES_CPU : GROUP_MAX_LINES_GPU;
    bool group = len >= GROUP_MIN_LEN && lines < max_lines;
    const char *name = group ? "cumsum_group" : "cumsum";
    cl_kernel k;
    clg_status st = clg_kernel_new(ctx, "scan", name, &k);
    if (st != CLG_OK) return st;
    clg_args args = clg_args_begin(k);
    clg_arg_mem(&args, out->mem);
    clg_arg_int(&args, out->offset);
    if (!group) clg_arg_int(&args, lines);
    clg_arg_raw(&args, sizeof shape, &shape);
    clg_arg_raw(&args, sizeof ost, &ost);
    clg_arg_int(&args, osa);
    clg_arg_mem(&args, in[0].mem);
    clg_arg_int(&args, in[0].offset);
    clg_arg_raw(&args, sizeof xst, &xst);
    clg_arg_int(&args, xsa);
    clg_arg_int(&args, len);
    clg_arg_int(&args, s->exclusive);
    clg_arg_int(&args, s->reverse);
    size_t local = group ? clg_kernel_group_pow2(ctx, k, GROUP_MAX_LOCAL) : 64;
    size_t global = group ? (size_t)lines * local : ((size_t)lines + 63) / 64 * 64;
    return clg_lower_args(lw, &args, 1, &global, &local, name);
}
