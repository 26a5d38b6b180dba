/* Movement and indexing ops on the device against plain-C references: views (reshape, flatten,
 * permute, transpose, squeeze, unsqueeze, slice, broadcast_to), copies (reshape of a view that
 * must copy, contiguous, concat, stack, pad), gathers (index_select, embedding, scatter_add,
 * one_hot, arange), split and chunk, copies and fills of awkward sizes, and the gradients of
 * the differentiable ones through clg_gradcheck; the gradient of an LSTM's gate slices
 * against C and its plan (pieces written into place, no fill). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "graph/graph_internal.h"
#include "harness.h"
#include "runtime/plan.h"

/* ---- plain-C references ---- */

/* out[i] = src[off + sum_d c_d * st_d], c the row-major coordinates of i in shape: the value
 * of any strided view of dense host data. */
static void view_ref(const float *src, int nd, const int64_t *shape, int64_t off, const int64_t *st,
                     float *out) {
    int64_t n = 1;
    for (int d = 0; d < nd; ++d)
        n *= shape[d];
    for (int64_t i = 0; i < n; ++i) {
        int64_t r = i, o = off;
        for (int d = nd - 1; d >= 0; --d) {
            o += (r % shape[d]) * st[d];
            r /= shape[d];
        }
        out[i] = src[o];
    }
}

static int64_t numel_of(int nd, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < nd; ++d)
        n *= shape[d];
    return n;
}

/* Concatenation of n dense arrays (all of rank nd) along axis. */
static void concat_ref(int n, const float *const *src, const int64_t *const *shapes, int nd,
                       int axis, float *out) {
    int64_t outer = numel_of(axis, shapes[0]);
    int64_t inner = numel_of(nd - axis - 1, shapes[0] + axis + 1);
    float *o = out;
    for (int64_t p = 0; p < outer; ++p)
        for (int i = 0; i < n; ++i) {
            int64_t run = shapes[i][axis] * inner;
            memcpy(o, src[i] + p * run, (size_t)run * sizeof *o);
            o += run;
        }
}

/* x (dense, shape) placed at before[] inside an array of shape + before + after filled with
 * value. */
static void pad_ref(const float *x, int nd, const int64_t *shape, const int64_t *before,
                    const int64_t *after, float value, float *out) {
    int64_t os[CLG_MAX_DIMS], ost[CLG_MAX_DIMS];
    for (int d = 0; d < nd; ++d)
        os[d] = shape[d] + before[d] + after[d];
    int64_t s = 1;
    for (int d = nd - 1; d >= 0; --d) {
        ost[d] = s;
        s *= os[d];
    }
    for (int64_t i = 0; i < s; ++i)
        out[i] = value;
    int64_t n = numel_of(nd, shape);
    for (int64_t i = 0; i < n; ++i) {
        int64_t r = i, o = 0;
        for (int d = nd - 1; d >= 0; --d) {
            o += (r % shape[d] + before[d]) * ost[d];
            r /= shape[d];
        }
        out[o] = x[i];
    }
}

/* index_select on dense x: out[o, c, j] = x[o, idx[c], j] or 0 out of range. */
static void index_select_ref(const float *x, int nd, const int64_t *shape, int axis,
                             const int32_t *idx, int64_t count, float *out) {
    int64_t outer = numel_of(axis, shape), inner = numel_of(nd - axis - 1, shape + axis + 1);
    int64_t dim = shape[axis];
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t c = 0; c < count; ++c)
            for (int64_t j = 0; j < inner; ++j) {
                int32_t k = idx[c];
                out[(o * count + c) * inner + j] =
                    (k >= 0 && k < dim) ? x[(o * dim + k) * inner + j] : 0.0f;
            }
}

/* scatter_add on dense src, summed in index order (as the kernel promises determinism, the
 * order is part of the contract only through bit-identical repeats; values are compared). */
static void scatter_add_ref(const float *src, int nd, const int64_t *shape, int axis,
                            const int32_t *idx, int64_t dim_size, float *out) {
    int64_t outer = numel_of(axis, shape), inner = numel_of(nd - axis - 1, shape + axis + 1);
    int64_t count = shape[axis];
    memset(out, 0, (size_t)(outer * dim_size * inner) * sizeof *out);
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t c = 0; c < count; ++c) {
            int32_t k = idx[c];
            if (k < 0 || k >= dim_size) continue;
            for (int64_t j = 0; j < inner; ++j)
                out[(o * dim_size + k) * inner + j] += src[(o * count + c) * inner + j];
        }
}

/* ---- expectations: outputs of one graph checked after one run ---- */

#define MAX_CASES 96

typedef struct expect {
    const char *what;
    clg_tensor *t;
    int nd;
    int64_t shape[CLG_MAX_DIMS];
    float *want; /* numel values (i32 outputs: exact integers) */
} expect;

typedef struct expect_list {
    expect e[MAX_CASES];
    int n;
} expect_list;

/* Mark t as an output expected to have this shape; returns the buffer for its values. */
static float *expect_add(expect_list *l, clg_graph *g, const char *what, clg_tensor *t, int nd,
                         const int64_t *shape) {
    ck_assert_int_lt(l->n, MAX_CASES);
    ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s: graph error %s", what, clg_graph_error(g));
    clg_assert_ok(clg_graph_output(g, t));
    expect *e = &l->e[l->n++];
    e->what = what;
    e->t = t;
    e->nd = nd;
    memcpy(e->shape, shape, (size_t)nd * sizeof *shape);
    e->want = calloc((size_t)numel_of(nd, shape), sizeof *e->want);
    ck_assert_ptr_nonnull(e->want);
    return e->want;
}

/* A view expectation: the view itself (read back through the host gather of strided outputs)
 * and its contiguous copy (the device's strided copy kernel), both against view_ref. */
static void expect_view(expect_list *l, clg_graph *g, const char *what, clg_tensor *t,
                        const float *src, int nd, const int64_t *shape, int64_t off,
                        const int64_t *st) {
    view_ref(src, nd, shape, off, st, expect_add(l, g, what, t, nd, shape));
    view_ref(src, nd, shape, off, st, expect_add(l, g, what, clg_contiguous(g, t), nd, shape));
}

static void expect_check(clg_plan *p, expect_list *l) {
    for (int i = 0; i < l->n; ++i) {
        expect *e = &l->e[i];
        ck_assert_msg(clg_tensor_ndim(e->t) == e->nd, "%s: rank %d, want %d", e->what,
                      clg_tensor_ndim(e->t), e->nd);
        for (int d = 0; d < e->nd; ++d)
            ck_assert_msg(clg_tensor_shape(e->t)[d] == e->shape[d], "%s: dim %d is %lld, want %lld",
                          e->what, d, (long long)clg_tensor_shape(e->t)[d], (long long)e->shape[d]);
        size_t n = (size_t)numel_of(e->nd, e->shape);
        float *got = malloc(n * sizeof *got);
        ck_assert_ptr_nonnull(got);
        if (clg_tensor_dtype(e->t) == CLG_I32) {
            int32_t *gi = malloc(n * sizeof *gi);
            ck_assert_ptr_nonnull(gi);
            clg_assert_ok(clg_plan_read(p, e->t, gi, n * sizeof *gi));
            for (size_t k = 0; k < n; ++k)
                got[k] = (float)gi[k];
            free(gi);
        } else {
            clg_assert_ok(clg_plan_read(p, e->t, got, n * sizeof *got));
        }
        for (size_t k = 0; k < n; ++k)
            if (!(got[k] == e->want[k])) {
                float gk = got[k], wk = e->want[k];
                free(got);
                ck_abort_msg("%s: element %zu of %zu is %.8g, want %.8g", e->what, k, n, (double)gk,
                             (double)wk);
            }
        free(got);
    }
}

