/* Scaled dot-product attention, softmax(scale q k^T + mask) v. Fused (cl/attention.cl): one
 * forward kernel with an online softmax writing O and the rows' logsumexp L, and a backward
 * of two kernels that recompute P from q, k and L; nothing of size T x S is stored. The
 * composite (two matmuls around a masked softmax) serves what the kernels do not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/lowering.h"
#include "core/context.h"
#include "core/kernel_source.h"
#include "core/program.h"
#include "ops/node.h"

/* The kernels' private arrays hold rows of D and Dv floats: beyond this the per-work-item
 * state no longer fits (registers on a GPU, reasonable stack on a CPU) and the composite
 * is used instead. */
#define ATT_DMAX 128
/* Batch dims the kernels index (after merging dims that step together). */
#define ATT_BATCH 3
/* Most rows of a local tile (cl/attention.cl's ATT_BKMAX). */
#define ATT_BKMAX 32

static void bw_attention(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_through_output(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_forward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out);
static clg_status lower_backward_q(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                   const clg_operand *out);
static clg_status lower_backward_kv(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                    const clg_operand *out);

/* All four: attrs.attention. (q, k, v[, mask]) -> [O | L] flat: O [..., T, Dv] then L
 * [..., T]. Its gradient flows through the O view's rule (bw_attention), which reads q, k, v
 * and L itself, so the flat node's own rule adds nothing; it exists so that clg_backward sees
 * a path from O to the inputs. */
static const clg_op_info op_attention_forward = {.name = "attention_forward",
                                                 .kind = CLG_KIND_KERNEL,
                                                 .backward = bw_through_output,
                                                 .lower = lower_forward};
/* O, the view users get. */
static const clg_op_info op_attention = {.name = "attention", .kind = CLG_KIND_VIEW,
                                         .backward = bw_attention};
/* L, Di and the gradients: views of the kernels' flat outputs (no second derivatives). */
static const clg_op_info op_attention_part = {.name = "attention_part", .kind = CLG_KIND_VIEW};
/* (q, k, v, O, L, dO[, mask]) -> [dQ | Di] flat: dQ [..., T, D], Di = rowsum(dO * O). */
static const clg_op_info op_attention_backward_q = {
    .name = "attention_backward_q", .kind = CLG_KIND_KERNEL, .lower = lower_backward_q};
/* (q, k, v, L, dO, Di[, mask]) -> [dK | dV] flat: dK [..., S, D], dV [..., S, Dv]. */
static const clg_op_info op_attention_backward_kv = {
    .name = "attention_backward_kv", .kind = CLG_KIND_KERNEL, .lower = lower_backward_kv};

/* ---- shapes ---- */

/* One operand as the kernels see it: right-aligned with [lead..., rows, cols]. */
typedef struct att_mat {
    int ndim;
    const int64_t *shape, *strides;
    int64_t offset;
} att_mat;

/* Where an operand's element (batch b, row i, column j) is: off + batch(b) + i row + j col,
 * batch(b) over the merged batch dims with strides st (0 where broadcast). */
typedef struct att_layout {
    int64_t off, st[ATT_BATCH], row, col;
} att_layout;

typedef struct att_geo {
    int64_t T, S, D, Dv;
    int nlead;
    int64_t lead[CLG_MAX_DIMS]; /* the output's leading dims */
    int64_t nb;                 /* their product */
    int64_t n[ATT_BATCH];       /* the merged batch dims, outermost first */
} att_geo;

static att_mat mat_of(const clg_tensor *t) {
    return (att_mat){t->ndim, t->shape, t->strides, t->offset};
}

static att_mat mat_of_operand(const clg_operand *o) {
    return (att_mat){o->ndim, o->shape, o->strides, o->offset};
}

/* Merge the leading dims of geo over the operands (every operand broadcast to the output's
 * leading dims) into at most ATT_BATCH dims and fill each operand's layout; false when more
 * remain (their strides do not step together). Output buffers are dense over the leading
 * dims, which merges with anything, so only inputs take part. */
static bool att_batch(att_geo *geo, int n, const att_mat *ops, att_layout *lay) {
    int64_t st[8][CLG_MAX_DIMS];
    int full = geo->nlead + 2;
    for (int o = 0; o < n; ++o) {
        const att_mat *m = &ops[o];
        int64_t s[CLG_MAX_DIMS + 2];
        for (int i = 0; i < full; ++i) {
            int j = i - (full - m->ndim);
            s[i] = (j < 0 || m->shape[j] == 1) ? 0 : m->strides[j];
        }
        memcpy(st[o], s, (size_t)geo->nlead * sizeof *s);
        lay[o].off = m->offset;
        lay[o].row = s[full - 2];
        lay[o].col = s[full - 1];
    }
    int64_t dims[CLG_MAX_DIMS], ms[8][CLG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < geo->nlead; ++i) {
        if (geo->lead[i] == 1) continue;
        bool merge = nd > 0;
        for (int o = 0; o < n && merge; ++o) merge = ms[o][nd - 1] == st[o][i] * geo->lead[i];
        if (merge) {
            dims[nd - 1] *= geo->lead[i];
            for (int o = 0; o < n; ++o) ms[o][nd - 1] = st[o][i];
            continue;
        }
        if (nd == ATT_BATCH) return false;
        dims[nd] = geo->lead[i];
        for (int o = 0; o < n; ++o) ms[o][nd] = st[o][i];
        nd++;
    }
    int pad = ATT_BATCH - nd;
    for (int i = 0; i < ATT_BATCH; ++i) {
        geo->n[i] = i < pad ? 1 : dims[i - pad];
        for (int o = 0; o < n; ++o) lay[o].st[i] = i < pad ? 0 : ms[o][i - pad];
    }
    return true;
}

/* Shapes of q [..., T, D], k [..., S, D], v [..., S, Dv] (leading dims broadcast) and a mask
 * broadcastable to [..., T, S]; the first misfit fails naming every shape. */
static bool att_resolve(clg_graph *g, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                        clg_tensor *mask, att_geo *geo) {
    char a[200], b[200], c[200], d[200] = "none";
    clg_shape_str(q->ndim, q->shape, a, sizeof a);
    clg_shape_str(k->ndim, k->shape, b, sizeof b);
    clg_shape_str(v->ndim, v->shape, c, sizeof c);
    if (mask) clg_shape_str(mask->ndim, mask->shape, d, sizeof d);
    clg_tensor *const all[4] = {q, k, v, mask};
    for (int i = 0; i < 4; ++i)
        if (all[i] && all[i]->dtype != CLG_F32) {
            clg_graph_fail(g, CLG_ERR_DTYPE, "attention: %s must be f32, got %s",
                           (const char *[]){"q", "k", "v", "mask"}[i],
                           clg_dtype_name(all[i]->dtype));
            return false;
        }
    if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2 ||
        q->shape[q->ndim - 1] != k->shape[k->ndim - 1] ||
        k->shape[k->ndim - 2] != v->shape[v->ndim - 2]) {
        clg_graph_fail(g, CLG_ERR_SHAPE,
                       "attention: want q [..., T, D], k [..., S, D], v [..., S, Dv]; got q %s, "
                       "k %s, v %s",
                       a, b, c);
        return false;
    }
    geo->T = q->shape[q->ndim - 2];
    geo->D = q->shape[q->ndim - 1];
    geo->S = k->shape[k->ndim - 2];
    geo->Dv = v->shape[v->ndim - 1];
    int nl;
    int64_t lead[CLG_MAX_DIMS];
    if (!clg_broadcast_shape(q->ndim - 2, q->shape, k->ndim - 2, k->shape, &nl, lead) ||
        !clg_broadcast_shape(nl, lead, v->ndim - 2, v->shape, &geo->nlead, geo->lead)) {
        clg_graph_fail(g, CLG_ERR_SHAPE,
                       "attention: the leading dims of q %s, k %s and v %s do not broadcast", a,
                       b, c);
        return false;
    }
    geo->nb = clg_shape_numel(geo->nlead, geo->lead);
    if (mask) {
        int64_t want[CLG_MAX_DIMS], got[CLG_MAX_DIMS];
        memcpy(want, geo->lead, (size_t)geo->nlead * sizeof *want);
        want[geo->nlead] = geo->T;
        want[geo->nlead + 1] = geo->S;
        int ng;
        if (!clg_broadcast_shape(geo->nlead + 2, want, mask->ndim, mask->shape, &ng, got) ||
            ng != geo->nlead + 2 || memcmp(got, want, (size_t)ng * sizeof *got) != 0) {
            char w[200];
            clg_graph_fail(g, CLG_ERR_SHAPE,
                           "attention: mask %s does not broadcast to the scores %s (q %s, k %s, "
                           "v %s)",
                           d, clg_shape_str(geo->nlead + 2, want, w, sizeof w), a, b, c);
            return false;
        }
    }
    return true;
}

