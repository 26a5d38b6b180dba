/* Recurrent layers over a whole sequence in cuDNN's form: the input's part of the gates comes
 * precomputed (xproj); one forward node runs, per step, one GEMM h W_hh^T and one cell kernel
 * (cl/recurrent.cl), and one backward node their mirror; the gradients of W_hh and b_hh are
 * one GEMM and one reduction over all steps, built from ordinary ops. */
#include <string.h>

#include "compile/lowering.h"
#include "core/context.h"
#include "core/program.h"
#include "ops/node.h"

static void bw_recurrent(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_result(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_forward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out);
static clg_status lower_backward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out);

/* attrs.recurrent. (xproj, w_hh, w_hh^T[, b_hh][, h0][, c0][, lengths]) -> the flat buffer
 * of fwd_layout. The steps' GEMMs read w_hh^T, made dense once per run: clgrad's CPU GEMM
 * would otherwise pack the transposed operand at every step; w_hh is there for the rule.
 * Users see views of the buffer (op_recurrent_result), whose rule only makes sure this node's
 * rule runs; that one reads the views' gradients itself, so that one backward node takes the
 * gradients of out, h_n and c_n together. */
static const clg_op_info op_recurrent_forward = {.name = "recurrent_forward",
                                                 .kind = CLG_KIND_KERNEL,
                                                 .backward = bw_recurrent,
                                                 .lower = lower_forward};
/* out, h_n, c_n: what clg_recurrent returns. */
static const clg_op_info op_recurrent_result = {
    .name = "recurrent", .kind = CLG_KIND_VIEW, .backward = bw_result};
/* The saved states and the backward's results: views without gradients of their own. */
static const clg_op_info op_recurrent_part = {.name = "recurrent_part", .kind = CLG_KIND_VIEW};
/* attrs.recurrent. (forward, w_hh[, dout][, dh_n][, dc_n][, lengths]) -> the flat buffer of
 * bwd_layout. */
static const clg_op_info op_recurrent_backward = {
    .name = "recurrent_backward", .kind = CLG_KIND_KERNEL, .lower = lower_backward};

_Static_assert(CLG_CELL_RNN_TANH == 0 && CLG_CELL_RNN_RELU == 1 && CLG_CELL_LSTM == 2 &&
                   CLG_CELL_GRU == 3 && CLG_CELL_KIND_COUNT == 4,
               "cl/recurrent.cl's CELL_* and graph/attrs.c's cell names follow clg_cell_kind");

int clg_cell_gates(clg_cell_kind cell) {
    switch (cell) {
    case CLG_CELL_RNN_TANH:
    case CLG_CELL_RNN_RELU:
        return 1;
    case CLG_CELL_LSTM:
        return 4;
    case CLG_CELL_GRU:
        return 3;
    default:
        return -1;
    }
}

/* ---- layouts (element offsets into the flat buffers) ---- */

/* N = B H (one step's states), NG = B G H (one step's gates). */
typedef struct rec_geo {
    int cell;
    int64_t T, B, H, G, N, NG;
} rec_geo;

static rec_geo geo_of(const clg_attr_recurrent *a) {
    rec_geo r = {.cell = a->cell, .T = a->T, .B = a->B, .H = a->H};
    r.G = clg_cell_gates((clg_cell_kind)a->cell);
    r.N = r.B * r.H;
    r.NG = r.N * r.G;
    return r;
}

/* The forward's buffer: out [T, B, H] (0 at padded steps); gates [T, B, G H] (activated);
 * hng [T, B, H] (GRU: h W_hn^T + b_hn); hprev [T, B, H] (the state each step read); cprev
 * [T, B, H] (LSTM: the cell state each step read); h_n [B, H]; c_n [B, H] (LSTM). */
typedef struct fwd_layout {
    int64_t out, gates, hng, hprev, cprev, hn, cn, total;
} fwd_layout;

