/* clg_matmul on the device against a plain-C reference: 2-D with every transpose combination
 * and odd sizes, batched, broadcast batch dimensions, operands that are transposed or sliced
 * views (read in place by the GEMM, not copied), and the gradients of both operands through
 * clg_gradcheck (which covers the sum over broadcast batch dims and bw_matmul's row folding). */
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "core/context.h"
#include "gemm/gemm_internal.h"
#include "gradcheck.h"
#include "graph/graph_internal.h"
#include "harness.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), S(__VA_ARGS__)

/* Products of sums of up to 33 terms in [-1, 1]: float accumulation error stays far below. */
#define FWD_ATOL 1e-4
#define FWD_RTOL 1e-4

static int64_t numel_of(int nd, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < nd; ++d)
        n *= shape[d];
    return n;
}

/* ---- reference ---- */

/* c[M,N] = op(a) op(b) in double; a is stored [M,K] ([K,M] if ta), b [K,N] ([N,K] if tb). */
static void gemm_ref(const float *a, const float *b, int64_t m, int64_t k, int64_t n, bool ta,
                     bool tb, float *c) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double acc = 0.0;
            for (int64_t p = 0; p < k; ++p) {
                double av = ta ? a[p * m + i] : a[i * k + p];
                double bv = tb ? b[j * k + p] : b[p * n + j];
                acc += av * bv;
            }
            c[i * n + j] = (float)acc;
        }
}

/* Batched product with NumPy broadcasting of the leading dims: a is [abatch..., matrix],
 * b [bbatch..., matrix], out [obatch..., M, N]. */
static void bmm_ref(const float *a, int na, const int64_t *abatch, const float *b, int nb,
                    const int64_t *bbatch, int no, const int64_t *obatch, int64_t m, int64_t k,
                    int64_t n, bool ta, bool tb, float *c) {
    int64_t count = numel_of(no, obatch);
    for (int64_t i = 0; i < count; ++i) {
        int64_t r = i, ai = 0, bi = 0, as = 1, bs = 1;
        for (int d = no - 1; d >= 0; --d) {
            int64_t coord = r % obatch[d];
            r /= obatch[d];
            int ja = d - (no - na), jb = d - (no - nb);
            if (ja >= 0) {
                ai += (abatch[ja] == 1 ? 0 : coord) * as;
                as *= abatch[ja];
            }
            if (jb >= 0) {
                bi += (bbatch[jb] == 1 ? 0 : coord) * bs;
                bs *= bbatch[jb];
            }
        }
        gemm_ref(a + ai * m * k, b + bi * k * n, m, k, n, ta, tb, c + i * m * n);
    }
}

/* ---- graph helpers ---- */

#define MAX_CASES 48

typedef struct mm_case {
    char what[96];
    clg_tensor *out;
    float *want;
    int64_t n;
} mm_case;

typedef struct mm_inputs {
    clg_tensor *t[2 * MAX_CASES + 16];
    float *v[2 * MAX_CASES + 16];
    int n;
} mm_inputs;

static uint64_t seed_counter = 1000;

static clg_tensor *new_input(clg_graph *g, mm_inputs *ins, int nd, const int64_t *shape,
                             float **values) {
    ck_assert_int_lt(ins->n, (int)(sizeof ins->t / sizeof ins->t[0]));
    int64_t n = numel_of(nd, shape);
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed_counter++);
    clg_test_fill(&r, v, (size_t)n, -1.0f, 1.0f);
    clg_tensor *t = clg_input(g, "mm", CLG_F32, nd, shape);
    ins->t[ins->n] = t;
    ins->v[ins->n++] = v;
    *values = v;
    return t;
}

static void run_and_check(clg_graph *g, mm_inputs *ins, mm_case *cases, int n_cases,
                          size_t expect_kernels) {
    for (int i = 0; i < n_cases; ++i) {
        ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s: %s", cases[i].what, clg_graph_error(g));
        clg_assert_ok(clg_graph_output(g, cases[i].out));
    }
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    if (expect_kernels)
        ck_assert_msg(clg_plan_kernel_count(p) == expect_kernels,
                      "plan has %zu kernels, want %zu (one GEMM per product, no copies)",
                      clg_plan_kernel_count(p), expect_kernels);
    for (int i = 0; i < ins->n; ++i)
        clg_assert_ok(clg_plan_write(p, ins->t[i], ins->v[i],
                                     (size_t)clg_tensor_numel(ins->t[i]) * sizeof(float)));
    clg_assert_ok(clg_plan_run(p));
    for (int i = 0; i < n_cases; ++i) {
        ck_assert_int_eq(clg_tensor_numel(cases[i].out), cases[i].n);
        float *got = malloc((size_t)cases[i].n * sizeof *got);
        ck_assert_ptr_nonnull(got);
        clg_assert_ok(clg_plan_read(p, cases[i].out, got, (size_t)cases[i].n * sizeof *got));
        size_t n = (size_t)cases[i].n;
        for (size_t k = 0; k < n; ++k) {
            double diff = (double)got[k] - (double)cases[i].want[k];
            double tol =
                FWD_ATOL + FWD_RTOL * (cases[i].want[k] < 0 ? -cases[i].want[k] : cases[i].want[k]);
            if (!(diff <= tol && -diff <= tol)) {
                float gv = got[k], wv = cases[i].want[k];
                free(got);
                ck_abort_msg("%s: element %zu of %zu is %.8g, want %.8g", cases[i].what, k, n,
                             (double)gv, (double)wv);
            }
        }
        free(got);
    }
    clg_plan_free(p);
    for (int i = 0; i < n_cases; ++i)
        free(cases[i].want);
    for (int i = 0; i < ins->n; ++i)
        free(ins->v[i]);
    ins->n = 0;
}

