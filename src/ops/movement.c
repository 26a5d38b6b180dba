/* Movement ops. Reshape, permute, slice, split, squeeze and broadcast are views: new
 * (offset, strides) over the same storage, no kernel. Concat, pad ("embed": place x inside a
 * filled tensor) and the gradient of slices ("pieces": each slice's gradient written into its
 * place along one axis, zeros only where no slice lies) are lowered to strided copies. */
#include <stdlib.h>
#include <string.h>

#include "compile/lowering.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

static void bw_reshape(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_permute(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_slice(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_broadcast(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_concat(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_embed(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_concat(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out);
static clg_status lower_embed(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                              const clg_operand *out);
static void bw_pieces(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void free_pieces(clg_tensor *node);
static clg_status lower_pieces(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out);

static const clg_op_info op_reshape = {.name = "reshape", .kind = CLG_KIND_VIEW,
                                       .backward = bw_reshape};
/* attrs.permute: the permutation */
static const clg_op_info op_permute = {.name = "permute", .kind = CLG_KIND_VIEW,
                                       .backward = bw_permute};
/* attrs.slice: axis, start, step */
static const clg_op_info op_slice = {.name = "slice", .kind = CLG_KIND_VIEW,
                                     .backward = bw_slice};
static const clg_op_info op_broadcast = {.name = "broadcast_to", .kind = CLG_KIND_VIEW,
                                         .backward = bw_broadcast};
static const clg_op_info op_detach = {.name = "detach", .kind = CLG_KIND_VIEW};
/* attrs.axis */
static const clg_op_info op_concat = {.name = "concat", .kind = CLG_KIND_KERNEL,
                                      .backward = bw_concat, .lower = lower_concat};
/* attrs.embed: start and step per axis, the fill value */
static const clg_op_info op_embed = {.name = "pad", .kind = CLG_KIND_KERNEL,
                                     .backward = bw_embed, .lower = lower_embed};
/* attrs.opaque: a pieces_attrs */
static const clg_op_info op_pieces = {.name = "slice_grad", .kind = CLG_KIND_KERNEL,
                                      .backward = bw_pieces, .lower = lower_pieces,
                                      .free_attrs = free_pieces};

/* ---- views ---- */


clg_tensor *clg_reshape(clg_graph *g, clg_tensor *x, int ndim, const int64_t *shape) {
    CLG_GUARD(g, "reshape", 1, x);
    if (ndim < 0 || ndim > CLG_MAX_DIMS || (ndim && !shape))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "reshape: bad target rank %d", ndim);
    int64_t s[CLG_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; ++i) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) {
            infer = i;
        } else if (s[i] < 1) {
            char b[200];
            return clg_graph_fail(g, CLG_ERR_SHAPE, "reshape: bad target shape %s",
                                  clg_shape_str(ndim, shape, b, sizeof b));
        } else {
            known *= s[i];
        }
    }
    int64_t numel = clg_tensor_numel(x);
    if (infer >= 0) {
        if (numel % known != 0) {
            char a[200], b[200];
            return clg_graph_fail(g, CLG_ERR_SHAPE, "reshape: cannot view %s as %s",
                                  clg_shape_str(x->ndim, x->shape, a, sizeof a),
                                  clg_shape_str(ndim, shape, b, sizeof b));
        }
        s[infer] = numel / known;
        known *= s[infer];
    }
    if (known != numel) {
        char a[200], b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "reshape: %s has %lld elements, %s has %lld",
                              clg_shape_str(x->ndim, x->shape, a, sizeof a), (long long)numel,
                              clg_shape_str(ndim, s, b, sizeof b), (long long)known);
    }
    if (x->ndim == ndim && memcmp(x->shape, s, (size_t)ndim * sizeof *s) == 0) return x;
    int64_t st[CLG_MAX_DIMS];
    if (!clg_reshape_strides(x->ndim, x->shape, x->strides, ndim, s, st)) {
        x = clg_contiguous(g, x);
        if (g->error) return g->poison;
        clg_contiguous_strides(ndim, s, st);
    }
    return clg_view_new(g, &op_reshape, x, ndim, s, x->offset, st);
}

clg_tensor *clg_flatten(clg_graph *g, clg_tensor *x, int start_axis) {
    CLG_GUARD(g, "flatten", 1, x);
    int a;
    if (x->ndim == 0) return clg_reshape(g, x, 1, (int64_t[]){1});
    if (!clg_norm_axis(start_axis, x->ndim, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "flatten: axis %d out of range for rank %d",
                              start_axis, x->ndim);
    int64_t s[CLG_MAX_DIMS];
    for (int i = 0; i < a; ++i) s[i] = x->shape[i];
    s[a] = 1;
    for (int i = a; i < x->ndim; ++i) s[a] *= x->shape[i];
    return clg_reshape(g, x, a + 1, s);
}

clg_tensor *clg_permute(clg_graph *g, clg_tensor *x, const int *perm) {
    CLG_GUARD(g, "permute", 1, x);
    if (!perm && x->ndim) return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "permute: perm is NULL");
    int64_t shape[CLG_MAX_DIMS], strides[CLG_MAX_DIMS];
    unsigned seen = 0;
    bool identity = true;
    for (int i = 0; i < x->ndim; ++i) {
        int p;
        if (!clg_norm_axis(perm[i], x->ndim, &p) || (seen & (1u << p)))
            return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                                  "permute: entry %d (%d) is not a permutation of %d axes", i,
                                  perm[i], x->ndim);
        seen |= 1u << p;
        shape[i] = x->shape[p];
        strides[i] = x->strides[p];
        identity = identity && p == i;
    }
    if (identity) return x;
    clg_tensor *t = clg_view_new(g, &op_permute, x, x->ndim, shape, x->offset, strides);
    if (t == g->poison) return t;
    t->attrs = (clg_attrs){.kind = CLG_ATTRS_PERMUTE, .permute = {.ndim = x->ndim}};
    for (int i = 0; i < x->ndim; ++i)
        t->attrs.permute.perm[i] = perm[i] < 0 ? perm[i] + x->ndim : perm[i];
    return t;
}

clg_tensor *clg_transpose(clg_graph *g, clg_tensor *x, int axis0, int axis1) {
    CLG_GUARD(g, "transpose", 1, x);
    int a, b;
    if (!clg_norm_axis(axis0, x->ndim, &a) || !clg_norm_axis(axis1, x->ndim, &b))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "transpose: axes %d, %d out of range for rank %d",
                              axis0, axis1, x->ndim);
    int perm[CLG_MAX_DIMS];
    for (int i = 0; i < x->ndim; ++i) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return clg_permute(g, x, perm);
}

clg_tensor *clg_unsqueeze(clg_graph *g, clg_tensor *x, int axis) {
    CLG_GUARD(g, "unsqueeze", 1, x);
    int a;
    if (x->ndim >= CLG_MAX_DIMS || !clg_norm_axis(axis, x->ndim + 1, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "unsqueeze: axis %d out of range for rank %d",
                              axis, x->ndim);
    int64_t s[CLG_MAX_DIMS];
    for (int i = 0, j = 0; i <= x->ndim; ++i) s[i] = i == a ? 1 : x->shape[j++];
    return clg_reshape(g, x, x->ndim + 1, s);
}

clg_tensor *clg_squeeze(clg_graph *g, clg_tensor *x, int axis) {
    CLG_GUARD(g, "squeeze", 1, x);
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a) || x->shape[a] != 1) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "squeeze: axis %d of %s is not of size 1", axis,
                              clg_shape_str(x->ndim, x->shape, b, sizeof b));
    }
    int64_t s[CLG_MAX_DIMS];
    for (int i = 0, j = 0; i < x->ndim; ++i)
        if (i != a) s[j++] = x->shape[i];
    return clg_reshape(g, x, x->ndim - 1, s);
}