static fwd_layout fwd_layout_of(const rec_geo *r) {
    bool lstm = r->cell == CLG_CELL_LSTM, gru = r->cell == CLG_CELL_GRU;
    fwd_layout l;
    l.out = 0;
    l.gates = r->T * r->N;
    l.hng = l.gates + r->T * r->NG;
    l.hprev = l.hng + (gru ? r->T * r->N : 0);
    l.cprev = l.hprev + r->T * r->N;
    l.hn = l.cprev + (lstm ? r->T * r->N : 0);
    l.cn = l.hn + r->N;
    l.total = l.cn + (lstm ? r->N : 0);
    return l;
}

/* The backward's buffer: dx [T, B, G H] (the gates' pre-activations); dhid [T, B, G H] (GRU:
 * the hidden product's, which differs in n; else it is dx); dh0 [B, H]; dc0 [B, H] (LSTM).
 * dh0 and dc0 carry the state's gradients from step to step and end as h0's and c0's. */
typedef struct bwd_layout {
    int64_t dx, dhid, dh0, dc0, total;
} bwd_layout;

static bwd_layout bwd_layout_of(const rec_geo *r) {
    bool gru = r->cell == CLG_CELL_GRU;
    bwd_layout l;
    l.dx = 0;
    l.dhid = gru ? r->T * r->NG : 0;
    l.dh0 = (gru ? 2 : 1) * r->T * r->NG;
    l.dc0 = l.dh0 + r->N;
    l.total = l.dc0 + (r->cell == CLG_CELL_LSTM ? r->N : 0);
    return l;
}

/* ---- building ---- */

static bool want_shape(clg_graph *g, const char *what, const clg_tensor *t, clg_dtype dtype,
                       int ndim, const int64_t *shape) {
    char got[200], want[200];
    if (t->dtype != dtype) {
        clg_graph_fail(g, CLG_ERR_DTYPE, "recurrent: %s must be %s, got %s", what,
                       clg_dtype_name(dtype), clg_dtype_name(t->dtype));
        return false;
    }
    if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) != 0) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "recurrent: %s must be %s, got %s", what,
                       clg_shape_str(ndim, shape, want, sizeof want),
                       clg_shape_str(t->ndim, t->shape, got, sizeof got));
        return false;
    }
    return true;
}

/* x as the kernels and GEMMs read it: dense from its offset. */
static clg_tensor *dense(clg_graph *g, clg_tensor *x) {
    return x && !clg_is_contiguous(x) ? clg_contiguous(g, x) : x;
}

static clg_tensor *part(clg_graph *g, const clg_op_info *info, clg_tensor *flat, int ndim,
                        const int64_t *shape, int64_t offset) {
    int64_t st[CLG_MAX_DIMS];
    clg_contiguous_strides(ndim, shape, st);
    clg_tensor *v = clg_view_new(g, info, flat, ndim, shape, offset, st);
    if (v != g->poison) v->attrs = flat->attrs;
    return v;
}