static mm_case *new_case(mm_case *cases, int *n, clg_tensor *out, int64_t numel, const char *fmt,
                         ...) CLG_PRINTF(5, 6);
static mm_case *new_case(mm_case *cases, int *n, clg_tensor *out, int64_t numel, const char *fmt,
                         ...) {
    ck_assert_int_lt(*n, MAX_CASES);
    mm_case *c = &cases[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what, sizeof c->what, fmt, ap);
    va_end(ap);
    c->out = out;
    c->n = numel;
    c->want = calloc((size_t)numel, sizeof *c->want);
    ck_assert_ptr_nonnull(c->want);
    return c;
}

/* ---- forward ---- */

START_TEST(matmul_2d) {
    /* the last two: NT with a long k and a wide b, which the CPU backend runs as
     * C^T = B A^T; a short, very wide product, whose work-items there take all rows of C */
    static const int64_t sizes[][3] = {{17, 33, 3}, {1, 17, 33},   {33, 1, 17},   {3, 3, 1},
                                       {1, 33, 1},  {8, 16, 8},    {7, 2100, 40}, {64, 288, 2100}};
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    mm_inputs ins = {0};
    mm_case cases[MAX_CASES];
    int nc = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
        for (int tr = 0; tr < 4; ++tr) {
            int64_t m = sizes[s][0], k = sizes[s][1], n = sizes[s][2];
            bool ta = tr & 1, tb = tr & 2;
            float *av, *bv;
            clg_tensor *a = new_input(g, &ins, 2, ta ? S(k, m) : S(m, k), &av);
            clg_tensor *b = new_input(g, &ins, 2, tb ? S(n, k) : S(k, n), &bv);
            clg_tensor *c = clg_matmul(g, a, b, ta, tb);
            ck_assert_int_eq(clg_tensor_ndim(c), 2);
            ck_assert_int_eq(clg_tensor_dim(c, 0), m);
            ck_assert_int_eq(clg_tensor_dim(c, 1), n);
            mm_case *mc = new_case(cases, &nc, c, m * n, "[%lld,%lld]x[%lld,%lld] trans %d/%d",
                                   (long long)m, (long long)k, (long long)k, (long long)n, ta, tb);
            gemm_ref(av, bv, m, k, n, ta, tb, mc->want);
        }
    /* one GEMM per product: plain operands never need a copy */
    run_and_check(g, &ins, cases, nc, (size_t)nc);
    clg_graph_free(g);
}
END_TEST

/* A k long enough that one work-item of the CPU kernel would loop past llvmpipe's limit
 * (65535 iterations): correct on every device by whatever backend the library picks; with the
 * CPU kernel forced (CLGRAD_GEMM=cpu) on a device with a loop limit, compiling must fail with
 * CLG_ERR_UNSUPPORTED and say why, instead of returning wrong numbers. */
START_TEST(matmul_long_k) {
    const int64_t m = 8, k = 9000, n = 20;
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx);
    ck_assert_ptr_nonnull(g);
    float *av = malloc((size_t)(m * k) * sizeof *av), *bv = malloc((size_t)(k * n) * sizeof *bv);
    float *want = malloc((size_t)(m * n) * sizeof *want), *got = malloc((size_t)(m * n) * sizeof *got);
    ck_assert(av && bv && want && got);
    clg_test_rng r;
    clg_test_rng_seed(&r, 77);
    clg_test_fill(&r, av, (size_t)(m * k), -1.0f, 1.0f);
    clg_test_fill(&r, bv, (size_t)(k * n), -1.0f, 1.0f);
    gemm_ref(av, bv, m, k, n, false, false, want);
    clg_tensor *a = clg_input(g, "a", CLG_F32, 2, S(m, k)), *b = clg_input(g, "b", CLG_F32, 2, S(k, n));
    clg_tensor *c = clg_matmul(g, a, b, false, false);
    clg_assert_ok(clg_graph_output(g, c));
    clg_plan *p = NULL;
    clg_status st = clg_graph_compile(g, NULL, &p);
    const char *forced = getenv("CLGRAD_GEMM");
    uint32_t limit = clg_context_device(ctx)->loop_limit;
    if (limit && forced && strcmp(forced, "cpu") == 0) {
        ck_assert_int_eq(st, CLG_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(clg_last_error(), "loop") && strstr(clg_last_error(), "k = 9000"),
                      "message: %s", clg_last_error());
        printf("matmul_long_k: %s has a loop limit of %u: the forced CPU kernel declined k = %lld\n",
               clg_context_device(ctx)->name, (unsigned)limit, (long long)k);
    } else {
        clg_assert_ok(st);
        clg_assert_ok(clg_plan_write(p, a, av, (size_t)(m * k) * sizeof *av));
        clg_assert_ok(clg_plan_write(p, b, bv, (size_t)(k * n) * sizeof *bv));
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_read(p, c, got, (size_t)(m * n) * sizeof *got));
        for (int64_t i = 0; i < m * n; ++i)
            ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-3f * (1.0f + fabsf(want[i])),
                          "element %lld: %g, want %g", (long long)i, (double)got[i],
                          (double)want[i]);
        clg_plan_free(p);
    }
    free(av);
    free(bv);
    free(want);
    free(got);
    clg_graph_free(g);
}
END_TEST