clg_tensor *clg_slice(clg_graph *g, clg_tensor *x, int axis, int64_t start, int64_t stop,
                      int64_t step) {
    CLG_GUARD(g, "slice", 1, x);
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "slice: axis %d out of range for rank %d", axis,
                              x->ndim);
    if (step < 1)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "slice: step %lld must be >= 1",
                              (long long)step);
    int64_t n = x->shape[a];
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    start = start < 0 ? 0 : (start > n ? n : start);
    stop = stop < 0 ? 0 : (stop > n ? n : stop);
    int64_t count = stop > start ? (stop - start + step - 1) / step : 0;
    if (count == 0) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "slice: axis %d of %s, [%lld:%lld:%lld] is empty",
                              axis, clg_shape_str(x->ndim, x->shape, b, sizeof b),
                              (long long)start, (long long)stop, (long long)step);
    }
    if (start == 0 && count == n && step == 1) return x;
    int64_t shape[CLG_MAX_DIMS], strides[CLG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    memcpy(strides, x->strides, sizeof strides);
    shape[a] = count;
    strides[a] = x->strides[a] * step;
    clg_tensor *t = clg_view_new(g, &op_slice, x, x->ndim, shape,
                                 x->offset + start * x->strides[a], strides);
    if (t != g->poison)
        t->attrs = (clg_attrs){.kind = CLG_ATTRS_SLICE,
                               .slice = {.axis = a, .start = start, .step = step}};
    return t;
}