static bool check_args(clg_graph *g, clg_cell_kind cell, clg_tensor *xproj, clg_tensor *w_hh,
                       clg_tensor *b_hh, clg_tensor *h0, clg_tensor *c0, clg_tensor *lengths) {
    clg_tensor *xs[2] = {xproj, w_hh};
    if (!clg_check_inputs(g, "recurrent", 2, xs)) return false;
    clg_tensor *opt[4] = {b_hh, h0, c0, lengths};
    for (int i = 0; i < 4; ++i)
        if (opt[i] && !clg_check_inputs(g, "recurrent", 1, &opt[i])) return false;
    int G = clg_cell_gates(cell);
    if (G < 0) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "recurrent: cell kind %d is not a cell",
                       (int)cell);
        return false;
    }
    if (c0 && cell != CLG_CELL_LSTM) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                       "recurrent: c0 is given, but only an LSTM has a cell state");
        return false;
    }
    char sx[200], sw[200];
    if (xproj->ndim != 3 || w_hh->ndim != 2 || w_hh->shape[0] != G * w_hh->shape[1] ||
        xproj->shape[2] != w_hh->shape[0] || xproj->shape[0] < 1 || xproj->shape[1] < 1 ||
        w_hh->shape[1] < 1) {
        clg_graph_fail(g, CLG_ERR_SHAPE,
                       "recurrent: want xproj [T, B, %d H] and w_hh [%d H, H] (T, B, H >= 1), "
                       "got xproj %s, w_hh %s",
                       G, G, clg_shape_str(xproj->ndim, xproj->shape, sx, sizeof sx),
                       clg_shape_str(w_hh->ndim, w_hh->shape, sw, sizeof sw));
        return false;
    }
    int64_t T = xproj->shape[0], B = xproj->shape[1], H = w_hh->shape[1];
    int64_t bh[2] = {B, H}, gh = G * H;
    if (!want_shape(g, "xproj", xproj, CLG_F32, 3, xproj->shape) ||
        !want_shape(g, "w_hh", w_hh, CLG_F32, 2, w_hh->shape) ||
        (b_hh && !want_shape(g, "b_hh", b_hh, CLG_F32, 1, &gh)) ||
        (h0 && !want_shape(g, "h0", h0, CLG_F32, 2, bh)) ||
        (c0 && !want_shape(g, "c0", c0, CLG_F32, 2, bh)) ||
        (lengths && !want_shape(g, "lengths", lengths, CLG_I32, 1, &B)))
        return false;
    /* the kernels index with 32-bit ints */
    rec_geo r = geo_of(&(clg_attr_recurrent){.cell = cell, .T = T, .B = B, .H = H});
    if (fwd_layout_of(&r).total >= INT32_MAX || bwd_layout_of(&r).total >= INT32_MAX ||
        clg_tensor_numel(xproj->base) >= INT32_MAX) {
        clg_graph_fail(g, CLG_ERR_UNSUPPORTED,
                       "recurrent: T %lld, B %lld, H %lld need buffers of 2^31 elements or more",
                       (long long)T, (long long)B, (long long)H);
        return false;
    }
    return true;
}

clg_status clg_recurrent(clg_graph *g, clg_cell_kind cell, clg_tensor *xproj, clg_tensor *w_hh,
                         clg_tensor *b_hh, clg_tensor *h0, clg_tensor *c0, clg_tensor *lengths,
                         bool reverse, clg_tensor **out, clg_tensor **h_n, clg_tensor **c_n) {
    if (out) *out = g ? g->poison : NULL;
    if (h_n) *h_n = g ? g->poison : NULL;
    if (c_n) *c_n = g ? g->poison : NULL;
    if (!g) return CLG_ERR_INVALID_ARGUMENT;
    if (!out || !h_n) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "recurrent: out and h_n must not be NULL");
        return g->error;
    }
    if (!check_args(g, cell, xproj, w_hh, b_hh, h0, c0, lengths)) return g->error;
    clg_attr_recurrent a = {.cell = cell,
                            .reverse = reverse,
                            .T = xproj->shape[0],
                            .B = xproj->shape[1],
                            .H = w_hh->shape[1],
                            .bias = b_hh != NULL,
                            .h0 = h0 != NULL,
                            .c0 = c0 != NULL,
                            .lengths = lengths != NULL};
    clg_tensor *ins[7];
    int n = 0;
    ins[n++] = dense(g, xproj);
    ins[n++] = dense(g, w_hh);
    ins[n++] = clg_contiguous(g, clg_transpose(g, w_hh, 0, 1));
    if (b_hh) ins[n++] = dense(g, b_hh);
    if (h0) ins[n++] = h0;
    if (c0) ins[n++] = c0;
    if (lengths) ins[n++] = dense(g, lengths);
    if (g->error) return g->error;
    rec_geo r = geo_of(&a);
    fwd_layout l = fwd_layout_of(&r);
    clg_tensor *f = clg_kernel_node(g, &op_recurrent_forward, CLG_F32, 1, &l.total, n, ins);
    if (f == g->poison) return g->error;
    f->attrs = (clg_attrs){.kind = CLG_ATTRS_RECURRENT, .recurrent = a};
    int64_t tbh[3] = {r.T, r.B, r.H};
    clg_tensor *o = part(g, &op_recurrent_result, f, 3, tbh, l.out);
    clg_tensor *hn = part(g, &op_recurrent_result, f, 2, tbh + 1, l.hn);
    clg_tensor *cn =
        cell == CLG_CELL_LSTM ? part(g, &op_recurrent_result, f, 2, tbh + 1, l.cn) : NULL;
    if (g->error) return g->error;
    *out = o;
    *h_n = hn;
    if (c_n) *c_n = cn;
    return CLG_OK;
}

