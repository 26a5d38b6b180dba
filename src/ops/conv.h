/* Convolution internals shared with pooling (avg_pool2d is a mean over im2col columns) and
 * with the per-layer benchmark (which compares the GEMM layouts). */
#ifndef CLG_OPS_CONV_H
#define CLG_OPS_CONV_H

#include "graph/graph_internal.h"
#include "ops/node.h"

/* The window geometry (clg_conv_geo) and the columns' layouts (clg_conv_layout) are op
 * attributes: graph/attrs.h. */

/* An operand a conv or pool kernel can read: f32, with a buffer (a view of a broadcast
 * scalar has none, so it is copied). */
static inline clg_tensor *clg_conv_operand(clg_graph *g, clg_tensor *x) {
    if (x->dtype != CLG_F32) x = clg_cast(g, x, CLG_F32);
    if (x->base->info->kind == CLG_KIND_SCALAR) x = clg_contiguous(g, x);
    return x;
}

/* Columns of x (f32 [N, C, H, W]) for geo, in layout BATCHED ([N, G, K, L]) or FOLDED
 * ([G, K, N, L]); taps outside the image read pad. Its gradient is col2im. */
clg_tensor *clg_im2col(clg_graph *g, clg_tensor *x, const clg_conv_geo *geo, clg_conv_layout layout,
                       float pad);

/* im2col's adjoint: columns of geo in layout back to an image [N, C, H, W], overlapping taps
 * summed. */
clg_tensor *clg_col2im(clg_graph *g, clg_tensor *cols, const clg_conv_geo *geo,
                       clg_conv_layout layout);

/* clg_conv2d with the lowering chosen by the caller: AUTO is im2col + GEMM with the layout K
 * calls for, whose product may become a convgemm when a plan is compiled (measured, see
 * below); BATCHED and FOLDED take the im2col + GEMM lowering with that column layout, no
 * choice; CONVGEMM as above. */
clg_tensor *clg_conv2d_layout(clg_graph *g, clg_tensor *x, clg_tensor *w, clg_tensor *bias,
                              const clg_conv2d_params *p, clg_conv_layout layout);

/* The two forward lowerings of a convolution without bias, w [O, C/G, KH, KW] -> y [N, O, OH,
 * OW]: im2col + GEMM (layout AUTO picks BATCHED or FOLDED by K; with choice, where convgemm
 * can do the shape, the product may be lowered as a convgemm instead when a plan is compiled),
 * and one CLBlast convgemm call (only where clg_convgemm_supports: one group, the same padding
 * on both sides). */
clg_tensor *clg_conv2d_im2col(clg_graph *g, clg_tensor *x, clg_tensor *w, const clg_conv_geo *geo,
                              int64_t out_channels, clg_conv_layout layout, bool choice);
bool clg_convgemm_supports(const clg_conv_geo *geo);
clg_tensor *clg_conv2d_convgemm(clg_graph *g, clg_tensor *x, clg_tensor *w, const clg_conv_geo *geo,
                                int64_t out_channels);

/* Whether convgemm runs this forward pass faster than im2col + GEMM on ctx's device: forced by
 * CLGRAD_CONV, else looked up in the device's choice cache, else measured now (both lowerings
 * timed on this shape, the winner recorded). Asked by the compiler (conv_product's choose).
 * False where convgemm cannot do the shape or the measurement fails (then im2col, which the
 * caller's plan will report on if it fails too). */
bool clg_conv_prefers_convgemm(clg_context *ctx, const clg_conv_geo *geo, int64_t out_channels);

#endif
