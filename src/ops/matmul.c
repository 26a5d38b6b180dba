/* Matrix products: 2-D and batched with broadcast batch dimensions, either operand
 * transposed. Lowered to one GEMM call (strided-batched when there is a batch), reading
 * views in place when their layout allows (transposed views become transpose flags). */
#include <string.h>

#include "ops/matmul.h"

/* attrs.matmul: the transposes. The GEMM can absorb a bias add and then an activation. */
static const clg_op_info op_matmul = {.name = "matmul",
                                      .kind = CLG_KIND_KERNEL,
                                      .backward = clg_matmul_backward,
                                      .lower = clg_matmul_lower,
                                      .absorb = clg_matmul_absorb,
                                      .lower_epilogue = clg_matmul_lower_epilogue};

/* How GEMM reads a stored matrix [rows, cols] with these strides: row-major with leading
 * dimension ld, or (flip) column-major, i.e. row-major of the transpose. */
static bool matrix_layout(int64_t rows, int64_t cols, int64_t srow, int64_t scol, bool *flip,
                          int64_t *ld) {
    /* Strides of size-1 dimensions are meaningless; pick the ones that make a layout work. */
    if (cols == 1) scol = 1;
    if (rows == 1) srow = scol == 1 ? cols : 1;
    if (scol == 1 && srow >= cols) {
        *flip = false;
        *ld = srow;
        return true;
    }
    if (srow == 1 && scol >= rows) {
        *flip = true;
        *ld = scol;
        return true;
    }
    return false;
}

/* Collapse the batch dims of an operand (aligned right with the output's batch dims,
 * broadcast dims having stride 0) into one stride. */
static bool batch_stride(int out_nb, const int64_t *out_batch, int nb, const int64_t *shape,
                         const int64_t *strides, int64_t *stride) {
    int64_t s[CLG_MAX_DIMS];
    for (int i = 0; i < out_nb; ++i) {
        int j = i - (out_nb - nb);
        s[i] = (j < 0 || shape[j] == 1) ? 0 : strides[j];
    }
    int64_t result = -1;
    for (int i = out_nb - 1; i >= 0; --i) {
        if (out_batch[i] == 1) continue;
        if (result < 0) {
            result = s[i];
            continue;
        }
        /* the next outer dim must step over this whole inner run */
        int64_t inner = 1;
        for (int k = i + 1; k < out_nb; ++k) inner *= out_batch[k];
        if (s[i] != result * inner) return false;
    }
    *stride = result < 0 ? 0 : result;
    return true;
}

/* Whether GEMM reads x in place: a row- or column-major matrix (either serves any transpose,
 * the layout flips it) with one stride per batch. */
static bool operand_ok(const clg_tensor *x, int out_nb, const int64_t *out_batch) {
    int r = x->ndim;
    bool flip;
    int64_t ld, bs;
    return matrix_layout(x->shape[r - 2], x->shape[r - 1], x->strides[r - 2], x->strides[r - 1],
                         &flip, &ld) &&
           batch_stride(out_nb, out_batch, r - 2, x->shape, x->strides, &bs);
}

static clg_tensor *matmul(clg_graph *g, clg_tensor *a, clg_tensor *b, bool trans_a, bool trans_b,
                          const clg_op_info *info, clg_tensor *extra) {
    CLG_GUARD(g, "matmul", 2, a, b);
    char sa[200], sb[200];
    if (a->ndim < 2 || b->ndim < 2)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "matmul: operands need at least 2 dimensions, got %s and %s",
                              clg_shape_str(a->ndim, a->shape, sa, sizeof sa),
                              clg_shape_str(b->ndim, b->shape, sb, sizeof sb));
    int ra = a->ndim, rb = b->ndim;
    int64_t m = trans_a ? a->shape[ra - 1] : a->shape[ra - 2];
    int64_t ka = trans_a ? a->shape[ra - 2] : a->shape[ra - 1];
    int64_t kb = trans_b ? b->shape[rb - 1] : b->shape[rb - 2];
    int64_t n = trans_b ? b->shape[rb - 2] : b->shape[rb - 1];
    if (ka != kb)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "matmul: inner dimensions differ: %s%s x %s%s (%lld vs %lld)",
                              clg_shape_str(a->ndim, a->shape, sa, sizeof sa),
                              trans_a ? "^T" : "",
                              clg_shape_str(b->ndim, b->shape, sb, sizeof sb),
                              trans_b ? "^T" : "", (long long)ka, (long long)kb);
    int nb;
    int64_t batch[CLG_MAX_DIMS];
    if (!clg_broadcast_shape(ra - 2, a->shape, rb - 2, b->shape, &nb, batch))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "matmul: batch dimensions of %s and %s differ",
                              clg_shape_str(a->ndim, a->shape, sa, sizeof sa),
                              clg_shape_str(b->ndim, b->shape, sb, sizeof sb));
    if (a->dtype != CLG_F32) a = clg_cast(g, a, CLG_F32);
    if (b->dtype != CLG_F32) b = clg_cast(g, b, CLG_F32);
    /* Views GEMM cannot read in place are copied (a broadcast that does not collapse into
     * one batch stride is materialised at full size). */
    clg_tensor *ops[2] = {a, b};
    for (int i = 0; i < 2; ++i) {
        clg_tensor *x = ops[i];
        if (operand_ok(x, nb, batch)) continue;
        x = clg_contiguous(g, x);
        if (!operand_ok(x, nb, batch)) {
            int64_t full[CLG_MAX_DIMS];
            memcpy(full, batch, (size_t)nb * sizeof *batch);
            full[nb] = x->shape[x->ndim - 2];
            full[nb + 1] = x->shape[x->ndim - 1];
            x = clg_contiguous(g, clg_broadcast_to(g, x, nb + 2, full));
        }
        ops[i] = x;
    }
    if (g->error) return g->poison;
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, batch, (size_t)nb * sizeof *batch);
    shape[nb] = m;
    shape[nb + 1] = n;
    clg_tensor *ins[3] = {ops[0], ops[1], extra};
    clg_tensor *t = clg_kernel_node(g, info, CLG_F32, nb + 2, shape, extra ? 3 : 2, ins);
    if (t != g->poison)
        t->attrs = (clg_attrs){.kind = CLG_ATTRS_MATMUL,
                               .matmul = {.trans_a = trans_a, .trans_b = trans_b}};
    return t;
}

