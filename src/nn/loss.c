/* Losses. Softmax cross-entropy is a fused pair of ops (cl/loss.cl): one kernel for the
 * per-row losses, one for their gradient (softmax - onehot), each a single stable pass per
 * row. Binary cross-entropy, MSE and Huber are composites of elementwise ops, so their
 * gradients come from the parts and they fuse into the reduction that follows. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "clgrad/nn.h"
#include "compile/lowering.h"
#include "core/context.h"
#include "core/program.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

static void bw_ce_rows(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_ce_rows(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out);
static clg_status lower_ce_grad(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out);

/* in: logits [..., C], labels [...]; out: [...] scale * loss per row (attrs.loss) */
static const clg_op_info op_ce_rows = {.name = "cross_entropy", .kind = CLG_KIND_KERNEL,
                                       .backward = bw_ce_rows, .lower = lower_ce_rows};
/* in: logits, labels, gout [...]; out: d logits [..., C]; attrs.loss as the rows' */
static const clg_op_info op_ce_grad = {.name = "cross_entropy_grad", .kind = CLG_KIND_KERNEL,
                                       .lower = lower_ce_grad, .scalar_operands = true};

static clg_tensor *dense(clg_graph *g, clg_tensor *x) {
    return clg_is_contiguous(x) ? x : clg_contiguous(g, x);
}

static bool check_reduction(clg_graph *g, const char *op, clg_reduction r) {
    if ((int)r >= 0 && r < CLG_REDUCTION_COUNT) return true;
    clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "%s: unknown reduction %d", op, (int)r);
    return false;
}

static clg_tensor *reduce_loss(clg_graph *g, clg_tensor *t, clg_reduction r) {
    switch (r) {
    case CLG_REDUCTION_MEAN:
        return clg_mean(g, t, 0, NULL, false);
    case CLG_REDUCTION_SUM:
        return clg_sum(g, t, 0, NULL, false);
    default:
        return t;
    }
}

/* ---- softmax cross-entropy ---- */

clg_tensor *clg_cross_entropy(clg_graph *g, clg_tensor *logits, clg_tensor *labels,
                              clg_reduction reduction) {
    CLG_GUARD(g, "cross_entropy", 2, logits, labels);
    if (!check_reduction(g, "cross_entropy", reduction)) return g->poison;
    char a[200], b[200];
    if (logits->dtype != CLG_F32 || labels->dtype != CLG_I32)
        return clg_graph_fail(g, CLG_ERR_DTYPE,
                              "cross_entropy: logits must be f32 and labels i32, got %s and %s",
                              clg_tensor_describe(logits, a, sizeof a),
                              clg_tensor_describe(labels, b, sizeof b));
    if (logits->ndim < 1 || labels->ndim != logits->ndim - 1 ||
        memcmp(labels->shape, logits->shape, (size_t)labels->ndim * sizeof *labels->shape) != 0)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "cross_entropy: logits %s and labels %s: labels must have the "
                              "logits' shape without the last (class) axis, e.g. [N, C] and [N]",
                              clg_shape_str(logits->ndim, logits->shape, a, sizeof a),
                              clg_shape_str(labels->ndim, labels->shape, b, sizeof b));
    if (clg_tensor_numel(logits) > INT32_MAX)
        return clg_graph_fail(g, CLG_ERR_SHAPE, "cross_entropy: logits %s are too large",
                              clg_shape_str(logits->ndim, logits->shape, a, sizeof a));
    int64_t rows = clg_tensor_numel(labels);
    /* For the mean the rows come out already divided by N, so the sum that follows (and its
     * backward, a broadcast of the loss's scalar gradient) needs no extra kernel. */
    float scale = reduction == CLG_REDUCTION_MEAN ? (float)(1.0 / (double)rows) : 1.0f;
    clg_tensor *ins[2] = {dense(g, logits), dense(g, labels)};
    clg_tensor *t = clg_kernel_node(g, &op_ce_rows, CLG_F32, labels->ndim, labels->shape, 2, ins);
    if (t == g->poison) return t;
    t->attrs = (clg_attrs){.kind = CLG_ATTRS_LOSS, .loss = {.scale = scale}};
    return reduction == CLG_REDUCTION_NONE ? t : clg_sum(g, t, 0, NULL, false);
}