START_TEST(matmul_batched) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    mm_inputs ins = {0};
    mm_case cases[MAX_CASES];
    int nc = 0;
    const int64_t M = 5, K = 7, N = 3;
    /* [B,M,K] x [B,K,N], every transpose combination */
    for (int tr = 0; tr < 4; ++tr) {
        bool ta = tr & 1, tb = tr & 2;
        float *av, *bv;
        clg_tensor *a = new_input(g, &ins, 3, ta ? S(4, K, M) : S(4, M, K), &av);
        clg_tensor *b = new_input(g, &ins, 3, tb ? S(4, N, K) : S(4, K, N), &bv);
        mm_case *mc = new_case(cases, &nc, clg_matmul(g, a, b, ta, tb), 4 * M * N,
                               "batched [4,5,7]x[4,7,3] trans %d/%d", ta, tb);
        bmm_ref(av, 1, S(4), bv, 1, S(4), 1, S(4), M, K, N, ta, tb, mc->want);
    }
    /* [B,M,K] x [K,N]: a shared B (the GEMM folds the batch into rows), with each flag */
    for (int tr = 0; tr < 4; ++tr) {
        bool ta = tr & 1, tb = tr & 2;
        float *av, *bv;
        clg_tensor *a = new_input(g, &ins, 3, ta ? S(3, K, M) : S(3, M, K), &av);
        clg_tensor *b = new_input(g, &ins, 2, tb ? S(N, K) : S(K, N), &bv);
        mm_case *mc = new_case(cases, &nc, clg_matmul(g, a, b, ta, tb), 3 * M * N,
                               "[3,5,7]x[7,3] trans %d/%d", ta, tb);
        bmm_ref(av, 1, S(3), bv, 0, NULL, 1, S(3), M, K, N, ta, tb, mc->want);
    }
    /* square A^T with a shared B: A's batch stride equals m * lda, yet the rows of A^T are
     * not laid out consecutively, so the batch must not be folded into rows */
    for (int tb = 0; tb < 2; ++tb) {
        float *av, *bv;
        clg_tensor *a = new_input(g, &ins, ND(3, K, K), &av);
        clg_tensor *b = new_input(g, &ins, 2, tb ? S(N, K) : S(K, N), &bv);
        mm_case *mc = new_case(cases, &nc, clg_matmul(g, a, b, true, tb), 3 * K * N,
                               "[3,7,7]^T x [7,3] trans_b %d", tb);
        bmm_ref(av, 1, S(3), bv, 0, NULL, 1, S(3), K, K, N, true, tb, mc->want);
    }
    struct {
        int na;
        int64_t ab[3];
        int nb;
        int64_t bb[3];
        int no;
        int64_t ob[3];
        bool ta, tb;
    } bc[] = {
        {2, {2, 1}, 1, {3}, 2, {2, 3}, false, false},          /* [2,1,M,K]x[3,K,N] */
        {2, {2, 1}, 1, {3}, 2, {2, 3}, true, true},            /* same, both transposed */
        {0, {0}, 2, {2, 3}, 2, {2, 3}, false, false},          /* [M,K]x[2,3,K,N] */
        {0, {0}, 2, {2, 3}, 2, {2, 3}, true, false},           /* [K,M]^T x[2,3,K,N] */
        {1, {1}, 1, {3}, 1, {3}, false, true},                 /* [1,M,K]x[3,N,K]^T */
        {3, {2, 3, 1}, 2, {3, 4}, 3, {2, 3, 4}, false, false}, /* three batch dims */
        {2, {1, 3}, 2, {2, 1}, 2, {2, 3}, false, false},       /* both broadcast */
    };
    for (size_t i = 0; i < sizeof bc / sizeof bc[0]; ++i) {
        int64_t ashape[5], bshape[5];
        memcpy(ashape, bc[i].ab, sizeof bc[i].ab);
        memcpy(bshape, bc[i].bb, sizeof bc[i].bb);
        ashape[bc[i].na] = bc[i].ta ? K : M;
        ashape[bc[i].na + 1] = bc[i].ta ? M : K;
        bshape[bc[i].nb] = bc[i].tb ? N : K;
        bshape[bc[i].nb + 1] = bc[i].tb ? K : N;
        float *av, *bv;
        clg_tensor *a = new_input(g, &ins, bc[i].na + 2, ashape, &av);
        clg_tensor *b = new_input(g, &ins, bc[i].nb + 2, bshape, &bv);
        clg_tensor *c = clg_matmul(g, a, b, bc[i].ta, bc[i].tb);
        ck_assert_int_eq(clg_tensor_ndim(c), bc[i].no + 2);
        for (int d = 0; d < bc[i].no; ++d)
            ck_assert_int_eq(clg_tensor_dim(c, d), bc[i].ob[d]);
        mm_case *mc = new_case(cases, &nc, c, numel_of(bc[i].no, bc[i].ob) * M * N,
                               "broadcast batch case %zu", i);
        bmm_ref(av, bc[i].na, bc[i].ab, bv, bc[i].nb, bc[i].bb, bc[i].no, bc[i].ob, M, K, N,
                bc[i].ta, bc[i].tb, mc->want);
    }
    run_and_check(g, &ins, cases, nc, 0);
    clg_graph_free(g);
}
END_TEST

