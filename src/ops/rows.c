/* Row kernels over the last axis (cl/rows.cl): softmax with a scale and a causal or additive
 * mask, log_softmax, logsumexp and layer norm. Each forward pass is one kernel, each backward
 * pass one (layer norm: one for dx, one for the weight and bias; a mask that needs a gradient
 * adds its sum over the broadcast dims and x's scale). Inputs are read through their
 * strides (no copies); outputs are dense. CLGRAD_ROWS=composite builds the composites of
 * reductions and elementwise ops instead (tests compare the two). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/lowering.h"
#include "core/context.h"
#include "core/program.h"
#include "ops/node.h"
#include "ops/rows.h"

static void bw_softmax(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_logsumexp(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_layer_norm(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_through_output(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_softmax(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out);
static clg_status lower_softmax_backward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                         const clg_operand *out);
static clg_status lower_layer_norm(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                   const clg_operand *out);
static clg_status lower_layer_norm_backward(clg_lowering *lw, clg_tensor *node,
                                            const clg_operand *in, const clg_operand *out);
static clg_status lower_layer_norm_params(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                          const clg_operand *out);

/* (x [, mask]) -> y of x's shape; attrs.rows: scale, mask, rows, diagonal */
static const clg_op_info op_softmax = {
    .name = "softmax", .kind = CLG_KIND_KERNEL, .backward = bw_softmax, .lower = lower_softmax};
static const clg_op_info op_log_softmax = {
    .name = "log_softmax", .kind = CLG_KIND_KERNEL, .backward = bw_softmax, .lower = lower_softmax};
/* x -> [..., 1] */
static const clg_op_info op_logsumexp = {
    .name = "logsumexp", .kind = CLG_KIND_KERNEL, .backward = bw_logsumexp, .lower = lower_softmax};
/* (gout, y) -> dx; attrs as the forward's (scale 1 when the mask's gradient is wanted) */
static const clg_op_info op_softmax_backward = {
    .name = "softmax_backward", .kind = CLG_KIND_KERNEL, .lower = lower_softmax_backward};
static const clg_op_info op_log_softmax_backward = {
    .name = "log_softmax_backward", .kind = CLG_KIND_KERNEL, .lower = lower_softmax_backward};
/* (x [R..., N], weight [N]?, bias [N]?) -> one buffer: y [R, N], then R means, R rstds. Its
 * gradient arrives through the y view (op_layer_norm_y), whose rule builds the backward
 * kernels from the statistics; the buffer's own rule has nothing to do. */
static const clg_op_info op_layer_norm = {.name = "layer_norm",
                                          .kind = CLG_KIND_KERNEL,
                                          .backward = bw_through_output,
                                          .lower = lower_layer_norm};
static const clg_op_info op_layer_norm_y = {
    .name = "layer_norm_output", .kind = CLG_KIND_VIEW, .backward = bw_layer_norm};
static const clg_op_info op_layer_norm_stats = {.name = "layer_norm_stats", .kind = CLG_KIND_VIEW};
/* (gout, x, stats, weight?) -> dx */
static const clg_op_info op_layer_norm_backward = {
    .name = "layer_norm_backward", .kind = CLG_KIND_KERNEL, .lower = lower_layer_norm_backward};
/* (gout, x, stats) -> [dweight; dbias] rows of N (attrs.rows.weight / bias: which) */
static const clg_op_info op_layer_norm_params = {.name = "layer_norm_backward_params",
                                                 .kind = CLG_KIND_KERNEL,
                                                 .lower = lower_layer_norm_params};
static const clg_op_info op_layer_norm_param_grad = {.name = "layer_norm_param_grad",
                                                     .kind = CLG_KIND_VIEW};

/* ---- the switch ---- */

static clg_rows_mode forced = CLG_ROWS_AUTO;
static int env_mode = -1; /* CLGRAD_ROWS, read once; CLG_ROWS_MODE_COUNT: unknown value */

