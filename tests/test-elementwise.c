/* Elementwise ops on the device against plain-C references: every unary and binary op on a
 * friendly shape and an awkward one (odd sizes, size-1 dims, broadcasting, non-contiguous
 * views), comparisons, where, casts and i32 arithmetic; gradients through the shared
 * gradcheck helper; fused against unfused plans, and a long chain fused into one kernel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

/* Float32 ulp size relative to the value: 2^-23. Forward tolerances are written as
 * (k + 0.5) ulp of the result, k being the OpenCL 1.2 (section 7.4) bound of the built-in. */
#define ULP 1.1920928955078125e-7

/* ---- host views: the reference reads through (offset, strides) like a device view ---- */

typedef struct hview {
    const float *data;
    int ndim;
    int64_t shape[CLG_MAX_DIMS];
    int64_t strides[CLG_MAX_DIMS];
    int64_t offset;
} hview;

static hview hv_dense(const float *data, int ndim, const int64_t *shape) {
    hview v = {.data = data, .ndim = ndim};
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; --d) {
        v.shape[d] = shape[d];
        v.strides[d] = s;
        s *= shape[d];
    }
    return v;
}

static hview hv_transpose(hview v, int a, int b) {
    int64_t t = v.shape[a];
    v.shape[a] = v.shape[b];
    v.shape[b] = t;
    t = v.strides[a];
    v.strides[a] = v.strides[b];
    v.strides[b] = t;
    return v;
}

/* Elements start, start+step, ... < stop along axis (non-negative, in range). */
static hview hv_slice(hview v, int axis, int64_t start, int64_t stop, int64_t step) {
    v.offset += start * v.strides[axis];
    v.shape[axis] = (stop - start + step - 1) / step;
    v.strides[axis] *= step;
    return v;
}

/* The element of v that broadcasts to linear index lin of an output of shape (nd, shape). */
static float hv_at(const hview *v, int nd, const int64_t *shape, int64_t lin) {
    int64_t off = v->offset;
    for (int d = nd - 1; d >= 0; --d) {
        int64_t c = lin % shape[d];
        lin /= shape[d];
        int j = d - (nd - v->ndim);
        if (j >= 0 && v->shape[j] != 1) off += c * v->strides[j];
    }
    return v->data[off];
}

/* ---- device helpers ---- */

static float *alloc_f(int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void write_t(clg_plan *p, clg_tensor *t, const void *data) {
    clg_assert_ok(clg_plan_write(p, t, data, (size_t)clg_tensor_numel(t) * 4));
}

static void read_t(clg_plan *p, clg_tensor *t, void *out) {
    clg_assert_ok(clg_plan_read(p, t, out, (size_t)clg_tensor_numel(t) * 4));
}

static void output(clg_graph *g, clg_tensor *t) {
    clg_assert_ok(clg_graph_status(g));
    clg_assert_ok(clg_graph_output(g, t));
}

static clg_plan *compile(clg_graph *g, bool no_fusion) {
    clg_compile_options o = {.no_fusion = no_fusion, .guard_bytes = 64};
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &o, &p));
    return p;
}

static void assert_shape(const clg_tensor *t, int nd, const int64_t *shape) {
    ck_assert_int_eq(clg_tensor_ndim(t), nd);
    for (int d = 0; d < nd; ++d)
        ck_assert_int_eq(clg_tensor_shape(t)[d], shape[d]);
}

/* Uniform in [lo, hi], then pushed to at least gap away from every kink (a tie, a clamp
 * bound, zero) so that finite differences never straddle one. */
static void fill_away(clg_test_rng *r, float *x, int64_t n, float lo, float hi, const float *kinks,
                      int nk, float gap) {
    for (int64_t i = 0; i < n; ++i) {
        float v;
        bool ok;
        do {
            v = clg_test_uniform(r, lo, hi);
            ok = true;
            for (int k = 0; k < nk; ++k)
                ok = ok && fabsf(v - kinks[k]) >= gap;
        } while (!ok);
        x[i] = v;
    }
}

/* ---- unary ops ---- */

static clg_tensor *leaky01(clg_graph *g, clg_tensor *x) {
    return clg_leaky_relu(g, x, 0.1f);
}
static clg_tensor *clamp_m05_07(clg_graph *g, clg_tensor *x) {
    return clg_clamp(g, x, -0.5f, 0.7f);
}

/* Plain-C references, evaluated in double. */
/* clang-format off */
#define REF1(name, expr)                                                                       \
    static double name(double x) {                                                             \
        return expr;                                                                           \
    }
REF1(r_neg, -x)
REF1(r_abs, fabs(x))
REF1(r_exp, exp(x))
REF1(r_log, log(x))
REF1(r_sqrt, sqrt(x))
REF1(r_rsqrt, 1.0 / sqrt(x))
REF1(r_square, x * x)
REF1(r_recip, 1.0 / x)
REF1(r_tanh, tanh(x))
REF1(r_sigmoid, 1.0 / (1.0 + exp(-x)))
REF1(r_relu, x < 0.0 ? 0.0 : x)
REF1(r_leaky, x < 0.0 ? x * (double)0.1f : x)
REF1(r_gelu, 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))))
REF1(r_gelu_exact, 0.5 * x * (1.0 + erf(x / sqrt(2.0))))
REF1(r_sin, sin(x))
REF1(r_cos, cos(x))
REF1(r_clamp, x < -0.5 ? -0.5 : x > (double)0.7f ? (double)0.7f : x)
/* clang-format on */