/* Views a GEMM can read in place (transposes become flags, slices become offsets and leading
 * dimensions) must not be copied: the plan is exactly one GEMM per product, and the product's
 * operands are the views themselves, over the inputs' buffers. */
START_TEST(matmul_views) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    mm_inputs ins = {0};
    mm_case cases[MAX_CASES];
    int nc = 0;
    const int64_t M = 5, K = 7, N = 4;
    float *av, *bv, tmp[6 * 5 * 7];

#define NO_COPY(c, x0, x1)                                                                         \
    do {                                                                                           \
        ck_assert_msg((c)->in[0]->base == (x0) && (c)->in[1]->base == (x1),                        \
                      "%s: an operand was copied", cases[nc - 1].what);                            \
    } while (0)

    /* transpose(At) with no flag: A = At^T */
    clg_tensor *at = new_input(g, &ins, ND(K, M), &av);
    clg_tensor *b = new_input(g, &ins, ND(K, N), &bv);
    clg_tensor *c = clg_matmul(g, clg_transpose(g, at, 0, 1), b, false, false);
    gemm_ref(av, bv, M, K, N, true, false,
             new_case(cases, &nc, c, M * N, "transpose(A) x B")->want);
    NO_COPY(c, at, b);

    /* A x transpose(Bt) */
    clg_tensor *a = new_input(g, &ins, ND(M, K), &av);
    clg_tensor *bt = new_input(g, &ins, ND(N, K), &bv);
    c = clg_matmul(g, a, clg_transpose(g, bt, -1, -2), false, false);
    gemm_ref(av, bv, M, K, N, false, true,
             new_case(cases, &nc, c, M * N, "A x transpose(B)")->want);
    NO_COPY(c, a, bt);

    /* a transposed view with the transpose flag: two transposes cancel */
    a = new_input(g, &ins, ND(M, K), &av);
    b = new_input(g, &ins, ND(K, N), &bv);
    c = clg_matmul(g, clg_transpose(g, a, 0, 1), clg_transpose(g, clg_transpose(g, b, 0, 1), 0, 1),
                   true, false);
    gemm_ref(av, bv, M, K, N, false, false,
             new_case(cases, &nc, c, M * N, "transpose(A) with trans_a")->want);
    NO_COPY(c, a, b);

    /* batched transposed view */
    at = new_input(g, &ins, ND(3, K, M), &av);
    b = new_input(g, &ins, ND(3, K, N), &bv);
    c = clg_matmul(g, clg_transpose(g, at, -1, -2), b, false, false);
    bmm_ref(av, 1, S(3), bv, 1, S(3), 1, S(3), M, K, N, true, false,
            new_case(cases, &nc, c, 3 * M * N, "batched transpose(A) x B")->want);
    NO_COPY(c, at, b);

    /* column slice of a wider matrix: offset 2, leading dimension 13 */
    clg_tensor *wide = new_input(g, &ins, ND(M, 13), &av);
    b = new_input(g, &ins, ND(K, N), &bv);
    c = clg_matmul(g, clg_slice(g, wide, 1, 2, 2 + K, 1), b, false, false);
    for (int64_t i = 0; i < M; ++i)
        memcpy(tmp + i * K, av + i * 13 + 2, (size_t)K * sizeof *tmp);
    gemm_ref(tmp, bv, M, K, N, false, false,
             new_case(cases, &nc, c, M * N, "column slice of A (ld 13)")->want);
    NO_COPY(c, wide, b);

    /* every other row: row stride 2K */
    clg_tensor *tall = new_input(g, &ins, ND(2 * M, K), &av);
    b = new_input(g, &ins, ND(K, N), &bv);
    c = clg_matmul(g, clg_slice(g, tall, 0, 1, 2 * M, 2), b, false, false);
    for (int64_t i = 0; i < M; ++i)
        memcpy(tmp + i * K, av + (2 * i + 1) * K, (size_t)K * sizeof *tmp);
    gemm_ref(tmp, bv, M, K, N, false, false,
             new_case(cases, &nc, c, M * N, "row slice with step 2 of A")->want);
    NO_COPY(c, tall, b);

    /* B a column slice, transposed through the flag */
    a = new_input(g, &ins, ND(M, K), &av);
    clg_tensor *bw = new_input(g, &ins, ND(N + 3, K), &bv);
    c = clg_matmul(g, a, clg_slice(g, bw, 0, 3, N + 3, 1), false, true);
    gemm_ref(av, bv + 3 * K, M, K, N, false, true,
             new_case(cases, &nc, c, M * N, "row slice of B^T")->want);
    NO_COPY(c, a, bw);

    /* every other batch entry: batch stride 2MK */
    clg_tensor *ab = new_input(g, &ins, ND(6, M, K), &av);
    b = new_input(g, &ins, ND(3, K, N), &bv);
    c = clg_matmul(g, clg_slice(g, ab, 0, 0, 6, 2), b, false, false);
    for (int i = 0; i < 3; ++i)
        memcpy(tmp + i * M * K, av + 2 * i * M * K, (size_t)(M * K) * sizeof *tmp);
    bmm_ref(tmp, 1, S(3), bv, 1, S(3), 1, S(3), M, K, N, false, false,
            new_case(cases, &nc, c, 3 * M * N, "batch slice with step 2 of A")->want);
    NO_COPY(c, ab, b);

    /* transpose of a column slice */
    clg_tensor *w2 = new_input(g, &ins, ND(K, M + 4), &av);
    b = new_input(g, &ins, ND(K, N), &bv);
    c = clg_matmul(g, clg_transpose(g, clg_slice(g, w2, 1, 4, M + 4, 1), 0, 1), b, false, false);
    for (int64_t p = 0; p < K; ++p)
        memcpy(tmp + p * M, av + p * (M + 4) + 4, (size_t)M * sizeof *tmp);
    gemm_ref(tmp, bv, M, K, N, true, false,
             new_case(cases, &nc, c, M * N, "transpose of a column slice")->want);
    NO_COPY(c, w2, b);
    size_t in_place = (size_t)nc;

    /* A column slice with step 2 has no GEMM layout: exactly one copy */
    clg_tensor *w3 = new_input(g, &ins, ND(M, 2 * K), &av);
    b = new_input(g, &ins, ND(K, N), &bv);
    c = clg_matmul(g, clg_slice(g, w3, 1, 0, 2 * K, 2), b, false, false);
    for (int64_t i = 0; i < M; ++i)
        for (int64_t p = 0; p < K; ++p)
            tmp[i * K + p] = av[i * 2 * K + 2 * p];
    gemm_ref(tmp, bv, M, K, N, false, false,
             new_case(cases, &nc, c, M * N, "column slice with step 2 (copied)")->want);
    ck_assert_msg(c->in[0]->base != w3, "a step-2 column slice cannot be read in place");