static void expect_free(expect_list *l) {
    for (int i = 0; i < l->n; ++i)
        free(l->e[i].want);
    l->n = 0;
}

static clg_tensor *input_f32(clg_graph *g, const char *name, int nd, const int64_t *shape,
                             float *values, uint64_t seed) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, values, (size_t)numel_of(nd, shape), -2.0f, 2.0f);
    return clg_input(g, name, CLG_F32, nd, shape);
}

static void write_f32(clg_plan *p, clg_tensor *t, const float *v) {
    clg_assert_ok(clg_plan_write(p, t, v, (size_t)clg_tensor_numel(t) * sizeof *v));
}

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), S(__VA_ARGS__)

/* ---- views and reshapes ---- */

START_TEST(views_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float xv[120], yv[21];
    clg_tensor *x = input_f32(g, "x", ND(2, 3, 4, 5), xv, 11); /* strides 60 20 5 1 */
    clg_tensor *y = input_f32(g, "y", ND(3, 1, 7), yv, 12);    /* strides 7 7 1 */
    expect_list *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);

    expect_view(l, g, "reshape [6,-1]", clg_reshape(g, x, ND(6, -1)), xv, ND(6, 20), 0, S(20, 1));
    expect_view(l, g, "reshape [-1]", clg_reshape(g, x, ND(-1)), xv, ND(120), 0, S(1));
    expect_view(l, g, "flatten 1", clg_flatten(g, x, 1), xv, ND(2, 60), 0, S(60, 1));
    expect_view(l, g, "flatten 0", clg_flatten(g, x, 0), xv, ND(120), 0, S(1));
    expect_view(l, g, "flatten -2", clg_flatten(g, x, -2), xv, ND(2, 3, 20), 0, S(60, 20, 1));

    clg_tensor *p = clg_permute(g, x, (const int[]){2, 0, 3, 1});
    expect_view(l, g, "permute 2031", p, xv, ND(4, 2, 5, 3), 0, S(5, 60, 1, 20));
    expect_view(l, g, "permute negative axes", clg_permute(g, x, (const int[]){-1, 0, -2, 1}), xv,
                ND(5, 2, 4, 3), 0, S(1, 60, 5, 20));
    expect_view(l, g, "transpose 0,-1", clg_transpose(g, x, 0, -1), xv, ND(5, 3, 4, 2), 0,
                S(1, 20, 5, 60));

    /* reshapes of non-contiguous views: a copy exactly when the layout cannot be a view */
    clg_tensor *rp = clg_reshape(g, p, ND(8, 15));
    ck_assert_msg(rp->base != x->base, "reshape of a permuted view must copy");
    view_ref(xv, ND(4, 2, 5, 3), 0, S(5, 60, 1, 20),
             expect_add(l, g, "reshape(permute) [8,15]", rp, ND(8, 15)));
    clg_tensor *rp2 = clg_reshape(g, p, ND(4, -1));
    ck_assert_msg(rp2->base != x->base, "reshape of a permuted view to [4,30] must copy");
    view_ref(xv, ND(4, 2, 5, 3), 0, S(5, 60, 1, 20),
             expect_add(l, g, "reshape(permute) [4,-1]", rp2, ND(4, 30)));
    clg_tensor *sx = clg_slice(g, x, 2, 0, 3, 1); /* [2,3,3,5], strides 60 20 5 1 */
    clg_tensor *r45 = clg_reshape(g, sx, ND(2, 45));
    ck_assert_msg(r45->base != x->base, "reshape of [2,3,3,5] slice to [2,45] must copy");
    view_ref(xv, ND(2, 3, 3, 5), 0, S(60, 20, 5, 1),
             expect_add(l, g, "reshape(slice) [2,45] (copy)", r45, ND(2, 45)));
    clg_tensor *r15 = clg_reshape(g, sx, ND(6, 15));
    ck_assert_msg(r15->base == x->base, "reshape of [2,3,3,5] slice to [6,15] is a view");
    expect_view(l, g, "reshape(slice) [6,15] (view)", r15, xv, ND(6, 15), 0, S(20, 1));
    clg_tensor *r12 = clg_reshape(g, clg_slice(g, x, 0, 1, 2, 1), ND(12, 5));
    ck_assert_msg(r12->base == x->base, "reshape of a leading slice is a view");
    expect_view(l, g, "reshape(slice axis 0) [12,5]", r12, xv, ND(12, 5), 60, S(5, 1));
    clg_tensor *r24 = clg_reshape(g, clg_slice(g, x, 3, 0, 4, 2), ND(24, 2));
    ck_assert_msg(r24->base == x->base, "reshape of a stepped last-axis slice is a view");
    expect_view(l, g, "reshape(slice step 2) [24,2]", r24, xv, ND(24, 2), 0, S(5, 2));
    clg_tensor *ty = clg_transpose(g, y, 0, 2); /* [7,1,3] strides 1 7 7 */
    clg_tensor *ry = clg_reshape(g, ty, ND(21));
    ck_assert_msg(ry->base != y->base, "flattening a transposed view must copy");
    view_ref(yv, ND(7, 1, 3), 0, S(1, 7, 7), expect_add(l, g, "reshape(transpose y)", ry, ND(21)));
    view_ref(xv, ND(4, 2, 5, 3), 0, S(5, 60, 1, 20),
             expect_add(l, g, "contiguous(permute)", clg_contiguous(g, p), ND(4, 2, 5, 3)));

    /* squeeze / unsqueeze */
    expect_view(l, g, "unsqueeze 0", clg_unsqueeze(g, x, 0), xv, ND(1, 2, 3, 4, 5), 0,
                S(0, 60, 20, 5, 1));
    expect_view(l, g, "unsqueeze -1", clg_unsqueeze(g, x, -1), xv, ND(2, 3, 4, 5, 1), 0,
                S(60, 20, 5, 1, 0));
    expect_view(l, g, "unsqueeze 2", clg_unsqueeze(g, x, 2), xv, ND(2, 3, 1, 4, 5), 0,
                S(60, 20, 0, 5, 1));
    expect_view(l, g, "squeeze 1", clg_squeeze(g, y, 1), yv, ND(3, 7), 0, S(7, 1));
    clg_tensor *sq = clg_squeeze(g, ty, 1);
    ck_assert_msg(sq->base == y->base, "squeezing a transposed view needs no copy");
    expect_view(l, g, "squeeze(transpose)", sq, yv, ND(7, 3), 0, S(1, 7));
    ck_assert_ptr_eq(clg_squeeze(g, clg_unsqueeze(g, x, 2), 2)->base, x);

    /* slices: step, negative and clamped bounds, slices of slices */
    expect_view(l, g, "slice [1:4:2] axis 2", clg_slice(g, x, 2, 1, 4, 2), xv, ND(2, 3, 2, 5), 5,
                S(60, 20, 10, 1));
    expect_view(l, g, "slice [-4:-1] axis -1", clg_slice(g, x, -1, -4, -1, 1), xv, ND(2, 3, 4, 3),
                1, S(60, 20, 5, 1));
    expect_view(l, g, "slice [-100:100:2] axis 1", clg_slice(g, x, 1, -100, 100, 2), xv,
                ND(2, 2, 4, 5), 0, S(60, 40, 5, 1));
    expect_view(l, g, "slice [2:100:3] axis 3", clg_slice(g, x, 3, 2, 100, 3), xv, ND(2, 3, 4, 1),
                2, S(60, 20, 5, 3));
    expect_view(l, g, "slice [-1:2] axis 0", clg_slice(g, x, 0, -1, 2, 1), xv, ND(1, 3, 4, 5), 60,
                S(60, 20, 5, 1));
    expect_view(l, g, "slice y [6:7:5] axis 2", clg_slice(g, y, 2, 6, 7, 5), yv, ND(3, 1, 1), 6,
                S(7, 7, 5));
    expect_view(l, g, "slice of slice", clg_slice(g, clg_slice(g, x, 2, 1, 4, 2), 3, 1, 5, 2), xv,
                ND(2, 3, 2, 2), 6, S(60, 20, 10, 2));
    expect_view(l, g, "slice of permute", clg_slice(g, p, 3, 1, 3, 1), xv, ND(4, 2, 5, 2), 20,
                S(5, 60, 1, 20));
    ck_assert_ptr_eq(clg_slice(g, x, 1, 0, 3, 1), x); /* the whole axis is x itself */

    /* broadcast_to */
    expect_view(l, g, "broadcast_to [2,3,5,7]", clg_broadcast_to(g, y, ND(2, 3, 5, 7)), yv,
                ND(2, 3, 5, 7), 0, S(0, 7, 0, 1));
    expect_view(l, g, "broadcast_to of squeeze",
                clg_broadcast_to(g, clg_squeeze(g, y, 1), ND(4, 3, 7)), yv, ND(4, 3, 7), 0,
                S(0, 7, 1));
    expect_view(l, g, "broadcast_to of transpose", clg_broadcast_to(g, ty, ND(2, 7, 4, 3)), yv,
                ND(2, 7, 4, 3), 0, S(0, 1, 0, 7));

    clg_plan *plan = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &plan));
    write_f32(plan, x, xv);
    write_f32(plan, y, yv);
    clg_assert_ok(clg_plan_run(plan));
    expect_check(plan, l);
    clg_plan_free(plan);
    expect_free(l);
    free(l);
    clg_graph_free(g);
}
END_TEST