static clg_rows_mode env_rows_mode(void) {
    if (env_mode < 0) {
        const char *v = getenv("CLGRAD_ROWS");
        if (!v || !*v)
            env_mode = CLG_ROWS_AUTO;
        else if (strcmp(v, "composite") == 0)
            env_mode = CLG_ROWS_COMPOSITE;
        else if (strcmp(v, "group") == 0)
            env_mode = CLG_ROWS_GROUP;
        else if (strcmp(v, "item") == 0)
            env_mode = CLG_ROWS_ITEM;
        else
            env_mode = CLG_ROWS_MODE_COUNT;
    }
    return (clg_rows_mode)env_mode;
}

static clg_rows_mode rows_mode(void) {
    return forced != CLG_ROWS_AUTO ? forced : env_rows_mode();
}

void clg_rows_force(clg_rows_mode mode) {
    forced = mode;
}

bool clg_rows_fused(clg_graph *g) {
    clg_rows_mode m = rows_mode();
    if (m == CLG_ROWS_MODE_COUNT) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                       "CLGRAD_ROWS='%s': expected 'composite', 'group' or 'item' (or unset)",
                       getenv("CLGRAD_ROWS"));
        return false;
    }
    return m != CLG_ROWS_COMPOSITE;
}

/* The work-group form where lanes share a row: GPUs, or forced. On a CPU device a work-item
 * per row runs its loops without barriers, unless a row of C columns would take it past the
 * device's loop limit (a work-item walks its row about four times). */
static bool group_form(const clg_context *ctx, int64_t C) {
    clg_rows_mode m = rows_mode();
    if (m == CLG_ROWS_GROUP) return true;
    if (m == CLG_ROWS_ITEM) return false;
    uint32_t limit = ctx->info.loop_limit;
    return !clg_long_work_items(ctx) || (limit && 4 * C > (int64_t)limit);
}

/* ---- checks shared by the builders ---- */

static bool fits_int(clg_graph *g, const char *op, const clg_tensor *t, int64_t extra) {
    if (clg_tensor_numel(t) + extra <= INT32_MAX) return true;
    char b[200];
    clg_graph_fail(g, CLG_ERR_SHAPE, "%s: %s is too large", op,
                   clg_shape_str(t->ndim, t->shape, b, sizeof b));
    return false;
}

static clg_tensor *as_f32(clg_graph *g, clg_tensor *x) {
    return x->dtype == CLG_F32 ? x : clg_cast(g, x, CLG_F32);
}

/* ---- softmax, log_softmax, logsumexp ---- */

static clg_tensor *softmax_node(clg_graph *g, const clg_op_info *info, clg_tensor *x,
                                clg_tensor *mask, const clg_attr_rows *a) {
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    if (info == &op_logsumexp) shape[x->ndim - 1] = 1;
    clg_tensor *ins[2] = {x, mask};
    clg_tensor *t = clg_kernel_node(g, info, CLG_F32, x->ndim, shape, mask ? 2 : 1, ins);
    if (t != g->poison) t->attrs = (clg_attrs){.kind = CLG_ATTRS_ROWS, .rows = *a};
    return t;
}

clg_tensor *clg_rows_softmax(clg_graph *g, clg_tensor *x, clg_rows_what what) {
    static const char *const names[] = {"softmax", "log_softmax", "logsumexp"};
    static const clg_op_info *const infos[] = {&op_softmax, &op_log_softmax, &op_logsumexp};
    if (x->ndim < 1)
        return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: x must have at least one axis", names[what]);
    if (!fits_int(g, names[what], x, 0)) return g->poison;
    clg_attr_rows a = {.scale = 1.0f, .mask = CLG_ROW_MASK_NONE};
    return softmax_node(g, infos[what], as_f32(g, x), NULL, &a);
}

/* The composite of softmax(scale x + mask): the row's max is detached; a row whose max is
 * -INFINITY is shifted by 0 instead and divided by 1 instead of its sum 0, so it gives zeros. */