/* ---- backward ---- */

/* A result's gradient is read by the forward node's rule: give that node a gradient (an
 * unused zero) so that the walk calls it. */
static void bw_result(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    (void)gout;
    clg_tensor *f = node->in[0];
    if (!f->grad) clg_grad_accumulate(g, f, clg_full(g, 0.0f, f->ndim, f->shape));
}

/* The gradient of f's result at offset (out, h_n or c_n), NULL when none flowed. The results
 * are the views made right after f. */
static clg_tensor *result_grad(clg_graph *g, const clg_tensor *f, int64_t offset) {
    for (size_t i = (size_t)f->id + 1; i < g->n_nodes && i <= (size_t)f->id + 3; ++i) {
        const clg_tensor *v = g->nodes[i];
        if (v->info == &op_recurrent_result && v->in[0] == f && v->offset == offset) return v->grad;
    }
    return NULL;
}

static void bw_recurrent(clg_graph *g, clg_tensor *f, clg_tensor *gout) {
    (void)gout;
    clg_attr_recurrent a = f->attrs.recurrent;
    rec_geo r = geo_of(&a);
    fwd_layout fl = fwd_layout_of(&r);
    bwd_layout bl = bwd_layout_of(&r);
    int k = 3;
    clg_tensor *xproj = f->in[0], *w_hh = f->in[1];
    clg_tensor *b_hh = a.bias ? f->in[k++] : NULL;
    clg_tensor *h0 = a.h0 ? f->in[k++] : NULL;
    clg_tensor *c0 = a.c0 ? f->in[k++] : NULL;
    clg_tensor *lengths = a.lengths ? f->in[k++] : NULL;
    bool gx = clg_needs_grad(xproj), gw = clg_needs_grad(w_hh);
    bool gb = b_hh && clg_needs_grad(b_hh), gh = h0 && clg_needs_grad(h0);
    bool gc = c0 && clg_needs_grad(c0);
    clg_tensor *dy = dense(g, result_grad(g, f, fl.out));
    clg_tensor *dhn = dense(g, result_grad(g, f, fl.hn));
    clg_tensor *dcn = r.cell == CLG_CELL_LSTM ? dense(g, result_grad(g, f, fl.cn)) : NULL;
    if ((!gx && !gw && !gb && !gh && !gc) || (!dy && !dhn && !dcn) || g->error) return;
    a.dout = dy != NULL;
    a.dh_n = dhn != NULL;
    a.dc_n = dcn != NULL;
    a.dh0 = gh;
    clg_tensor *ins[6];
    int n = 0;
    ins[n++] = f;
    ins[n++] = w_hh;
    if (dy) ins[n++] = dy;
    if (dhn) ins[n++] = dhn;
    if (dcn) ins[n++] = dcn;
    if (lengths) ins[n++] = lengths;
    clg_tensor *d = clg_kernel_node(g, &op_recurrent_backward, CLG_F32, 1, &bl.total, n, ins);
    if (d == g->poison) return;
    d->attrs = (clg_attrs){.kind = CLG_ATTRS_RECURRENT, .recurrent = a};
    int64_t tbg[3] = {r.T, r.B, r.G * r.H}, rows[2] = {r.T * r.B, r.G * r.H};
    int64_t bh[2] = {r.B, r.H}, rows_h[2] = {r.T * r.B, r.H};
    if (gx) clg_grad_accumulate(g, xproj, part(g, &op_recurrent_part, d, 3, tbg, bl.dx));
    if (gw || gb) {
        /* every step's rows at once: dW = sum_t dhid_t^T hprev_t, db = sum_t,b dhid_t */
        clg_tensor *dhid = part(g, &op_recurrent_part, d, 2, rows, bl.dhid);
        if (gw) {
            clg_tensor *hp = part(g, &op_recurrent_part, f, 2, rows_h, fl.hprev);
            clg_grad_accumulate(g, w_hh, clg_matmul(g, dhid, hp, true, false));
        }
        if (gb) {
            /* as a GEMM of ones: the column sum of a tall matrix is a slow reduction */
            int64_t ones[2] = {1, r.T * r.B}, gh = r.G * r.H;
            clg_tensor *db = clg_matmul(g, clg_full(g, 1.0f, 2, ones), dhid, false, false);
            clg_grad_accumulate(g, b_hh, clg_reshape(g, db, 1, &gh));
        }
    }
    if (gh) clg_grad_accumulate(g, h0, part(g, &op_recurrent_part, d, 2, bh, bl.dh0));
    if (gc) clg_grad_accumulate(g, c0, part(g, &op_recurrent_part, d, 2, bh, bl.dc0));
}