#undef NO_COPY

    run_and_check(g, &ins, cases, nc, in_place + 2);
    clg_graph_free(g);
}
END_TEST

/* ---- gradients ---- */

/* The loss is bilinear: linear in each operand, so central differences are exact up to float
 * rounding and a large step keeps that rounding small against the tolerances. */
#define GC_EPS 0.25f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-3f

/* Each product is checked twice, in two graphs: once with its left operands as the checked
 * inputs (right ones constants) and once the other way round, so no checked input's gradient
 * depends on another checked input's value (clg_gradcheck perturbs inputs one after the
 * other). */
typedef struct gc_set {
    int side; /* 0: left operands are checked, 1: right operands */
    uint64_t seed;
    clg_gc_input in[16];
    int n;
    float *consts[16];
    int n_consts;
} gc_set;

static clg_tensor *operand(clg_graph *g, gc_set *s, int side, const char *label, int nd,
                           const int64_t *shape) {
    int64_t n = numel_of(nd, shape);
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_test_rng r;
    clg_test_rng_seed(&r, s->seed++);
    clg_test_fill(&r, v, (size_t)n, -1.0f, 1.0f);
    if (side != s->side) {
        ck_assert_int_lt(s->n_consts, 16);
        s->consts[s->n_consts++] = v;
        return clg_constant(g, CLG_F32, nd, shape, v);
    }
    ck_assert_int_lt(s->n, 16);
    clg_gc_input *in = &s->in[s->n++];
    in->values = v;
    in->tensor = clg_input(g, label, CLG_F32, nd, shape);
    in->label = label;
    clg_gc_require(in, 1);
    return in->tensor;
}