static clg_tensor *softmax_masked_composite(clg_graph *g, clg_tensor *x, float scale,
                                            clg_tensor *mask, bool causal) {
    clg_tensor *z = scale == 1.0f ? x : clg_mul_scalar(g, x, scale);
    if (mask) z = clg_add(g, z, mask);
    if (causal) {
        int64_t T = x->shape[x->ndim - 2], S = x->shape[x->ndim - 1];
        float *m = malloc((size_t)(T * S) * sizeof *m);
        if (!m) return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "softmax_masked: out of memory");
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < S; ++j)
                m[i * S + j] = j <= i + (S - T) ? 0.0f : -INFINITY;
        z = clg_add(g, z, clg_constant(g, CLG_F32, 2, (int64_t[]){T, S}, m));
        free(m);
    }
    int axis = x->ndim - 1;
    clg_tensor *neg_inf = clg_scalar(g, -INFINITY), *zero = clg_scalar(g, 0.0f);
    clg_tensor *mx = clg_detach(g, clg_max(g, z, 1, &axis, true));
    mx = clg_where(g, clg_gt(g, mx, neg_inf), mx, zero);
    clg_tensor *e = clg_exp(g, clg_sub(g, z, mx));
    clg_tensor *s = clg_sum(g, e, 1, &axis, true);
    return clg_div(g, e, clg_where(g, clg_gt(g, s, zero), s, clg_scalar(g, 1.0f)));
}

clg_tensor *clg_softmax_masked(clg_graph *g, clg_tensor *x, float scale, clg_tensor *mask,
                               bool causal) {
    CLG_GUARD(g, "softmax_masked", 1, x);
    if (mask && !clg_check_inputs(g, "softmax_masked", 1, &mask)) return g->poison;
    char sx[200], sm[200];
    clg_shape_str(x->ndim, x->shape, sx, sizeof sx);
    if (x->ndim < (causal ? 2 : 1))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "softmax_masked: x %s must have %s", sx,
                              causal ? "two axes [..., T, S] for a causal mask" : "an axis");
    if (!isfinite(scale))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "softmax_masked: scale %g must be finite (x %s)", (double)scale, sx);
    if (mask) {
        clg_shape_str(mask->ndim, mask->shape, sm, sizeof sm);
        if (mask->dtype != CLG_F32)
            return clg_graph_fail(g, CLG_ERR_DTYPE,
                                  "softmax_masked: the mask must be f32 (additive), got %s %s",
                                  clg_dtype_name(mask->dtype), sm);
        int nd;
        int64_t bs[CLG_MAX_DIMS];
        if (mask->ndim > x->ndim ||
            !clg_broadcast_shape(x->ndim, x->shape, mask->ndim, mask->shape, &nd, bs) ||
            memcmp(bs, x->shape, (size_t)x->ndim * sizeof *bs) != 0)
            return clg_graph_fail(g, CLG_ERR_SHAPE,
                                  "softmax_masked: mask %s does not broadcast to x %s", sm, sx);
    }
    if (!fits_int(g, "softmax_masked", x, 0)) return g->poison;
    x = as_f32(g, x);
    if (!clg_rows_fused(g)) {
        if (g->error) return g->poison;
        return softmax_masked_composite(g, x, scale, mask, causal);
    }
    clg_attr_rows a = {.scale = scale,
                       .mask =
                           (causal ? CLG_ROW_MASK_CAUSAL : 0) | (mask ? CLG_ROW_MASK_ADDITIVE : 0)};
    if (causal) {
        a.rows = x->shape[x->ndim - 2];
        a.diagonal = x->shape[x->ndim - 1] - a.rows;
    }
    return softmax_node(g, &op_softmax, x, mask, &a);
}

static void bw_softmax(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0], *mask = node->n_in > 1 ? node->in[1] : NULL;
    bool gx = clg_needs_grad(x), gm = mask && clg_needs_grad(mask);
    if (!gx && !gm) return;
    const clg_op_info *info =
        node->info == &op_softmax ? &op_softmax_backward : &op_log_softmax_backward;
    clg_tensor *ins[2] = {gout, node};
    clg_tensor *d = clg_kernel_node(g, info, CLG_F32, node->ndim, node->shape, 2, ins);
    if (d == g->poison) return;
    d->attrs = node->attrs;
    if (!gm) {
        clg_grad_accumulate(g, x, d);
        return;
    }
    /* d is the gradient of z = scale x + mask: the mask's, summed over where it broadcasts */
    d->attrs.rows.scale = 1.0f;
    clg_grad_accumulate(g, mask, clg_sum_to_shape(g, d, mask->ndim, mask->shape));
    if (gx) clg_grad_accumulate(g, x, clg_mul_scalar(g, d, node->attrs.rows.scale));
}

