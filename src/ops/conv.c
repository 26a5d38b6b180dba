/* 2-D convolution: a composite of im2col (a hand-written kernel) -> the product of weights and
 * columns (a matmul node: the one GEMM dispatch point) -> bias add, whose autograd and GEMM
 * selection come from the parts. The product has a second lowering, one CLBlast convgemm call
 * on the image itself, chosen when a plan is compiled (measured per shape and device,
 * conv_choice.c), so the graph never depends on timing; an inference plan that takes convgemm
 * skips the columns. im2col's adjoint is col2im, whose adjoint is im2col again; both kernels
 * are in cl/conv.cl. */
#include <string.h>

#include "compile/lowering.h"
#include "core/program.h"
#include "ops/conv.h"
#include "ops/matmul.h"
#include "ops/node.h"

static void bw_im2col(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_col2im(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_im2col(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out);
static clg_status lower_col2im(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out);
static void bw_convgemm(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_convgemm(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out);
static int choose_product(clg_context *ctx, const clg_tensor *node, uint32_t *unread);
static clg_status lower_product(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out);

/* Both: attrs.conv, the geometry and the columns' layout (im2col: and the pad value). */
static const clg_op_info op_im2col = {
    .name = "im2col", .kind = CLG_KIND_KERNEL, .backward = bw_im2col, .lower = lower_im2col};
static const clg_op_info op_col2im = {
    .name = "col2im", .kind = CLG_KIND_KERNEL, .backward = bw_col2im, .lower = lower_col2im};
/* in: x [N, C, H, W], w [O, C, KH, KW], both dense; attrs.conv as im2col's (layout FOLDED,
 * unused) */
static const clg_op_info op_convgemm = {
    .name = "convgemm", .kind = CLG_KIND_KERNEL, .backward = bw_convgemm, .lower = lower_convgemm};
/* The product W x cols of the im2col lowering, a matmul (in[0] weights, in[1] columns, an
 * im2col node or a reshape of one) with the image as in[2]: variant 0 is the GEMM (x unread),
 * variant 1 CLBlast's convgemm on the image (columns unread). */
static const clg_op_info op_conv_product = {.name = "conv_product",
                                            .kind = CLG_KIND_KERNEL,
                                            .backward = clg_matmul_backward,
                                            .lower = lower_product,
                                            .absorb = clg_matmul_absorb,
                                            .lower_epilogue = clg_matmul_lower_epilogue,
                                            .choose = choose_product};

static clg_attrs conv_attrs(const clg_conv_geo *geo, clg_conv_layout layout, float pad) {
    return (clg_attrs){.kind = CLG_ATTRS_CONV,
                       .conv = {.geo = *geo, .layout = layout, .pad_value = pad}};
}

/* Column shape for a layout; K = C / G * KH * KW, L = OH * OW. */
static void cols_shape(const clg_conv_geo *geo, clg_conv_layout layout, int64_t *shape) {
    int64_t G = geo->groups, K = geo->c / G * geo->kh * geo->kw, L = geo->oh * geo->ow;
    if (layout == CLG_CONV_LAYOUT_FOLDED) {
        const int64_t s[4] = {G, K, geo->n, L};
        memcpy(shape, s, sizeof s);
    } else {
        const int64_t s[4] = {geo->n, G, K, L};
        memcpy(shape, s, sizeof s);
    }
}

clg_tensor *clg_im2col(clg_graph *g, clg_tensor *x, const clg_conv_geo *geo, clg_conv_layout layout,
                       float pad) {
    CLG_GUARD(g, "im2col", 1, x);
    if (layout != CLG_CONV_LAYOUT_FOLDED) layout = CLG_CONV_LAYOUT_BATCHED;
    int64_t shape[4];
    cols_shape(geo, layout, shape);
    x = clg_conv_operand(g, x);
    clg_tensor *t = clg_kernel_node(g, &op_im2col, CLG_F32, 4, shape, 1, &x);
    if (t != g->poison) t->attrs = conv_attrs(geo, layout, pad);
    return t;
}

clg_tensor *clg_col2im(clg_graph *g, clg_tensor *cols, const clg_conv_geo *geo,
                       clg_conv_layout layout) {
    const int64_t shape[4] = {geo->n, geo->c, geo->h, geo->w};
    cols = clg_conv_operand(g, cols);
    clg_tensor *t = clg_kernel_node(g, &op_col2im, CLG_F32, 4, shape, 1, &cols);
    if (t != g->poison) t->attrs = conv_attrs(geo, layout, 0.0f);
    return t;
}

static void bw_im2col(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    const clg_attr_conv *a = &node->attrs.conv;
    clg_grad_accumulate(g, node->in[0], clg_col2im(g, gout, &a->geo, a->layout));
}

static void bw_col2im(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    const clg_attr_conv *a = &node->attrs.conv;
    clg_grad_accumulate(g, node->in[0], clg_im2col(g, gout, &a->geo, a->layout, 0.0f));
}

/* Strides of a column operand in (n, g, k, l) order. */
static cl_int4 col_strides(const clg_operand *o, clg_conv_layout layout) {
    const int64_t *s = o->strides;
    cl_int4 r;
    if (layout == CLG_CONV_LAYOUT_FOLDED) {
        r.s[0] = (cl_int)s[2];
        r.s[1] = (cl_int)s[0];
        r.s[2] = (cl_int)s[1];
    } else {
        r.s[0] = (cl_int)s[0];
        r.s[1] = (cl_int)s[1];
        r.s[2] = (cl_int)s[2];
    }
    r.s[3] = (cl_int)s[3];
    return r;
}

static cl_int8 geo_arg(const clg_conv_geo *geo) {
    cl_int8 v;
    const int64_t a[8] = {geo->kh,      geo->kw,       geo->stride_h,   geo->stride_w,
                          geo->pad_top, geo->pad_left, geo->dilation_h, geo->dilation_w};
    for (int i = 0; i < 8; ++i)
        v.s[i] = (cl_int)a[i];
    return v;
}

/* Rows a work-item of im2col or col2im takes, each costing `per_row` inner iterations: one
 * where work-items should be short (GPUs); on CPU devices up to ROW_ITEMS iterations in all, so
 * work-items stay long (see cl/conv.cl) and within a driver's cap on a work-item's loop
 * iterations (llvmpipe's 65535). */
#define ROW_ITEMS 8192
static int64_t rows_per_item(clg_lowering *lw, int64_t per_row, int64_t rows) {
    if (!clg_long_work_items(clg_lowering_context(lw))) return 1;
    int64_t rb = per_row > 0 ? ROW_ITEMS / per_row : rows;
    return rb < 1 ? 1 : rb > rows ? (rows > 0 ? rows : 1) : rb;
}

static clg_status lower_im2col(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    const clg_conv_geo geo = node->attrs.conv.geo;
    clg_conv_layout layout = node->attrs.conv.layout;
    int64_t G = geo.groups, K = geo.c / G * geo.kh * geo.kw;
    cl_int4 cst = col_strides(out, layout), xst;
    for (int i = 0; i < 4; ++i)
        xst.s[i] = (cl_int)in[0].strides[i];
    cl_int8 ga = geo_arg(&geo);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "conv", "im2col", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    clg_arg_raw(&a, sizeof cst, &cst);
    clg_arg_mem(&a, in[0].mem);
    clg_arg_int(&a, in[0].offset);
    clg_arg_raw(&a, sizeof xst, &xst);
    clg_arg_int(&a, geo.c / G);
    clg_arg_int(&a, G);
    clg_arg_int(&a, geo.h);
    clg_arg_int(&a, geo.w);
    clg_arg_int(&a, geo.oh);
    clg_arg_int(&a, geo.ow);
    clg_arg_raw(&a, sizeof ga, &ga);
    clg_arg_float(&a, node->attrs.conv.pad_value);
    int64_t rb = rows_per_item(lw, geo.ow, geo.oh);
    clg_arg_int(&a, rb);
    size_t global[3] = {(size_t)K, (size_t)(geo.n * G), (size_t)((geo.oh + rb - 1) / rb)};
    return clg_lower_args(lw, &a, 3, global, NULL, "im2col");
}

static clg_status lower_col2im(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    const clg_conv_geo geo = node->attrs.conv.geo;
    cl_int4 cst = col_strides(&in[0], node->attrs.conv.layout);
    cl_int8 ga = geo_arg(&geo);
    cl_kernel k;
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "conv", "col2im", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    clg_arg_mem(&a, in[0].mem);
    clg_arg_int(&a, in[0].offset);
    clg_arg_raw(&a, sizeof cst, &cst);
    clg_arg_int(&a, geo.c / geo.groups);
    clg_arg_int(&a, geo.h);
    clg_arg_int(&a, geo.w);
    clg_arg_int(&a, geo.oh);
    clg_arg_int(&a, geo.ow);
    clg_arg_raw(&a, sizeof ga, &ga);
    int64_t rb = rows_per_item(lw, geo.w * geo.kh * geo.kw, geo.h);
    clg_arg_int(&a, rb);
    size_t global[3] = {(size_t)geo.c, (size_t)geo.n, (size_t)((geo.h + rb - 1) / rb)};
    return clg_lower_args(lw, &a, 3, global, NULL, "col2im");
}

/* ---- convgemm: the forward pass as one CLBlast call ---- */

bool clg_convgemm_supports(const clg_conv_geo *geo) {
    /* CLBlast pads both sides of an axis alike and has no groups: the output size its
     * symmetric padding gives must be the one geo asks for. */
    int64_t oh = (geo->h + 2 * geo->pad_top - geo->dilation_h * (geo->kh - 1) - 1) / geo->stride_h;
    int64_t ow = (geo->w + 2 * geo->pad_left - geo->dilation_w * (geo->kw - 1) - 1) / geo->stride_w;
    return geo->groups == 1 && oh + 1 == geo->oh && ow + 1 == geo->ow;
}

clg_tensor *clg_conv2d_convgemm(clg_graph *g, clg_tensor *x, clg_tensor *w, const clg_conv_geo *geo,
                                int64_t out_channels) {
    CLG_GUARD(g, "conv2d (convgemm)", 2, x, w);
    if (!clg_convgemm_supports(geo))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "conv2d (convgemm): CLBlast's convgemm needs one group and the same "
                              "padding on both sides of each axis");
    x = clg_conv_operand(g, x);
    w = clg_conv_operand(g, w);
    if (!clg_is_contiguous(x)) x = clg_contiguous(g, x);
    if (!clg_is_contiguous(w)) w = clg_contiguous(g, w);
    const int64_t shape[4] = {geo->n, out_channels, geo->oh, geo->ow};
    clg_tensor *in[2] = {x, w};
    clg_tensor *t = clg_kernel_node(g, &op_convgemm, CLG_F32, 4, shape, 2, in);
    if (t != g->poison) t->attrs = conv_attrs(geo, CLG_CONV_LAYOUT_FOLDED, 0.0f);
    return t;
}

/* One CLBlast convgemm: x [N, C, H, W] and w [O, C, KH, KW], both dense, to NCHW at result. */
static clg_status add_convgemm(clg_lowering *lw, const clg_conv_geo *geo, int64_t out_channels,
                               const clg_operand *x, const clg_operand *w, cl_mem result,
                               int64_t result_off) {
    const clg_convgemm_call c = {.channels = (size_t)geo->c,
                                 .height = (size_t)geo->h,
                                 .width = (size_t)geo->w,
                                 .kernel_h = (size_t)geo->kh,
                                 .kernel_w = (size_t)geo->kw,
                                 .pad_h = (size_t)geo->pad_top,
                                 .pad_w = (size_t)geo->pad_left,
                                 .stride_h = (size_t)geo->stride_h,
                                 .stride_w = (size_t)geo->stride_w,
                                 .dilation_h = (size_t)geo->dilation_h,
                                 .dilation_w = (size_t)geo->dilation_w,
                                 .num_kernels = (size_t)out_channels,
                                 .batch = (size_t)geo->n,
                                 .im = x->mem,
                                 .im_off = (size_t)x->offset,
                                 .kernel = w->mem,
                                 .kernel_off = (size_t)w->offset,
                                 .result = result,
                                 .result_off = (size_t)result_off};
    return clg_lower_convgemm(lw, &c, "convgemm");
}

static clg_status lower_convgemm(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out) {
    const clg_conv_geo *geo = &node->attrs.conv.geo;
    if (!clg_operand_dense(&in[0]) || !clg_operand_dense(&in[1]) || !clg_operand_dense(out)) {
        char d[512];
        return clg_fail(CLG_ERR_INTERNAL, "convgemm %s: an operand is not a dense NCHW block",
                        clg_attrs_describe(&node->attrs, d, sizeof d));
    }
    return add_convgemm(lw, geo, node->shape[1], &in[0], &in[1], out->mem, out->offset);
}

/* ---- the product's two lowerings ---- */

/* The im2col node behind the product's columns (a reshape of it), or NULL. */
static const clg_tensor *columns_of(const clg_tensor *product) {
    const clg_tensor *cols = product->in[1]->base;
    return cols->info == &op_im2col ? cols : NULL;
}

static int choose_product(clg_context *ctx, const clg_tensor *node, uint32_t *unread) {
    const clg_tensor *cols = columns_of(node);
    int convgemm = 0;
    if (cols)
        convgemm = clg_conv_prefers_convgemm(ctx, &cols->attrs.conv.geo, node->in[0]->shape[0]);
    *unread = convgemm ? 1u << 1 : 1u << 2; /* the columns, or the image */
    return convgemm;
}

static clg_status lower_product(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out) {
    if (clg_lowering_variant(lw, node) == 0) return clg_matmul_lower(lw, node, in, out);
    const clg_attrs *ca = &columns_of(node)->attrs;
    const clg_conv_geo geo = ca->conv.geo;
    clg_conv_layout layout = ca->conv.layout;
    int64_t O = node->in[0]->shape[0], L = geo.oh * geo.ow;
    if (!clg_operand_dense(&in[0]) || !clg_operand_dense(&in[2]) || !clg_operand_dense(out)) {
        char d[512];
        return clg_fail(CLG_ERR_INTERNAL, "conv_product (convgemm) of %s: an operand is not dense",
                        clg_attrs_describe(ca, d, sizeof d));
    }
    if (layout != CLG_CONV_LAYOUT_FOLDED) /* [N, O, L]: convgemm's own NCHW */
        return add_convgemm(lw, &geo, O, &in[2], &in[0], out->mem, out->offset);
    /* [O, N * L]: convgemm into scratch, then the permuting copy */
    cl_mem scratch;
    clg_status st = clg_lower_buffer(lw, (size_t)(geo.n * O * L) * sizeof(float),
                                     "convgemm's NCHW result", &scratch);
    if (st == CLG_OK) st = add_convgemm(lw, &geo, O, &in[2], &in[0], scratch, 0);
    if (st != CLG_OK) return st;
    const int64_t shape[3] = {geo.n, O, L}, nchw[3] = {O * L, L, 1}, folded[3] = {L, geo.n * L, 1};
    clg_operand src = clg_operand_view(out, 0, 3, shape, nchw), dst;
    src.mem = scratch;
    dst = clg_operand_view(out, out->offset, 3, shape, folded);
    return clg_lower_copy(lw, &dst, &src);
}

/* The same arithmetic as the folded im2col lowering's backward: with the batch folded into
 * the columns (K = C KH KW rows, N OH OW columns) and gout as [O, N OH OW], the weight's
 * gradient is one GEMM against the columns and the columns' gradient one GEMM with the
 * weight, scattered back to the image by col2im. */
static void bw_convgemm(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    const clg_conv_geo geo = node->attrs.conv.geo;
    clg_tensor *x = node->in[0], *w = node->in[1];
    int64_t O = node->shape[1], K = geo.c * geo.kh * geo.kw, NL = geo.n * geo.oh * geo.ow;
    clg_tensor *gf =
        clg_reshape(g, clg_permute(g, gout, (int[]){1, 0, 2, 3}), 2, (int64_t[]){O, NL});
    if (clg_needs_grad(x)) {
        clg_tensor *gcols = clg_matmul(g, clg_reshape(g, w, 2, (int64_t[]){O, K}), gf, true, false);
        gcols = clg_reshape(g, gcols, 4, (int64_t[]){1, K, geo.n, geo.oh * geo.ow});
        clg_grad_accumulate(g, x, clg_col2im(g, gcols, &geo, CLG_CONV_LAYOUT_FOLDED));
    }
    if (clg_needs_grad(w)) {
        clg_tensor *cols = clg_im2col(g, x, &geo, CLG_CONV_LAYOUT_FOLDED, 0.0f);
        cols = clg_reshape(g, cols, 2, (int64_t[]){K, NL});
        clg_tensor *gw = clg_matmul(g, gf, cols, false, true); /* [O, K] */
        clg_grad_accumulate(g, w, clg_reshape(g, gw, 4, w->shape));
    }
}

/* ---- conv2d ---- */

/* One spatial axis: stride, dilation and padding resolved; false if no output fits. */
static bool resolve_axis(clg_padding mode, int64_t in, int64_t k, int64_t stride, int64_t dilation,
                         int64_t pad_lo, int64_t pad_hi, int64_t *lo, int64_t *out) {
    int64_t span = dilation * (k - 1) + 1;
    if (mode == CLG_PADDING_SAME) {
        int64_t o = (in + stride - 1) / stride;
        int64_t total = (o - 1) * stride + span - in;
        if (total < 0) total = 0;
        pad_lo = total / 2;
        pad_hi = total - pad_lo;
    } else if (mode == CLG_PADDING_VALID) {
        pad_lo = pad_hi = 0;
    }
    *lo = pad_lo;
    int64_t padded = in + pad_lo + pad_hi;
    if (padded < span) return false;
    *out = (padded - span) / stride + 1;
    return true;
}

/* Measured on pocl with tools/bench-conv --more (CLBlast GEMM, batch 64): shallow columns
 * (K = 9 for the MNIST CNN's conv1, 27 for 3 -> 16 channels) run faster as per-image products
 * written straight into NCHW; from K = 144 on (the MNIST conv2 has 288) one product over the
 * whole batch is as fast or faster (1.4x at K = 576), and its weight gradient is one GEMM
 * instead of a batched product and a reduction over the batch. K = 72 is a tie. Grouped
 * convolutions fold, which also keeps the weight from being copied per image. */
#define CLG_CONV_FOLD_MIN_K 128

static clg_conv_layout auto_layout(int64_t groups, int64_t k) {
    return groups > 1 || k >= CLG_CONV_FOLD_MIN_K ? CLG_CONV_LAYOUT_FOLDED
                                                  : CLG_CONV_LAYOUT_BATCHED;
}

static int def1(int v) {
    return v == 0 ? 1 : v;
}

clg_tensor *clg_conv2d_layout(clg_graph *g, clg_tensor *x, clg_tensor *w, clg_tensor *bias,
                              const clg_conv2d_params *p, clg_conv_layout layout) {
    CLG_GUARD(g, "conv2d", 2, x, w);
    if (bias && !clg_check_inputs(g, "conv2d", 1, &bias)) return g->poison;
    const clg_conv2d_params defaults = {0};
    if (!p) p = &defaults;
    char sx[200], sw[200], sb[200];
    clg_shape_str(x->ndim, x->shape, sx, sizeof sx);
    clg_shape_str(w->ndim, w->shape, sw, sizeof sw);
    if (x->ndim != 4 || w->ndim != 4)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "conv2d: x must be [N, C, H, W] and w [O, C/groups, KH, KW], got "
                              "x %s, w %s",
                              sx, sw);
    int sh = def1(p->stride_h), swd = def1(p->stride_w);
    int dh = def1(p->dilation_h), dw = def1(p->dilation_w), G = def1(p->groups);
    if (sh < 1 || swd < 1 || dh < 1 || dw < 1 || G < 1 || p->pad_top < 0 || p->pad_bottom < 0 ||
        p->pad_left < 0 || p->pad_right < 0 || (int)p->padding < 0 ||
        p->padding >= CLG_PADDING_COUNT)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "conv2d: bad parameters (stride %d x %d, dilation %d x %d, groups "
                              "%d, padding mode %d, pads %d %d %d %d) for x %s, w %s",
                              p->stride_h, p->stride_w, p->dilation_h, p->dilation_w, p->groups,
                              (int)p->padding, p->pad_top, p->pad_bottom, p->pad_left, p->pad_right,
                              sx, sw);
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    if (C % G != 0 || O % G != 0 || w->shape[1] != C / G)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "conv2d: x %s and w %s do not match with %d group(s): w must be "
                              "[O, C/groups, KH, KW] with C and O divisible by groups",
                              sx, sw, G);
    if (bias && (bias->ndim != 1 || bias->shape[0] != O))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "conv2d: bias must be [%lld] for w %s, got %s",
                              (long long)O, sw,
                              clg_shape_str(bias->ndim, bias->shape, sb, sizeof sb));
    clg_conv_geo geo = {.kh = KH,
                        .kw = KW,
                        .stride_h = sh,
                        .stride_w = swd,
                        .dilation_h = dh,
                        .dilation_w = dw,
                        .groups = G,
                        .n = N,
                        .c = C,
                        .h = H,
                        .w = W};
    if (!resolve_axis(p->padding, H, KH, sh, dh, p->pad_top, p->pad_bottom, &geo.pad_top,
                      &geo.oh) ||
        !resolve_axis(p->padding, W, KW, swd, dw, p->pad_left, p->pad_right, &geo.pad_left,
                      &geo.ow))
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "conv2d: the %lldx%lld kernel (dilation %d x %d) does not fit x "
                              "%s with the padding given",
                              (long long)KH, (long long)KW, dh, dw, sx);
    /* AUTO: the im2col lowering whose product may become a convgemm when a plan is compiled;
     * an explicit layout is that lowering, no choice */
    clg_tensor *y;
    if (layout == CLG_CONV_LAYOUT_CONVGEMM && clg_convgemm_supports(&geo))
        y = clg_conv2d_convgemm(g, x, w, &geo, O);
    else
        y = clg_conv2d_im2col(g, x, w, &geo, O,
                              layout == CLG_CONV_LAYOUT_CONVGEMM ? CLG_CONV_LAYOUT_AUTO : layout,
                              layout == CLG_CONV_LAYOUT_AUTO);
    if (bias) y = clg_add(g, y, clg_reshape(g, bias, 3, (int64_t[]){O, 1, 1}));
    return y;
}