/* ---- lowering ---- */

/* Operands of our own making and the inputs made dense at build time: their offset. */
static clg_status dense_operand(const clg_tensor *node, const clg_operand *o, cl_int *off) {
    if (o->is_scalar || !clg_operand_dense(o))
        return clg_fail(CLG_ERR_INTERNAL, "%s: an operand is not dense", node->info->name);
    *off = (cl_int)o->offset;
    return CLG_OK;
}

/* [B, H] at offset off of the flat buffer o. */
static clg_operand state_view(const clg_operand *o, const rec_geo *r, int64_t off) {
    int64_t shape[2] = {r->B, r->H}, st[2] = {r->H, 1};
    return clg_operand_view(o, off, 2, shape, st);
}

/* The state's initial value (src, else zeros) into dst. */
static clg_status init_state(clg_lowering *lw, const clg_operand *dst, const clg_operand *src) {
    return src ? clg_lower_copy(lw, dst, src) : clg_lower_fill(lw, dst, 0.0f);
}

/* The step processed s-th: t, from the start or the end. */
static int64_t step_at(const rec_geo *r, bool reverse, int64_t s) {
    return reverse ? r->T - 1 - s : s;
}

static clg_status step_launch(clg_lowering *lw, const clg_args *a, const rec_geo *r,
                              const char *label) {
    size_t local[3];
    size_t global[2] = {(size_t)r->H, (size_t)r->B};
    return clg_lower_args(lw, a, 2, global, clg_plane_local(lw, (size_t)r->H, local), label);
}

static const char *const fwd_kernel[CLG_CELL_KIND_COUNT] = {
    [CLG_CELL_RNN_TANH] = "recurrent_fwd_rnn",
    [CLG_CELL_RNN_RELU] = "recurrent_fwd_rnn",
    [CLG_CELL_LSTM] = "recurrent_fwd_lstm",
    [CLG_CELL_GRU] = "recurrent_fwd_gru",
};