/* ---- concat, stack, pad ---- */

START_TEST(concat_stack_pad_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float av[24], bv[40], cv[8], dv[24], ev[54];
    clg_tensor *a = input_f32(g, "a", ND(2, 3, 4), av, 21);
    clg_tensor *b = input_f32(g, "b", ND(2, 5, 4), bv, 22);
    clg_tensor *c = input_f32(g, "c", ND(2, 1, 4), cv, 23);
    clg_tensor *d = input_f32(g, "d", ND(4, 3, 2), dv, 24);
    clg_tensor *e = input_f32(g, "e", ND(2, 3, 9), ev, 25);
    int32_t qv[6] = {-3, 0, 17, 5, 2147483647, -2147483647 - 1};
    clg_tensor *q = clg_input(g, "q", CLG_I32, ND(3, 2));
    /* [2,3,4] views: a transposed one and a stepped slice */
    clg_tensor *dt = clg_permute(g, d, (const int[]){2, 1, 0});
    clg_tensor *es = clg_slice(g, e, 2, 1, 9, 2);
    float dtv[24], esv[24], bcv[16];
    view_ref(dv, ND(2, 3, 4), 0, S(1, 2, 6), dtv);
    view_ref(ev, ND(2, 3, 4), 1, S(27, 9, 2), esv);
    const int64_t s234[] = {2, 3, 4};
    expect_list *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);

    {
        clg_tensor *xs[] = {a, dt, es};
        const float *src[] = {av, dtv, esv};
        const int64_t *sh[] = {s234, s234, s234};
        concat_ref(
            3, src, sh, 3, 0,
            expect_add(l, g, "concat axis 0 of views", clg_concat(g, 3, xs, 0), ND(6, 3, 4)));
    }
    {
        clg_tensor *xs[] = {a, b, c, a};
        const float *src[] = {av, bv, cv, av};
        const int64_t *sh[] = {s234, S(2, 5, 4), S(2, 1, 4), s234};
        concat_ref(4, src, sh, 3, 1,
                   expect_add(l, g, "concat axis 1 of 4", clg_concat(g, 4, xs, 1), ND(2, 12, 4)));
    }
    {
        clg_tensor *xs[] = {a, dt};
        const float *src[] = {av, dtv};
        const int64_t *sh[] = {s234, s234};
        concat_ref(2, src, sh, 3, 2,
                   expect_add(l, g, "concat axis -1 of 2", clg_concat(g, 2, xs, -1), ND(2, 3, 8)));
    }
    {
        clg_tensor *xs[] = {es, a, dt};
        const float *src[] = {esv, av, dtv};
        const int64_t *sh[] = {s234, s234, s234};
        concat_ref(
            3, src, sh, 3, 2,
            expect_add(l, g, "concat last axis of 3", clg_concat(g, 3, xs, 2), ND(2, 3, 12)));
    }
    {
        /* two views of one buffer, and a broadcast */
        clg_tensor *bc = clg_broadcast_to(g, c, ND(2, 2, 4));
        view_ref(cv, ND(2, 2, 4), 0, S(4, 0, 1), bcv);
        clg_tensor *xs[] = {clg_slice(g, e, 1, 2, 3, 1), clg_slice(g, e, 1, 0, 1, 1)};
        float e2[18], e0[18];
        view_ref(ev, ND(2, 1, 9), 18, S(27, 9, 1), e2);
        view_ref(ev, ND(2, 1, 9), 0, S(27, 9, 1), e0);
        const float *src[] = {e2, e0};
        const int64_t *sh[] = {S(2, 1, 9), S(2, 1, 9)};
        concat_ref(2, src, sh, 3, 1,
                   expect_add(l, g, "concat of two slices of one buffer", clg_concat(g, 2, xs, 1),
                              ND(2, 2, 9)));
        clg_tensor *ys[] = {bc, a};
        const float *src2[] = {bcv, av};
        const int64_t *sh2[] = {S(2, 2, 4), s234};
        concat_ref(2, src2, sh2, 3, 1,
                   expect_add(l, g, "concat of a broadcast", clg_concat(g, 2, ys, 1), ND(2, 5, 4)));
    }
    ck_assert_ptr_eq(clg_concat(g, 1, (clg_tensor *const[]){a}, 0), a);
    /* i32 data moves as raw words: extremes survive (checked exactly after the run) */
    clg_tensor *qcat = clg_concat(g, 2, (clg_tensor *const[]){q, q}, 0);
    clg_assert_ok(clg_graph_output(g, qcat));

    /* stack = concat of unsqueezed inputs */
    {
        clg_tensor *xs[] = {a, dt};
        const float *src[] = {av, dtv};
        const int64_t *sh[] = {S(1, 24), S(1, 24)};
        concat_ref(2, src, sh, 2, 0,
                   expect_add(l, g, "stack axis 0", clg_stack(g, 2, xs, 0), ND(2, 2, 3, 4)));
    }
    {
        clg_tensor *xs[] = {a, es, dt};
        const float *src[] = {av, esv, dtv};
        const int64_t *sh[] = {S(24, 1), S(24, 1), S(24, 1)};
        concat_ref(3, src, sh, 2, 1,
                   expect_add(l, g, "stack axis -1", clg_stack(g, 3, xs, -1), ND(2, 3, 4, 3)));
    }
    {
        clg_tensor *xs[] = {a, a};
        const float *src[] = {av, av};
        const int64_t *sh[] = {S(2, 1, 12), S(2, 1, 12)};
        concat_ref(2, src, sh, 3, 1,
                   expect_add(l, g, "stack axis 1", clg_stack(g, 2, xs, 1), ND(2, 2, 3, 4)));
    }
    memcpy(expect_add(l, g, "stack of one", clg_stack(g, 1, (clg_tensor *const[]){c}, 0),
                      ND(1, 2, 1, 4)),
           cv, sizeof cv);

    /* pad */
    pad_ref(av, ND(2, 3, 4), S(1, 0, 2), S(0, 3, 1), -1.5f,
            expect_add(l, g, "pad a", clg_pad(g, a, S(1, 0, 2), S(0, 3, 1), -1.5f), ND(3, 6, 7)));
    pad_ref(dtv, ND(2, 3, 4), S(0, 1, 0), S(1, 0, 0), 0.0f,
            expect_add(l, g, "pad of a transposed view",
                       clg_pad(g, dt, S(0, 1, 0), S(1, 0, 0), 0.0f), ND(3, 4, 4)));
    pad_ref(
        bcv, ND(2, 2, 4), S(0, 1, 0), S(0, 0, 1), 2.5f,
        expect_add(l, g, "pad of a broadcast",
                   clg_pad(g, clg_broadcast_to(g, c, ND(2, 2, 4)), S(0, 1, 0), S(0, 0, 1), 2.5f),
                   ND(2, 3, 5)));
    ck_assert_ptr_eq(clg_pad(g, a, S(0, 0, 0), S(0, 0, 0), 1.0f), a);
    clg_tensor *qpad = clg_pad(g, q, S(2, 0), S(0, 1), 7.0f);
    ck_assert_int_eq(clg_tensor_dtype(qpad), CLG_I32);
    clg_assert_ok(clg_graph_output(g, qpad));
    clg_plan *plan = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &plan));
    write_f32(plan, a, av);
    write_f32(plan, b, bv);
    write_f32(plan, c, cv);
    write_f32(plan, d, dv);
    write_f32(plan, e, ev);
    clg_assert_ok(clg_plan_write(plan, q, qv, sizeof qv));
    clg_assert_ok(clg_plan_run(plan));
    expect_check(plan, l);
    int32_t got[15];
    clg_assert_ok(clg_plan_read(plan, qcat, got, 12 * sizeof *got));
    for (int i = 0; i < 12; ++i)
        ck_assert_int_eq(got[i], qv[i % 6]);
    clg_assert_ok(clg_plan_read(plan, qpad, got, sizeof got));
    for (int r = 0; r < 5; ++r)
        for (int k = 0; k < 3; ++k) {
            int32_t want = (r >= 2 && k < 2) ? qv[(r - 2) * 2 + k] : 7;
            ck_assert_msg(got[r * 3 + k] == want, "pad i32 [%d,%d]: %d, want %d", r, k,
                          got[r * 3 + k], want);
        }
    clg_plan_free(plan);
    expect_free(l);
    free(l);
    clg_graph_free(g);
}
END_TEST