/* d logsumexp / dx = exp(x - logsumexp): one fused elementwise kernel */
static void bw_logsumexp(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    if (!clg_needs_grad(x)) return;
    clg_grad_accumulate(g, x, clg_mul(g, gout, clg_exp(g, clg_sub(g, x, node))));
}

/* ---- layer norm ---- */

static bool check_affine(clg_graph *g, const char *what, clg_tensor *t, int nn,
                         const int64_t *nshape, const char *sx) {
    if (!t) return true;
    if (!clg_check_inputs(g, "layer_norm", 1, &t)) return false;
    char st[200], sn[200];
    clg_shape_str(t->ndim, t->shape, st, sizeof st);
    if (t->dtype != CLG_F32) {
        clg_graph_fail(g, CLG_ERR_DTYPE, "layer_norm: %s must be f32, got %s %s", what,
                       clg_dtype_name(t->dtype), st);
        return false;
    }
    if (t->ndim != nn || memcmp(t->shape, nshape, (size_t)nn * sizeof *nshape) != 0) {
        clg_graph_fail(g, CLG_ERR_SHAPE,
                       "layer_norm: %s must be %s (the last %d dims of x %s), "
                       "got %s",
                       what, clg_shape_str(nn, nshape, sn, sizeof sn), nn, sx, st);
        return false;
    }
    return true;
}

/* y = (x - mean) rsqrt(var + eps) w + b over the last nn axes, from reductions */
static clg_tensor *layer_norm_composite(clg_graph *g, clg_tensor *x, int nn, clg_tensor *weight,
                                        clg_tensor *bias, float eps) {
    int axes[CLG_MAX_DIMS];
    for (int i = 0; i < nn; ++i)
        axes[i] = x->ndim - nn + i;
    clg_tensor *d = clg_sub(g, x, clg_mean(g, x, nn, axes, true));
    clg_tensor *var = clg_mean(g, clg_square(g, d), nn, axes, true);
    clg_tensor *y = clg_mul(g, d, clg_rsqrt(g, clg_add_scalar(g, var, eps)));
    if (weight) y = clg_mul(g, y, weight);
    if (bias) y = clg_add(g, y, bias);
    return y;
}

/* t as a dense [N] vector */
static clg_tensor *dense_vector(clg_graph *g, clg_tensor *t, int64_t N) {
    t = clg_reshape(g, t, 1, &N);
    return clg_is_contiguous(t) ? t : clg_contiguous(g, t);
}

