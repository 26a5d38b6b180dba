/* Random ops: clg_rand_uniform against a plain-C Philox-4x32-10 written here from its
 * published definition (bit for bit), normal and truncated normal against the same words,
 * statistics of every distribution, fresh numbers per run, reproducibility across graphs and
 * contexts, and dropout (rate, scaling, expectation, identity cases, gradient mask). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"         /* the context's run counter (rng_offset) */
#include "graph/graph_internal.h" /* a random node's stream is its id */
#include "harness.h"

/* ---- Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2,
 * 3", SC11). Four 32-bit counter words, two key words; each of the ten rounds multiplies words
 * 0 and 2 by fixed odd constants, swaps and XORs the high halves with the other words and the
 * round key, then bumps the key by the Weyl constants (golden ratio, sqrt(3) - 1). ---- */

typedef struct philox4 {
    uint32_t v[4];
} philox4;

static philox4 philox4x32_10(philox4 ctr, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
        uint64_t p0 = (uint64_t)0xD2511F53u * ctr.v[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr.v[2];
        philox4 n;
        n.v[0] = (uint32_t)(p1 >> 32) ^ ctr.v[1] ^ k0;
        n.v[1] = (uint32_t)p1;
        n.v[2] = (uint32_t)(p0 >> 32) ^ ctr.v[3] ^ k1;
        n.v[3] = (uint32_t)p0;
        ctr = n;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return ctr;
}

/* clgrad's mapping (cl/random.cl): element i of a random node draws
 *   philox4x32_10(counter = (i, stream, run_lo, run_hi), key = (seed_lo, seed_hi))
 * where i is the element's row-major index, stream the node's id in its graph, run the
 * context's counter at the plan run (it advances by one per run of a plan with random ops),
 * seed the 64-bit seed given to the builder. Word 0 gives the uniform: its top 24 bits
 * times 2^-24, in [0, 1), exact in float, then lo + (hi - lo) u. The normal is Box-Muller on
 * words 0 and 1: sqrt(-2 ln u0') cos(2 pi u1), with u0' = (top 24 bits + 1) 2^-24 in (0, 1].
 * The truncated normal tries attempt a = 0, 1, ... with stream (id & 0xFFFFFF) | a << 24;
 * each attempt yields four candidates (r0 cos t0, r0 sin t0, r1 cos t1, r1 sin t1 from word
 * pairs (0, 1) and (2, 3)), and the first with |z| <= 2 is the value. */
static philox4 draw(uint32_t i, uint32_t stream, uint64_t run, uint64_t seed) {
    philox4 c = {{i, stream, (uint32_t)run, (uint32_t)(run >> 32)}};
    return philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

static float u01(uint32_t w) {
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

static double u01_open(uint32_t w) {
    return (double)((w >> 8) + 1u) / 16777216.0;
}

#define TWO_PI_F 6.283185307179586f /* the float constant the kernel uses */

static double ref_normal(uint32_t i, uint32_t stream, uint64_t run, uint64_t seed) {
    philox4 r = draw(i, stream, run, seed);
    return sqrt(-2.0 * log(u01_open(r.v[0]))) * cos((double)TWO_PI_F * u01(r.v[1]));
}

/* The truncated normal's value, or NAN when a candidate lies so close to +-2 that float
 * rounding on the device could decide its acceptance differently. */
static double ref_truncated(uint32_t i, uint32_t stream, uint64_t run, uint64_t seed) {
    for (uint32_t a = 0; a < 16; ++a) {
        philox4 r = draw(i, (stream & 0x00FFFFFFu) | (a << 24), run, seed);
        double r0 = sqrt(-2.0 * log(u01_open(r.v[0]))), t0 = (double)TWO_PI_F * u01(r.v[1]);
        double r1 = sqrt(-2.0 * log(u01_open(r.v[2]))), t1 = (double)TWO_PI_F * u01(r.v[3]);
        double c[4] = {r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1)};
        for (int k = 0; k < 4; ++k) {
            if (fabs(fabs(c[k]) - 2.0) < 1e-4) return NAN;
            if (fabs(c[k]) <= 2.0) return c[k];
        }
    }
    return NAN;
}

/* Random123's published known-answer vectors (its tests/kat_vectors) pin the generator down
 * before it is used as the reference. */
START_TEST(test_philox_known_answers) {
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[3] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int t = 0; t < 3; ++t) {
        philox4 c = {{kat[t].ctr[0], kat[t].ctr[1], kat[t].ctr[2], kat[t].ctr[3]}};
        philox4 r = philox4x32_10(c, kat[t].key[0], kat[t].key[1]);
        for (int w = 0; w < 4; ++w)
            ck_assert_msg(r.v[w] == kat[t].out[w], "vector %d word %d: %08x, want %08x", t, w,
                          r.v[w], kat[t].out[w]);
    }
}
END_TEST

/* ---- device helpers ---- */

static void read_t(clg_plan *p, clg_tensor *t, float *out) {
    clg_assert_ok(clg_plan_read(p, t, out, (size_t)clg_tensor_numel(t) * sizeof *out));
}

static void write_t(clg_plan *p, clg_tensor *t, const float *in) {
    clg_assert_ok(clg_plan_write(p, t, in, (size_t)clg_tensor_numel(t) * sizeof *in));
}

static float *alloc_f(int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static clg_context *new_context(void) {
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    return ctx;
}

static void assert_bits(const float *got, const float *want, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; ++i)
        ck_assert_msg(memcmp(&got[i], &want[i], 4) == 0, "%s [%lld]: device %.9g, Philox %.9g",
                      what, (long long)i, (double)got[i], (double)want[i]);
}

/* The graph the reproducibility tests build, in the same order each time. */
typedef struct rgraph {
    clg_graph *g;
    clg_tensor *x;        /* [37, 29] input */
    clg_tensor *u;        /* uniform [37, 29] in [0, 1), seed with both key words set */
    clg_tensor *v;        /* uniform [5, 1, 7] in [-2, 6) */
    clg_tensor *ux;       /* a uniform inlined into a multiply by x */
    clg_tensor *bc;       /* a uniform [29] broadcast against x (materialised, then added) */
    clg_tensor *rs;       /* a uniform [3, 700] summed over its last axis (the sum's prologue) */
    clg_tensor *n;        /* normal [1000], mean 0 std 1 */
    clg_tensor *t;        /* truncated normal [1000], mean 0 std 1 */
    clg_tensor *nodes[5]; /* the uniform/normal nodes inside ux, bc, rs (their ids) */
    clg_plan *p;
} rgraph;

#define SEED_U 0x0123456789ABCDEFull
#define SEED_V 42u

static void rgraph_build(rgraph *r, clg_context *ctx) {
    clg_graph *g = clg_graph_new(ctx);
    ck_assert_ptr_nonnull(g);
    const int64_t sx[2] = {37, 29}, sv[3] = {5, 1, 7}, sb[1] = {29}, sr[2] = {3, 700};
    const int64_t sn[1] = {1000};
    r->g = g;
    r->x = clg_input(g, "x", CLG_F32, 2, sx);
    r->u = clg_rand_uniform(g, 2, sx, 0.0f, 1.0f, SEED_U);
    r->v = clg_rand_uniform(g, 3, sv, -2.0f, 6.0f, SEED_V);
    r->nodes[0] = clg_rand_uniform(g, 2, sx, 0.0f, 1.0f, SEED_U); /* same seed, other stream */
    r->ux = clg_mul(g, r->nodes[0], r->x);
    r->nodes[1] = clg_rand_uniform(g, 1, sb, 0.0f, 1.0f, 7);
    r->bc = clg_add(g, r->nodes[1], r->x);
    r->nodes[2] = clg_rand_uniform(g, 2, sr, 0.0f, 1.0f, 8);
    int ax = 1;
    r->rs = clg_sum(g, r->nodes[2], 1, &ax, false);
    r->n = clg_rand_normal(g, 1, sn, 0.0f, 1.0f, 9);
    r->t = clg_rand_truncated_normal(g, 1, sn, 0.0f, 1.0f, 10);
    clg_tensor *outs[] = {r->u, r->v, r->ux, r->bc, r->rs, r->n, r->t};
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; ++k)
        clg_assert_ok(clg_graph_output(g, outs[k]));
    clg_assert_ok(clg_graph_compile(g, NULL, &r->p));
}