static clg_tensor *add_loss(clg_graph *g, gc_set *s, clg_tensor *loss, clg_tensor *y) {
    clg_tensor *term = clg_gc_weighted_sum(g, y, (unsigned)s->seed++);
    return loss ? clg_add(g, loss, term) : term;
}

typedef clg_tensor *(*build_fn)(clg_graph *g, gc_set *s);

static void check_both_sides(build_fn build) {
    for (int side = 0; side < 2; ++side) {
        clg_graph *g = clg_graph_new(clg_test_context());
        ck_assert_ptr_nonnull(g);
        gc_set s = {.side = side, .seed = 5000};
        clg_tensor *loss = build(g, &s);
        clg_gradcheck(g, loss, s.in, s.n, GC_EPS, GC_ATOL, GC_RTOL);
        for (int i = 0; i < s.n; ++i)
            free(s.in[i].values);
        for (int i = 0; i < s.n_consts; ++i)
            free(s.consts[i]);
        clg_graph_free(g);
    }
}

static clg_tensor *build_2d(clg_graph *g, gc_set *s) {
    static const char *la[] = {"a (NN)", "a^T (TN)", "a (NT)", "a^T (TT)"};
    static const char *lb[] = {"b (NN)", "b (TN)", "b^T (NT)", "b^T (TT)"};
    clg_tensor *loss = NULL;
    for (int tr = 0; tr < 4; ++tr) {
        bool ta = tr & 1, tb = tr & 2;
        clg_tensor *a = operand(g, s, 0, la[tr], 2, ta ? S(4, 3) : S(3, 4));
        clg_tensor *b = operand(g, s, 1, lb[tr], 2, tb ? S(2, 4) : S(4, 2));
        loss = add_loss(g, s, loss, clg_matmul(g, a, b, ta, tb));
    }
    clg_tensor *xt = operand(g, s, 0, "a under a transposed view", ND(4, 3));
    clg_tensor *y = operand(g, s, 1, "b next to a transposed view", ND(4, 2));
    return add_loss(g, s, loss, clg_matmul(g, clg_transpose(g, xt, 0, 1), y, false, false));
}

static clg_tensor *build_batched(clg_graph *g, gc_set *s) {
    clg_tensor *a = operand(g, s, 0, "batched a", ND(2, 3, 4));
    clg_tensor *b = operand(g, s, 1, "batched b", ND(2, 4, 2));
    clg_tensor *at = operand(g, s, 0, "batched a^T", ND(2, 4, 3));
    clg_tensor *bt = operand(g, s, 1, "batched b^T", ND(2, 2, 4));
    clg_tensor *loss = add_loss(g, s, NULL, clg_matmul(g, a, b, false, false));
    return add_loss(g, s, loss, clg_matmul(g, at, bt, true, true));
}

/* Broadcast batch dims: each operand's gradient sums over the batch entries it was broadcast
 * to. */
static clg_tensor *build_broadcast(clg_graph *g, gc_set *s) {
    clg_tensor *a = operand(g, s, 0, "a [2,1,3,4]", ND(2, 1, 3, 4));
    clg_tensor *b = operand(g, s, 1, "b [3,4,2]", ND(3, 4, 2));
    clg_tensor *a2 = operand(g, s, 0, "2-D a [3,4] against batched b", ND(3, 4));
    clg_tensor *b2 = operand(g, s, 1, "batched b [2,4,2]", ND(2, 4, 2));
    clg_tensor *a3 = operand(g, s, 0, "a [1,4,3]^T", ND(1, 4, 3));
    clg_tensor *b3 = operand(g, s, 1, "b [3,2,4]^T", ND(3, 2, 4));
    clg_tensor *loss = add_loss(g, s, NULL, clg_matmul(g, a, b, false, false));
    loss = add_loss(g, s, loss, clg_matmul(g, a2, b2, false, false));
    return add_loss(g, s, loss, clg_matmul(g, a3, b3, true, true));
}

/* A batched activation times a 2-D weight: the weight's gradient is one GEMM over rows folded
 * across the batch (bw_matmul's fold_rows), with and without trans_b; with trans_a the fold
 * does not apply and the batch sum does. */
static clg_tensor *build_fold(clg_graph *g, gc_set *s) {
    clg_tensor *x = operand(g, s, 0, "x [2,3,4] (folded)", ND(2, 3, 4));
    clg_tensor *w = operand(g, s, 1, "w [4,2] (folded)", ND(4, 2));
    clg_tensor *x2 = operand(g, s, 0, "x [2,3,4] (folded, w^T)", ND(2, 3, 4));
    clg_tensor *wt = operand(g, s, 1, "w^T [2,4] (folded)", ND(2, 4));
    clg_tensor *x3 = operand(g, s, 0, "x [2,2,4,3]^T (not folded)", ND(2, 2, 4, 3));
    clg_tensor *w3 = operand(g, s, 1, "w [4,2] against x^T", ND(4, 2));
    clg_tensor *loss = add_loss(g, s, NULL, clg_matmul(g, x, w, false, false));
    loss = add_loss(g, s, loss, clg_matmul(g, x2, wt, false, true));
    return add_loss(g, s, loss, clg_matmul(g, x3, w3, true, false));
}