typedef struct unary_case {
    const char *name;
    clg_tensor *(*op)(clg_graph *, clg_tensor *);
    double (*ref)(double);
    float lo, hi;      /* forward input range */
    float nonzero;     /* forward inputs keep |x| >= this (reciprocal) */
    double atol, rtol; /* forward tolerance */
    float glo, ghi;    /* gradient check range */
    float kinks[2];    /* gradient inputs stay 0.1 away from these */
    int n_kinks;
} unary_case;

/* Tolerances: exact ops 0; otherwise the OpenCL bound in ulp of the result (exp, log, sqrt
 * 3, rsqrt 2, divide 2.5, tanh 5, sin/cos 4) plus rounding of the double reference. sigmoid
 * is exp, an add and a divide (<= 6.5 ulp). gelu's 1 + tanh cancels for negative x: its error
 * is absolute, about 5 ulp of tanh times 0.5 |x| <= 2, hence atol 8 ulp(1). sin/cos also get
 * an absolute ulp(1) floor for results near their zeros. gelu_exact: its erf approximation errs by
 * up to 1.5e-7 and 1 + erf cancels for negative x as gelu's 1 + tanh does (absolute, times |x|/2). */
static const unary_case unary_cases[] = {
    {"neg", clg_neg, r_neg, -4, 4, 0, 0, 0, -2, 2, {0}, 0},
    {"abs", clg_abs, r_abs, -4, 4, 0, 0, 0, -2, 2, {0}, 1},
    {"exp", clg_exp, r_exp, -5, 5, 0, 0, 3.5 * ULP, -1, 1.5f, {0}, 0},
    {"log", clg_log, r_log, 0.05f, 20, 0, 0, 3.5 * ULP, 0.5f, 3, {0}, 0},
    {"sqrt", clg_sqrt, r_sqrt, 0.01f, 9, 0, 0, 3.5 * ULP, 0.5f, 3, {0}, 0},
    {"rsqrt", clg_rsqrt, r_rsqrt, 0.05f, 9, 0, 0, 2.5 * ULP, 0.5f, 3, {0}, 0},
    {"square", clg_square, r_square, -4, 4, 0, 0, 0.5 * ULP, -2, 2, {0}, 0},
    {"reciprocal", clg_reciprocal, r_recip, -5, 5, 0.2f, 0, 3 * ULP, 0.5f, 2, {0}, 0},
    {"tanh", clg_tanh, r_tanh, -5, 5, 0, 0, 5.5 * ULP, -2, 2, {0}, 0},
    {"sigmoid", clg_sigmoid, r_sigmoid, -8, 8, 0, 0, 7 * ULP, -3, 3, {0}, 0},
    {"relu", clg_relu, r_relu, -4, 4, 0, 0, 0, -2, 2, {0}, 1},
    {"leaky_relu", leaky01, r_leaky, -4, 4, 0, 0, 0.5 * ULP, -2, 2, {0}, 1},
    {"gelu", clg_gelu, r_gelu, -4, 4, 0, 8 * ULP, 8 * ULP, -2, 2, {0}, 0},
    {"gelu_exact", clg_gelu_exact, r_gelu_exact, -4, 4, 0, 16 * ULP, 16 * ULP, -2, 2, {0}, 0},
    {"sin", clg_sin, r_sin, -6, 6, 0, ULP, 4.5 * ULP, -3, 3, {0}, 0},
    {"cos", clg_cos, r_cos, -6, 6, 0, ULP, 4.5 * ULP, -3, 3, {0}, 0},
    {"clamp", clamp_m05_07, r_clamp, -2, 2, 0, 0, 0, -2, 2, {-0.5f, 0.7f}, 2},
};
#define N_UNARY ((int)(sizeof unary_cases / sizeof unary_cases[0]))

static void fill_unary(clg_test_rng *r, const unary_case *c, float *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        float v = clg_test_uniform(r, c->lo, c->hi);
        if (fabsf(v) < c->nonzero) v = v < 0 ? -c->nonzero : c->nonzero;
        x[i] = v;
    }
}

/* Each op on a friendly [4, 8] input and on an awkward view: a [7, 1, 11] input sliced with
 * step 2 along its last axis and transposed, giving a non-contiguous [5, 1, 7]. */
START_TEST(test_unary_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    const int64_t fs[2] = {4, 8}, as[3] = {7, 1, 11}, vs[3] = {5, 1, 7};
    clg_tensor *xf[N_UNARY], *xa[N_UNARY], *yf[N_UNARY], *ya[N_UNARY];
    for (int k = 0; k < N_UNARY; ++k) {
        xf[k] = clg_input(g, "xf", CLG_F32, 2, fs);
        xa[k] = clg_input(g, "xa", CLG_F32, 3, as);
        clg_tensor *v = clg_transpose(g, clg_slice(g, xa[k], 2, 1, 11, 2), 0, 2);
        yf[k] = unary_cases[k].op(g, xf[k]);
        ya[k] = unary_cases[k].op(g, v);
        output(g, yf[k]);
        output(g, ya[k]);
        assert_shape(ya[k], 3, vs);
    }
    clg_plan *p = compile(g, false);
    clg_test_rng r;
    clg_test_rng_seed(&r, 11);
    float hf[N_UNARY][32], ha[N_UNARY][77], got[77], want[77];
    for (int k = 0; k < N_UNARY; ++k) {
        fill_unary(&r, &unary_cases[k], hf[k], 32);
        fill_unary(&r, &unary_cases[k], ha[k], 77);
        write_t(p, xf[k], hf[k]);
        write_t(p, xa[k], ha[k]);
    }
    clg_assert_ok(clg_plan_run(p));
    for (int k = 0; k < N_UNARY; ++k) {
        const unary_case *c = &unary_cases[k];
        read_t(p, yf[k], got);
        for (int i = 0; i < 32; ++i)
            want[i] = (float)c->ref(hf[k][i]);
        clg_assert_close(got, want, 32, c->atol, c->rtol);
        hview v = hv_transpose(hv_slice(hv_dense(ha[k], 3, as), 2, 1, 11, 2), 0, 2);
        read_t(p, ya[k], got);
        for (int i = 0; i < 35; ++i)
            want[i] = (float)c->ref(hv_at(&v, 3, vs, i));
        clg_assert_close(got, want, 35, c->atol, c->rtol);
    }
    clg_assert_ok(clg_plan_check_guards(p));
    clg_graph_free(g);
}
END_TEST