/* CLGRAD_ATTENTION: composite or fused forces that path (fused fails where the kernels cannot
 * take the shapes instead of falling back); rows or tiles force the fused path in that kernel
 * form. Read when clg_attention builds (the path) and when the plan compiles (the form). */
typedef enum att_choice {
    ATT_CHOICE_AUTO,
    ATT_CHOICE_COMPOSITE,
    ATT_CHOICE_FUSED,
    ATT_CHOICE_ROWS,
    ATT_CHOICE_TILES,
    ATT_CHOICE_BAD
} att_choice;

static att_choice att_env(void) {
    const char *e = getenv("CLGRAD_ATTENTION");
    if (!e || !*e) return ATT_CHOICE_AUTO;
    static const char *const names[] = {"composite", "fused", "rows", "tiles"};
    for (int i = 0; i < 4; ++i)
        if (strcmp(e, names[i]) == 0) return (att_choice)(ATT_CHOICE_COMPOSITE + i);
    return ATT_CHOICE_BAD;
}

/* What the kernels index with 32-bit ints stays below 2^31 elements. */
static bool fits_int(const clg_tensor *t) {
    return clg_tensor_numel(t->base) < INT32_MAX;
}

/* x as the kernels read it: a buffer (a broadcast scalar has none) with a dense last dim. */
static clg_tensor *prep(clg_graph *g, clg_tensor *x) {
    bool scalar = x->base->info->kind == CLG_KIND_SCALAR;
    bool dense_last = x->ndim == 0 || x->shape[x->ndim - 1] == 1 || x->strides[x->ndim - 1] == 1;
    return scalar || !dense_last ? clg_contiguous(g, x) : x;
}