static clg_status lower_forward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out) {
    const clg_attr_recurrent *a = &node->attrs.recurrent;
    rec_geo r = geo_of(a);
    fwd_layout l = fwd_layout_of(&r);
    int k = 3;
    const clg_operand *bias = a->bias ? &in[k++] : NULL;
    const clg_operand *h0 = a->h0 ? &in[k++] : NULL;
    const clg_operand *c0 = a->c0 ? &in[k++] : NULL;
    const clg_operand *len = a->lengths ? &in[k++] : NULL;
    cl_int x_off = 0, w_off = 0, b_off = 0, l_off = 0;
    clg_status st = dense_operand(node, &in[0], &x_off);
    if (st == CLG_OK) st = dense_operand(node, &in[2], &w_off);
    if (st == CLG_OK && bias) st = dense_operand(node, bias, &b_off);
    if (st == CLG_OK && len) st = dense_operand(node, len, &l_off);
    if (st != CLG_OK) return st;
    int64_t base = out->offset, first = step_at(&r, a->reverse, 0);
    clg_operand hp0 = state_view(out, &r, base + l.hprev + first * r.N);
    st = init_state(lw, &hp0, h0);
    if (st == CLG_OK && r.cell == CLG_CELL_LSTM) {
        clg_operand cp0 = state_view(out, &r, base + l.cprev + first * r.N);
        st = init_state(lw, &cp0, c0);
    }
    clg_context *ctx = clg_lowering_context(lw);
    for (int64_t s = 0; s < r.T && st == CLG_OK; ++s) {
        int64_t t = step_at(&r, a->reverse, s), next = step_at(&r, a->reverse, s + 1);
        bool last = s + 1 == r.T, hidden = h0 || s > 0;
        if (hidden) {
            /* gates_t = h_{t-1} W_hh^T, raw; the cell kernel activates them in place */
            clg_gemm_call c = {.m = (size_t)r.B,
                               .n = (size_t)(r.G * r.H),
                               .k = (size_t)r.H,
                               .alpha = 1.0f,
                               .a = out->mem,
                               .a_off = (size_t)(base + l.hprev + t * r.N),
                               .lda = (size_t)r.H,
                               .b = in[2].mem,
                               .b_off = (size_t)w_off,
                               .ldb = (size_t)(r.G * r.H),
                               .c = out->mem,
                               .c_off = (size_t)(base + l.gates + t * r.NG),
                               .ldc = (size_t)(r.G * r.H),
                               .batch = 1};
            st = clg_lower_gemm(lw, &c, "recurrent_forward gemm");
            if (st != CLG_OK) break;
        }
        cl_kernel kern;
        st = clg_kernel_new(ctx, "recurrent", fwd_kernel[r.cell], &kern);
        if (st != CLG_OK) break;
        clg_args args = clg_args_begin(kern);
        clg_arg_mem(&args, out->mem);
        clg_arg_int(&args, base + l.out + t * r.N);
        clg_arg_int(&args, base + l.gates + t * r.NG);
        clg_arg_int(&args, base + l.hng + t * r.N);
        clg_arg_int(&args, base + l.hprev + t * r.N);
        clg_arg_int(&args, base + (last ? l.hn : l.hprev + next * r.N));
        clg_arg_int(&args, base + l.cprev + t * r.N);
        clg_arg_int(&args, base + (last ? l.cn : l.cprev + next * r.N));
        clg_arg_mem(&args, in[0].mem);
        clg_arg_int(&args, x_off + t * r.NG);
        clg_arg_mem(&args, bias ? bias->mem : out->mem);
        clg_arg_int(&args, b_off);
        clg_arg_int(&args, bias != NULL);
        clg_arg_mem(&args, len ? len->mem : out->mem);
        clg_arg_int(&args, l_off);
        clg_arg_int(&args, len != NULL);
        clg_arg_int(&args, t);
        clg_arg_int(&args, hidden);
        clg_arg_int(&args, r.H);
        clg_arg_int(&args, r.cell == CLG_CELL_RNN_RELU);
        st = step_launch(lw, &args, &r, "recurrent_forward cell");
    }
    return st;
}