/* Gradient checks, through the shared helper. The ops are split over two graphs (one
 * program each): a check runs its plan twice per input element, and every run launches all of
 * the plan's kernels, so halving the graph quarters the launches (they cost ~1 ms on rusticl).
 * Each op has its own [2, 2] input; the loss is the sum of clg_gc_weighted_sum of each result.
 * With eps 1e-2 the central difference has truncation error eps^2/6 |f^(3)| (below 1e-3
 * relative for these ranges) and rounding noise of a few ulp of the loss (|loss| ~ 30, ulp
 * 2e-6) over 2 eps, a few 1e-4 absolute. */
#define GC_EPS 1e-2f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-2f

START_TEST(test_unary_grad) {
    const int k0 = _i * (N_UNARY + 1) / 2, k1 = (_i + 1) * (N_UNARY + 1) / 2;
    const int n = (k1 < N_UNARY ? k1 : N_UNARY) - k0;
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {2, 2};
    clg_gc_input in[N_UNARY];
    float vals[N_UNARY][4];
    clg_test_rng r;
    clg_test_rng_seed(&r, 12u + (unsigned)_i);
    for (int k = 0; k < n; ++k) {
        const unary_case *c = &unary_cases[k0 + k];
        fill_away(&r, vals[k], 4, c->glo, c->ghi, c->kinks, c->n_kinks, 0.1f);
        in[k] = (clg_gc_input){clg_input(g, c->name, CLG_F32, 2, s), vals[k], c->name};
    }
    clg_gc_require(in, n);
    clg_tensor *loss = NULL;
    for (int k = 0; k < n; ++k) {
        clg_tensor *y = unary_cases[k0 + k].op(g, in[k].tensor);
        clg_tensor *l = clg_gc_weighted_sum(g, y, 100u + (unsigned)(k0 + k));
        loss = loss ? clg_add(g, loss, l) : l;
    }
    clg_assert_ok(clg_graph_status(g));
    clg_gradcheck(g, loss, in, n, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

/* ---- binary ops ---- */

/* clang-format off */
#define REF2(name, expr)                                                                       \
    static double name(double a, double b) {                                                   \
        return expr;                                                                           \
    }
REF2(b_add, a + b)
REF2(b_sub, a - b)
REF2(b_mul, a * b)
REF2(b_div, a / b)
REF2(b_pow, pow(a, b))
REF2(b_max, a > b ? a : b)
REF2(b_min, a < b ? a : b)
/* clang-format on */

typedef struct binary_case {
    const char *name;
    clg_tensor *(*op)(clg_graph *, clg_tensor *, clg_tensor *);
    double (*ref)(double, double);
    float alo, ahi, blo, bhi; /* input ranges */
    float b_nonzero;          /* |b| >= this (div) */
    double rtol;              /* add/sub/mul: 0.5 ulp (correctly rounded); div 2.5; pow 16 */
} binary_case;

static const binary_case binary_cases[] = {
    {"add", clg_add, b_add, -3, 3, -3, 3, 0, 0.5 * ULP},
    {"sub", clg_sub, b_sub, -3, 3, -3, 3, 0, 0.5 * ULP},
    {"mul", clg_mul, b_mul, -3, 3, -3, 3, 0, 0.5 * ULP},
    {"div", clg_div, b_div, -3, 3, -3, 3, 0.25f, 3 * ULP},
    {"pow", clg_pow, b_pow, 0.25f, 3, -2, 2, 0, 16.5 * ULP},
    {"maximum", clg_maximum, b_max, -3, 3, -3, 3, 0, 0},
    {"minimum", clg_minimum, b_min, -3, 3, -3, 3, 0, 0},
};
#define N_BINARY ((int)(sizeof binary_cases / sizeof binary_cases[0]))

static void fill_range(clg_test_rng *r, float *x, int64_t n, float lo, float hi, float nonzero) {
    for (int64_t i = 0; i < n; ++i) {
        float v = clg_test_uniform(r, lo, hi);
        if (fabsf(v) < nonzero) v = v < 0 ? -nonzero : nonzero;
        x[i] = v;
    }
}

/* Four shapes per op:
 *   A  [4, 8] with [4, 8];
 *   B  [3, 1, 5] (a [5, 1, 3] input transposed: non-contiguous) with [4, 1] -> [3, 4, 5];
 *   C  [2, 3] with a 0-d input;
 *   D  a clg_scalar (a kernel argument) with a [2, 3] view taking every third column of a
 *      [2, 7] input. */
START_TEST(test_binary_forward) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t sA[2] = {4, 8}, sB[3] = {5, 1, 3}, sB2[2] = {4, 1}, oB[3] = {3, 4, 5};
    const int64_t sC[2] = {2, 3}, sD[2] = {2, 7};
    const float scal[N_BINARY] = {1.7f, -0.6f, 2.5f, -1.3f, 1.7f, 0.4f, -0.3f};
    struct {
        clg_tensor *a0, *a1, *b0, *b1, *c0, *c1, *d1;
        clg_tensor *yA, *yB, *yC, *yD;
    } t[N_BINARY];
    for (int k = 0; k < N_BINARY; ++k) {
        const binary_case *c = &binary_cases[k];
        t[k].a0 = clg_input(g, "a0", CLG_F32, 2, sA);
        t[k].a1 = clg_input(g, "a1", CLG_F32, 2, sA);
        t[k].b0 = clg_input(g, "b0", CLG_F32, 3, sB);
        t[k].b1 = clg_input(g, "b1", CLG_F32, 2, sB2);
        t[k].c0 = clg_input(g, "c0", CLG_F32, 2, sC);
        t[k].c1 = clg_input(g, "c1", CLG_F32, 0, NULL);
        t[k].d1 = clg_input(g, "d1", CLG_F32, 2, sD);
        t[k].yA = c->op(g, t[k].a0, t[k].a1);
        t[k].yB = c->op(g, clg_transpose(g, t[k].b0, 0, 2), t[k].b1);
        t[k].yC = c->op(g, t[k].c0, t[k].c1);
        t[k].yD = c->op(g, clg_scalar(g, scal[k]), clg_slice(g, t[k].d1, 1, 0, 7, 3));
        output(g, t[k].yA);
        output(g, t[k].yB);
        output(g, t[k].yC);
        output(g, t[k].yD);
        assert_shape(t[k].yB, 3, oB);
        assert_shape(t[k].yC, 2, sC);
        assert_shape(t[k].yD, 2, sC);
    }
    clg_plan *p = compile(g, false);
    clg_test_rng r;
    clg_test_rng_seed(&r, 21);
    float a0[N_BINARY][32], a1[N_BINARY][32], b0[N_BINARY][15], b1[N_BINARY][4];
    float c0[N_BINARY][6], c1[N_BINARY][1], d1[N_BINARY][14];
    for (int k = 0; k < N_BINARY; ++k) {
        const binary_case *c = &binary_cases[k];
        fill_range(&r, a0[k], 32, c->alo, c->ahi, 0);
        fill_range(&r, a1[k], 32, c->blo, c->bhi, c->b_nonzero);
        fill_range(&r, b0[k], 15, c->alo, c->ahi, 0);
        fill_range(&r, b1[k], 4, c->blo, c->bhi, c->b_nonzero);
        fill_range(&r, c0[k], 6, c->alo, c->ahi, 0);
        fill_range(&r, c1[k], 1, c->blo, c->bhi, c->b_nonzero);
        fill_range(&r, d1[k], 14, c->blo, c->bhi, c->b_nonzero);
        write_t(p, t[k].a0, a0[k]);
        write_t(p, t[k].a1, a1[k]);
        write_t(p, t[k].b0, b0[k]);
        write_t(p, t[k].b1, b1[k]);
        write_t(p, t[k].c0, c0[k]);
        write_t(p, t[k].c1, c1[k]);
        write_t(p, t[k].d1, d1[k]);
    }
    clg_assert_ok(clg_plan_run(p));
    float got[60], want[60];
    for (int k = 0; k < N_BINARY; ++k) {
        const binary_case *c = &binary_cases[k];
        read_t(p, t[k].yA, got);
        for (int i = 0; i < 32; ++i)
            want[i] = (float)c->ref(a0[k][i], a1[k][i]);
        clg_assert_close(got, want, 32, 0, c->rtol);

        hview va = hv_transpose(hv_dense(b0[k], 3, sB), 0, 2), vb = hv_dense(b1[k], 2, sB2);
        read_t(p, t[k].yB, got);
        for (int i = 0; i < 60; ++i)
            want[i] = (float)c->ref(hv_at(&va, 3, oB, i), hv_at(&vb, 3, oB, i));
        clg_assert_close(got, want, 60, 0, c->rtol);

        read_t(p, t[k].yC, got);
        for (int i = 0; i < 6; ++i)
            want[i] = (float)c->ref(c0[k][i], c1[k][0]);
        clg_assert_close(got, want, 6, 0, c->rtol);

        hview vd = hv_slice(hv_dense(d1[k], 2, sD), 1, 0, 7, 3);
        read_t(p, t[k].yD, got);
        for (int i = 0; i < 6; ++i)
            want[i] = (float)c->ref(scal[k], hv_at(&vd, 2, sC, i));
        clg_assert_close(got, want, 6, 0, c->rtol);
    }
    clg_assert_ok(clg_plan_check_guards(p));
    clg_graph_free(g);
}
END_TEST

/* Per op: y1 = op(a [2, 1, 3], b [2, 1]) -> [2, 2, 3], both gradients summed over broadcast
 * dims, and y2 = op(s, b) with a 0-d s as the first operand, whose gradient sums over
 * everything. Two graphs (ops 0-3, 4-6), as for the unary ops. maximum and minimum take a and s
 * on multiples of 0.3 and b halfway between, so no pair comes within 0.1 of a tie. */
START_TEST(test_binary_grad) {
    const int k0 = _i * 4, n = _i == 0 ? 4 : N_BINARY - 4;
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t sa[3] = {2, 1, 3}, sb[2] = {2, 1};
    enum { PER = 3 };
    clg_gc_input in[4 * PER];
    float va[4][6], vb[4][2], vs[4][1];
    char labels[4 * PER][48];
    clg_test_rng r;
    clg_test_rng_seed(&r, 22u + (unsigned)_i);
    for (int k = 0; k < n; ++k) {
        const binary_case *c = &binary_cases[k0 + k];
        if (c->op == clg_maximum || c->op == clg_minimum) {
            for (int i = 0; i < 6; ++i)
                va[k][i] = 0.3f * (float)((int)clg_test_uniform(&r, 0, 12) - 6);
            for (int i = 0; i < 2; ++i)
                vb[k][i] = 0.3f * (float)((int)clg_test_uniform(&r, 0, 12) - 6) + 0.15f;
            vs[k][0] = 0.3f;
        } else {
            /* the forward ranges narrowed to [-2, 2]; div's b kept to |b| >= 0.5, pow's
             * exponent to [-1.5, 1.5] */
            float alo = c->alo < -2 ? -2 : c->alo, ahi = c->ahi > 2 ? 2 : c->ahi;
            float blo = c->op == clg_pow ? -1.5f : -2, bhi = c->op == clg_pow ? 1.5f : 2;
            float bnz = c->b_nonzero > 0 ? 0.5f : 0.0f;
            fill_range(&r, va[k], 6, alo, ahi, 0);
            fill_range(&r, vb[k], 2, blo, bhi, bnz);
            fill_range(&r, vs[k], 1, alo, ahi, 0);
        }
        clg_gc_input *e = &in[k * PER];
        snprintf(labels[k * PER], sizeof labels[0], "%s a [2,1,3]", c->name);
        snprintf(labels[k * PER + 1], sizeof labels[0], "%s b [2,1]", c->name);
        snprintf(labels[k * PER + 2], sizeof labels[0], "%s s (0-d)", c->name);
        e[0] = (clg_gc_input){clg_input(g, "a", CLG_F32, 3, sa), va[k], labels[k * PER]};
        e[1] = (clg_gc_input){clg_input(g, "b", CLG_F32, 2, sb), vb[k], labels[k * PER + 1]};
        e[2] = (clg_gc_input){clg_input(g, "s", CLG_F32, 0, NULL), vs[k], labels[k * PER + 2]};
    }
    clg_gc_require(in, n * PER);
    clg_tensor *loss = NULL;
    for (int k = 0; k < n; ++k) {
        const binary_case *c = &binary_cases[k0 + k];
        clg_gc_input *e = &in[k * PER];
        clg_tensor *y1 = c->op(g, e[0].tensor, e[1].tensor);
        clg_tensor *y2 = c->op(g, e[2].tensor, e[1].tensor);
        clg_tensor *l = clg_add(g, clg_gc_weighted_sum(g, y1, 200u + (unsigned)(k0 + k)),
                                clg_gc_weighted_sum(g, y2, 300u + (unsigned)(k0 + k)));
        loss = loss ? clg_add(g, loss, l) : l;
    }
    clg_assert_ok(clg_graph_status(g));
    clg_gradcheck(g, loss, in, n * PER, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

/* where(cond [2, 2, 3] constant, a [2, 1, 3], b [3]): gradients go to the chosen side only,
 * summed over the broadcast dims. */
START_TEST(test_where_grad) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t sc[3] = {2, 2, 3}, sa[3] = {2, 1, 3}, sb[1] = {3};
    const float cond[12] = {1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1};
    float va[6] = {0.3f, -1.2f, 0.8f, 1.5f, -0.4f, 2.0f}, vb[3] = {-0.7f, 0.9f, 1.1f};
    clg_gc_input in[2] = {{clg_input(g, "a", CLG_F32, 3, sa), va, "where a"},
                          {clg_input(g, "b", CLG_F32, 1, sb), vb, "where b"}};
    clg_gc_require(in, 2);
    clg_tensor *c = clg_constant(g, CLG_F32, 3, sc, cond);
    clg_tensor *loss = clg_gc_weighted_sum(g, clg_where(g, c, in[0].tensor, in[1].tensor), 7);
    clg_gradcheck(g, loss, in, 2, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

/* ---- comparisons, where, casts, i32 arithmetic ---- */

typedef clg_tensor *(*binop)(clg_graph *, clg_tensor *, clg_tensor *);
static const binop cmp_ops[6] = {clg_eq, clg_ne, clg_lt, clg_le, clg_gt, clg_ge};

static float cmp_ref(int k, double a, double b) {
    bool v = k == 0   ? a == b
             : k == 1 ? a != b
             : k == 2 ? a < b
             : k == 3 ? a <= b
             : k == 4 ? a > b
                      : a >= b;
    return v ? 1.0f : 0.0f;
}

/* Inputs from a few values so that ties occur. f32: a [3, 1, 5] view (transpose of
 * [5, 1, 3]) against b [4, 1]; i32: [2, 3] against a 0-d i32. Masks are f32 0/1, exact. */
START_TEST(test_compare_where) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t sa[3] = {5, 1, 3}, sb[2] = {4, 1}, o[3] = {3, 4, 5}, si[2] = {2, 3};
    clg_tensor *a = clg_input(g, "a", CLG_F32, 3, sa);
    clg_tensor *b = clg_input(g, "b", CLG_F32, 2, sb);
    clg_tensor *ia = clg_input(g, "ia", CLG_I32, 2, si);
    clg_tensor *ib = clg_input(g, "ib", CLG_I32, 0, NULL);
    clg_tensor *at = clg_transpose(g, a, 0, 2);
    clg_tensor *yf[6], *yi[6];
    for (int k = 0; k < 6; ++k) {
        yf[k] = cmp_ops[k](g, at, b);
        yi[k] = cmp_ops[k](g, ia, ib);
        output(g, yf[k]);
        output(g, yi[k]);
        ck_assert_int_eq(clg_tensor_dtype(yf[k]), CLG_F32);
        ck_assert_int_eq(clg_tensor_dtype(yi[k]), CLG_F32);
        assert_shape(yf[k], 3, o);
    }
    /* where(cond [3, 1, 5] view, a' [4, 1], 0-d scalar) and where on i32 values */
    clg_tensor *w = clg_where(g, at, b, clg_scalar(g, -9.5f));
    clg_tensor *wi = clg_where(g, ia, ia, ib);
    output(g, w);
    output(g, wi);
    assert_shape(w, 3, o);
    ck_assert_int_eq(clg_tensor_dtype(wi), CLG_I32);
    clg_plan *p = compile(g, false);
    clg_test_rng r;
    clg_test_rng_seed(&r, 31);
    float ha[15], hb[4];
    int32_t hia[6] = {-3, 0, 2, 5, 2, -1}, hib = 2;
    for (int i = 0; i < 15; ++i)
        ha[i] = 0.5f * (float)((int)clg_test_uniform(&r, 0, 5) - 2);
    for (int i = 0; i < 4; ++i)
        hb[i] = 0.5f * (float)((int)clg_test_uniform(&r, 0, 5) - 2);
    write_t(p, a, ha);
    write_t(p, b, hb);
    write_t(p, ia, hia);
    write_t(p, ib, &hib);
    clg_assert_ok(clg_plan_run(p));
    hview va = hv_transpose(hv_dense(ha, 3, sa), 0, 2), vb = hv_dense(hb, 2, sb);
    float got[60], want[60];
    for (int k = 0; k < 6; ++k) {
        read_t(p, yf[k], got);
        for (int i = 0; i < 60; ++i)
            want[i] = cmp_ref(k, hv_at(&va, 3, o, i), hv_at(&vb, 3, o, i));
        clg_assert_close(got, want, 60, 0, 0);
        read_t(p, yi[k], got);
        for (int i = 0; i < 6; ++i)
            want[i] = cmp_ref(k, hia[i], hib);
        clg_assert_close(got, want, 6, 0, 0);
    }
    read_t(p, w, got);
    for (int i = 0; i < 60; ++i)
        want[i] = hv_at(&va, 3, o, i) != 0.0f ? hv_at(&vb, 3, o, i) : -9.5f;
    clg_assert_close(got, want, 60, 0, 0);
    int32_t goti[6];
    read_t(p, wi, goti);
    for (int i = 0; i < 6; ++i)
        ck_assert_int_eq(goti[i], hia[i] != 0 ? hia[i] : hib);
    clg_graph_free(g);
}
END_TEST

/* f32 -> i32 truncates toward zero (also on a transposed view), i32 -> f32 is exact below
 * 2^24; add, sub, mul, maximum, minimum of i32 stay i32 (with broadcasting) and exact; div
 * of i32 is f32, and a unary op or a mix with f32 promotes to f32. */
START_TEST(test_cast_int) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t sx[2] = {3, 4}, sa[2] = {4, 5}, sb[1] = {5};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, sx);
    clg_tensor *a = clg_input(g, "a", CLG_I32, 2, sa);
    clg_tensor *b = clg_input(g, "b", CLG_I32, 1, sb);
    clg_tensor *xi = clg_cast(g, x, CLG_I32);
    clg_tensor *xti = clg_cast(g, clg_transpose(g, x, 0, 1), CLG_I32);
    clg_tensor *af = clg_cast(g, a, CLG_F32);
    binop iops[5] = {clg_add, clg_sub, clg_mul, clg_maximum, clg_minimum};
    clg_tensor *yi[5];
    for (int k = 0; k < 5; ++k) {
        yi[k] = iops[k](g, a, b);
        ck_assert_int_eq(clg_tensor_dtype(yi[k]), CLG_I32);
        output(g, yi[k]);
    }
    clg_tensor *q = clg_div(g, a, b);
    clg_tensor *n = clg_neg(g, b);
    clg_tensor *mix = clg_add(g, a, clg_scalar(g, 0.5f));
    ck_assert_int_eq(clg_tensor_dtype(xi), CLG_I32);
    ck_assert_int_eq(clg_tensor_dtype(af), CLG_F32);
    ck_assert_int_eq(clg_tensor_dtype(q), CLG_F32);
    ck_assert_int_eq(clg_tensor_dtype(n), CLG_F32);
    ck_assert_int_eq(clg_tensor_dtype(mix), CLG_F32);
    ck_assert_ptr_eq(clg_cast(g, a, CLG_I32), a);
    clg_tensor *outs[] = {xi, xti, af, q, n, mix};
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; ++k)
        output(g, outs[k]);
    clg_plan *p = compile(g, false);
    float hx[12] = {-2.7f, 2.7f,  -0.5f, 0.5f,  100.9f, -100.9f,
                    3.0f,  -3.0f, 0.0f,  7.99f, -7.99f, 1e6f};
    int32_t ha[20], hb[5] = {3, -7, 1, 1000, -2};
    clg_test_rng r;
    clg_test_rng_seed(&r, 41);
    for (int i = 0; i < 20; ++i)
        ha[i] = (int32_t)clg_test_uniform(&r, -1000, 1000);
    ha[0] = 16777215; /* 2^24 - 1: exact in f32 */
    ha[5] = -16777215;
    write_t(p, x, hx);
    write_t(p, a, ha);
    write_t(p, b, hb);
    clg_assert_ok(clg_plan_run(p));
    int32_t gi[20];
    float gf[20];
    read_t(p, xi, gi);
    for (int i = 0; i < 12; ++i)
        ck_assert_int_eq(gi[i], (int32_t)hx[i]);
    read_t(p, xti, gi);
    for (int i = 0; i < 12; ++i)
        ck_assert_int_eq(gi[i], (int32_t)hx[(i % 3) * 4 + i / 3]);
    read_t(p, af, gf);
    for (int i = 0; i < 20; ++i)
        ck_assert_float_eq(gf[i], (float)ha[i]);
    for (int k = 0; k < 5; ++k) {
        read_t(p, yi[k], gi);
        for (int i = 0; i < 20; ++i) {
            /* products are computed in 64 bits; the two large entries only meet |b| <= 1000
             * where they do not overflow... except 2^24 * 1000: skip those products */
            int64_t u = ha[i], v = hb[i % 5];
            int64_t want = k == 0   ? u + v
                           : k == 1 ? u - v
                           : k == 2 ? u * v
                           : k == 3 ? (u > v ? u : v)
                                    : (u < v ? u : v);
            if (k == 2 && (want > INT32_MAX || want < INT32_MIN)) continue;
            ck_assert_msg(gi[i] == want, "i32 op %d element %d: got %d want %lld", k, i, gi[i],
                          (long long)want);
        }
    }
    read_t(p, q, gf);
    for (int i = 0; i < 20; ++i) {
        float want = (float)ha[i] / (float)hb[i % 5];
        ck_assert_msg(fabs((double)gf[i] - want) <= 3 * ULP * fabs(want), "div %d: %g vs %g", i,
                      (double)gf[i], (double)want);
    }
    read_t(p, n, gf);
    for (int i = 0; i < 5; ++i)
        ck_assert_float_eq(gf[i], -(float)hb[i]);
    read_t(p, mix, gf);
    for (int i = 0; i < 20; ++i)
        ck_assert_float_eq(gf[i], (float)ha[i] + 0.5f);
    clg_graph_free(g);
}
END_TEST