/* ---- the composite ---- */

/* softmax(scale q k^T + mask) v from ops: the softmax is one row kernel (ops/rows.c), which
 * gives a row with every key masked zeros, as the fused kernels do. */
static clg_tensor *composite(clg_graph *g, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                             clg_tensor *mask, float scale, bool causal) {
    clg_tensor *p = clg_softmax_masked(g, clg_matmul(g, q, k, false, true), scale, mask, causal);
    return clg_matmul(g, p, v, false, false);
}

/* ---- the fused path ---- */

/* Loop iterations one work-item of the fused kernels runs, generously: every key (or query)
 * with its work on D and Dv (a quarter of it in the rows form's float4 steps; the tiles form
 * loops to its padded width, dmax), doubled for the tiles' loads. Mesa's llvmpipe stops every
 * work-item at ctx->info.loop_limit iterations and returns wrong results without an error. */
static uint64_t att_iterations(const att_geo *geo, bool tiles, int dmax) {
    uint64_t n = (uint64_t)(geo->T > geo->S ? geo->T : geo->S);
    if (tiles) return n * (3u * (uint64_t)dmax + 8u) * 2u;
    return n * ((uint64_t)(2 * geo->D + geo->Dv) / 4u + 8u);
}

/* Can the kernels take these shapes on this device? Per-work-item state is a few rows of
 * ATT_DMAX floats; a GPU also needs local memory for two tiles of at least 8 rows; under a
 * loop limit the rows form must stay within it. */
static bool fused_fits(const clg_context *ctx, const att_geo *geo) {
    if (geo->D > ATT_DMAX || geo->Dv > ATT_DMAX) return false;
    if (ctx->info.loop_limit && att_iterations(geo, false, 0) > ctx->info.loop_limit)
        return false;
    if (geo->nb * geo->T * (geo->D > geo->Dv ? geo->D : geo->Dv) >= INT32_MAX ||
        geo->nb * geo->S * (geo->D + geo->Dv) >= INT32_MAX || geo->T * geo->S >= INT32_MAX)
        return false;
    if (ctx->info.type != CLG_DEVICE_CPU &&
        ctx->info.local_mem_bytes < 2u * 8u * ATT_DMAX * sizeof(float) + 1024u)
        return false;
    return true;
}