/* gout is read as one value per row: a dense tensor, or a broadcast single value (the usual
 * gradient of a sum or mean). Anything else is copied dense first. */
static bool all_zero_strides(const clg_tensor *t) {
    for (int i = 0; i < t->ndim; ++i)
        if (t->shape[i] != 1 && t->strides[i] != 0) return false;
    return true;
}

static void bw_ce_rows(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *logits = node->in[0], *labels = node->in[1];
    if (!clg_needs_grad(logits)) return;
    if (!all_zero_strides(gout)) gout = dense(g, gout);
    clg_tensor *ins[3] = {logits, labels, gout};
    clg_tensor *d = clg_kernel_node(g, &op_ce_grad, CLG_F32, logits->ndim, logits->shape, 3, ins);
    if (d == g->poison) return;
    d->attrs = node->attrs;
    clg_grad_accumulate(g, logits, d);
}

/* Lanes per row: enough to cover C, at most 64 (and what the device allows), a power of
 * two for the tree reduction. */
static size_t lanes_for(clg_context *ctx, int64_t C) {
    size_t cap = ctx->info.max_work_group_size < 64 ? ctx->info.max_work_group_size : 64;
    size_t l = 1;
    while (l * 2 <= cap && (int64_t)l < C) l *= 2;
    return l;
}

/* The kernel of either form: "<base>" (a work-group per row) or "<base>_item" (a work-item
 * per row, CPU devices). */
static clg_status ce_kernel(clg_context *ctx, const char *base, cl_kernel *k) {
    char name[64];
    snprintf(name, sizeof name, "%s%s", base, clg_long_work_items(ctx) ? "_item" : "");
    return clg_kernel_new(ctx, "loss", name, k);
}

static clg_status launch_rows(clg_lowering *lw, clg_args *args, int64_t rows, int64_t C,
                              const char *name) {
    clg_context *ctx = clg_lowering_context(lw);
    if (clg_long_work_items(ctx)) {
        clg_arg_int(args, rows);
        size_t global = ((size_t)rows + 15) / 16 * 16, local = 16;
        return clg_lower_args(lw, args, 1, &global, &local, name);
    }
    size_t lanes = lanes_for(ctx, C);
    clg_arg_local(args, lanes * sizeof(float));
    size_t global = (size_t)rows * lanes;
    return clg_lower_args(lw, args, 1, &global, &lanes, name);
}

static clg_status lower_ce_rows(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out) {
    const clg_operand *x = &in[0], *y = &in[1];
    if (!clg_operand_dense(x) || !clg_operand_dense(y))
        return clg_fail(CLG_ERR_INTERNAL, "cross_entropy: operands are not dense");
    int64_t C = x->shape[x->ndim - 1], rows = clg_shape_numel(out->ndim, out->shape);
    clg_context *ctx = clg_lowering_context(lw);
    cl_kernel k;
    clg_status st = ce_kernel(ctx, "cross_entropy_rows", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, x->mem);
    clg_arg_int(&a, x->offset);
    clg_arg_mem(&a, y->mem);
    clg_arg_int(&a, y->offset);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    clg_arg_int(&a, C);
    clg_arg_float(&a, node->attrs.loss.scale);
    return launch_rows(lw, &a, rows, C, "cross_entropy");
}