clg_tensor *clg_broadcast_to(clg_graph *g, clg_tensor *x, int ndim, const int64_t *shape) {
    CLG_GUARD(g, "broadcast_to", 1, x);
    if (ndim < x->ndim || ndim > CLG_MAX_DIMS || (ndim && !shape)) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "broadcast_to: cannot broadcast %s to rank %d",
                              clg_shape_str(x->ndim, x->shape, b, sizeof b), ndim);
    }
    int lead = ndim - x->ndim;
    int64_t strides[CLG_MAX_DIMS];
    for (int i = 0; i < ndim; ++i) {
        if (i < lead) {
            strides[i] = 0;
            continue;
        }
        int64_t d = x->shape[i - lead];
        if (d == shape[i]) {
            strides[i] = x->strides[i - lead];
        } else if (d == 1) {
            strides[i] = 0;
        } else {
            char a[200], b[200];
            return clg_graph_fail(g, CLG_ERR_SHAPE, "broadcast_to: cannot broadcast %s to %s",
                                  clg_shape_str(x->ndim, x->shape, a, sizeof a),
                                  clg_shape_str(ndim, shape, b, sizeof b));
        }
    }
    /* ndim 0 may come with shape NULL, which memcmp must not see even for 0 bytes */
    if (x->ndim == ndim && (ndim == 0 || memcmp(x->shape, shape, (size_t)ndim * sizeof *shape) == 0))
        return x;
    return clg_view_new(g, &op_broadcast, x, ndim, shape, x->offset, strides);
}

clg_tensor *clg_detach(clg_graph *g, clg_tensor *x) {
    CLG_GUARD(g, "detach", 1, x);
    clg_tensor *t = clg_view_new(g, &op_detach, x, x->ndim, x->shape, x->offset, x->strides);
    if (t != g->poison) t->no_grad = true;
    return t;
}

static void bw_reshape(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    clg_grad_accumulate(g, x, clg_reshape(g, gout, x->ndim, x->shape));
}

static void bw_permute(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    int inv[CLG_MAX_DIMS];
    for (int i = 0; i < node->ndim; ++i) inv[node->attrs.permute.perm[i]] = i;
    clg_grad_accumulate(g, node->in[0], clg_permute(g, gout, inv));
}

static void bw_broadcast(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    clg_grad_accumulate(g, x, clg_sum_to_shape(g, gout, x->ndim, x->shape));
}

/* ---- embed (pad) ---- */