/* On a CPU device the composite's two GEMMs and row kernel beat the fused rows form while its
 * score matrices stay small: a 4-block stack of B 12, T 64, 4 heads of 32 trained 11 % faster
 * (bench-seq, pocl); the fused form saves the T x S memory past that. */
#define ATT_CPU_COMPOSITE_BYTES ((int64_t)8 << 20)

static bool cpu_prefers_composite(const clg_context *ctx, const att_geo *geo) {
    return ctx->info.type == CLG_DEVICE_CPU &&
           geo->nb * geo->T * geo->S * (int64_t)sizeof(float) <= ATT_CPU_COMPOSITE_BYTES;
}

static clg_tensor *part(clg_graph *g, clg_tensor *flat, int nlead, const int64_t *lead, int64_t a,
                        int64_t b, int64_t offset) {
    int64_t shape[CLG_MAX_DIMS], st[CLG_MAX_DIMS];
    memcpy(shape, lead, (size_t)nlead * sizeof *shape);
    int nd = nlead;
    shape[nd++] = a;
    if (b) shape[nd++] = b;
    clg_contiguous_strides(nd, shape, st);
    return clg_view_new(g, &op_attention_part, flat, nd, shape, offset, st);
}

static clg_tensor *fused(clg_graph *g, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                         clg_tensor *mask, float scale, bool causal, const att_geo *geo) {
    clg_tensor *ins[4] = {q, k, v, mask};
    int64_t flat = geo->nb * geo->T * geo->Dv + geo->nb * geo->T;
    clg_tensor *f = clg_kernel_node(g, &op_attention_forward, CLG_F32, 1, &flat, mask ? 4 : 3,
                                    ins);
    if (f == g->poison) return f;
    f->attrs = (clg_attrs){.kind = CLG_ATTRS_ATTENTION,
                           .attention = {.scale = scale,
                                         .causal = causal,
                                         .has_mask = mask != NULL}};
    int64_t shape[CLG_MAX_DIMS], st[CLG_MAX_DIMS];
    memcpy(shape, geo->lead, (size_t)geo->nlead * sizeof *shape);
    shape[geo->nlead] = geo->T;
    shape[geo->nlead + 1] = geo->Dv;
    clg_contiguous_strides(geo->nlead + 2, shape, st);
    clg_tensor *o = clg_view_new(g, &op_attention, f, geo->nlead + 2, shape, 0, st);
    if (o != g->poison) o->attrs = f->attrs;
    return o;
}

clg_tensor *clg_attention(clg_graph *g, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                          clg_tensor *mask, float scale, bool causal) {
    CLG_GUARD(g, "attention", 3, q, k, v);
    if (mask && !clg_check_inputs(g, "attention", 1, &mask)) return g->poison;
    att_geo geo;
    if (!att_resolve(g, q, k, v, mask, &geo)) return g->poison;
    if (!isfinite(scale))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "attention: scale %g is not finite",
                              (double)scale);
    if (scale == 0.0f) scale = (float)(1.0 / sqrt((double)geo.D));
    att_choice choice = att_env();
    if (choice == ATT_CHOICE_BAD)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "attention: CLGRAD_ATTENTION='%s' is none of composite, fused, "
                              "rows, tiles",
                              getenv("CLGRAD_ATTENTION"));
    bool forced = choice >= ATT_CHOICE_FUSED;
    if (choice == ATT_CHOICE_COMPOSITE || (choice == ATT_CHOICE_AUTO && cpu_prefers_composite(g->ctx, &geo)))
        return composite(g, q, k, v, mask, scale, causal);
    if (!fused_fits(g->ctx, &geo)) {
        if (forced)
            return clg_graph_fail(g, CLG_ERR_UNSUPPORTED,
                                  "attention: CLGRAD_ATTENTION=%s, but the fused kernels take "
                                  "D, Dv <= %d on this device (D %lld, Dv %lld)",
                                  getenv("CLGRAD_ATTENTION"), ATT_DMAX, (long long)geo.D,
                                  (long long)geo.Dv);
        return composite(g, q, k, v, mask, scale, causal);
    }
    q = prep(g, q);
    k = prep(g, k);
    v = prep(g, v);
    /* the mask is read with any strides; only a broadcast scalar needs a buffer */
    if (mask && mask->base->info->kind == CLG_KIND_SCALAR) mask = clg_contiguous(g, mask);
    if (g->error) return g->poison;
    const att_mat mats[4] = {mat_of(q), mat_of(k), mat_of(v), mask ? mat_of(mask) : mat_of(q)};
    att_layout lay[4];
    if (!att_batch(&geo, mask ? 4 : 3, mats, lay) || !fits_int(q) || !fits_int(k) ||
        !fits_int(v) || (mask && !fits_int(mask))) {
        if (forced)
            return clg_graph_fail(g, CLG_ERR_UNSUPPORTED,
                                  "attention: CLGRAD_ATTENTION=%s, but the operands have more "
                                  "than %d batch dims that do not merge, or 2^31 elements",
                                  getenv("CLGRAD_ATTENTION"), ATT_BATCH);
        return composite(g, q, k, v, mask, scale, causal);
    }
    return fused(g, q, k, v, mask, scale, causal, &geo);
}