clg_tensor *clg_layer_norm(clg_graph *g, clg_tensor *x, int normalized_ndim, clg_tensor *weight,
                           clg_tensor *bias, float eps) {
    CLG_GUARD(g, "layer_norm", 1, x);
    char sx[200];
    clg_shape_str(x->ndim, x->shape, sx, sizeof sx);
    int nn = normalized_ndim;
    if (nn < 1 || nn > x->ndim)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "layer_norm: normalized_ndim %d must be in [1, %d] for x %s", nn,
                              x->ndim, sx);
    const int64_t *nshape = x->shape + x->ndim - nn;
    if (!check_affine(g, "weight", weight, nn, nshape, sx) ||
        !check_affine(g, "bias", bias, nn, nshape, sx))
        return g->poison;
    if (!(eps >= 0.0f) || !isfinite(eps))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "layer_norm: eps %g must be finite and >= 0 (x %s)", (double)eps, sx);
    int64_t N = clg_shape_numel(nn, nshape), R = clg_tensor_numel(x) / N;
    if (!fits_int(g, "layer_norm", x, 2 * R)) return g->poison;
    x = as_f32(g, x);
    if (!clg_rows_fused(g)) {
        if (g->error) return g->poison;
        return layer_norm_composite(g, x, nn, weight, bias, eps);
    }
    /* x as [lead..., N] */
    int lead = x->ndim - nn;
    int64_t s2[CLG_MAX_DIMS], st2[CLG_MAX_DIMS];
    memcpy(s2, x->shape, (size_t)lead * sizeof *s2);
    s2[lead] = N;
    clg_tensor *x2 = clg_reshape(g, x, lead + 1, s2);
    clg_tensor *ins[3] = {x2};
    int n = 1;
    if (weight) ins[n++] = dense_vector(g, weight, N);
    if (bias) ins[n++] = dense_vector(g, bias, N);
    int64_t total = R * N + 2 * R;
    clg_tensor *packed = clg_kernel_node(g, &op_layer_norm, CLG_F32, 1, &total, n, ins);
    if (packed == g->poison) return packed;
    packed->attrs = (clg_attrs){
        .kind = CLG_ATTRS_ROWS,
        .rows = {.scale = 1.0f, .eps = eps, .weight = weight != NULL, .bias = bias != NULL}};
    clg_contiguous_strides(lead + 1, s2, st2);
    clg_tensor *y = clg_view_new(g, &op_layer_norm_y, packed, lead + 1, s2, 0, st2);
    return clg_reshape(g, y, x->ndim, x->shape);
}

static void bw_through_output(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    (void)g, (void)node, (void)gout;
}

/* From y's gradient: dx from one kernel, dweight and dbias as the two rows of another. */
static void bw_layer_norm(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *packed = node->in[0], *x = packed->in[0];
    const clg_attr_rows *a = &packed->attrs.rows;
    clg_tensor *w = a->weight ? packed->in[1] : NULL;
    clg_tensor *b = a->bias ? packed->in[a->weight ? 2 : 1] : NULL;
    int64_t N = x->shape[x->ndim - 1], R = clg_tensor_numel(x) / N, two_r = 2 * R;
    clg_tensor *stats =
        clg_view_new(g, &op_layer_norm_stats, packed, 1, &two_r, R * N, (int64_t[]){1});
    if (clg_needs_grad(x)) {
        clg_tensor *ins[4] = {gout, x, stats, w};
        clg_tensor *dx =
            clg_kernel_node(g, &op_layer_norm_backward, CLG_F32, x->ndim, x->shape, w ? 4 : 3, ins);
        if (dx == g->poison) return;
        dx->attrs = packed->attrs;
        clg_grad_accumulate(g, x, dx);
    }
    bool gw = w && clg_needs_grad(w), gb = b && clg_needs_grad(b);
    if (!gw && !gb) return;
    int64_t shape[2] = {gw + gb, N};
    clg_tensor *ins[3] = {gout, x, stats};
    clg_tensor *dp = clg_kernel_node(g, &op_layer_norm_params, CLG_F32, 2, shape, 3, ins);
    if (dp == g->poison) return;
    dp->attrs = packed->attrs;
    dp->attrs.rows.weight = gw;
    dp->attrs.rows.bias = gb;
    if (gw)
        clg_grad_accumulate(
            g, w, clg_view_new(g, &op_layer_norm_param_grad, dp, 1, &N, 0, (int64_t[]){1}));
    if (gb)
        clg_grad_accumulate(
            g, b,
            clg_view_new(g, &op_layer_norm_param_grad, dp, 1, &N, gw ? N : 0, (int64_t[]){1}));
}

/* ---- lowering ---- */

#define MAX_ROW_OPERANDS 3
#define ITEM_WG 8 /* rows per work-group in the work-item form */
#define GROUP_MAX 256

/* Rows of a space of rank nd (its leading nd - 1 dims) as the kernels address them: merged
 * leading dims, each operand's strides over them and its column stride (cl/rows.cl). */
typedef struct row_layout {
    int64_t R, C;
    cl_int8 lead;
    cl_int8 st[MAX_ROW_OPERANDS];
} row_layout;