static clg_tensor *embed(clg_graph *g, clg_tensor *x, int ndim, const int64_t *shape,
                         const int64_t *start, const int64_t *step, float value) {
    clg_tensor *t = clg_kernel_node(g, &op_embed, x->dtype, ndim, shape, 1, &x);
    if (t == g->poison) return t;
    clg_attr_embed e = {.ndim = ndim, .value = value};
    memcpy(e.start, start, (size_t)ndim * sizeof *start);
    memcpy(e.step, step, (size_t)ndim * sizeof *step);
    t->attrs = (clg_attrs){.kind = CLG_ATTRS_EMBED, .embed = e};
    return t;
}

clg_tensor *clg_pad(clg_graph *g, clg_tensor *x, const int64_t *before, const int64_t *after,
                    float value) {
    CLG_GUARD(g, "pad", 1, x);
    if (!before || !after)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "pad: before/after are NULL");
    int64_t shape[CLG_MAX_DIMS], step[CLG_MAX_DIMS];
    bool any = false;
    for (int i = 0; i < x->ndim; ++i) {
        if (before[i] < 0 || after[i] < 0)
            return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                                  "pad: negative padding on axis %d (%lld, %lld)", i,
                                  (long long)before[i], (long long)after[i]);
        shape[i] = x->shape[i] + before[i] + after[i];
        step[i] = 1;
        any = any || before[i] || after[i];
    }
    if (!any) return x;
    return embed(g, x, x->ndim, shape, before, step, value);
}

/* ---- pieces (the gradient of slices) ----
 * Input k lies along axis at start[k] + step[k] * j (j below its extent), whole along the
 * other axes; the pieces are disjoint and everything else is 0. The gradients of several
 * slices of one tensor (an LSTM's four gates, chunks) merge into one such node as autograd
 * adds them up, so the gradient costs one copy per piece and a fill only of what no slice
 * covers, not a whole fill, a copy and an add per slice. */
typedef struct pieces_attrs {
    int axis, n;
    int64_t *start, *step; /* n each, in the same allocation */
} pieces_attrs;

static void free_pieces(clg_tensor *node) {
    free(node->attrs.opaque.ptr);
    node->attrs.opaque.ptr = NULL;
}

static pieces_attrs *pieces_alloc(int n) {
    pieces_attrs *a = malloc(sizeof *a + 2 * (size_t)n * sizeof(int64_t));
    if (!a) return NULL;
    a->n = n;
    a->start = (int64_t *)(a + 1);
    a->step = a->start + n;
    return a;
}

/* x's shape with the pieces xs[0..n) placed along axis as a says (a is the node's, also on
 * failure). */
static clg_tensor *pieces_node(clg_graph *g, const clg_tensor *x, int n, clg_tensor *const *xs,
                               pieces_attrs *a) {
    if (!a) return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "slice_grad: out of host memory");
    clg_tensor *t = clg_kernel_node(g, &op_pieces, x->dtype, x->ndim, x->shape, n, xs);
    if (t == g->poison) {
        free(a);
        return t;
    }
    t->attrs = (clg_attrs){.kind = CLG_ATTRS_OPAQUE, .opaque = {a}};
    return t;
}

/* Do the progressions a + i p (i < n) and b + j q (j < m) share a value? Walks the shorter. */
static bool progressions_meet(int64_t a, int64_t p, int64_t n, int64_t b, int64_t q, int64_t m) {
    if (n > m) return progressions_meet(b, q, m, a, p, n);
    for (int64_t i = 0; i < n; ++i) {
        int64_t v = a + i * p - b;
        if (v >= 0 && v % q == 0 && v / q < m) return true;
    }
    return false;
}

/* Pairwise checks are quadratic: past this many pieces a merge is not tried (an add). */
#define PIECES_MAX 256