/* Run once and check every output against the Philox reference at the counter it used. */
static void rgraph_run_check(rgraph *r, const float *hx) {
    clg_context *ctx = clg_graph_context(r->g);
    uint64_t run = ctx->rng_offset;
    write_t(r->p, r->x, hx);
    clg_assert_ok(clg_plan_run(r->p));
    ck_assert_msg(ctx->rng_offset == run + 1, "a run advanced the counter from %llu to %llu",
                  (unsigned long long)run, (unsigned long long)ctx->rng_offset);
    float got[2100], want[2100];

    read_t(r->p, r->u, got);
    for (uint32_t i = 0; i < 37 * 29; ++i)
        want[i] = u01(draw(i, (uint32_t)r->u->id, run, SEED_U).v[0]);
    assert_bits(got, want, 37 * 29, "uniform [0, 1)");

    /* -2 + 8 u is exact in float (u has 24 bits, 8 u and the sum fit in 24), so contraction
     * to fma or not cannot change it */
    read_t(r->p, r->v, got);
    for (uint32_t i = 0; i < 35; ++i)
        want[i] = -2.0f + 8.0f * u01(draw(i, (uint32_t)r->v->id, run, SEED_V).v[0]);
    assert_bits(got, want, 35, "uniform [-2, 6)");

    read_t(r->p, r->ux, got);
    for (uint32_t i = 0; i < 37 * 29; ++i)
        want[i] = u01(draw(i, (uint32_t)r->nodes[0]->id, run, SEED_U).v[0]) * hx[i];
    assert_bits(got, want, 37 * 29, "uniform inlined into a multiply");

    read_t(r->p, r->bc, got);
    for (uint32_t i = 0; i < 37 * 29; ++i)
        want[i] = u01(draw(i % 29, (uint32_t)r->nodes[1]->id, run, 7).v[0]) + hx[i];
    assert_bits(got, want, 37 * 29, "uniform [29] broadcast over [37, 29]");

    /* 700 terms in [0, 1): a generous rounding bound of 32 u per unit of the sum; a wrong
     * element index would move the sum by whole units */
    read_t(r->p, r->rs, got);
    for (uint32_t row = 0; row < 3; ++row) {
        double s = 0;
        for (uint32_t j = 0; j < 700; ++j)
            s += u01(draw(row * 700 + j, (uint32_t)r->nodes[2]->id, run, 8).v[0]);
        ck_assert_msg(fabs(got[row] - s) <= 32 * 5.96e-8 * s,
                      "sum of a uniform row %u: %.9g vs %.9g", row, (double)got[row], s);
    }

    /* Box-Muller on the device: log and sqrt within 3 ulp each, cos within 4 ulp plus the
     * float product 2 pi u (half an ulp of 2 pi); the radius is at most 5.8, so every error is
     * below 1e-5 absolute */
    read_t(r->p, r->n, got);
    for (uint32_t i = 0; i < 1000; ++i) {
        double z = ref_normal(i, (uint32_t)r->n->id, run, 9);
        ck_assert_msg(fabs(got[i] - z) <= 1e-5, "normal [%u]: device %.9g, Philox %.9g", i,
                      (double)got[i], z);
    }
    read_t(r->p, r->t, got);
    int checked = 0;
    for (uint32_t i = 0; i < 1000; ++i) {
        double z = ref_truncated(i, (uint32_t)r->t->id, run, 10);
        if (isnan(z)) continue;
        checked++;
        ck_assert_msg(fabs(got[i] - z) <= 1e-5, "truncated normal [%u]: device %.9g, Philox %.9g",
                      i, (double)got[i], z);
    }
    ck_assert_int_gt(checked, 990);
}