/* ---- fusion ---- */

/* Bit-identical floats, or both NaN. */
static void assert_same_bits(const float *a, const float *b, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; ++i)
        ck_assert_msg(memcmp(&a[i], &b[i], 4) == 0, "%s [%lld]: fused %.9g, unfused %.9g", what,
                      (long long)i, (double)a[i], (double)b[i]);
}

/* The same graph (forward with broadcasting, views, a reduction with a prologue, and the
 * backward pass) compiled fused and unfused. Every fused kernel evaluates the same
 * expressions in the same order as the one-kernel-per-op plan, only keeping temporaries in
 * registers, so results must agree bit for bit; fusion must also launch fewer kernels. */
START_TEST(test_fused_vs_unfused) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t sa[2] = {6, 5}, sb[1] = {5}, sc[2] = {5, 6};
    clg_tensor *a = clg_input(g, "a", CLG_F32, 2, sa);
    clg_tensor *b = clg_input(g, "b", CLG_F32, 1, sb);
    clg_tensor *c = clg_input(g, "c", CLG_F32, 2, sc);
    clg_assert_ok(clg_requires_grad(a));
    clg_assert_ok(clg_requires_grad(b));
    clg_assert_ok(clg_requires_grad(c));
    clg_tensor *ct = clg_transpose(g, c, 0, 1);
    clg_tensor *y1 = clg_sigmoid(g, clg_add(g, clg_mul(g, a, b), ct));
    clg_tensor *y2 = clg_where(g, clg_gt(g, a, clg_scalar(g, 0.0f)), clg_sqrt(g, clg_abs(g, a)),
                               clg_mul_scalar(g, clg_square(g, b), -0.5f));
    int ax = 1;
    clg_tensor *y3 =
        clg_sum(g, clg_exp(g, clg_mul_scalar(g, clg_tanh(g, ct), 2.0f)), 1, &ax, false);
    clg_tensor *loss =
        clg_add(g, clg_add(g, clg_gc_weighted_sum(g, y1, 1), clg_gc_weighted_sum(g, y2, 2)),
                clg_gc_weighted_sum(g, y3, 3));
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *outs[] = {y1, y2, y3, loss, clg_grad(g, a), clg_grad(g, b), clg_grad(g, c)};
    const int n_out = (int)(sizeof outs / sizeof outs[0]);
    for (int k = 0; k < n_out; ++k) {
        ck_assert_ptr_nonnull(outs[k]);
        output(g, outs[k]);
    }
    clg_plan *pf = compile(g, false), *pu = compile(g, true);
    ck_assert_uint_lt(clg_plan_kernel_count(pf), clg_plan_kernel_count(pu));
    float ha[30], hb[5], hc[30];
    clg_test_rng r;
    clg_test_rng_seed(&r, 51);
    clg_test_fill(&r, ha, 30, -2, 2);
    clg_test_fill(&r, hb, 5, -2, 2);
    clg_test_fill(&r, hc, 30, -2, 2);
    clg_plan *plans[2] = {pf, pu};
    for (int k = 0; k < 2; ++k) {
        write_t(plans[k], a, ha);
        write_t(plans[k], b, hb);
        write_t(plans[k], c, hc);
        clg_assert_ok(clg_plan_run(plans[k]));
    }
    for (int k = 0; k < n_out; ++k) {
        int64_t n = clg_tensor_numel(outs[k]);
        float *f = alloc_f(n), *u = alloc_f(n);
        read_t(pf, outs[k], f);
        read_t(pu, outs[k], u);
        assert_same_bits(f, u, n, k < 4 ? "forward" : "gradient");
        free(f);
        free(u);
    }
    clg_assert_ok(clg_plan_check_guards(pf));
    clg_assert_ok(clg_plan_check_guards(pu));
    clg_graph_free(g);
}
END_TEST