static row_layout layout_of(int nd, const int64_t *shape, int n, const clg_operand *const *ops) {
    row_layout l = {.R = 1, .C = shape[nd - 1]};
    int64_t st[MAX_ROW_OPERANDS][CLG_MAX_DIMS], dims[7], mst[MAX_ROW_OPERANDS][7];
    for (int k = 0; k < n; ++k)
        for (int d = 0; d < nd; ++d) {
            int j = d - (nd - ops[k]->ndim);
            st[k][d] = (j < 0 || ops[k]->shape[j] == 1) ? 0 : ops[k]->strides[j];
        }
    int m = 0;
    for (int d = 0; d < nd - 1; ++d) {
        l.R *= shape[d];
        if (shape[d] == 1) continue;
        bool merge = m > 0;
        for (int k = 0; k < n && merge; ++k)
            merge = mst[k][m - 1] == st[k][d] * shape[d];
        if (merge) {
            dims[m - 1] *= shape[d];
            for (int k = 0; k < n; ++k)
                mst[k][m - 1] = st[k][d];
        } else {
            dims[m] = shape[d];
            for (int k = 0; k < n; ++k)
                mst[k][m] = st[k][d];
            ++m;
        }
    }
    for (int i = 0; i < 7; ++i) {
        int j = i - (7 - m);
        l.lead.s[i] = j < 0 ? 1 : (cl_int)dims[j];
        for (int k = 0; k < n; ++k)
            l.st[k].s[i] = j < 0 ? 0 : (cl_int)mst[k][j];
    }
    l.lead.s[7] = m;
    for (int k = 0; k < n; ++k)
        l.st[k].s[7] = (cl_int)st[k][nd - 1];
    return l;
}

/* Lanes of the work-group form: a power of two covering C, up to what the device allows. */
static size_t group_lanes(const clg_context *ctx, int64_t C) {
    size_t cap =
        ctx->info.max_work_group_size < GROUP_MAX ? ctx->info.max_work_group_size : GROUP_MAX;
    size_t l = 1;
    while (l * 2 <= cap && (int64_t)l < C)
        l *= 2;
    return l;
}

/* One work-group per row (with its local scratch argument last), or one work-item per row. */
static clg_status launch_rows(clg_lowering *lw, clg_args *a, bool group, const row_layout *l,
                              const char *label) {
    if (group) {
        size_t lanes = group_lanes(clg_lowering_context(lw), l->C);
        clg_arg_local(a, lanes * sizeof(float));
        size_t global = (size_t)l->R * lanes;
        return clg_lower_args(lw, a, 1, &global, &lanes, label);
    }
    size_t local = ITEM_WG, global = ((size_t)l->R + ITEM_WG - 1) / ITEM_WG * ITEM_WG;
    return clg_lower_args(lw, a, 1, &global, &local, label);
}

static clg_status new_kernel(clg_lowering *lw, const char *name, bool group, cl_kernel *k) {
    char full[80];
    snprintf(full, sizeof full, "%s%s", name, group ? "_group" : "");
    return clg_kernel_new(clg_lowering_context(lw), "rows", full, k);
}

static void arg_strided(clg_args *a, const clg_operand *o, const cl_int8 *st) {
    clg_arg_mem(a, o->mem);
    clg_arg_int(a, o->offset);
    clg_arg_raw(a, sizeof *st, st);
}