/* A fresh context starts its counter at 0; each run uses the next value. Both run-counter
 * words are exercised by moving the counter past 2^32, as restoring a checkpoint does. */
START_TEST(test_uniform_bits) {
    clg_context *ctx = new_context();
    ck_assert_uint_eq(ctx->rng_offset, 0);
    rgraph r;
    rgraph_build(&r, ctx);
    float hx[37 * 29];
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 201);
    clg_test_fill(&rng, hx, 37 * 29, -2, 2);
    rgraph_run_check(&r, hx);
    rgraph_run_check(&r, hx);
    ctx->rng_offset = (5ull << 32) | 0xFFFFFFFFull;
    rgraph_run_check(&r, hx);
    rgraph_run_check(&r, hx); /* the low word wraps: run (6 << 32) | 0 */
    clg_context_free(ctx);
}
END_TEST

/* Every run draws new numbers; the same seeds in a new graph on a new context give the same
 * numbers at the same counter (bit for bit, normal included); two nodes of one graph with
 * the same seed draw different streams. */
START_TEST(test_runs_and_reproducibility) {
    clg_context *c1 = new_context(), *c2 = new_context();
    rgraph a, b;
    rgraph_build(&a, c1);
    rgraph_build(&b, c2);
    float hx[37 * 29];
    for (int i = 0; i < 37 * 29; ++i)
        hx[i] = 1.0f;
    write_t(a.p, a.x, hx);
    write_t(b.p, b.x, hx);
    float *u1 = alloc_f(1073), *u2 = alloc_f(1073), *n1 = alloc_f(1000), *n2 = alloc_f(1000);
    clg_assert_ok(clg_plan_run(a.p));
    read_t(a.p, a.u, u1);
    read_t(a.p, a.n, n1);
    clg_assert_ok(clg_plan_run(b.p));
    read_t(b.p, b.u, u2);
    read_t(b.p, b.n, n2);
    assert_bits(u2, u1, 37 * 29, "uniform, second context, run 0");
    assert_bits(n2, n1, 1000, "normal, second context, run 0");

    read_t(a.p, a.ux, u2); /* x = 1: the other node's uniform, same seed */
    int same = 0;
    for (int i = 0; i < 37 * 29; ++i)
        same += u1[i] == u2[i];
    ck_assert_msg(same < 5, "two nodes with one seed share %d of 1073 values", same);

    clg_assert_ok(clg_plan_run(a.p));
    read_t(a.p, a.u, u2);
    same = 0;
    for (int i = 0; i < 37 * 29; ++i)
        same += u1[i] == u2[i];
    /* 24-bit values: two independent draws agree with probability 2^-24 */
    ck_assert_msg(same < 5, "a second run repeated %d of 1073 values", same);
    free(u1);
    free(u2);
    free(n1);
    free(n2);
    clg_context_free(c1);
    clg_context_free(c2);
}
END_TEST