/* Thirty elementwise ops, each the only consumer of the previous one at the same shape (the
 * other operands are inputs and kernel-argument scalars): compile.c inlines all of them into
 * the kernel of the last: 1 kernel. A ten-op chain feeding a sum is the reduction's prologue:
 * 1 kernel. u = exp(z) read by two consumers (add and sin) is materialised, and sin is
 * inlined into add: 2 kernels. (test_fused_vs_unfused covers bit equality with no_fusion.) */
#define CHAIN 30

static clg_tensor *chain_op(clg_graph *g, int k, clg_tensor *y, clg_tensor *x2) {
    switch (k % 10) {
    case 0:
        return clg_tanh(g, y);
    case 1:
        return clg_mul_scalar(g, y, 0.9f);
    case 2:
        return clg_add(g, y, x2);
    case 3:
        return clg_sin(g, y);
    case 4:
        return clg_sigmoid(g, y);
    case 5:
        return clg_square(g, y);
    case 6:
        return clg_add_scalar(g, y, -0.25f);
    case 7:
        return clg_cos(g, y);
    case 8:
        return clg_mul(g, y, x2);
    default:
        return clg_neg(g, y);
    }
}

static double chain_ref(int k, double y, double x2) {
    switch (k % 10) {
    case 0:
        return tanh(y);
    case 1:
        return y * (double)0.9f;
    case 2:
        return y + x2;
    case 3:
        return sin(y);
    case 4:
        return 1.0 / (1.0 + exp(-y));
    case 5:
        return y * y;
    case 6:
        return y - 0.25;
    case 7:
        return cos(y);
    case 8:
        return y * x2;
    default:
        return -y;
    }
}