/* ---- gathers ---- */

START_TEST(index_ops_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float xv[120], tv[21], sv[36], s0v[12];
    clg_tensor *x = input_f32(g, "x", ND(4, 5, 6), xv, 31);
    clg_tensor *table = input_f32(g, "table", ND(7, 3), tv, 32);
    clg_tensor *src = input_f32(g, "src", ND(3, 6, 2), sv, 33);
    clg_tensor *src0 = input_f32(g, "src0", ND(4, 3), s0v, 34);
    /* repeated and out-of-range indices everywhere */
    const int32_t i0[] = {3, 0, 3, -1, 1, 4};
    const int32_t i1[] = {4, 4, 7, 0};
    const int32_t i2[] = {5, 0, 2, 2, 6, 1, -3};
    const int32_t ie[] = {6, 0, 6, 7, 2, -1, 3, 3};
    const int32_t is[] = {2, 0, 2, 2, 4, -1};
    const int32_t is0[] = {1, 1, 0, 9};
    const int32_t ilast[] = {1, 1};
    const int32_t lab[] = {0, 2, 4, 1, 3, -1};
    clg_tensor *idx0 = clg_input(g, "idx0", CLG_I32, ND(6)); /* written at run time */
    clg_tensor *idx1 = clg_constant(g, CLG_I32, ND(4), i1);
    clg_tensor *idx2 = clg_constant(g, CLG_I32, ND(7), i2);
    expect_list *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);

    index_select_ref(
        xv, ND(4, 5, 6), 0, i0, 6,
        expect_add(l, g, "index_select axis 0", clg_index_select(g, x, 0, idx0), ND(6, 5, 6)));
    index_select_ref(
        xv, ND(4, 5, 6), 1, i1, 4,
        expect_add(l, g, "index_select axis 1", clg_index_select(g, x, 1, idx1), ND(4, 4, 6)));
    index_select_ref(
        xv, ND(4, 5, 6), 2, i2, 7,
        expect_add(l, g, "index_select axis -1", clg_index_select(g, x, -1, idx2), ND(4, 5, 7)));
    {
        float pv[120];
        view_ref(xv, ND(6, 4, 5), 0, S(1, 30, 6), pv); /* permute {2,0,1} */
        clg_tensor *p = clg_permute(g, x, (const int[]){2, 0, 1});
        index_select_ref(pv, ND(6, 4, 5), 1, i0, 6,
                         expect_add(l, g, "index_select of a permuted view",
                                    clg_index_select(g, p, 1, idx0), ND(6, 6, 5)));
    }
    {
        float rows[24];
        index_select_ref(tv, ND(7, 3), 0, ie, 8, rows);
        memcpy(expect_add(l, g, "embedding 2-D index",
                          clg_embedding(g, table, clg_constant(g, CLG_I32, ND(2, 4), ie)),
                          ND(2, 4, 3)),
               rows, sizeof rows);
    }
    clg_tensor *sc1 = clg_scatter_add(g, src, 1, clg_constant(g, CLG_I32, ND(6), is), 5);
    scatter_add_ref(sv, ND(3, 6, 2), 1, is, 5,
                    expect_add(l, g, "scatter_add axis 1", sc1, ND(3, 5, 2)));
    scatter_add_ref(s0v, ND(4, 3), 0, is0, 3,
                    expect_add(l, g, "scatter_add axis 0",
                               clg_scatter_add(g, src0, 0, clg_constant(g, CLG_I32, ND(4), is0), 3),
                               ND(3, 3)));
    scatter_add_ref(
        sv, ND(3, 6, 2), 2, ilast, 3,
        expect_add(l, g, "scatter_add axis -1",
                   clg_scatter_add(g, src, -1, clg_constant(g, CLG_I32, ND(2), ilast), 3),
                   ND(3, 6, 3)));
    {
        float *w =
            expect_add(l, g, "one_hot 2-D",
                       clg_one_hot(g, clg_constant(g, CLG_I32, ND(2, 3), lab), 4), ND(2, 3, 4));
        for (int i = 0; i < 6; ++i)
            for (int k = 0; k < 4; ++k)
                w[i * 4 + k] = lab[i] == k ? 1.0f : 0.0f;
        float *w1 = expect_add(l, g, "one_hot 1 class",
                               clg_one_hot(g, clg_constant(g, CLG_I32, ND(6), lab), 1), ND(6, 1));
        for (int i = 0; i < 6; ++i)
            w1[i] = lab[i] == 0 ? 1.0f : 0.0f;
    }
    {
        clg_tensor *af = clg_arange(g, 37, CLG_F32), *ai = clg_arange(g, 10, CLG_I32);
        ck_assert_int_eq(clg_tensor_dtype(af), CLG_F32);
        ck_assert_int_eq(clg_tensor_dtype(ai), CLG_I32);
        float *w = expect_add(l, g, "arange f32", af, ND(37));
        for (int i = 0; i < 37; ++i)
            w[i] = (float)i;
        w = expect_add(l, g, "arange i32", ai, ND(10));
        for (int i = 0; i < 10; ++i)
            w[i] = (float)i;
        w = expect_add(l, g, "arange 1", clg_arange(g, 1, CLG_I32), ND(1));
        w[0] = 0.0f;
        /* arange fused into elementwise work over a broadcast: x[0,0,:] * 0.5 + arange */
        clg_tensor *row =
            clg_reshape(g, clg_slice(g, clg_slice(g, x, 0, 0, 1, 1), 1, 0, 1, 1), ND(6));
        w = expect_add(l, g, "arange fused",
                       clg_add(g, clg_mul_scalar(g, row, 0.5f), clg_arange(g, 6, CLG_F32)), ND(6));
        for (int i = 0; i < 6; ++i)
            w[i] = xv[i] * 0.5f + (float)i;
    }

    clg_plan *plan = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &plan));
    write_f32(plan, x, xv);
    write_f32(plan, table, tv);
    write_f32(plan, src, sv);
    write_f32(plan, src0, s0v);
    clg_assert_ok(clg_plan_write(plan, idx0, i0, sizeof i0));
    clg_assert_ok(clg_plan_run(plan));
    expect_check(plan, l);
    /* scatter_add is deterministic: a second run gives the same bits */
    float first[30], second[30];
    clg_assert_ok(clg_plan_read(plan, sc1, first, sizeof first));
    clg_assert_ok(clg_plan_run(plan));
    clg_assert_ok(clg_plan_read(plan, sc1, second, sizeof second));
    ck_assert_msg(memcmp(first, second, sizeof first) == 0, "scatter_add differs between runs");
    clg_plan_free(plan);
    expect_free(l);
    free(l);
    clg_graph_free(g);
}
END_TEST