static clg_status lower_softmax(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out) {
    const clg_attr_rows *r = &node->attrs.rows;
    bool additive = r->mask & CLG_ROW_MASK_ADDITIVE;
    if (additive != (node->n_in > 1))
        return clg_fail(CLG_ERR_INTERNAL, "%s: the mask operand does not match its attributes",
                        node->info->name);
    const clg_operand *x = &in[0], *mask = additive ? &in[1] : &in[0];
    const clg_operand *ops[2] = {x, mask};
    row_layout l = layout_of(x->ndim, x->shape, 2, ops);
    if (!additive) memset(&l.st[1], 0, sizeof l.st[1]);
    int what = node->info == &op_softmax       ? CLG_ROWS_SOFTMAX
               : node->info == &op_log_softmax ? CLG_ROWS_LOG_SOFTMAX
                                               : CLG_ROWS_LOGSUMEXP;
    cl_int4 mk = {{r->mask, (cl_int)(r->rows > 0 ? r->rows : 1), (cl_int)r->diagonal, 0}};
    bool group = group_form(clg_lowering_context(lw), l.C);
    cl_kernel k;
    clg_status st = new_kernel(lw, "softmax_rows", group, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    arg_strided(&a, x, &l.st[0]);
    arg_strided(&a, mask, &l.st[1]);
    clg_arg_raw(&a, sizeof l.lead, &l.lead);
    clg_arg_int(&a, l.R);
    clg_arg_int(&a, l.C);
    clg_arg_float(&a, r->scale);
    clg_arg_raw(&a, sizeof mk, &mk);
    clg_arg_int(&a, what);
    return launch_rows(lw, &a, group, &l, node->info->name);
}

static clg_status lower_softmax_backward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                         const clg_operand *out) {
    const clg_operand *go = &in[0], *y = &in[1];
    if (!clg_operand_dense(y))
        return clg_fail(CLG_ERR_INTERNAL, "%s: the output it reads is not dense", node->info->name);
    const clg_operand *ops[1] = {go};
    row_layout l = layout_of(out->ndim, out->shape, 1, ops);
    bool group = group_form(clg_lowering_context(lw), l.C);
    cl_kernel k;
    clg_status st = new_kernel(lw, "softmax_rows_backward", group, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    arg_strided(&a, go, &l.st[0]);
    clg_arg_mem(&a, y->mem);
    clg_arg_int(&a, y->offset);
    clg_arg_raw(&a, sizeof l.lead, &l.lead);
    clg_arg_int(&a, l.R);
    clg_arg_int(&a, l.C);
    clg_arg_float(&a, node->attrs.rows.scale);
    clg_arg_int(&a, node->info == &op_log_softmax_backward);
    return launch_rows(lw, &a, group, &l, node->info->name);
}

static clg_status lower_layer_norm(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                   const clg_operand *out) {
    const clg_attr_rows *r = &node->attrs.rows;
    const clg_operand *x = &in[0];
    const clg_operand *w = r->weight ? &in[1] : x, *b = r->bias ? &in[r->weight ? 2 : 1] : x;
    if ((r->weight && !clg_operand_dense(w)) || (r->bias && !clg_operand_dense(b)))
        return clg_fail(CLG_ERR_INTERNAL, "layer_norm: weight or bias is not dense");
    const clg_operand *ops[1] = {x};
    row_layout l = layout_of(x->ndim, x->shape, 1, ops);
    bool group = group_form(clg_lowering_context(lw), l.C);
    cl_kernel k;
    clg_status st = new_kernel(lw, "layer_norm_rows", group, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    arg_strided(&a, x, &l.st[0]);
    clg_arg_mem(&a, w->mem);
    clg_arg_int(&a, w->offset);
    clg_arg_mem(&a, b->mem);
    clg_arg_int(&a, b->offset);
    clg_arg_raw(&a, sizeof l.lead, &l.lead);
    clg_arg_int(&a, l.R);
    clg_arg_int(&a, l.C);
    clg_arg_float(&a, r->eps);
    clg_arg_int(&a, (r->weight ? 1 : 0) | (r->bias ? 2 : 0));
    return launch_rows(lw, &a, group, &l, "layer_norm");
}

static clg_status lower_layer_norm_backward(clg_lowering *lw, clg_tensor *node,
                                            const clg_operand *in, const clg_operand *out) {
    const clg_operand *go = &in[0], *x = &in[1], *stats = &in[2];
    bool has_w = node->n_in > 3;
    const clg_operand *w = has_w ? &in[3] : stats;
    if (!clg_operand_dense(stats) || (has_w && !clg_operand_dense(w)))
        return clg_fail(CLG_ERR_INTERNAL, "layer_norm_backward: statistics or weight not dense");
    const clg_operand *ops[2] = {go, x};
    row_layout l = layout_of(out->ndim, out->shape, 2, ops);
    bool group = group_form(clg_lowering_context(lw), l.C);
    cl_kernel k;
    clg_status st = new_kernel(lw, "layer_norm_backward_rows", group, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    arg_strided(&a, go, &l.st[0]);
    arg_strided(&a, x, &l.st[1]);
    clg_arg_mem(&a, stats->mem);
    clg_arg_int(&a, stats->offset);
    clg_arg_mem(&a, w->mem);
    clg_arg_int(&a, w->offset);
    clg_arg_raw(&a, sizeof l.lead, &l.lead);
    clg_arg_int(&a, l.R);
    clg_arg_int(&a, l.C);
    clg_arg_int(&a, has_w);
    return launch_rows(lw, &a, group, &l, "layer_norm_backward");
}

/* Columns per work-group and row parts of the parameter-gradient kernel: on a GPU 16 columns
 * x 16 parts (more work-groups than columns alone would give); on a CPU one part, and up to 64
 * neighbouring columns that pocl runs as vector lanes. Under a loop limit, enough parts that
 * each walks at most half of it in rows. */
static void params_geometry(const clg_context *ctx, bool group, int64_t R, int64_t C, size_t *lc,
                            size_t *parts) {
    size_t maxwg = ctx->info.max_work_group_size;
    size_t p = group ? (maxwg >= 256 ? 16 : 1) : 1;
    uint32_t limit = ctx->info.loop_limit;
    while (limit && (R + (int64_t)p - 1) / (int64_t)p > (int64_t)(limit / 2) && p * 2 <= maxwg)
        p *= 2;
    size_t cap = group ? (maxwg >= 256 ? 16 : maxwg) : (maxwg < 64 ? maxwg : 64);
    if (cap * p > maxwg) cap = maxwg / p;
    size_t l = 1;
    while (l * 2 <= cap && (int64_t)l < C)
        l *= 2;
    *lc = l;
    *parts = p;
}

static clg_status lower_layer_norm_params(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                          const clg_operand *out) {
    const clg_operand *go = &in[0], *x = &in[1], *stats = &in[2];
    if (!clg_operand_dense(stats) || !clg_operand_dense(out))
        return clg_fail(CLG_ERR_INTERNAL, "layer_norm_backward_params: operands not dense");
    const clg_operand *ops[2] = {go, x};
    row_layout l = layout_of(x->ndim, x->shape, 2, ops);
    const clg_attr_rows *r = &node->attrs.rows;
    clg_context *ctx = clg_lowering_context(lw);
    bool group = group_form(ctx, l.C);
    uint32_t limit = ctx->info.loop_limit;
    /* on a CPU device, a work-item per eight columns unless its walk over the rows would pass
     * the loop limit; else (and on GPUs) columns x parts of the rows in work-groups */
    bool item = !group && (!limit || l.R <= (int64_t)(limit / 2));
    size_t lc, parts;
    params_geometry(ctx, group, l.R, l.C, &lc, &parts);
    cl_kernel k;
    clg_status st = clg_kernel_new(
        ctx, "rows", item ? "layer_norm_backward_params_item" : "layer_norm_backward_params", &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    arg_strided(&a, go, &l.st[0]);
    arg_strided(&a, x, &l.st[1]);
    clg_arg_mem(&a, stats->mem);
    clg_arg_int(&a, stats->offset);
    clg_arg_raw(&a, sizeof l.lead, &l.lead);
    clg_arg_int(&a, l.R);
    clg_arg_int(&a, l.C);
    clg_arg_int(&a, (r->weight ? 1 : 0) | (r->bias ? 2 : 0));
    if (item) {
        size_t n = ((size_t)l.C + 7) / 8, one = 1;
        return clg_lower_args(lw, &a, 1, &n, &one, "layer_norm_backward_params");
    }
    clg_arg_local(&a, 2 * lc * parts * sizeof(float));
    size_t global[2] = {((size_t)l.C + lc - 1) / lc * lc, parts}, local[2] = {lc, parts};
    return clg_lower_args(lw, &a, 2, global, local, "layer_norm_backward_params");
}