clg_tensor *clg_pieces_merge(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    if (g->error || a->info != &op_pieces || b->info != &op_pieces) return NULL;
    const pieces_attrs *pa = a->attrs.opaque.ptr, *pb = b->attrs.opaque.ptr;
    if (pa->axis != pb->axis || pa->n + pb->n > PIECES_MAX || !clg_same_shape(a, b))
        return NULL;
    for (int i = 0; i < pa->n; ++i)
        for (int j = 0; j < pb->n; ++j)
            if (progressions_meet(pa->start[i], pa->step[i], a->in[i]->shape[pa->axis],
                                  pb->start[j], pb->step[j], b->in[j]->shape[pb->axis]))
                return NULL;
    int n = pa->n + pb->n;
    clg_tensor *small[16], **xs = n <= 16 ? small : malloc((size_t)n * sizeof *xs);
    pieces_attrs *m = pieces_alloc(n);
    if (!xs || !m) {
        if (xs != small) free(xs);
        free(m);
        return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "slice_grad: out of host memory");
    }
    m->axis = pa->axis;
    for (int k = 0; k < n; ++k) {
        bool first = k < pa->n;
        int i = first ? k : k - pa->n;
        xs[k] = first ? a->in[i] : b->in[i];
        m->start[k] = first ? pa->start[i] : pb->start[i];
        m->step[k] = first ? pa->step[i] : pb->step[i];
    }
    clg_tensor *t = pieces_node(g, a, n, xs, m);
    if (xs != small) free(xs);
    return t;
}

static void bw_slice(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0];
    const clg_attr_slice *sl = &node->attrs.slice;
    pieces_attrs *a = pieces_alloc(1);
    if (a) {
        a->axis = sl->axis;
        a->start[0] = sl->start;
        a->step[0] = sl->step;
    }
    clg_grad_accumulate(g, x, pieces_node(g, x, 1, &gout, a));
}

static void bw_pieces(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    const pieces_attrs *a = node->attrs.opaque.ptr;
    for (int k = 0; k < a->n; ++k) {
        clg_tensor *x = node->in[k];
        if (!clg_needs_grad(x)) continue;
        int64_t st = a->start[k], sp = a->step[k];
        clg_grad_accumulate(
            g, x, clg_slice(g, gout, a->axis, st, st + sp * (x->shape[a->axis] - 1) + 1, sp));
    }
}

/* The uncovered stretches along the axis are filled when there are few; past this many (a
 * strided piece leaves a gap every other index) the whole tensor is filled first. */
#define PIECES_GAPS 4

static clg_status lower_pieces(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    const pieces_attrs *a = node->attrs.opaque.ptr;
    const int ax = a->axis;
    const int64_t len = out->shape[ax];
    if (a->n <= 4) {
        clg_piece ps[4];
        for (int k = 0; k < a->n; ++k) ps[k] = (clg_piece){&in[k], a->start[k], a->step[k]};
        if (clg_lower_pieces_fit(out, ax, a->n, ps))
            return clg_lower_pieces(lw, out, ax, a->n, ps, 0.0f);
    }
    unsigned char *covered = calloc((size_t)len, 1);
    if (!covered) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "slice_grad: out of host memory");
    for (int k = 0; k < a->n; ++k)
        for (int64_t j = 0; j < in[k].shape[ax]; ++j) covered[a->start[k] + a->step[k] * j] = 1;
    int gaps = 0;
    for (int64_t i = 0; i < len; ++i) gaps += !covered[i] && (i == 0 || covered[i - 1]);
    clg_status st = CLG_OK;
    if (gaps > PIECES_GAPS) {
        st = clg_lower_fill(lw, out, 0.0f);
    } else {
        for (int64_t i = 0; st == CLG_OK && i < len;) {
            if (covered[i]) {
                ++i;
                continue;
            }
            int64_t e = i;
            while (e < len && !covered[e]) ++e;
            int64_t shape[CLG_MAX_DIMS];
            memcpy(shape, out->shape, sizeof shape);
            shape[ax] = e - i;
            clg_operand gap = clg_operand_view(out, out->offset + i * out->strides[ax],
                                               out->ndim, shape, out->strides);
            st = clg_lower_fill(lw, &gap, 0.0f);
            i = e;
        }
    }
    free(covered);
    for (int k = 0; st == CLG_OK && k < a->n; ++k) {
        int64_t strides[CLG_MAX_DIMS];
        memcpy(strides, out->strides, sizeof strides);
        strides[ax] *= a->step[k];
        clg_operand part = clg_operand_view(out, out->offset + a->start[k] * out->strides[ax],
                                            out->ndim, in[k].shape, strides);
        st = clg_lower_copy(lw, &part, &in[k]);
    }
    return st;
}