/* ---- split, chunk, and copies and fills of awkward sizes ---- */

START_TEST(split_chunk_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    expect_list *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    float xv[5 * 7], yv[6 * 3];
    clg_tensor *x = input_f32(g, "x", ND(5, 7), xv, 71);
    clg_tensor *y = input_f32(g, "y", ND(6, 3), yv, 72);
    clg_tensor *parts[3], *chunks[3], *cols[3];
    clg_assert_ok(clg_split(g, x, -1, 3, S(2, 4, 1), parts));
    clg_assert_ok(clg_chunk(g, y, 3, 0, chunks));
    clg_assert_ok(clg_chunk(g, y, 3, 1, cols));
    const int64_t at[3] = {0, 2, 6}, len[3] = {2, 4, 1};
    for (int i = 0; i < 3; ++i) {
        expect_view(l, g, "split of [5, 7] along 1", parts[i], xv, 2, S(5, len[i]), at[i], S(7, 1));
        expect_view(l, g, "chunk of [6, 3] along 0", chunks[i], yv, 2, S(2, 3), 6 * i, S(3, 1));
        expect_view(l, g, "chunk of [6, 3] along 1", cols[i], yv, 2, S(6, 1), i, S(3, 1));
    }
    /* concatenating the pieces again: one kernel (up to four pieces), or copies (six) */
    clg_tensor *six[6];
    clg_assert_ok(clg_chunk(g, y, 6, 0, six));
    expect_view(l, g, "concat of split pieces", clg_concat(g, 3, parts, 1), xv, 2, S(5, 7), 0,
                S(7, 1));
    expect_view(l, g, "concat of six chunks", clg_concat(g, 6, six, 0), yv, 2, S(6, 3), 0,
                S(3, 1));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    write_f32(p, x, xv);
    write_f32(p, y, yv);
    clg_assert_ok(clg_plan_run(p));
    expect_check(p, l);
    expect_free(l);
    free(l);
    clg_graph_free(g);

    /* sizes that do not add up, or chunks that do not divide: the graph is poisoned */
    clg_tensor *out[4];
    g = clg_graph_new(clg_test_context());
    x = clg_input(g, "x", CLG_F32, ND(5, 7));
    ck_assert_int_eq(clg_split(g, x, 1, 2, S(3, 3), out), CLG_ERR_SHAPE);
    ck_assert_ptr_eq(out[0], out[1]);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    x = clg_input(g, "x", CLG_F32, ND(5, 7));
    ck_assert_int_eq(clg_chunk(g, x, 2, 1, out), CLG_ERR_SHAPE);
    ck_assert_int_eq(clg_split(g, x, 0, 1, S(5), out), CLG_ERR_SHAPE); /* sticky */
    clg_graph_free(g);
}
END_TEST