/* ---- backward ---- */

static void bw_through_output(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    (void)g;
    (void)node;
    (void)gout;
}

/* dMask = P * (dP - Di) summed to the mask's shape: T x S by nature, so only built when the
 * mask itself wants a gradient (a learned bias), from the composite's parts. */
static clg_tensor *mask_grad(clg_graph *g, clg_tensor *f, clg_tensor *lse, clg_tensor *dout,
                             clg_tensor *di, const att_geo *geo) {
    const clg_attr_attention *at = &f->attrs.attention;
    clg_tensor *q = f->in[0], *k = f->in[1], *v = f->in[2], *mask = f->in[3];
    clg_tensor *s = clg_add(g, clg_mul_scalar(g, clg_matmul(g, q, k, false, true), at->scale),
                            mask);
    if (at->causal) s = clg_add(g, s, clg_causal_mask(g, geo->T, geo->S));
    clg_tensor *p = clg_exp(g, clg_sub(g, s, clg_unsqueeze(g, lse, -1)));
    clg_tensor *dp = clg_matmul(g, dout, v, false, true);
    clg_tensor *ds = clg_mul(g, p, clg_sub(g, dp, clg_unsqueeze(g, di, -1)));
    return clg_sum_to_shape(g, ds, mask->ndim, mask->shape);
}

static void bw_attention(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *f = node->in[0];
    const clg_attr_attention *at = &f->attrs.attention;
    clg_tensor *q = f->in[0], *k = f->in[1], *v = f->in[2], *mask = at->has_mask ? f->in[3] : NULL;
    bool gq = clg_needs_grad(q), gk = clg_needs_grad(k), gv = clg_needs_grad(v);
    bool gm = mask && clg_needs_grad(mask);
    if (!gq && !gk && !gv && !gm) return;
    att_geo geo;
    if (!att_resolve(g, q, k, v, mask, &geo)) return;
    clg_tensor *dout = prep(g, gout);
    const att_mat mats[5] = {mat_of(q), mat_of(k), mat_of(v), mat_of(dout),
                             mask ? mat_of(mask) : mat_of(q)};
    att_layout lay[5];
    if (!att_batch(&geo, mask ? 5 : 4, mats, lay)) dout = clg_contiguous(g, dout);
    if (g->error) return;
    clg_tensor *lse = part(g, f, geo.nlead, geo.lead, geo.T, 0, geo.nb * geo.T * geo.Dv);
    clg_tensor *di;
    if (gq) {
        clg_tensor *ins[7] = {q, k, v, node, lse, dout, mask};
        int64_t flat = geo.nb * geo.T * geo.D + geo.nb * geo.T;
        clg_tensor *fq = clg_kernel_node(g, &op_attention_backward_q, CLG_F32, 1, &flat,
                                         mask ? 7 : 6, ins);
        if (fq == g->poison) return;
        fq->attrs = f->attrs;
        di = part(g, fq, geo.nlead, geo.lead, geo.T, 0, geo.nb * geo.T * geo.D);
        clg_tensor *dq = part(g, fq, geo.nlead, geo.lead, geo.T, geo.D, 0);
        clg_grad_accumulate(g, q, clg_sum_to_shape(g, dq, q->ndim, q->shape));
    } else {
        /* no dQ wanted: Di alone is one fused reduction */
        int last = -1;
        di = clg_sum(g, clg_mul(g, dout, node), 1, &last, false);
    }
    if (gk || gv) {
        clg_tensor *ins[7] = {q, k, v, lse, dout, di, mask};
        int64_t flat = geo.nb * geo.S * (geo.D + geo.Dv);
        clg_tensor *fkv = clg_kernel_node(g, &op_attention_backward_kv, CLG_F32, 1, &flat,
                                          mask ? 7 : 6, ins);
        if (fkv == g->poison) return;
        fkv->attrs = f->attrs;
        if (gk) {
            clg_tensor *dk = part(g, fkv, geo.nlead, geo.lead, geo.S, geo.D, 0);
            clg_grad_accumulate(g, k, clg_sum_to_shape(g, dk, k->ndim, k->shape));
        }
        if (gv) {
            clg_tensor *dv =
                part(g, fkv, geo.nlead, geo.lead, geo.S, geo.Dv, geo.nb * geo.S * geo.D);
            clg_grad_accumulate(g, v, clg_sum_to_shape(g, dv, v->ndim, v->shape));
        }
    }
    if (gm) clg_grad_accumulate(g, mask, mask_grad(g, f, lse, dout, di, &geo));
}

