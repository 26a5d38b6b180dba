/* Pooling. max_pool2d has its own kernels (cl/pool.cl): the forward pass writes each
 * window's maximum, the backward pass finds the same maxima again in x and routes the
 * gradients there. avg_pool2d is a mean over im2col columns and global_avg_pool2d a mean over
 * H and W, so their gradients come from the parts. */

#include "compile/lowering.h"
#include "core/program.h"
#include "ops/conv.h"
#include "ops/node.h"

static void bw_max_pool(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_max_pool(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out);
static clg_status lower_max_pool_backward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                          const clg_operand *out);
static bool absorb_relu_gate(const clg_tensor *node, const clg_tensor *prev,
                             const clg_tensor *consumer, clg_epilogue *epi);
static clg_status lower_gated(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                              const clg_operand *out, const clg_epilogue *epi,
                              const clg_operand *bias);

/* Both: attrs.pool, the window (the input's H and W are x's shape) */
static const clg_op_info op_max_pool = {
    .name = "max_pool2d", .kind = CLG_KIND_KERNEL, .backward = bw_max_pool, .lower = lower_max_pool};
/* (gout, x) -> dx [N, C, H, W]. When x is a relu's output (conv -> relu -> pool), the kernel
 * can also apply relu's backward gate (times x > 0), saving a pass over the layer's largest
 * tensor: compile's epilogue fusion asks absorb_relu_gate. No gradient of its own: second
 * derivatives of max pooling are not supported. */
static const clg_op_info op_max_pool_backward = {.name = "max_pool2d_backward",
                                                 .kind = CLG_KIND_KERNEL,
                                                 .lower = lower_max_pool_backward,
                                                 .absorb = absorb_relu_gate,
                                                 .lower_epilogue = lower_gated};

/* The window of p over x: its attributes and output size. */
typedef struct pool_geo {
    clg_attrs attrs; /* kind POOL */
    int64_t oh, ow;
} pool_geo;

static bool pool_resolve(clg_graph *g, const char *op, clg_tensor *x, const clg_pool2d_params *p,
                         pool_geo *geo) {
    char sx[200];
    clg_shape_str(x->ndim, x->shape, sx, sizeof sx);
    if (!p) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "%s: params are NULL (x %s)", op, sx);
        return false;
    }
    if (x->ndim != 4) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "%s: x must be [N, C, H, W], got %s", op, sx);
        return false;
    }
    int64_t kh = p->kernel_h, kw = p->kernel_w;
    int64_t sh = p->stride_h ? p->stride_h : kh, sw = p->stride_w ? p->stride_w : kw;
    int64_t ph = p->pad_h, pw = p->pad_w;
    geo->attrs = (clg_attrs){.kind = CLG_ATTRS_POOL,
                             .pool = {.kernel = {kh, kw}, .stride = {sh, sw}, .pad = {ph, pw}}};
    char win[200];
    clg_attrs_describe(&geo->attrs, win, sizeof win);
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0 || 2 * ph > kh || 2 * pw > kw) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                       "%s: bad window %s (padding at most half the kernel) for x %s", op, win,
                       sx);
        return false;
    }
    int64_t hp = x->shape[2] + 2 * ph, wp = x->shape[3] + 2 * pw;
    if (hp < kh || wp < kw) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "%s: the window %s does not fit x %s", op, win, sx);
        return false;
    }
    geo->oh = (hp - kh) / sh + 1;
    geo->ow = (wp - kw) / sw + 1;
    return true;
}

static clg_tensor *pool_node(clg_graph *g, const clg_op_info *info, clg_dtype dtype, int n_in,
                             clg_tensor **in, const int64_t *shape, const clg_attrs *attrs) {
    clg_tensor *t = clg_kernel_node(g, info, dtype, 4, shape, n_in, in);
    if (t != g->poison) t->attrs = *attrs;
    return t;
}

clg_tensor *clg_max_pool2d(clg_graph *g, clg_tensor *x, const clg_pool2d_params *p) {
    CLG_GUARD(g, "max_pool2d", 1, x);
    pool_geo geo;
    if (!pool_resolve(g, "max_pool2d", x, p, &geo)) return g->poison;
    const int64_t shape[4] = {x->shape[0], x->shape[1], geo.oh, geo.ow};
    x = clg_conv_operand(g, x);
    return pool_node(g, &op_max_pool, CLG_F32, 1, &x, shape, &geo.attrs);
}

static void bw_max_pool(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    clg_tensor *ins[2] = {clg_conv_operand(g, gout), x};
    clg_grad_accumulate(
        g, x, pool_node(g, &op_max_pool_backward, CLG_F32, 2, ins, x->shape, &node->attrs));
}

/* relu_grad(dx, y) right after the pooling's backward, y being the pooling's input: the
 * maxima the kernel finds again are y's, so it can zero the gated ones itself. */
static bool absorb_relu_gate(const clg_tensor *node, const clg_tensor *prev,
                             const clg_tensor *consumer, clg_epilogue *epi) {
    if (consumer->info->epilogue != CLG_EPILOGUE_RELU_GATE || epi->relu_gate || prev != node ||
        consumer->in[0] != node || consumer->in[1] != node->in[1])
        return false;
    epi->relu_gate = true;
    return true;
}

/* (kh, kw, stride_h, stride_w, pad_h, pad_w, 0, 0) as the kernels take it */
static cl_int8 win_arg(const clg_attr_pool *w) {
    cl_int8 v = {{0}};
    for (int i = 0; i < 2; ++i) {
        v.s[i] = (cl_int)w->kernel[i];
        v.s[2 + i] = (cl_int)w->stride[i];
        v.s[4 + i] = (cl_int)w->pad[i];
    }
    return v;
}