clg_tensor *clg_matmul(clg_graph *g, clg_tensor *a, clg_tensor *b, bool trans_a, bool trans_b) {
    return matmul(g, a, b, trans_a, trans_b, &op_matmul, NULL);
}

clg_tensor *clg_matmul_node(clg_graph *g, clg_tensor *a, clg_tensor *b, const clg_op_info *info,
                            clg_tensor *extra) {
    if (extra && !clg_check_inputs(g, info->name, 1, &extra)) return g->poison;
    return matmul(g, a, b, false, false, info, extra);
}

/* Weight gradients of a batched activation times a 2-D weight fold the batch into the rows:
 * one GEMM instead of a batched product and a sum. */
static clg_tensor *fold_rows(clg_graph *g, clg_tensor *x) {
    if (x->ndim <= 2) return x;
    int64_t s[2] = {-1, x->shape[x->ndim - 1]};
    return clg_reshape(g, x, 2, s);
}

void clg_matmul_backward(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *a = node->in[0], *b = node->in[1];
    bool ta = node->attrs.matmul.trans_a, tb = node->attrs.matmul.trans_b;
    if (clg_needs_grad(a)) {
        clg_tensor *da = ta ? clg_matmul(g, b, gout, tb, true) : clg_matmul(g, gout, b, false, !tb);
        clg_grad_accumulate(g, a, clg_sum_to_shape(g, da, a->ndim, a->shape));
    }
    if (clg_needs_grad(b)) {
        clg_tensor *db;
        if (b->ndim == 2 && node->ndim > 2 && !ta && a->ndim == node->ndim) {
            clg_tensor *a2 = fold_rows(g, a), *g2 = fold_rows(g, gout);
            db = tb ? clg_matmul(g, g2, a2, true, false) : clg_matmul(g, a2, g2, true, false);
        } else {
            db = tb ? clg_matmul(g, gout, a, true, ta) : clg_matmul(g, a, gout, !ta, false);
        }
        clg_grad_accumulate(g, b, clg_sum_to_shape(g, db, b->ndim, b->shape));
    }
}

static void gemm_operand(const clg_operand *x, bool trans, int out_nb, const int64_t *out_batch,
                         cl_mem *mem, size_t *off, size_t *ld, size_t *stride, bool *t) {
    int r = x->ndim;
    bool flip = false;
    int64_t l = 1, bs = 0;
    matrix_layout(x->shape[r - 2], x->shape[r - 1], x->strides[r - 2], x->strides[r - 1], &flip,
                  &l);
    batch_stride(out_nb, out_batch, r - 2, x->shape, x->strides, &bs);
    *mem = x->mem;
    *off = (size_t)x->offset;
    *ld = (size_t)l;
    *stride = (size_t)bs;
    *t = trans != flip;
}

/* Strides of an operand of rank <= out_ndim read over out's shape (0 where broadcast). */
static void aligned_strides(const clg_operand *x, int out_ndim, int64_t *st) {
    for (int d = 0; d < out_ndim; ++d) {
        int j = d - (out_ndim - x->ndim);
        st[d] = (j < 0 || x->shape[j] == 1) ? 0 : x->strides[j];
    }
}