/* Copies and fills whose runs do not divide evenly on a CPU device (rows longer than a run,
 * rows much shorter, dims that cannot merge), i32 and f32, with guard bytes around every
 * buffer. */
START_TEST(copy_fill_awkward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    expect_list *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    enum { R = 3, C = 2049 };
    float *av = malloc(R * C * sizeof *av), bv[7 * 1030], cv[1030];
    ck_assert_ptr_nonnull(av);
    clg_tensor *a = input_f32(g, "a", ND(R, C), av, 81);
    clg_tensor *b = input_f32(g, "b", ND(7, 1030), bv, 82);
    clg_tensor *c = input_f32(g, "c", ND(1, 1030), cv, 83);
    /* [2049, 3]: rows of 3 under a transposed read */
    expect_view(l, g, "transpose of [3, 2049]", clg_transpose(g, a, 0, 1), av, 2, S(C, R), 0,
                S(1, C));
    /* rows of 2047, not mergeable */
    expect_view(l, g, "slice [:, 1:2048] of [3, 2049]", clg_slice(g, a, 1, 1, 2048, 1), av, 2,
                S(R, 2047), 1, S(C, 1));
    expect_view(l, g, "every other row and column of [7, 1030]",
                clg_slice(g, clg_slice(g, b, 0, 0, 7, 2), 1, 1, 1030, 3), bv, 2, S(4, 343),
                1, S(2060, 3));
    expect_view(l, g, "[1, 1030] broadcast to [5, 1030]", clg_broadcast_to(g, c, ND(5, 1030)), cv,
                2, S(5, 1030), 0, S(0, 1));
    /* embed_pieces: runs that start and end inside pieces, inner dims of 103 */
    expect_view(l, g, "concat of [3, 700] and [3, 1349]",
                clg_concat(g, 2, (clg_tensor *[]){clg_slice(g, a, 1, 0, 700, 1),
                                                   clg_slice(g, a, 1, 700, C, 1)}, 1),
                av, 2, S(R, C), 0, S(C, 1));
    clg_tensor *b3 = clg_reshape(g, b, ND(7, 10, 103)), *bp[2];
    clg_assert_ok(clg_split(g, b3, 1, 2, S(3, 7), bp));
    expect_view(l, g, "concat of [7, 3, 103] and [7, 7, 103]",
                clg_concat(g, 2, (clg_tensor *[]){clg_contiguous(g, bp[0]), bp[1]}, 1), bv, 3,
                S(7, 10, 103), 0, S(1030, 103, 1));
    /* pad: a fill of an awkward shape, then a copy */
    float *want = expect_add(l, g, "pad of [7, 1030] by (1, 0), (2, 1) with 3.5",
                             clg_pad(g, b, S(1, 2), S(0, 1), 3.5f), 2, S(8, 1033));
    pad_ref(bv, 2, S(7, 1030), S(1, 2), S(0, 1), 3.5f, want);
    int32_t iv[5 * 3];
    for (int i = 0; i < 15; ++i) iv[i] = i * 37 - 200;
    clg_tensor *ci = clg_constant(g, CLG_I32, ND(5, 3), iv);
    want = expect_add(l, g, "i32 pad of [5, 3] with -7", clg_pad(g, ci, S(2, 1), S(0, 1), -7.0f),
                      2, S(7, 5));
    float ivf[15];
    for (int i = 0; i < 15; ++i) ivf[i] = (float)iv[i];
    pad_ref(ivf, 2, S(5, 3), S(2, 1), S(0, 1), -7.0f, want);
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 256}, &p));
    write_f32(p, a, av);
    write_f32(p, b, bv);
    write_f32(p, c, cv);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    expect_check(p, l);
    expect_free(l);
    free(l);
    free(av);
    clg_graph_free(g);
}
END_TEST

/* ---- gradients ---- */

/* Inputs filled with seeded values for a gradient check. */
static clg_tensor *gc_input(clg_graph *g, clg_gc_input *in, const char *label, int nd,
                            const int64_t *shape, uint64_t seed) {
    int64_t n = numel_of(nd, shape);
    in->values = malloc((size_t)n * sizeof *in->values);
    ck_assert_ptr_nonnull(in->values);
    in->tensor = input_f32(g, label, nd, shape, in->values, seed);
    in->label = label;
    return in->tensor;
}

static clg_tensor *add_loss(clg_graph *g, clg_tensor *loss, clg_tensor *y, unsigned seed) {
    clg_tensor *term = clg_gc_weighted_sum(g, y, seed);
    return loss ? clg_add(g, loss, term) : term;
}

static void gc_free(clg_gc_input *in, int n) {
    for (int i = 0; i < n; ++i)
        free(in[i].values);
}

/* Movement ops are linear, so central differences are exact up to float rounding of the loss
 * (a few ulps of a sum of ~100 terms): a large step and tight tolerances. */
#define GC_EPS 0.25f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-3f

START_TEST(views_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[6];
    clg_tensor *x0 = gc_input(g, &in[0], "reshape x", ND(2, 3, 4), 41);
    clg_tensor *x1 = gc_input(g, &in[1], "permute x", ND(2, 3, 4), 42);
    clg_tensor *x2 = gc_input(g, &in[2], "slice x", ND(5, 6), 43);
    clg_tensor *x3 = gc_input(g, &in[3], "broadcast_to x", ND(3, 1), 44);
    clg_tensor *x4 = gc_input(g, &in[4], "squeeze/unsqueeze/flatten x", ND(2, 1, 3), 45);
    clg_tensor *x5 = gc_input(g, &in[5], "transpose x", ND(3, 4), 46);
    clg_gc_require(in, 6);
    clg_tensor *loss = NULL;
    loss = add_loss(g, loss, clg_reshape(g, x0, ND(4, -1)), 1);
    loss =
        add_loss(g, loss, clg_reshape(g, clg_permute(g, x0, (const int[]){2, 0, 1}), ND(8, 3)), 2);
    loss = add_loss(g, loss, clg_permute(g, x1, (const int[]){1, 2, 0}), 3);
    loss = add_loss(g, loss, clg_slice(g, x2, 1, 1, 6, 2), 4);
    loss = add_loss(g, loss, clg_slice(g, clg_slice(g, x2, 0, -3, 100, 1), 1, -2, 6, 1), 5);
    loss = add_loss(g, loss, clg_broadcast_to(g, x3, ND(2, 3, 5)), 6);
    loss = add_loss(g, loss, clg_unsqueeze(g, clg_squeeze(g, x4, 1), 0), 7);
    loss = add_loss(g, loss, clg_flatten(g, x4, 0), 8);
    loss = add_loss(g, loss, clg_transpose(g, x5, 0, 1), 9);
    loss = add_loss(g, loss, clg_contiguous(g, clg_transpose(g, x5, 1, 0)), 10);
    clg_gradcheck(g, loss, in, 6, GC_EPS, GC_ATOL, GC_RTOL);
    gc_free(in, 6);
    clg_graph_free(g);
}
END_TEST