static cl_int4 strides4(const clg_operand *o) {
    cl_int4 v;
    for (int i = 0; i < 4; ++i)
        v.s[i] = (cl_int)o->strides[i];
    return v;
}

static clg_status lower_max_pool(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out) {
    const clg_operand *x = &in[0];
    cl_int4 xst = strides4(x);
    const clg_attr_pool *w = &node->attrs.pool;
    cl_int8 win = win_arg(w);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "pool", "max_pool2d", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    clg_arg_mem(&a, x->mem);
    clg_arg_int(&a, x->offset);
    clg_arg_raw(&a, sizeof xst, &xst);
    clg_arg_int(&a, x->shape[2]);
    clg_arg_int(&a, x->shape[3]);
    clg_arg_int(&a, out->shape[3]);
    /* the kernel's row form for the 2 x 2 pooling (see cl/pool.cl) */
    bool rows = w->kernel[0] == 2 && w->kernel[1] == 2 && w->stride[0] == 2 && w->stride[1] == 2 &&
                w->pad[0] == 0 && w->pad[1] == 0 && x->strides[3] == 1 && out->shape[3] >= 8;
    clg_arg_raw(&a, sizeof win, &win);
    clg_arg_int(&a, rows);
    size_t plane = (size_t)(out->shape[2] * out->shape[3]), local[3];
    size_t global[3] = {rows ? (size_t)out->shape[2] : plane, (size_t)out->shape[1],
                        (size_t)out->shape[0]};
    return clg_lower_args(lw, &a, 3, global, rows ? NULL : clg_plane_local(lw, plane, local),
                          "max_pool2d");
}

static clg_status lower_backward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out, bool relu_gate) {
    const clg_operand *gout = &in[0], *x = &in[1];
    const clg_attr_pool *w = &node->attrs.pool;
    cl_int4 gst = strides4(gout), xst = strides4(x);
    cl_int8 win = win_arg(w);
    /* windows that do not overlap: one work-item per window row, else one per dx element */
    bool disjoint = w->stride[0] >= w->kernel[0] && w->stride[1] >= w->kernel[1] &&
                    w->pad[0] == 0 && w->pad[1] == 0;
    const char *name = disjoint ? "max_pool2d_backward_disjoint" : "max_pool2d_backward";
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "pool", name, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    clg_arg_mem(&a, gout->mem);
    clg_arg_int(&a, gout->offset);
    clg_arg_raw(&a, sizeof gst, &gst);
    clg_arg_mem(&a, x->mem);
    clg_arg_int(&a, x->offset);
    clg_arg_raw(&a, sizeof xst, &xst);
    clg_arg_int(&a, out->shape[2]);
    clg_arg_int(&a, out->shape[3]);
    clg_arg_int(&a, gout->shape[2]);
    clg_arg_int(&a, gout->shape[3]);
    clg_arg_raw(&a, sizeof win, &win);
    clg_arg_int(&a, relu_gate);
    size_t plane = (size_t)(out->shape[2] * out->shape[3]), local[3];
    size_t global[3] = {disjoint ? (size_t)gout->shape[2] : plane, (size_t)out->shape[1],
                        (size_t)out->shape[0]};
    return clg_lower_args(lw, &a, 3, global, disjoint ? NULL : clg_plane_local(lw, plane, local),
                          relu_gate ? "max_pool2d_backward+relu" : "max_pool2d_backward");
}

static clg_status lower_max_pool_backward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                          const clg_operand *out) {
    return lower_backward(lw, node, in, out, false);
}

static clg_status lower_gated(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                              const clg_operand *out, const clg_epilogue *epi,
                              const clg_operand *bias) {
    (void)bias;
    return lower_backward(lw, node, in, out, epi->relu_gate);
}

clg_tensor *clg_avg_pool2d(clg_graph *g, clg_tensor *x, const clg_pool2d_params *p) {
    CLG_GUARD(g, "avg_pool2d", 1, x);
    pool_geo pg;
    if (!pool_resolve(g, "avg_pool2d", x, p, &pg)) return g->poison;
    const clg_attr_pool *w = &pg.attrs.pool;
    int64_t N = x->shape[0], C = x->shape[1];
    /* Every channel its own group: columns [N, C, KH * KW, OH * OW], padded taps 0. */
    clg_conv_geo geo = {.kh = w->kernel[0],
                        .kw = w->kernel[1],
                        .stride_h = w->stride[0],
                        .stride_w = w->stride[1],
                        .pad_top = w->pad[0],
                        .pad_left = w->pad[1],
                        .dilation_h = 1,
                        .dilation_w = 1,
                        .groups = C,
                        .n = N,
                        .c = C,
                        .h = x->shape[2],
                        .w = x->shape[3],
                        .oh = pg.oh,
                        .ow = pg.ow};
    clg_tensor *cols = clg_im2col(g, x, &geo, CLG_CONV_LAYOUT_BATCHED, 0.0f);
    clg_tensor *m = clg_mean(g, cols, 1, (int[]){2}, false);
    return clg_reshape(g, m, 4, (int64_t[]){N, C, pg.oh, pg.ow});
}

clg_tensor *clg_global_avg_pool2d(clg_graph *g, clg_tensor *x) {
    CLG_GUARD(g, "global_avg_pool2d", 1, x);
    if (x->ndim != 4) {
        char sx[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "global_avg_pool2d: x must be [N, C, H, W], got %s",
                              clg_shape_str(x->ndim, x->shape, sx, sizeof sx));
    }
    return clg_mean(g, x, 2, (int[]){2, 3}, true);
}