clg_tensor *clg_conv2d_im2col(clg_graph *g, clg_tensor *x, clg_tensor *w, const clg_conv_geo *geo,
                              int64_t out_channels, clg_conv_layout layout, bool choice) {
    CLG_GUARD(g, "conv2d (im2col)", 2, x, w);
    /* the convgemm alternative reads the image and the weight as CLBlast does: dense NCHW */
    choice = choice && geo->groups == 1 && clg_convgemm_supports(geo);
    clg_tensor *image = choice ? clg_conv_operand(g, x) : NULL;
    if (image && !clg_is_contiguous(image)) image = clg_contiguous(g, image);
    if (choice && !clg_is_contiguous(w)) w = clg_contiguous(g, clg_conv_operand(g, w));
    int64_t N = geo->n, H = geo->h, W = geo->w, G = geo->groups, O = out_channels;
    int64_t Og = O / G, K = geo->c / G * geo->kh * geo->kw, L = geo->oh * geo->ow;
    if (layout == CLG_CONV_LAYOUT_AUTO) layout = auto_layout(G, K);
    bool pointwise = geo->kh == 1 && geo->kw == 1 && geo->stride_h == 1 && geo->stride_w == 1 &&
                     geo->pad_top == 0 && geo->pad_left == 0 && geo->oh == H && geo->ow == W;
    clg_tensor *y;
    if (layout == CLG_CONV_LAYOUT_FOLDED) {
        clg_tensor *cols = clg_im2col(g, x, geo, layout, 0.0f);
        clg_tensor *w3 = clg_reshape(g, w, 3, (int64_t[]){G, Og, K});
        clg_tensor *c3 = clg_reshape(g, cols, 3, (int64_t[]){G, K, N * L});
        if (G == 1) {
            w3 = clg_reshape(g, w3, 2, (int64_t[]){O, K});
            c3 = clg_reshape(g, c3, 2, (int64_t[]){K, N * L});
        }
        y = image ? clg_matmul_node(g, w3, c3, &op_conv_product, image)
                  : clg_matmul(g, w3, c3, false, false); /* [G, O/G, N * L] */
        y = clg_reshape(g, y, 4, (int64_t[]){O, N, geo->oh, geo->ow});
        return clg_permute(g, y, (int[]){1, 0, 2, 3});
    }
    /* A 1x1 unpadded stride-1 image is its own column matrix. */
    clg_tensor *cols = pointwise ? clg_reshape(g, x, 4, (int64_t[]){N, G, K, L})
                                 : clg_im2col(g, x, geo, layout, 0.0f);
    if (G == 1) {
        clg_tensor *w2 = clg_reshape(g, w, 2, (int64_t[]){O, K});
        clg_tensor *c3 = clg_reshape(g, cols, 3, (int64_t[]){N, K, L});
        y = image && !pointwise ? clg_matmul_node(g, w2, c3, &op_conv_product, image)
                                : clg_matmul(g, w2, c3, false, false);
    } else {
        y = clg_matmul(g, clg_reshape(g, w, 3, (int64_t[]){G, Og, K}), cols, false, false);
    }
    return clg_reshape(g, y, 4, (int64_t[]){N, O, geo->oh, geo->ow});
}

clg_tensor *clg_conv2d(clg_graph *g, clg_tensor *x, clg_tensor *w, clg_tensor *bias,
                       const clg_conv2d_params *p) {
    return clg_conv2d_layout(g, x, w, bias, p, CLG_CONV_LAYOUT_AUTO);
}