/* ---- lowering ---- */

/* The kernel form: rows on CPU devices, local tiles elsewhere; CLGRAD_ATTENTION=rows or
 * =tiles forces one (tests run both on any device). */
static bool use_tiles(const clg_context *ctx) {
    att_choice c = att_env();
    if (c == ATT_CHOICE_ROWS) return false;
    if (c == ATT_CHOICE_TILES) return true;
    return ctx->info.type != CLG_DEVICE_CPU;
}

/* The tiles kernels loop over ATT_DMAX with zero padding, so it is the smallest of 32, 64
 * and 128 that holds D and Dv (at most three programs); the rows kernels loop to D and Dv and
 * use one program. */
static int program_dmax(const att_geo *geo, bool tiles) {
    int64_t w = geo->D > geo->Dv ? geo->D : geo->Dv;
    if (!tiles) return ATT_DMAX;
    return w <= 32 ? 32 : w <= 64 ? 64 : 128;
}

static clg_status att_kernel(clg_lowering *lw, const char *name, int dmax, cl_kernel *out) {
    clg_context *ctx = clg_lowering_context(lw);
    char *text = NULL;
    size_t len = 0;
    clg_status st = clg_kernel_source("attention", &text, &len);
    if (st != CLG_OK) return st;
    char opts[64], pname[64];
    snprintf(opts, sizeof opts, "-DATT_DMAX=%d", dmax);
    snprintf(pname, sizeof pname, "attention dmax=%d", dmax);
    cl_program p;
    st = clg_program_get(ctx, pname, text, len, opts, &p);
    free(text);
    if (st != CLG_OK) return st;
    cl_int err;
    *out = clCreateKernel(p, name, &err);
    if (!*out) return clg_fail_cl(err, "creating kernel %s from cl/attention.cl", name);
    return CLG_OK;
}

static void arg_layout(clg_args *a, const clg_operand *o, const att_layout *l) {
    cl_int4 st = {{(cl_int)l->st[0], (cl_int)l->st[1], (cl_int)l->st[2], (cl_int)l->row}};
    clg_arg_mem(a, o->mem);
    clg_arg_int(a, l->off);
    clg_arg_raw(a, sizeof st, &st);
}

/* Everything the three kernels share: geometry, the lead (work-item per row) operands. */
typedef struct att_launch {
    att_geo geo;
    att_layout lay[5]; /* q, k, v, mask, dO */
    bool tiles, has_mask;
    int dmax;
    cl_kernel kernel;
    clg_args args;
} att_launch;

/* Resolve the operands (q, k, v, then dO at index g_idx, the mask last when present) and
 * start the kernel's arguments after its output: q, k, v, mask. */