/* m -> add(bias) [-> relu | tanh | sigmoid | gelu]: the bias must be a buffer the product can
 * read over its own shape (through prev, a reshape of m, if any) without varying along the
 * batch dims; an activation comes only after a bias, reading it. */
bool clg_matmul_absorb(const clg_tensor *m, const clg_tensor *prev, const clg_tensor *u,
                       clg_epilogue *epi) {
    if (u->info->epilogue == CLG_EPILOGUE_ACTIVATION) {
        if (!epi->bias || epi->activation || u->in[0] != prev || !clg_same_shape(u, prev))
            return false;
        epi->activation = u->info->activation;
        return true;
    }
    if (u->info->epilogue != CLG_EPILOGUE_BIAS || epi->bias || u->dtype != CLG_F32 ||
        !clg_same_shape(u, prev))
        return false;
    const clg_tensor *bias = u->in[0] == prev ? u->in[1] : u->in[0];
    if (bias == m || bias == prev || bias->info->kind == CLG_KIND_SCALAR ||
        bias->base->info->kind == CLG_KIND_SCALAR || bias->ndim > u->ndim ||
        bias->dtype != CLG_F32)
        return false;
    /* the bias's broadcast strides over u's shape, seen through the reshape */
    int64_t su[CLG_MAX_DIMS], sm[CLG_MAX_DIMS];
    for (int d = 0; d < u->ndim; ++d) {
        int j = d - (u->ndim - bias->ndim);
        su[d] = (j < 0 || bias->shape[j] == 1) ? 0 : bias->strides[j];
    }
    if (!clg_reshape_strides(u->ndim, u->shape, su, m->ndim, m->shape, sm)) return false;
    for (int d = 0; d < m->ndim - 2; ++d)
        if (m->shape[d] != 1 && sm[d] != 0) return false;
    epi->bias = bias;
    epi->bias_ndim = m->ndim;
    memcpy(epi->bias_shape, m->shape, sizeof epi->bias_shape);
    memcpy(epi->bias_strides, sm, sizeof epi->bias_strides);
    return true;
}

/* C = act(A B + bias) into out (a later node's storage when the product absorbed it). */
static clg_status lower_gemm(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                             const clg_operand *out, const clg_operand *bias, clg_gemm_act act) {
    int nb = node->ndim - 2;
    const int64_t *batch = node->shape;
    clg_gemm_call c = {0};
    bool ta, tb;
    const clg_attr_matmul *mm = &node->attrs.matmul;
    gemm_operand(&in[0], mm->trans_a, nb, batch, &c.a, &c.a_off, &c.lda, &c.a_stride, &ta);
    gemm_operand(&in[1], mm->trans_b, nb, batch, &c.b, &c.b_off, &c.ldb, &c.b_stride, &tb);
    c.trans_a = ta;
    c.trans_b = tb;
    c.m = (size_t)node->shape[nb];
    c.n = (size_t)node->shape[nb + 1];
    int ra = in[0].ndim;
    c.k = (size_t)(mm->trans_a ? in[0].shape[ra - 2] : in[0].shape[ra - 1]);
    c.alpha = 1.0f;
    c.beta = 0.0f;
    c.c = out->mem;
    c.c_off = (size_t)out->offset;
    c.ldc = c.n;
    c.c_stride = c.m * c.n;
    c.batch = (size_t)clg_shape_numel(nb, batch);
    c.act = act;
    if (bias) {
        int64_t st[CLG_MAX_DIMS];
        aligned_strides(bias, node->ndim, st);
        c.bias = bias->mem;
        c.bias_off = (size_t)bias->offset;
        c.bias_rs = (size_t)st[nb];
        c.bias_cs = (size_t)st[nb + 1];
    }
    /* B shared by every batch entry and A's rows contiguous across the batch: one GEMM with
     * batch * m rows (not when a bias varies by row: its row index would change meaning). */
    if (c.batch > 1 && c.b_stride == 0 && !c.trans_a && c.a_stride == c.m * c.lda &&
        c.bias_rs == 0) {
        c.m *= c.batch;
        c.batch = 1;
    }
    if (c.batch == 1) c.a_stride = c.b_stride = c.c_stride = 0;
    return clg_lower_gemm(lw, &c, act != CLG_GEMM_ACT_NONE || bias ? "matmul+epilogue" : "matmul");
}

clg_status clg_matmul_lower(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                            const clg_operand *out) {
    return lower_gemm(lw, node, in, out, NULL, CLG_GEMM_ACT_NONE);
}

clg_status clg_matmul_lower_epilogue(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                     const clg_operand *out, const clg_epilogue *epi,
                                     const clg_operand *bias) {
    return lower_gemm(lw, node, in, out, bias, (clg_gemm_act)epi->activation);
}