static clg_status lower_ce_grad(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out) {
    const clg_operand *x = &in[0], *y = &in[1], *go = &in[2];
    if (!clg_operand_dense(x) || !clg_operand_dense(y))
        return clg_fail(CLG_ERR_INTERNAL, "cross_entropy_grad: operands are not dense");
    int64_t C = x->shape[x->ndim - 1], rows = clg_shape_numel(y->ndim, y->shape);
    bool broadcast = true;
    for (int i = 0; i < go->ndim; ++i)
        if (go->shape[i] != 1 && go->strides[i] != 0) broadcast = false;
    if (!go->is_scalar && !broadcast && !clg_operand_dense(go))
        return clg_fail(CLG_ERR_INTERNAL, "cross_entropy_grad: the row gradient is not dense");
    clg_context *ctx = clg_lowering_context(lw);
    cl_kernel k;
    clg_status st = ce_kernel(ctx, "cross_entropy_grad", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    clg_arg_mem(&a, x->mem);
    clg_arg_int(&a, x->offset);
    clg_arg_mem(&a, y->mem);
    clg_arg_int(&a, y->offset);
    clg_arg_mem(&a, go->is_scalar ? x->mem : go->mem); /* unread when use_const */
    clg_arg_int(&a, go->is_scalar ? 0 : go->offset);
    clg_arg_int(&a, broadcast ? 0 : 1);
    clg_arg_int(&a, go->is_scalar);
    clg_arg_float(&a, go->is_scalar ? go->scalar : 0.0f);
    clg_arg_int(&a, C);
    clg_arg_float(&a, node->attrs.loss.scale);
    return launch_rows(lw, &a, rows, C, "cross_entropy_grad");
}

/* ---- composite losses ---- */

static bool check_pair(clg_graph *g, const char *op, clg_tensor *a, clg_tensor *b,
                       const char *na, const char *nb) {
    char sa[200], sb[200];
    if (a->dtype != CLG_F32 || b->dtype != CLG_F32) {
        clg_graph_fail(g, CLG_ERR_DTYPE, "%s: %s and %s must be f32, got %s and %s", op, na, nb,
                       clg_tensor_describe(a, sa, sizeof sa),
                       clg_tensor_describe(b, sb, sizeof sb));
        return false;
    }
    if (!clg_same_shape(a, b)) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "%s: %s %s and %s %s must have the same shape", op, na,
                       clg_shape_str(a->ndim, a->shape, sa, sizeof sa), nb,
                       clg_shape_str(b->ndim, b->shape, sb, sizeof sb));
        return false;
    }
    return true;
}

clg_tensor *clg_bce_with_logits(clg_graph *g, clg_tensor *logits, clg_tensor *targets,
                                clg_reduction reduction) {
    CLG_GUARD(g, "bce_with_logits", 2, logits, targets);
    if (!check_reduction(g, "bce_with_logits", reduction) ||
        !check_pair(g, "bce_with_logits", logits, targets, "logits", "targets"))
        return g->poison;
    /* max(x, 0) - x t + log(1 + exp(-|x|)). |x| = maximum(x, -x) and max(x, 0) both send the
     * gradient of a tie at x = 0 to x, so the gradient there is 1 - 1/2 - t = sigmoid(0) - t,
     * the true value (relu and abs would give 0 and a wrong -t). */
    clg_tensor *x = logits, *zero = clg_scalar(g, 0.0f);
    clg_tensor *absx = clg_maximum(g, x, clg_neg(g, x));
    clg_tensor *softplus_tail = clg_log(g, clg_add_scalar(g, clg_exp(g, clg_neg(g, absx)), 1.0f));
    clg_tensor *loss = clg_add(g, clg_sub(g, clg_maximum(g, x, zero), clg_mul(g, x, targets)),
                               softplus_tail);
    return reduce_loss(g, loss, reduction);
}

clg_tensor *clg_mse_loss(clg_graph *g, clg_tensor *pred, clg_tensor *target,
                         clg_reduction reduction) {
    CLG_GUARD(g, "mse_loss", 2, pred, target);
    if (!check_reduction(g, "mse_loss", reduction) ||
        !check_pair(g, "mse_loss", pred, target, "pred", "target"))
        return g->poison;
    return reduce_loss(g, clg_square(g, clg_sub(g, pred, target)), reduction);
}

clg_tensor *clg_huber_loss(clg_graph *g, clg_tensor *pred, clg_tensor *target, float delta,
                           clg_reduction reduction) {
    CLG_GUARD(g, "huber_loss", 2, pred, target);
    if (!check_reduction(g, "huber_loss", reduction) ||
        !check_pair(g, "huber_loss", pred, target, "pred", "target"))
        return g->poison;
    if (!(delta > 0.0f) || !isfinite(delta))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "huber_loss: delta %g must be > 0",
                              (double)delta);
    clg_tensor *d = clg_sub(g, pred, target);
    clg_tensor *ad = clg_abs(g, d);
    clg_tensor *quad = clg_mul_scalar(g, clg_square(g, d), 0.5f);
    clg_tensor *lin = clg_mul_scalar(g, clg_add_scalar(g, ad, -0.5f * delta), delta);
    clg_tensor *loss = clg_where(g, clg_lt(g, ad, clg_scalar(g, delta)), quad, lin);
    return reduce_loss(g, loss, reduction);
}