/* Ops lowered to their own kernels fed a broadcast scalar (clg_full): the scalar has no
 * buffer and must be materialised, also when the view looks contiguous (all dims 1). */
START_TEST(scalar_views_into_kernels) {
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *idx = clg_input(g, "i", CLG_I32, 1, (int64_t[]){1});
    clg_tensor *b = clg_input(g, "b", CLG_F32, 2, (int64_t[]){1, 2});
    clg_tensor *sc = clg_scatter_add(g, clg_full(g, 2.0f, 1, (int64_t[]){1}), 0, idx, 3);
    clg_tensor *mm = clg_matmul(g, clg_full(g, 3.0f, 2, (int64_t[]){1, 1}), b, false, false);
    clg_tensor *cc = clg_concat(g, 2, (clg_tensor *[]){clg_full(g, 5.0f, 1, (int64_t[]){2}), sc}, 0);
    clg_assert_ok(clg_graph_output(g, sc));
    clg_assert_ok(clg_graph_output(g, mm));
    clg_assert_ok(clg_graph_output(g, cc));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    const int32_t iv = 1;
    const float bv[2] = {1.0f, 2.0f};
    clg_assert_ok(clg_plan_write(p, idx, &iv, sizeof iv));
    clg_assert_ok(clg_plan_write(p, b, bv, sizeof bv));
    clg_assert_ok(clg_plan_run(p));
    float got_sc[3], got_mm[2], got_cc[5];
    clg_assert_ok(clg_plan_read(p, sc, got_sc, sizeof got_sc));
    clg_assert_ok(clg_plan_read(p, mm, got_mm, sizeof got_mm));
    clg_assert_ok(clg_plan_read(p, cc, got_cc, sizeof got_cc));
    const float want_sc[3] = {0, 2, 0}, want_mm[2] = {3, 6}, want_cc[5] = {5, 5, 0, 2, 0};
    clg_assert_close(got_sc, want_sc, 3, 0, 0);
    clg_assert_close(got_mm, want_mm, 2, 0, 0);
    clg_assert_close(got_cc, want_cc, 5, 0, 0);
    clg_graph_free(g);
}
END_TEST

START_TEST(copies_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[9];
    clg_tensor *a = gc_input(g, &in[0], "concat a", ND(2, 3), 51);
    clg_tensor *b = gc_input(g, &in[1], "concat b", ND(2, 2), 52);
    clg_tensor *c = gc_input(g, &in[2], "concat c (transposed view)", ND(3, 2), 53);
    clg_tensor *s0 = gc_input(g, &in[3], "stack s0", ND(3, 2), 54);
    clg_tensor *s1 = gc_input(g, &in[4], "stack s1", ND(3, 2), 55);
    clg_tensor *p = gc_input(g, &in[5], "pad x", ND(2, 3), 56);
    clg_tensor *ps = gc_input(g, &in[6], "pad of a slice x", ND(4, 3), 57);
    clg_gc_require(in, 7);
    clg_tensor *loss = NULL;
    loss = add_loss(g, loss,
                    clg_concat(g, 3, (clg_tensor *const[]){a, b, clg_transpose(g, c, 0, 1)}, 1), 1);
    loss = add_loss(g, loss, clg_concat(g, 2, (clg_tensor *const[]){a, a}, 0), 2);
    loss = add_loss(g, loss, clg_stack(g, 2, (clg_tensor *const[]){s0, s1}, 1), 3);
    loss = add_loss(g, loss, clg_stack(g, 3, (clg_tensor *const[]){s1, s0, s1}, 0), 4);
    loss = add_loss(g, loss, clg_pad(g, p, S(1, 0), S(2, 1), 3.0f), 5);
    loss = add_loss(g, loss, clg_pad(g, clg_slice(g, ps, 0, 1, 4, 2), S(0, 2), S(1, 0), -1.0f), 6);
    clg_gradcheck(g, loss, in, 7, GC_EPS, GC_ATOL, GC_RTOL);
    gc_free(in, 7);
    clg_graph_free(g);
}
END_TEST

/* Slices of one tensor whose gradients merge into one node (split, chunk, interleaved strided
 * slices, slices that leave gaps or leave a gap every third element) and ones that must not
 * (overlapping slices, slices along different axes). Each piece goes through a linear or
 * quadratic function, for which central differences are exact. */
START_TEST(split_chunk_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[9];
    clg_tensor *x0 = gc_input(g, &in[0], "split x", ND(3, 7), 91);
    clg_tensor *x1 = gc_input(g, &in[1], "chunk x (all but one chunk used)", ND(8, 2), 92);
    clg_tensor *x2 = gc_input(g, &in[2], "even and odd columns x", ND(2, 9), 93);
    clg_tensor *x3 = gc_input(g, &in[3], "every third column x", ND(2, 19), 94);
    clg_tensor *x4 = gc_input(g, &in[4], "overlapping slices x", ND(3, 5), 95);
    clg_tensor *x5 = gc_input(g, &in[5], "slices along two axes x", ND(4, 5), 96);
    clg_tensor *x6 = gc_input(g, &in[6], "chunks through a product", ND(3, 4), 97);
    clg_tensor *x7 = gc_input(g, &in[7], "five chunks x", ND(2, 10), 98);
    clg_tensor *x8 = gc_input(g, &in[8], "slices read permuted x", ND(3, 3, 4), 99);
    clg_gc_require(in, 9);
    clg_tensor *loss = NULL, *pc[5];
    clg_assert_ok(clg_split(g, x0, 1, 3, S(3, 1, 3), pc));
    loss = add_loss(g, loss, clg_mul_scalar(g, pc[0], 3.0f), 1);
    loss = add_loss(g, loss, clg_mul(g, pc[1], pc[1]), 2);
    loss = add_loss(g, loss, pc[2], 3);
    clg_assert_ok(clg_chunk(g, x1, 4, 0, pc));
    loss = add_loss(g, loss, pc[3], 4);
    loss = add_loss(g, loss, clg_mul(g, pc[0], pc[0]), 5);
    loss = add_loss(g, loss, pc[1], 6);
    loss = add_loss(g, loss, clg_slice(g, x2, 1, 0, 9, 2), 7);
    loss = add_loss(g, loss, clg_mul_scalar(g, clg_slice(g, x2, 1, 1, 9, 2), -2.0f), 8);
    loss = add_loss(g, loss, clg_slice(g, x3, 1, 1, 19, 3), 9);
    loss = add_loss(g, loss, clg_slice(g, x4, 1, 0, 3, 1), 10);
    loss = add_loss(g, loss, clg_slice(g, x4, 1, 2, 5, 1), 11);
    loss = add_loss(g, loss, clg_slice(g, x5, 0, 1, 3, 1), 12);
    loss = add_loss(g, loss, clg_slice(g, x5, 1, 3, 5, 1), 13);
    clg_tensor *w = clg_constant(g, CLG_F32, ND(2, 3), (const float[]){1, -2, 0.5f, 3, 1, -1});
    clg_tensor *z = clg_matmul(g, w, x6, false, false); /* [2, 4] */
    clg_assert_ok(clg_chunk(g, z, 2, 1, pc));
    loss = add_loss(g, loss, clg_mul(g, pc[0], pc[1]), 14);
    /* more pieces than one kernel takes, and pieces whose gradients are permuted views: one
     * copy per piece */
    clg_assert_ok(clg_chunk(g, x7, 5, 1, pc));
    for (int k = 0; k < 5; ++k) loss = add_loss(g, loss, clg_mul_scalar(g, pc[k], 1.0f + k), 15);
    const int perm[3] = {2, 0, 1};
    loss = add_loss(g, loss, clg_permute(g, clg_slice(g, x8, 0, 0, 1, 1), perm), 16);
    loss = add_loss(g, loss, clg_permute(g, clg_slice(g, x8, 0, 2, 3, 1), perm), 17);
    clg_gradcheck(g, loss, in, 9, GC_EPS, GC_ATOL, GC_RTOL);
    gc_free(in, 9);
    clg_graph_free(g);
}
END_TEST