/* matmul -> add(bias) -> activation compiles to one GEMM step with the bias and activation
 * in its epilogue, for every activation, batched products, a row-varying bias and a full
 * matrix (residual) operand; results equal a plain-C reference and the unfused plan. */
static double act_ref(int act, double x) {
    switch (act) {
    case 1:
        return x < 0 ? 0 : x;
    case 2:
        return tanh(x);
    case 3:
        return 1.0 / (1.0 + exp(-x));
    case 4:
        return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    default:
        return x;
    }
}

START_TEST(matmul_epilogue_fusion) {
    enum { M = 5, K = 7, N = 19, B = 3 };
    clg_context *ctx = clg_test_context();
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 99);
    float a[B * M * K], w[K * N], bias[N], rowb[M], full[M * N];
    clg_test_fill(&rng, a, B * M * K, -1, 1);
    clg_test_fill(&rng, w, K * N, -1, 1);
    clg_test_fill(&rng, bias, N, -1, 1);
    clg_test_fill(&rng, rowb, M, -1, 1);
    clg_test_fill(&rng, full, M * N, -1, 1);
    float *outs[2][8];
    size_t kernels[2];
    for (int fused = 0; fused < 2; ++fused) {
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *ta = clg_constant(g, CLG_F32, 3, (int64_t[]){B, M, K}, a);
        clg_tensor *a2 = clg_constant(g, CLG_F32, 2, (int64_t[]){M, K}, a);
        clg_tensor *tw = clg_constant(g, CLG_F32, 2, (int64_t[]){K, N}, w);
        clg_tensor *tb = clg_constant(g, CLG_F32, 1, (int64_t[]){N}, bias);
        clg_tensor *tr = clg_constant(g, CLG_F32, 2, (int64_t[]){M, 1}, rowb);
        clg_tensor *tf = clg_constant(g, CLG_F32, 2, (int64_t[]){M, N}, full);
        clg_tensor *y[8];
        y[0] = clg_add(g, clg_matmul(g, a2, tw, false, false), tb);
        y[1] = clg_relu(g, clg_add(g, clg_matmul(g, a2, tw, false, false), tb));
        y[2] = clg_tanh(g, clg_add(g, tb, clg_matmul(g, a2, tw, false, false)));
        y[3] = clg_sigmoid(g, clg_add(g, clg_matmul(g, a2, tw, false, false), tb));
        y[4] = clg_gelu(g, clg_add(g, clg_matmul(g, a2, tw, false, false), tb));
        y[5] = clg_relu(g, clg_add(g, clg_matmul(g, ta, tw, false, false), tb)); /* batched */
        y[6] = clg_relu(g, clg_add(g, clg_matmul(g, a2, tw, false, false), tr));  /* per row */
        y[7] = clg_add(g, clg_matmul(g, a2, tw, false, false), tf);              /* residual */
        for (int i = 0; i < 8; ++i) clg_assert_ok(clg_graph_output(g, y[i]));
        clg_plan *p = NULL;
        clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.no_fusion = !fused}, &p));
        clg_assert_ok(clg_plan_run(p));
        kernels[fused] = clg_plan_kernel_count(p);
        for (int i = 0; i < 8; ++i) {
            size_t n = (size_t)clg_tensor_numel(y[i]);
            outs[fused][i] = malloc(n * sizeof(float));
            clg_assert_ok(clg_plan_read(p, y[i], outs[fused][i], n * sizeof(float)));
        }
        clg_graph_free(g);
    }
    /* fused: one GEMM step per output, nothing else */
    ck_assert_uint_eq(kernels[1], 8);
    ck_assert_uint_gt(kernels[0], kernels[1]);
    static const int acts[8] = {0, 1, 2, 3, 4, 1, 1, 0};
    for (int i = 0; i < 8; ++i) {
        int batches = i == 5 ? B : 1;
        float *want = malloc((size_t)batches * M * N * sizeof *want);
        for (int bt = 0; bt < batches; ++bt)
            for (int m = 0; m < M; ++m)
                for (int n = 0; n < N; ++n) {
                    double acc = 0;
                    for (int k = 0; k < K; ++k) acc += (double)a[(bt * M + m) * K + k] * w[k * N + n];
                    double add = i == 6 ? rowb[m] : i == 7 ? full[m * N + n] : bias[n];
                    want[(bt * M + m) * N + n] = (float)act_ref(acts[i], acc + add);
                }
        clg_assert_close(outs[1][i], want, (size_t)batches * M * N, 1e-5, 1e-5);
        clg_assert_close(outs[0][i], outs[1][i], (size_t)batches * M * N, 1e-6, 1e-6);
        free(want);
        free(outs[0][i]);
        free(outs[1][i]);
    }
}
END_TEST