/* ---- statistics (N = 100000; bounds are 5 standard errors of each estimate) ---- */

#define NS 100000

static void moments(const float *x, int n, double *mean, double *var) {
    double s = 0, q = 0;
    for (int i = 0; i < n; ++i)
        s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; ++i)
        q += (x[i] - *mean) * (x[i] - *mean);
    *var = q / (n - 1);
}

START_TEST(test_distributions) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {250, 400};
    clg_tensor *u = clg_rand_uniform(g, 2, s, -3.0f, 5.0f, 301);
    clg_tensor *n = clg_rand_normal(g, 2, s, 2.0f, 3.0f, 302);
    clg_tensor *t = clg_rand_truncated_normal(g, 2, s, 2.0f, 3.0f, 303);
    clg_assert_ok(clg_graph_output(g, u));
    clg_assert_ok(clg_graph_output(g, n));
    clg_assert_ok(clg_graph_output(g, t));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_run(p));
    float *x = alloc_f(NS);
    double mean, var;
    const double sq = sqrt((double)NS);

    /* uniform [-3, 5): mean 1, variance 64/12; the variance's standard error is
     * sqrt((mu4 - sigma^4) / N) with mu4 = 8^4 / 80 */
    read_t(p, u, x);
    for (int i = 0; i < NS; ++i)
        ck_assert(x[i] >= -3.0f && x[i] < 5.0f);
    moments(x, NS, &mean, &var);
    ck_assert_msg(fabs(mean - 1.0) <= 5 * sqrt(64.0 / 12) / sq, "uniform mean %g", mean);
    ck_assert_msg(fabs(var - 64.0 / 12) <= 5 * sqrt(4096.0 / 80 - (64.0 / 12) * (64.0 / 12)) / sq,
                  "uniform variance %g", var);

    /* normal (2, 3): std's standard error sigma / sqrt(2N); 68.27% within one std */
    read_t(p, n, x);
    moments(x, NS, &mean, &var);
    ck_assert_msg(fabs(mean - 2.0) <= 5 * 3.0 / sq, "normal mean %g", mean);
    ck_assert_msg(fabs(sqrt(var) - 3.0) <= 5 * 3.0 / sqrt(2.0 * NS), "normal std %g", sqrt(var));
    int in1 = 0;
    for (int i = 0; i < NS; ++i)
        in1 += fabsf(x[i] - 2.0f) <= 3.0f;
    double frac = (double)in1 / NS, p1 = 0.682689492;
    ck_assert_msg(fabs(frac - p1) <= 5 * sqrt(p1 * (1 - p1) / NS), "normal: %g within 1 std", frac);

    /* truncated at 2 std: every value within [mean - 2 std, mean + 2 std] = [-4, 8] (exact
     * bounds: mean + std z rounds monotonically and |z| <= 2); std 0.8796 of the untruncated
     * (variance 1 - 4 phi(2) / (Phi(2) - Phi(-2))); mean 2 */
    read_t(p, t, x);
    for (int i = 0; i < NS; ++i)
        ck_assert_msg(x[i] >= -4.0f && x[i] <= 8.0f, "truncated normal [%d] = %g", i, (double)x[i]);
    moments(x, NS, &mean, &var);
    double phi2 = exp(-2.0) / sqrt(2 * 3.141592653589793), mass = erf(2.0 / sqrt(2.0));
    double tstd = 3.0 * sqrt(1.0 - 4.0 * phi2 / mass);
    ck_assert_msg(fabs(tstd / 3.0 - 0.8796) < 1e-3, "truncated std ratio %g", tstd / 3.0);
    ck_assert_msg(fabs(mean - 2.0) <= 5 * tstd / sq, "truncated normal mean %g", mean);
    ck_assert_msg(fabs(sqrt(var) - tstd) <= 5 * tstd / sqrt(2.0 * NS),
                  "truncated normal std %g (want %g)", sqrt(var), tstd);
    free(x);
    clg_graph_free(g);
}
END_TEST