/* ---- split / chunk ---- */

clg_status clg_split(clg_graph *g, clg_tensor *x, int axis, int n, const int64_t *sizes,
                     clg_tensor **out) {
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "split: graph is NULL");
    if (!out || n < 1) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "split: needs n >= 1 outputs");
    for (int i = 0; i < n; ++i) out[i] = g->poison;
    if (g->error) return g->error;
    if (!clg_check_inputs(g, "split", 1, &x)) return g->error;
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a)) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "split: axis %d out of range for rank %d", axis,
                       x->ndim);
        return g->error;
    }
    int64_t total = 0;
    bool ok = sizes != NULL;
    for (int i = 0; ok && i < n; ++i) {
        ok = sizes[i] >= 1;
        total += ok ? sizes[i] : 0;
    }
    if (!ok || total != x->shape[a]) {
        char b[200];
        clg_graph_fail(g, CLG_ERR_SHAPE,
                       "split: %d sizes (each >= 1) must add up to axis %d of %s", n, axis,
                       clg_shape_str(x->ndim, x->shape, b, sizeof b));
        return g->error;
    }
    int64_t at = 0;
    for (int i = 0; i < n; ++i) {
        out[i] = clg_slice(g, x, a, at, at + sizes[i], 1);
        at += sizes[i];
    }
    if (g->error)
        for (int i = 0; i < n; ++i) out[i] = g->poison;
    return g->error;
}

clg_status clg_chunk(clg_graph *g, clg_tensor *x, int chunks, int axis, clg_tensor **out) {
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "chunk: graph is NULL");
    if (!out || chunks < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "chunk: needs chunks >= 1 outputs");
    for (int i = 0; i < chunks; ++i) out[i] = g->poison;
    if (g->error) return g->error;
    if (!clg_check_inputs(g, "chunk", 1, &x)) return g->error;
    int a;
    if (!clg_norm_axis(axis, x->ndim, &a) || x->shape[a] % chunks != 0) {
        char b[200];
        clg_graph_fail(g, CLG_ERR_SHAPE, "chunk: axis %d of %s does not divide into %d chunks",
                       axis, clg_shape_str(x->ndim, x->shape, b, sizeof b), chunks);
        return g->error;
    }
    int64_t small[16], *sizes = chunks <= 16 ? small : malloc((size_t)chunks * sizeof *sizes);
    if (!sizes) {
        clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "chunk: out of host memory");
        return g->error;
    }
    for (int i = 0; i < chunks; ++i) sizes[i] = x->shape[a] / chunks;
    clg_status st = clg_split(g, x, a, chunks, sizes, out);
    if (sizes != small) free(sizes);
    return st;
}

/* pad's backward and lowering */

static void bw_embed(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *x = node->in[0], *r = gout;
    const clg_attr_embed *e = &node->attrs.embed;
    for (int i = 0; i < x->ndim; ++i) {
        int64_t st = e->start[i], sp = e->step[i];
        r = clg_slice(g, r, i, st, st + sp * (x->shape[i] - 1) + 1, sp);
    }
    clg_grad_accumulate(g, x, r);
}

static clg_status lower_embed(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                              const clg_operand *out) {
    const clg_attr_embed *e = &node->attrs.embed;
    clg_status st = clg_lower_fill(lw, out, e->value);
    if (st != CLG_OK) return st;
    int64_t off = out->offset, strides[CLG_MAX_DIMS];
    for (int i = 0; i < node->ndim; ++i) {
        off += e->start[i] * out->strides[i];
        strides[i] = out->strides[i] * e->step[i];
    }
    clg_operand inner = clg_operand_view(out, off, in[0].ndim, in[0].shape, strides);
    return clg_lower_copy(lw, &inner, &in[0]);
}