static float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

/* An LSTM cell's gates: one [B, 4H] tensor z cut into four slices (sigmoid, sigmoid, tanh,
 * sigmoid), c = f c0 + i g, h = o tanh(c), loss = sum(h). The gradient of z against the
 * chain rule in C; and its plan writes the gates' gradients into place in one kernel: no
 * fill, no copy per gate, no add of whole [B, 4H] gradients. */
START_TEST(lstm_gates_gradient) {
    enum { B = 3, H = 5 };
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float zv[B * 4 * H], cv[B * H];
    clg_tensor *z = input_f32(g, "z", ND(B, 4 * H), zv, 101);
    clg_tensor *c0 = input_f32(g, "c0", ND(B, H), cv, 102);
    clg_assert_ok(clg_requires_grad(z));
    clg_tensor *gate[4];
    clg_assert_ok(clg_chunk(g, z, 4, 1, gate));
    clg_tensor *ig = clg_sigmoid(g, gate[0]), *fg = clg_sigmoid(g, gate[1]);
    clg_tensor *gg = clg_tanh(g, gate[2]), *og = clg_sigmoid(g, gate[3]);
    clg_tensor *c = clg_add(g, clg_mul(g, fg, c0), clg_mul(g, ig, gg));
    clg_tensor *loss = clg_sum(g, clg_mul(g, og, clg_tanh(g, c)), 2, (const int[]){0, 1}, false);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *gz = clg_grad(g, z);
    ck_assert_ptr_nonnull(gz);
    clg_assert_ok(clg_graph_output(g, gz));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 256}, &p));
    int fills = 0, copies = 0, embeds = 0;
    for (size_t k = 0; k < p->n_steps; ++k) {
        fills += strcmp(p->steps[k].label, "fill") == 0;
        copies += strcmp(p->steps[k].label, "copy") == 0;
        embeds += strcmp(p->steps[k].label, "embed") == 0;
    }
    ck_assert_msg(fills == 0 && copies == 0 && embeds == 1,
                  "the gates' gradient should be one kernel placing the four pieces, no fill: "
                  "%d fill, %d copy, %d embed steps",
                  fills, copies, embeds);
    write_f32(p, z, zv);
    write_f32(p, c0, cv);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    float got[B * 4 * H], want[B * 4 * H];
    clg_assert_ok(clg_plan_read(p, gz, got, sizeof got));
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) {
            const float *zr = zv + b * 4 * H;
            float i = sigmoidf(zr[j]), f = sigmoidf(zr[H + j]), gv = tanhf(zr[2 * H + j]);
            float o = sigmoidf(zr[3 * H + j]), cc = f * cv[b * H + j] + i * gv, tc = tanhf(cc);
            float dc = o * (1 - tc * tc);
            float *wr = want + b * 4 * H;
            wr[j] = dc * gv * i * (1 - i);
            wr[H + j] = dc * cv[b * H + j] * f * (1 - f);
            wr[2 * H + j] = dc * i * (1 - gv * gv);
            wr[3 * H + j] = tc * o * (1 - o);
        }
    clg_assert_close(got, want, B * 4 * H, 1e-5f, 1e-4f);
    clg_graph_free(g);
}
END_TEST

START_TEST(gathers_gradient) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_gc_input in[4];
    clg_tensor *t0 = gc_input(g, &in[0], "index_select table (axis 0)", ND(5, 3), 61);
    clg_tensor *t1 = gc_input(g, &in[1], "index_select x (axis 1)", ND(2, 4), 62);
    clg_tensor *emb = gc_input(g, &in[2], "embedding table", ND(6, 2), 63);
    clg_tensor *src = gc_input(g, &in[3], "scatter_add src", ND(4, 3), 64);
    clg_gc_require(in, 4);
    const int32_t i0[] = {1, 4, 1, -1, 9, 0};
    const int32_t i1[] = {3, 3, 0};
    const int32_t ie[] = {5, 0, 5, 2, 2, 7};
    const int32_t is[] = {2, 0, 2, 5}; /* 5 is out of range: that row's gradient is 0 */
    clg_tensor *loss = NULL;
    loss = add_loss(g, loss, clg_index_select(g, t0, 0, clg_constant(g, CLG_I32, ND(6), i0)), 1);
    loss = add_loss(g, loss, clg_index_select(g, t1, 1, clg_constant(g, CLG_I32, ND(3), i1)), 2);
    loss = add_loss(g, loss, clg_embedding(g, emb, clg_constant(g, CLG_I32, ND(2, 3), ie)), 3);
    loss = add_loss(g, loss, clg_scatter_add(g, src, 0, clg_constant(g, CLG_I32, ND(4), is), 3), 4);
    clg_gradcheck(g, loss, in, 4, GC_EPS, GC_ATOL, GC_RTOL);
    gc_free(in, 4);
    clg_graph_free(g);
}
END_TEST

int main(void) {
    Suite *s = suite_create("movement");
    TCase *tf = tcase_create("forward");
    tcase_set_timeout(tf, 300);
    tcase_add_test(tf, views_forward);
    tcase_add_test(tf, concat_stack_pad_forward);
    tcase_add_test(tf, index_ops_forward);
    tcase_add_test(tf, scalar_views_into_kernels);
    tcase_add_test(tf, split_chunk_forward);
    tcase_add_test(tf, copy_fill_awkward);
    suite_add_tcase(s, tf);
    TCase *tg = tcase_create("gradient");
    tcase_set_timeout(tg, 300);
    tcase_add_test(tg, views_gradient);
    tcase_add_test(tg, copies_gradient);
    tcase_add_test(tg, gathers_gradient);
    tcase_add_test(tg, split_chunk_gradient);
    tcase_add_test(tg, lstm_gates_gradient);
    suite_add_tcase(s, tg);
    return clg_test_run(s);
}