static clg_status lower_backward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out) {
    const clg_attr_recurrent *a = &node->attrs.recurrent;
    rec_geo r = geo_of(a);
    fwd_layout fl = fwd_layout_of(&r);
    bwd_layout bl = bwd_layout_of(&r);
    int k = 2;
    const clg_operand *dy = a->dout ? &in[k++] : NULL;
    const clg_operand *dhn = a->dh_n ? &in[k++] : NULL;
    const clg_operand *dcn = a->dc_n ? &in[k++] : NULL;
    const clg_operand *len = a->lengths ? &in[k++] : NULL;
    cl_int f_off = 0, w_off = 0, y_off = 0, l_off = 0;
    clg_status st = dense_operand(node, &in[0], &f_off);
    if (st == CLG_OK) st = dense_operand(node, &in[1], &w_off);
    if (st == CLG_OK && dy) st = dense_operand(node, dy, &y_off);
    if (st == CLG_OK && len) st = dense_operand(node, len, &l_off);
    if (st != CLG_OK) return st;
    int64_t base = out->offset;
    clg_operand dh = state_view(out, &r, base + bl.dh0);
    st = init_state(lw, &dh, dhn);
    if (st == CLG_OK && r.cell == CLG_CELL_LSTM) {
        clg_operand dc = state_view(out, &r, base + bl.dc0);
        st = init_state(lw, &dc, dcn);
    }
    clg_context *ctx = clg_lowering_context(lw);
    for (int64_t s = r.T - 1; s >= 0 && st == CLG_OK; --s) {
        int64_t t = step_at(&r, a->reverse, s);
        cl_kernel kern;
        st = clg_kernel_new(ctx, "recurrent", "recurrent_bwd", &kern);
        if (st != CLG_OK) break;
        clg_args args = clg_args_begin(kern);
        clg_arg_mem(&args, out->mem);
        clg_arg_int(&args, base + bl.dx + t * r.NG);
        clg_arg_int(&args, base + bl.dhid + t * r.NG);
        clg_arg_int(&args, base + bl.dh0);
        clg_arg_int(&args, base + bl.dc0);
        clg_arg_mem(&args, in[0].mem);
        clg_arg_int(&args, f_off + fl.gates + t * r.NG);
        clg_arg_int(&args, f_off + fl.hng + t * r.N);
        clg_arg_int(&args, f_off + fl.hprev + t * r.N);
        clg_arg_int(&args, f_off + fl.cprev + t * r.N);
        clg_arg_mem(&args, dy ? dy->mem : out->mem);
        clg_arg_int(&args, y_off + t * r.N);
        clg_arg_int(&args, dy != NULL);
        clg_arg_mem(&args, len ? len->mem : out->mem);
        clg_arg_int(&args, l_off);
        clg_arg_int(&args, len != NULL);
        clg_arg_int(&args, t);
        clg_arg_int(&args, r.H);
        clg_arg_int(&args, r.cell);
        st = step_launch(lw, &args, &r, "recurrent_backward cell");
        if (st != CLG_OK) break;
        /* the first step's product read h0 (zeros without one: no product, no gradient) */
        if (s == 0 && !a->dh0) break;
        /* dh_{t-1} += dhid_t W_hh */
        clg_gemm_call c = {.m = (size_t)r.B,
                           .n = (size_t)r.H,
                           .k = (size_t)(r.G * r.H),
                           .alpha = 1.0f,
                           .beta = 1.0f,
                           .a = out->mem,
                           .a_off = (size_t)(base + bl.dhid + t * r.NG),
                           .lda = (size_t)(r.G * r.H),
                           .b = in[1].mem,
                           .b_off = (size_t)w_off,
                           .ldb = (size_t)r.H,
                           .c = out->mem,
                           .c_off = (size_t)(base + bl.dh0),
                           .ldc = (size_t)r.H,
                           .batch = 1};
        st = clg_lower_gemm(lw, &c, "recurrent_backward gemm");
    }
    return st;
}