/* ---- dropout ---- */

/* p = 0.3 on x in [0.5, 1.5] (never 0, so a zero output is a dropped element): about 30%
 * zeros, survivors exactly x * (1 / (1 - p)) in float, mean preserved; the gradient of sum(y)
 * is the same run's mask times the scale, element for element, on two runs with different
 * masks. */
START_TEST(test_dropout) {
    clg_graph *g = clg_graph_new(clg_test_context());
    const int64_t s[2] = {250, 400};
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, s);
    clg_assert_ok(clg_requires_grad(x));
    ck_assert_ptr_eq(clg_dropout(g, x, 0.5f, false, 1), x);
    ck_assert_ptr_eq(clg_dropout(g, x, 0.0f, true, 1), x);
    clg_tensor *y = clg_dropout(g, x, p, true, 401);
    clg_tensor *loss = clg_sum(g, y, 0, NULL, false);
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor *gx = clg_grad(g, x);
    ck_assert_ptr_nonnull(gx);
    clg_assert_ok(clg_graph_output(g, y));
    clg_assert_ok(clg_graph_output(g, gx));
    clg_plan *pl = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &pl));
    float *hx = alloc_f(NS), *hy = alloc_f(NS), *hg = alloc_f(NS), *first = alloc_f(NS);
    clg_test_rng r;
    clg_test_rng_seed(&r, 402);
    clg_test_fill(&r, hx, NS, 0.5f, 1.5f);
    write_t(pl, x, hx);
    for (int run = 0; run < 2; ++run) {
        clg_assert_ok(clg_plan_run(pl));
        read_t(pl, y, hy);
        read_t(pl, gx, hg);
        int zeros = 0;
        double sx = 0, sy = 0, vx = 0;
        for (int i = 0; i < NS; ++i) {
            bool dropped = hy[i] == 0.0f;
            zeros += dropped;
            if (!dropped)
                ck_assert_msg(hy[i] == hx[i] * scale, "survivor [%d]: %.9g, want %.9g", i,
                              (double)hy[i], (double)(hx[i] * scale));
            ck_assert_msg(hg[i] == (dropped ? 0.0f : scale), "gradient [%d] = %g with y = %g", i,
                          (double)hg[i], (double)hy[i]);
            sx += hx[i];
            sy += hy[i];
            vx += (double)hx[i] * hx[i] * p / (1 - p); /* Var(y_i) = x_i^2 p / (1 - p) */
        }
        double frac = (double)zeros / NS;
        ck_assert_msg(fabs(frac - p) <= 5 * sqrt(p * (1 - p) / NS), "dropped fraction %g", frac);
        ck_assert_msg(fabs(sy - sx) <= 5 * sqrt(vx), "sum %g after dropout, %g before", sy, sx);
        if (run == 0) memcpy(first, hy, NS * sizeof *hy);
    }
    int same_mask = 0;
    for (int i = 0; i < NS; ++i)
        same_mask += (first[i] == 0.0f) == (hy[i] == 0.0f);
    /* independent masks agree on p^2 + (1-p)^2 = 58% of elements */
    ck_assert_msg(same_mask < NS * 0.6, "the second run reused the mask (%d agree)", same_mask);

    /* p must lie in [0, 1) */
    clg_graph *bad = clg_graph_new(clg_test_context());
    clg_tensor *bx = clg_input(bad, "x", CLG_F32, 2, s);
    clg_dropout(bad, bx, 1.0f, true, 1);
    ck_assert_int_eq(clg_graph_status(bad), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(bad);
    free(hx);
    free(hy);
    free(hg);
    free(first);
    clg_graph_free(g);
}
END_TEST

static Suite *random_suite(void) {
    Suite *s = suite_create("random");
    TCase *host = tcase_create("philox");
    tcase_add_test(host, test_philox_known_answers);
    TCase *dev = tcase_create("device");
    tcase_set_timeout(dev, 600);
    tcase_add_test(dev, test_uniform_bits);
    tcase_add_test(dev, test_runs_and_reproducibility);
    tcase_add_test(dev, test_distributions);
    tcase_add_test(dev, test_dropout);
    suite_add_tcase(s, host);
    suite_add_tcase(s, dev);
    return s;
}

int main(void) {
    return clg_test_run(random_suite());
}