static clg_status launch_begin(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               int g_idx, const char *rows, const char *tiles, att_launch *L) {
    clg_context *ctx = clg_lowering_context(lw);
    const clg_attr_attention *at = &node->attrs.attention;
    att_geo *geo = &L->geo;
    geo->T = in[0].shape[in[0].ndim - 2];
    geo->D = in[0].shape[in[0].ndim - 1];
    geo->S = in[1].shape[in[1].ndim - 2];
    geo->Dv = in[2].shape[in[2].ndim - 1];
    int nl;
    int64_t lead[CLG_MAX_DIMS];
    if (!clg_broadcast_shape(in[0].ndim - 2, in[0].shape, in[1].ndim - 2, in[1].shape, &nl,
                             lead) ||
        !clg_broadcast_shape(nl, lead, in[2].ndim - 2, in[2].shape, &geo->nlead, geo->lead))
        return clg_fail(CLG_ERR_INTERNAL, "%s: operand shapes changed", node->info->name);
    geo->nb = clg_shape_numel(geo->nlead, geo->lead);
    L->has_mask = at->has_mask;
    const clg_operand *mask = at->has_mask ? &in[node->n_in - 1] : &in[0];
    att_mat mats[5] = {mat_of_operand(&in[0]), mat_of_operand(&in[1]), mat_of_operand(&in[2]),
                       mat_of_operand(mask), mat_of_operand(g_idx >= 0 ? &in[g_idx] : &in[0])};
    if (!att_batch(geo, 5, mats, L->lay))
        return clg_fail(CLG_ERR_INTERNAL, "%s: operand layouts changed", node->info->name);
    if (!at->has_mask) L->lay[3] = (att_layout){0};
    L->tiles = use_tiles(ctx);
    L->dmax = program_dmax(geo, L->tiles);
    uint64_t iters = att_iterations(geo, L->tiles, L->dmax);
    if (ctx->info.loop_limit && iters > ctx->info.loop_limit)
        return clg_fail(CLG_ERR_UNSUPPORTED,
                        "%s: the %s form would run about %llu loop iterations per work-item "
                        "(T %lld, S %lld, D %lld, Dv %lld), past %s's limit of %u",
                        node->info->name, L->tiles ? "tiles" : "rows", (unsigned long long)iters,
                        (long long)geo->T, (long long)geo->S, (long long)geo->D,
                        (long long)geo->Dv, ctx->info.name, (unsigned)ctx->info.loop_limit);
    clg_status st = att_kernel(lw, L->tiles ? tiles : rows, L->dmax, &L->kernel);
    if (st != CLG_OK) return st;
    L->args = clg_args_begin(L->kernel);
    return CLG_OK;
}

static void args_inputs(att_launch *L, const clg_tensor *node, const clg_operand *in) {
    const clg_attr_attention *at = &node->attrs.attention;
    for (int i = 0; i < 3; ++i) arg_layout(&L->args, &in[i], &L->lay[i]);
    arg_layout(&L->args, at->has_mask ? &in[node->n_in - 1] : &in[0], &L->lay[3]);
    clg_arg_int(&L->args, L->lay[3].col);
    clg_arg_int(&L->args, at->has_mask);
}

static void args_tail(att_launch *L, const clg_tensor *node) {
    const att_geo *geo = &L->geo;
    clg_arg_int(&L->args, geo->n[1]);
    clg_arg_int(&L->args, geo->n[2]);
    clg_arg_int(&L->args, geo->T);
    clg_arg_int(&L->args, geo->S);
    clg_arg_int(&L->args, geo->D);
    clg_arg_int(&L->args, geo->Dv);
    clg_arg_float(&L->args, node->attrs.attention.scale);
    clg_arg_int(&L->args, node->attrs.attention.causal);
}

/* Work-items over rows (T or S) x batches. Rows kernels: groups of up to 16 rows (pocl runs
 * a group as one loop; more groups spread over the cores). Tiles kernels: up to 64 rows
 * sharing each staged tile, and bk rows per tile as local memory allows (bytes per tile row:
 * per_row). */