START_TEST(matmul_2d_gradient) {
    check_both_sides(build_2d);
}
END_TEST

START_TEST(matmul_batched_gradient) {
    check_both_sides(build_batched);
}
END_TEST

START_TEST(matmul_broadcast_gradient) {
    check_both_sides(build_broadcast);
}
END_TEST

START_TEST(matmul_fold_gradient) {
    check_both_sides(build_fold);
}
END_TEST

/* ---- the backend choice ---- */

/* In a fresh context whose choices file holds the given classes (CLBlast's ms against the CPU
 * kernel's 1 ms; below 1 CLBlast won), compile one product of a new shape class and say
 * whether its measurement timed CLBlast. */
static bool new_class_times_clblast(const double *clblast_ms, int n, bool measure) {
    char dir[] = "/tmp/clgrad-test-verdict-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *old_cache = getenv("CLGRAD_CACHE_DIR") ? strdup(getenv("CLGRAD_CACHE_DIR")) : NULL;
    char *old_gemm = getenv("CLGRAD_GEMM") ? strdup(getenv("CLGRAD_GEMM")) : NULL;
    setenv("CLGRAD_CACHE_DIR", dir, 1);
    unsetenv("CLGRAD_GEMM");
    if (measure) setenv("CLGRAD_GEMM_MEASURE", "1", 1);
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    for (int i = 0; i < n; ++i) {
        char key[32];
        snprintf(key, sizeof key, "verdict-%d", i);
        clg_assert_ok(clg_gemm_record_choice(ctx, key, clblast_ms[i] < 1.0 ? "clblast" : "cpu",
                                             clblast_ms[i], 1.0));
    }
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *a = clg_input(g, "a", CLG_F32, ND(40, 72)), *b = clg_input(g, "b", CLG_F32, ND(72, 56));
    clg_tensor *c = clg_matmul(g, a, b, false, false);
    clg_assert_ok(clg_graph_output(g, c));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    const clg_gemm_choice *got = NULL;
    for (size_t i = 0; i < ctx->gemm->n_choices; ++i)
        if (strncmp(ctx->gemm->choices[i].key, "verdict-", 8) != 0) got = &ctx->gemm->choices[i];
    ck_assert_msg(got != NULL, "the new class was not recorded");
    if (isnan(got->ms[0])) ck_assert_str_eq(got->winner, "cpu");
    bool timed = !isnan(got->ms[0]);
    clg_context_free(ctx);
    if (old_cache) setenv("CLGRAD_CACHE_DIR", old_cache, 1);
    else unsetenv("CLGRAD_CACHE_DIR");
    if (old_gemm) setenv("CLGRAD_GEMM", old_gemm, 1);
    unsetenv("CLGRAD_GEMM_MEASURE");
    free(old_cache);
    free(old_gemm);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    return timed;
}

/* CLBlast stops being timed on a device only after three classes it lost by 3x or more and
 * none it won or came close on (CLGRAD_GEMM_MEASURE=1 sets aside pocl's prior verdict, which
 * skips the timing from the start there and nowhere else). */
START_TEST(gemm_choice_verdict) {
    ck_assert(!new_class_times_clblast((const double[]){10, 10, 10}, 3, true));
    ck_assert(new_class_times_clblast((const double[]){10, 10}, 2, true));
    ck_assert(new_class_times_clblast((const double[]){10, 2.5, 10, 10}, 4, true));
    ck_assert(new_class_times_clblast((const double[]){10, 10, 10, 0.5}, 4, true));
    const clg_device_info *d = clg_context_device(clg_test_context());
    bool pocl = d->type == CLG_DEVICE_CPU &&
                strstr(d->platform_name, "Portable Computing Language") != NULL;
    ck_assert_msg(new_class_times_clblast(NULL, 0, false) == !pocl,
                  "with no choices recorded, CLBlast should %sbe timed on %s",
                  pocl ? "not " : "", d->name);
}
END_TEST

int main(void) {
    Suite *s = suite_create("matmul");
    TCase *tf = tcase_create("forward");
    tcase_set_timeout(tf, 300);
    tcase_add_test(tf, matmul_2d);
    tcase_add_test(tf, matmul_batched);
    tcase_add_test(tf, matmul_long_k);
    tcase_add_test(tf, matmul_views);
    tcase_add_test(tf, matmul_epilogue_fusion);
    tcase_add_test(tf, gemm_choice_verdict);
    suite_add_tcase(s, tf);
    TCase *tg = tcase_create("gradient");
    tcase_set_timeout(tg, 300);
    tcase_add_test(tg, matmul_2d_gradient);
    tcase_add_test(tg, matmul_batched_gradient);
    tcase_add_test(tg, matmul_broadcast_gradient);
    tcase_add_test(tg, matmul_fold_gradient);
    suite_add_tcase(s, tg);
    return clg_test_run(s);
}