/* ---- concat / stack ---- */

clg_tensor *clg_concat(clg_graph *g, int n, clg_tensor *const *xs, int axis) {
    if (!g) return NULL;
    if (g->error) return g->poison;
    if (n < 1 || !xs)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "concat: needs at least one tensor");
    if (!clg_check_inputs(g, "concat", n, xs)) return g->poison;
    int a;
    if (!clg_norm_axis(axis, xs[0]->ndim, &a))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "concat: axis %d out of range for rank %d", axis,
                              xs[0]->ndim);
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[a] = 0;
    for (int i = 0; i < n; ++i) {
        bool ok = xs[i]->ndim == xs[0]->ndim && xs[i]->dtype == xs[0]->dtype;
        for (int d = 0; ok && d < xs[0]->ndim; ++d)
            ok = d == a || xs[i]->shape[d] == xs[0]->shape[d];
        if (!ok) {
            char b0[200], b1[200];
            return clg_graph_fail(g, CLG_ERR_SHAPE,
                                  "concat: tensor %d is %s %s, tensor 0 is %s %s (axis %d)", i,
                                  clg_shape_str(xs[i]->ndim, xs[i]->shape, b1, sizeof b1),
                                  clg_dtype_name(xs[i]->dtype),
                                  clg_shape_str(xs[0]->ndim, xs[0]->shape, b0, sizeof b0),
                                  clg_dtype_name(xs[0]->dtype), axis);
        }
        shape[a] += xs[i]->shape[a];
    }
    if (n == 1) return xs[0];
    clg_tensor *t = clg_kernel_node(g, &op_concat, xs[0]->dtype, xs[0]->ndim, shape, n, xs);
    if (t != g->poison) t->attrs = (clg_attrs){.kind = CLG_ATTRS_AXIS, .axis = {a}};
    return t;
}

clg_tensor *clg_stack(clg_graph *g, int n, clg_tensor *const *xs, int axis) {
    if (!g) return NULL;
    if (g->error) return g->poison;
    if (n < 1 || !xs)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "stack: needs at least one tensor");
    if (!clg_check_inputs(g, "stack", n, xs)) return g->poison;
    clg_tensor *small[16];
    clg_tensor **us = n <= 16 ? small : malloc((size_t)n * sizeof *us);
    if (!us) return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "stack: out of host memory");
    int a = axis < 0 ? axis + xs[0]->ndim + 1 : axis;
    for (int i = 0; i < n; ++i) us[i] = clg_unsqueeze(g, xs[i], a);
    clg_tensor *t = clg_concat(g, n, us, a);
    if (us != small) free(us);
    return t;
}

static void bw_concat(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    int a = node->attrs.axis.axis;
    int64_t at = 0;
    for (int i = 0; i < node->n_in; ++i) {
        clg_tensor *x = node->in[i];
        if (clg_needs_grad(x))
            clg_grad_accumulate(g, x, clg_slice(g, gout, a, at, at + x->shape[a], 1));
        at += x->shape[a];
    }
}

static clg_status lower_concat(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    int a = node->attrs.axis.axis;
    int64_t at = 0;
    if (node->n_in <= 4) {
        clg_piece ps[4];
        for (int i = 0; i < node->n_in; ++i) {
            ps[i] = (clg_piece){&in[i], at, 1};
            at += in[i].shape[a];
        }
        if (clg_lower_pieces_fit(out, a, node->n_in, ps))
            return clg_lower_pieces(lw, out, a, node->n_in, ps, 0.0f);
        at = 0;
    }
    for (int i = 0; i < node->n_in; ++i) {
        clg_operand part = clg_operand_view(out, out->offset + at * out->strides[a], out->ndim,
                                            in[i].shape, out->strides);
        clg_status st = clg_lower_copy(lw, &part, &in[i]);
        if (st != CLG_OK) return st;
        at += in[i].shape[a];
    }
    return CLG_OK;
}