static clg_status launch_end(clg_lowering *lw, att_launch *L, int64_t rows, int n_tiles,
                             size_t extra_local, const char *label) {
    clg_context *ctx = clg_lowering_context(lw);
    size_t local[2] = {16, 1};
    if (L->tiles) {
        size_t per_row = (size_t)L->dmax * sizeof(float);
        int bk = ATT_BKMAX;
        while (bk > 1 && (size_t)bk * per_row * (size_t)n_tiles + extra_local + 1024 >
                             ctx->info.local_mem_bytes)
            bk /= 2;
        clg_arg_int(&L->args, bk);
        for (int t = 0; t < n_tiles; ++t) clg_arg_local(&L->args, (size_t)bk * per_row);
        if (extra_local) clg_arg_local(&L->args, extra_local);
        local[0] = 64;
    }
    /* the kernel's own limit (registers on a GPU) may be below the device's */
    size_t kmax = 0;
    cl_int err = clGetKernelWorkGroupInfo(L->kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof kmax, &kmax, NULL);
    if (err != CL_SUCCESS || kmax == 0) kmax = ctx->info.max_work_group_size;
    if (kmax > ctx->info.max_work_group_size) kmax = ctx->info.max_work_group_size;
    while (local[0] > 1 && local[0] > kmax) local[0] /= 2;
    while (local[0] > 1 && (int64_t)local[0] / 2 >= rows) local[0] /= 2;
    size_t global[2] = {((size_t)rows + local[0] - 1) / local[0] * local[0], (size_t)L->geo.nb};
    return clg_lower_args(lw, &L->args, 2, global, local, label);
}

static clg_status lower_forward(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                const clg_operand *out) {
    att_launch L;
    clg_status st =
        launch_begin(lw, node, in, -1, "attention_fwd_rows", "attention_fwd_tiles", &L);
    if (st != CLG_OK) return st;
    clg_arg_mem(&L.args, out->mem);
    clg_arg_int(&L.args, out->offset);
    clg_arg_int(&L.args, out->offset + L.geo.nb * L.geo.T * L.geo.Dv);
    args_inputs(&L, node, in);
    args_tail(&L, node);
    return launch_end(lw, &L, L.geo.T, 2, 0, "attention_forward");
}

/* A dense [..., rows, w] operand of our own making (O, L, Di): its offset. */
static clg_status dense_offset(const clg_tensor *node, const clg_operand *o, cl_int *off) {
    if (!clg_operand_dense(o))
        return clg_fail(CLG_ERR_INTERNAL, "%s: an internal operand is not dense",
                        node->info->name);
    *off = (cl_int)o->offset;
    return CLG_OK;
}

static clg_status lower_backward_q(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                   const clg_operand *out) {
    att_launch L;
    cl_int o_off = 0, l_off = 0;
    clg_status st = dense_offset(node, &in[3], &o_off);
    if (st == CLG_OK) st = dense_offset(node, &in[4], &l_off);
    if (st == CLG_OK)
        st = launch_begin(lw, node, in, 5, "attention_bwd_q_rows", "attention_bwd_q_tiles", &L);
    if (st != CLG_OK) return st;
    clg_arg_mem(&L.args, out->mem);
    clg_arg_int(&L.args, out->offset);
    clg_arg_int(&L.args, out->offset + L.geo.nb * L.geo.T * L.geo.D);
    args_inputs(&L, node, in);
    clg_arg_mem(&L.args, in[3].mem);
    clg_arg_int(&L.args, o_off);
    clg_arg_mem(&L.args, in[4].mem);
    clg_arg_int(&L.args, l_off);
    arg_layout(&L.args, &in[5], &L.lay[4]);
    args_tail(&L, node);
    return launch_end(lw, &L, L.geo.T, 2, 0, "attention_backward_q");
}

static clg_status lower_backward_kv(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                    const clg_operand *out) {
    att_launch L;
    cl_int l_off = 0, di_off = 0;
    clg_status st = dense_offset(node, &in[3], &l_off);
    if (st == CLG_OK) st = dense_offset(node, &in[5], &di_off);
    if (st == CLG_OK)
        st = launch_begin(lw, node, in, 4, "attention_bwd_kv_rows", "attention_bwd_kv_tiles",
                          &L);
    if (st != CLG_OK) return st;
    clg_arg_mem(&L.args, out->mem);
    clg_arg_int(&L.args, out->offset);
    clg_arg_int(&L.args, out->offset + L.geo.nb * L.geo.S * L.geo.D);
    args_inputs(&L, node, in);
    clg_arg_mem(&L.args, in[3].mem);
    clg_arg_int(&L.args, l_off);
    clg_arg_mem(&L.args, in[5].mem);
    clg_arg_int(&L.args, di_off);
    arg_layout(&L.args, &in[4], &L.lay[4]);
    args_tail(&L, node);
    return launch_end(lw, &L, L.geo.S, 2, 2 * ATT_BKMAX * sizeof(float),
                      "attention_backward_kv");
}