START_TEST(test_long_chain) {
    clg_graph *g = clg_graph_new(clg_test_context());
    enum { R = 37, C = 41, N = R * C, SHORT = 10 };
    const int64_t s[2] = {R, C};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, s);
    clg_tensor *x2 = clg_input(g, "x2", CLG_F32, 2, s);
    clg_tensor *z = clg_input(g, "z", CLG_F32, 2, s);
    clg_tensor *y = x, *w = x;
    for (int k = 0; k < CHAIN; ++k)
        y = chain_op(g, k, y, x2);
    for (int k = 0; k < SHORT; ++k)
        w = chain_op(g, k, w, x2);
    int ax = 1;
    clg_tensor *sw = clg_sum(g, w, 1, &ax, false);
    clg_tensor *u = clg_exp(g, z);
    clg_tensor *uu = clg_add(g, u, clg_sin(g, u));
    output(g, y);
    output(g, sw);
    output(g, uu);
    clg_plan *p = compile(g, false);
    ck_assert_uint_eq(clg_plan_kernel_count(p), 1 + 1 + 2);

    float *hx = alloc_f(N), *hx2 = alloc_f(N), *hz = alloc_f(N);
    clg_test_rng r;
    clg_test_rng_seed(&r, 61);
    clg_test_fill(&r, hx, N, -1, 1);
    clg_test_fill(&r, hx2, N, -0.5f, 0.5f);
    clg_test_fill(&r, hz, N, -1, 1);
    write_t(p, x, hx);
    write_t(p, x2, hx2);
    write_t(p, z, hz);
    clg_assert_ok(clg_plan_run(p));
    float *got = alloc_f(N), *want = alloc_f(N);
    /* Every op of the cycle has Lipschitz constant <= 1.5 on its range and the cycle as a whole
     * contracts, so the error stays below the sum of the ops' own errors: 30 x 8 ulp(1). */
    read_t(p, y, got);
    for (int i = 0; i < N; ++i) {
        double v = hx[i];
        for (int k = 0; k < CHAIN; ++k)
            v = chain_ref(k, v, hx2[i]);
        want[i] = (float)v;
    }
    clg_assert_close(got, want, N, CHAIN * 8 * ULP, 0);

    /* 41 terms, each within 10 x 8 ulp(1), plus the sum's own rounding (|sum| <= 21) */
    read_t(p, sw, got);
    for (int i = 0; i < R; ++i) {
        double acc = 0;
        for (int j = 0; j < C; ++j) {
            double v = hx[i * C + j];
            for (int k = 0; k < SHORT; ++k)
                v = chain_ref(k, v, hx2[i * C + j]);
            acc += v;
        }
        want[i] = (float)acc;
    }
    clg_assert_close(got, want, R, C * SHORT * 8 * ULP + C * 21 * ULP, 0);

    read_t(p, uu, got);
    for (int i = 0; i < N; ++i)
        want[i] = (float)(exp(hz[i]) + sin(exp(hz[i])));
    clg_assert_close(got, want, N, 0, 8 * ULP);
    clg_assert_ok(clg_plan_check_guards(p));
    free(hx);
    free(hx2);
    free(hz);
    free(got);
    free(want);
    clg_graph_free(g);
}
END_TEST

static Suite *elementwise_suite(void) {
    Suite *s = suite_create("elementwise");
    TCase *fwd = tcase_create("forward");
    tcase_add_test(fwd, test_unary_forward);
    tcase_add_test(fwd, test_binary_forward);
    tcase_add_test(fwd, test_compare_where);
    tcase_add_test(fwd, test_cast_int);
    TCase *fus = tcase_create("fusion");
    tcase_add_test(fus, test_fused_vs_unfused);
    tcase_add_test(fus, test_long_chain);
    TCase *grad = tcase_create("gradient");
    tcase_add_loop_test(grad, test_unary_grad, 0, 2);
    tcase_add_loop_test(grad, test_binary_grad, 0, 2);
    tcase_add_test(grad, test_where_grad);
    TCase *all[] = {fwd, fus, grad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) {
        tcase_set_timeout(all[i], 600);
        suite_add_tcase(s, all[i]);
    }
    return s;
}

int main(void) {
    return clg_test_run(elementwise_suite());
}
