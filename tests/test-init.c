/* Initialisers and the linear layer. Each initialiser's statistics on a large parameter (mean,
 * standard deviation, bounds) against its formula, with tolerances of 5 standard errors of
 * the estimate; fans and gains; uniform values bit-for-bit (within rounding) against a host
 * Philox; seeds reproducible and distinct; errors. The linear layer's names, shapes,
 * PyTorch's default initialisation, forward values and gradient. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

#define ULP 1.1920928955078125e-7

/* 512 x 512 = 262144 values: standard errors of 0.2% of sigma on the mean. */
#define BIG_OUT 512
#define BIG_IN 512
#define BIG_N (BIG_OUT * BIG_IN)

static int param_serial;

/* A new f32 parameter with a unique name. */
static clg_param *new_param(int ndim, const int64_t *shape) {
    char name[64];
    snprintf(name, sizeof name, "init_test_%d", param_serial++);
    clg_param *p = clg_param_new(clg_test_context(), name, CLG_F32, ndim, shape);
    ck_assert_msg(p != NULL, "clg_param_new: %s", clg_last_error());
    return p;
}

static clg_param *new_big(void) {
    const int64_t s[2] = {BIG_OUT, BIG_IN};
    return new_param(2, s);
}

static float *read_param(clg_param *p) {
    int64_t n = clg_param_numel(p);
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_assert_ok(clg_param_read(p, v, (size_t)n * sizeof *v));
    return v;
}

typedef struct stats {
    double mean, std, min, max, kurt, within1; /* within1: fraction within mean +- 1 std_ref */
} stats;

static stats stats_of(const float *v, int64_t n, double mean_ref, double std_ref) {
    stats s = {.min = INFINITY, .max = -INFINITY};
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        sum += v[i];
        s.min = fmin(s.min, v[i]);
        s.max = fmax(s.max, v[i]);
    }
    s.mean = sum / (double)n;
    double m2 = 0.0, m4 = 0.0;
    int64_t in1 = 0;
    for (int64_t i = 0; i < n; ++i) {
        double d = v[i] - s.mean, d2 = d * d;
        m2 += d2;
        m4 += d2 * d2;
        in1 += fabs(v[i] - mean_ref) <= std_ref;
    }
    m2 /= (double)n;
    m4 /= (double)n;
    s.std = sqrt(m2);
    s.kurt = m4 / (m2 * m2);
    s.within1 = (double)in1 / (double)n;
    return s;
}

/* Mean within 5 standard errors (sigma / sqrt n); standard deviation within 5 standard errors
 * of the sample standard deviation, sigma sqrt((kurtosis - 1) / 4n). kurt: the distribution's
 * kurtosis (uniform 1.8, normal 3). */
static void check_moments(const char *what, const stats *s, int64_t n, double mean, double std,
                          double kurt) {
    double se_mean = std / sqrt((double)n), se_std = std * sqrt((kurt - 1.0) / (4.0 * n));
    ck_assert_msg(fabs(s->mean - mean) <= 5 * se_mean + 1e-12,
                  "%s: mean %.6g, want %.6g +- %.3g", what, s->mean, mean, 5 * se_mean);
    ck_assert_msg(fabs(s->std - std) <= 5 * se_std + 1e-12, "%s: std %.6g, want %.6g +- %.3g",
                  what, s->std, std, 5 * se_std);
}

/* Values in [lo, hi] (uniform: [lo, hi), written closed for the rounding of lo + (hi-lo) u),
 * and reaching within frac of the range of both ends. */
static void check_bounds(const char *what, const stats *s, double lo, double hi, double frac) {
    double slack = 4 * ULP * fmax(fabs(lo), fabs(hi));
    ck_assert_msg(s->min >= lo - slack && s->max <= hi + slack, "%s: values in [%.7g, %.7g], "
                  "want within [%.7g, %.7g]", what, s->min, s->max, lo, hi);
    ck_assert_msg(s->min <= lo + frac * (hi - lo) && s->max >= hi - frac * (hi - lo),
                  "%s: values in [%.7g, %.7g] do not reach the ends of [%.7g, %.7g]", what,
                  s->min, s->max, lo, hi);
}

static void check_uniform(const char *what, clg_param *p, double lo, double hi) {
    float *v = read_param(p);
    int64_t n = clg_param_numel(p);
    double std = (hi - lo) / sqrt(12.0);
    stats s = stats_of(v, n, 0.5 * (lo + hi), std);
    check_moments(what, &s, n, 0.5 * (lo + hi), std, 1.8);
    /* P(no value in the last 1e-3 of the range) = (1 - 1e-3)^n: e^-262 for n = 262144; the
     * conv-shaped parameters below (n = 4608) use 1e-2 (e^-46) */
    check_bounds(what, &s, lo, hi, n >= 100000 ? 1e-3 : 1e-2);
    free(v);
}

static void check_normal(const char *what, clg_param *p, double mean, double std) {
    float *v = read_param(p);
    int64_t n = clg_param_numel(p);
    stats s = stats_of(v, n, mean, std);
    check_moments(what, &s, n, mean, std, 3.0);
    /* P(|z| <= 1) = erf(1/sqrt 2), a binomial proportion */
    double p1 = erf(1.0 / sqrt(2.0)), se = sqrt(p1 * (1 - p1) / (double)n);
    ck_assert_msg(fabs(s.within1 - p1) <= 5 * se, "%s: %.4f within one std, want %.4f", what,
                  s.within1, p1);
    free(v);
}

/* ---- host Philox-4x32-10 (the reference for the device's uniform numbers) ---- */

static void philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; ++r) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n[4] = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
        memcpy(c, n, sizeof n);
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

/* ---- tests ---- */

START_TEST(test_gains_and_fans) {
    ck_assert_float_eq_tol(clg_init_gain(CLG_NONLINEARITY_LINEAR, 0), 1.0f, 1e-7f);
    ck_assert_float_eq_tol(clg_init_gain(CLG_NONLINEARITY_SIGMOID, 0), 1.0f, 1e-7f);
    ck_assert_float_eq_tol(clg_init_gain(CLG_NONLINEARITY_TANH, 0), 5.0f / 3.0f, 1e-7f);
    ck_assert_float_eq_tol(clg_init_gain(CLG_NONLINEARITY_RELU, 0), 1.41421356f, 1e-7f);
    ck_assert_float_eq_tol(clg_init_gain(CLG_NONLINEARITY_LEAKY_RELU, 0.01f),
                           (float)sqrt(2.0 / (1 + 1e-4)), 1e-7f);
    ck_assert_float_eq_tol(clg_init_gain(CLG_NONLINEARITY_LEAKY_RELU, sqrtf(5.0f)),
                           (float)sqrt(1.0 / 3.0), 1e-7f);
    int64_t fi, fo;
    const int64_t lin[2] = {10, 784}, conv[4] = {32, 3, 5, 7}, vec = 10;
    clg_assert_ok(clg_init_fans(new_param(2, lin), &fi, &fo));
    ck_assert_int_eq(fi, 784);
    ck_assert_int_eq(fo, 10);
    clg_assert_ok(clg_init_fans(new_param(4, conv), &fi, &fo));
    ck_assert_int_eq(fi, 3 * 35);
    ck_assert_int_eq(fo, 32 * 35);
    clg_param *v = new_param(1, &vec);
    ck_assert_int_eq(clg_init_fans(v, &fi, &fo), CLG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), clg_param_name(v)));
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "[10]"));
}
END_TEST

START_TEST(test_constant_and_zeros) {
    const int64_t s[2] = {3, 67};
    clg_param *p = new_param(2, s);
    clg_assert_ok(clg_init_constant(p, 3.25f));
    float *v = read_param(p);
    for (int i = 0; i < 3 * 67; ++i) ck_assert_float_eq(v[i], 3.25f);
    free(v);
    clg_assert_ok(clg_init_zeros(p));
    v = read_param(p);
    for (int i = 0; i < 3 * 67; ++i) ck_assert_float_eq(v[i], 0.0f);
    free(v);
    /* zeros also clears an i32 parameter */
    const int64_t n = 5;
    clg_param *q = clg_param_new(clg_test_context(), "init_test_i32", CLG_I32, 1, &n);
    ck_assert_ptr_nonnull(q);
    const int32_t ones[5] = {1, 2, 3, 4, 5};
    int32_t got[5];
    clg_assert_ok(clg_param_write(q, ones, sizeof ones));
    clg_assert_ok(clg_init_zeros(q));
    clg_assert_ok(clg_param_read(q, got, sizeof got));
    for (int i = 0; i < 5; ++i) ck_assert_int_eq(got[i], 0);
    ck_assert_int_eq(clg_init_constant(q, 1.0f), CLG_ERR_DTYPE);
}
END_TEST

START_TEST(test_uniform) {
    clg_param *p = new_big();
    clg_assert_ok(clg_init_uniform(p, -0.3f, 0.7f, 1234));
    check_uniform("uniform(-0.3, 0.7)", p, -0.3, 0.7);
    /* the values are Philox(index, 0, 0, 0; key = seed) mapped to 24-bit [0, 1): the same
     * numbers as the host reference, up to the rounding of lo + (hi - lo) u */
    float *v = read_param(p);
    const uint64_t seed = 1234;
    for (uint32_t i = 0; i < 1000; ++i) {
        uint32_t c[4] = {i, 0, 0, 0};
        philox(c, (uint32_t)seed, (uint32_t)(seed >> 32));
        float u = (float)(c[0] >> 8) * (1.0f / 16777216.0f);
        float want = -0.3f + (0.7f - -0.3f) * u;
        clg_assert_close(&v[i], &want, 1, 2 * ULP, 0);
    }
    free(v);
}
END_TEST

START_TEST(test_normal) {
    clg_param *p = new_big();
    clg_assert_ok(clg_init_normal(p, 1.5f, 0.5f, 99));
    check_normal("normal(1.5, 0.5)", p, 1.5, 0.5);
}
END_TEST

/* Moments of the standard normal restricted to [-a, a]. */
static void truncated_moments(double a, double *var, double *kurt) {
    double phi = exp(-0.5 * a * a) / sqrt(2 * 3.14159265358979323846), z = erf(a / sqrt(2.0));
    double m2 = 1.0 - 2.0 * a * phi / z;
    double m4 = 3.0 - 2.0 * (a * a * a + 3.0 * a) * phi / z;
    *var = m2;
    *kurt = m4 / (m2 * m2);
}

START_TEST(test_truncated_normal) {
    double var, kurt;
    truncated_moments(2.0, &var, &kurt);
    ck_assert_double_eq_tol(sqrt(var), 0.8796, 1e-4); /* the classic "about 0.88 sigma" */
    static const struct {
        float mean, std;
    } cases[] = {{0.0f, 0.1f}, {1.0f, 2.0f}};
    for (int k = 0; k < 2; ++k) {
        clg_param *p = new_big();
        clg_assert_ok(clg_init_truncated_normal(p, cases[k].mean, cases[k].std, 7 + k));
        float *v = read_param(p);
        double mean = cases[k].mean, std = cases[k].std;
        stats s = stats_of(v, BIG_N, mean, std);
        char what[64];
        snprintf(what, sizeof what, "truncated_normal(%g, %g)", mean, std);
        check_moments(what, &s, BIG_N, mean, std * sqrt(var), kurt);
        /* density at the cut: phi(2) / erf(sqrt 2) = 0.057 per sigma, so about 300 values lie
         * in the last 0.02 sigma on each side */
        check_bounds(what, &s, mean - 2 * std, mean + 2 * std, 0.005);
        free(v);
    }
}
END_TEST

START_TEST(test_xavier) {
    /* [out 512, in 512]: fan_in + fan_out = 1024; conv [32, 16, 3, 3]: 144 + 288 = 432 */
    clg_param *p = new_big();
    clg_assert_ok(clg_init_xavier_uniform(p, 1.0f, 11));
    double b = sqrt(6.0 / 1024.0);
    check_uniform("xavier_uniform", p, -b, b);
    const int64_t cs[4] = {32, 16, 3, 3};
    clg_param *c = new_param(4, cs);
    clg_assert_ok(clg_init_xavier_uniform(c, 2.0f, 12));
    b = 2.0 * sqrt(6.0 / 432.0);
    check_uniform("xavier_uniform conv gain 2", c, -b, b);
    const int64_t rect[2] = {256, 1024};
    clg_param *q = new_param(2, rect);
    clg_assert_ok(clg_init_xavier_normal(q, 1.5f, 13));
    check_normal("xavier_normal gain 1.5", q, 0.0, 1.5 * sqrt(2.0 / 1280.0));
}
END_TEST

START_TEST(test_kaiming) {
    const int64_t rect[2] = {256, 1024}; /* fan_in 1024, fan_out 256 */
    clg_param *p = new_param(2, rect);
    clg_assert_ok(clg_init_kaiming_uniform(p, 0.0f, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU, 21));
    double b = sqrt(2.0) * sqrt(3.0 / 1024.0);
    check_uniform("kaiming_uniform relu fan_in", p, -b, b);
    clg_assert_ok(clg_init_kaiming_uniform(p, 0.2f, CLG_FAN_MODE_OUT,
                                           CLG_NONLINEARITY_LEAKY_RELU, 22));
    b = sqrt(2.0 / 1.04) * sqrt(3.0 / 256.0);
    check_uniform("kaiming_uniform leaky_relu(0.2) fan_out", p, -b, b);
    clg_assert_ok(clg_init_kaiming_normal(p, 0.0f, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU, 23));
    check_normal("kaiming_normal relu fan_in", p, 0.0, sqrt(2.0) / sqrt(1024.0));
    clg_assert_ok(clg_init_kaiming_normal(p, 0.0f, CLG_FAN_MODE_OUT, CLG_NONLINEARITY_TANH, 24));
    check_normal("kaiming_normal tanh fan_out", p, 0.0, (5.0 / 3.0) / sqrt(256.0));
    const int64_t cs[4] = {32, 16, 3, 3}; /* fan_in 144 */
    clg_param *c = new_param(4, cs);
    clg_assert_ok(clg_init_kaiming_uniform(c, 0.0f, CLG_FAN_MODE_IN, CLG_NONLINEARITY_LINEAR, 25));
    b = sqrt(3.0 / 144.0);
    check_uniform("kaiming_uniform linear conv", c, -b, b);
}
END_TEST

START_TEST(test_seeds) {
    clg_param *a = new_big(), *b = new_big(), *c = new_big();
    clg_assert_ok(clg_init_normal(a, 0.0f, 1.0f, 5));
    clg_assert_ok(clg_init_normal(b, 0.0f, 1.0f, 5));
    clg_assert_ok(clg_init_normal(c, 0.0f, 1.0f, 6));
    float *va = read_param(a), *vb = read_param(b), *vc = read_param(c);
    ck_assert_int_eq(memcmp(va, vb, BIG_N * sizeof *va), 0);
    int same = 0;
    for (int i = 0; i < BIG_N; ++i) same += va[i] == vc[i];
    ck_assert_msg(same < 10, "seeds 5 and 6 agree on %d of %d values", same, BIG_N);
    /* seeds that differ only in the high 32 bits are different keys */
    clg_assert_ok(clg_init_uniform(b, 0.0f, 1.0f, 5));
    clg_assert_ok(clg_init_uniform(c, 0.0f, 1.0f, 5 | (1ull << 32)));
    free(vb);
    free(vc);
    vb = read_param(b);
    vc = read_param(c);
    same = 0;
    for (int i = 0; i < BIG_N; ++i) same += vb[i] == vc[i];
    ck_assert_msg(same < 100, "seeds 5 and 5 + 2^32 agree on %d of %d values", same, BIG_N);
    /* re-initialising reproduces the values */
    clg_assert_ok(clg_init_normal(b, 0.0f, 1.0f, 5));
    free(vb);
    vb = read_param(b);
    ck_assert_int_eq(memcmp(va, vb, BIG_N * sizeof *va), 0);
    free(va);
    free(vb);
    free(vc);
}
END_TEST

static void expect_fail(clg_status got, clg_status want, const char *a, const char *b) {
    ck_assert_msg(got == want, "status %s, want %s (%s)", clg_status_name(got),
                  clg_status_name(want), clg_last_error());
    ck_assert_msg(strstr(clg_last_error(), a) && (!b || strstr(clg_last_error(), b)),
                  "message '%s' lacks '%s' / '%s'", clg_last_error(), a, b ? b : "");
}

START_TEST(test_init_errors) {
    const int64_t vs = 10, s[2] = {4, 5};
    clg_param *v = new_param(1, &vs), *p = new_param(2, s);
    const char *vn = clg_param_name(v);
    expect_fail(clg_init_xavier_uniform(v, 1.0f, 1), CLG_ERR_SHAPE, "clg_init_xavier_uniform", vn);
    expect_fail(clg_init_xavier_normal(v, 1.0f, 1), CLG_ERR_SHAPE, "[10]", "2 dimensions");
    expect_fail(clg_init_kaiming_uniform(v, 0, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU, 1),
                CLG_ERR_SHAPE, "clg_init_kaiming_uniform", "fan in");
    expect_fail(clg_init_kaiming_normal(v, 0, CLG_FAN_MODE_OUT, CLG_NONLINEARITY_RELU, 1),
                CLG_ERR_SHAPE, "clg_init_kaiming_normal", vn);
    expect_fail(clg_init_uniform(p, 1.0f, -1.0f, 1), CLG_ERR_INVALID_ARGUMENT, "lo <= hi",
                "[1, -1)");
    expect_fail(clg_init_uniform(p, 0.0f, INFINITY, 1), CLG_ERR_INVALID_ARGUMENT, "finite", NULL);
    expect_fail(clg_init_normal(p, 0.0f, -1.0f, 1), CLG_ERR_INVALID_ARGUMENT, "std -1", NULL);
    expect_fail(clg_init_truncated_normal(p, NAN, 1.0f, 1), CLG_ERR_INVALID_ARGUMENT, "mean",
                NULL);
    expect_fail(clg_init_xavier_uniform(p, -1.0f, 1), CLG_ERR_INVALID_ARGUMENT, "gain -1", NULL);
    expect_fail(clg_init_kaiming_uniform(p, 0, (clg_fan_mode)5, CLG_NONLINEARITY_RELU, 1),
                CLG_ERR_INVALID_ARGUMENT, "fan mode 5", NULL);
    expect_fail(clg_init_kaiming_normal(p, 0, CLG_FAN_MODE_IN, (clg_nonlinearity)-1, 1),
                CLG_ERR_INVALID_ARGUMENT, "nonlinearity -1", NULL);
    expect_fail(clg_init_normal(NULL, 0.0f, 1.0f, 1), CLG_ERR_INVALID_ARGUMENT, "NULL", NULL);
    const int64_t n = 3;
    clg_param *ip = clg_param_new(clg_test_context(), "init_test_i32_err", CLG_I32, 1, &n);
    ck_assert_ptr_nonnull(ip);
    expect_fail(clg_init_uniform(ip, 0, 1, 1), CLG_ERR_DTYPE, "f32", "i32");
    /* a failed initialiser leaves the values alone */
    clg_assert_ok(clg_init_constant(p, 2.0f));
    ck_assert_int_ne(clg_init_normal(p, 0.0f, -1.0f, 1), CLG_OK);
    float *got = read_param(p);
    for (int i = 0; i < 20; ++i) ck_assert_float_eq(got[i], 2.0f);
    free(got);
}
END_TEST

/* ---- the linear layer ---- */

START_TEST(test_linear_init) {
    clg_context *ctx = clg_test_context();
    clg_linear fc;
    size_t before = clg_param_count(ctx);
    clg_assert_ok(clg_linear_init(ctx, &fc, "lin_a", 400, 256, true, 77));
    ck_assert_uint_eq(clg_param_count(ctx), before + 2);
    ck_assert_str_eq(clg_param_name(fc.weight), "lin_a.weight");
    ck_assert_str_eq(clg_param_name(fc.bias), "lin_a.bias");
    ck_assert_ptr_eq(clg_param_find(ctx, "lin_a.weight"), fc.weight);
    ck_assert_int_eq(clg_param_ndim(fc.weight), 2);
    ck_assert_int_eq(clg_param_shape(fc.weight)[0], 256); /* [out, in] like PyTorch */
    ck_assert_int_eq(clg_param_shape(fc.weight)[1], 400);
    ck_assert_int_eq(clg_param_ndim(fc.bias), 1);
    ck_assert_int_eq(clg_param_shape(fc.bias)[0], 256);
    ck_assert_int_eq(fc.in_features, 400);
    ck_assert_int_eq(fc.out_features, 256);
    ck_assert(clg_param_requires_grad(fc.weight) && clg_param_requires_grad(fc.bias));
    /* torch.nn.Linear: U(-1/sqrt(in), 1/sqrt(in)) for both */
    check_uniform("linear weight", fc.weight, -0.05, 0.05);
    float *w = read_param(fc.weight), *b = read_param(fc.bias);
    int same = 0;
    for (int i = 0; i < 256; ++i) {
        ck_assert_msg(fabsf(b[i]) <= 0.05f * (1 + 4 * ULP), "bias[%d] = %g", i, (double)b[i]);
        same += b[i] == w[i];
    }
    ck_assert_msg(same < 3, "bias repeats the weight's first values (%d)", same);
    free(w);
    free(b);

    /* without bias; errors create nothing */
    clg_linear nb;
    clg_assert_ok(clg_linear_init(ctx, &nb, "lin_nb", 3, 2, false, 1));
    ck_assert_ptr_null(nb.bias);
    before = clg_param_count(ctx);
    expect_fail(clg_linear_init(ctx, &nb, "lin_a", 4, 4, true, 1), CLG_ERR_INVALID_ARGUMENT,
                "lin_a.weight", "already exist");
    expect_fail(clg_linear_init(ctx, &nb, "lin_b", 0, 4, true, 1), CLG_ERR_SHAPE, "lin_b",
                "in 0");
    ck_assert_uint_eq(clg_param_count(ctx), before);
    /* a bias name already taken: nothing is created */
    const int64_t one = 1;
    ck_assert_ptr_nonnull(clg_param_new(ctx, "lin_c.bias", CLG_F32, 1, &one));
    before = clg_param_count(ctx);
    ck_assert_int_ne(clg_linear_init(ctx, &nb, "lin_c", 4, 4, true, 1), CLG_OK);
    ck_assert_uint_eq(clg_param_count(ctx), before);
    ck_assert_ptr_null(clg_param_find(ctx, "lin_c.weight"));
}
END_TEST

/* y = x W^T + b against a host reference for x of rank 1, 2 and 3, and the gradient with
 * respect to x through gradcheck. */
START_TEST(test_linear_forward) {
    clg_context *ctx = clg_test_context();
    enum { IN = 5, OUT = 3 };
    clg_linear fc, nb;
    clg_assert_ok(clg_linear_init(ctx, &fc, "lin_f", IN, OUT, true, 3));
    clg_assert_ok(clg_linear_init(ctx, &nb, "lin_f_nobias", IN, OUT, false, 4));
    float *w = read_param(fc.weight), *bias = read_param(fc.bias), *w2 = read_param(nb.weight);
    clg_graph *g = clg_graph_new(ctx);
    const int64_t s1 = IN, s2[2] = {4, IN}, s3[3] = {2, 3, IN};
    clg_tensor *x1 = clg_input(g, "x1", CLG_F32, 1, &s1);
    clg_tensor *x2 = clg_input(g, "x2", CLG_F32, 2, s2);
    clg_tensor *x3 = clg_input(g, "x3", CLG_F32, 3, s3);
    clg_tensor *y1 = clg_linear_forward(g, &fc, x1), *y2 = clg_linear_forward(g, &fc, x2);
    clg_tensor *y3 = clg_linear_forward(g, &fc, x3), *y4 = clg_linear_forward(g, &nb, x2);
    clg_tensor *ys[4] = {y1, y2, y3, y4};
    clg_tensor *xs[4] = {x1, x2, x3, x2};
    for (int k = 0; k < 4; ++k) clg_assert_ok(clg_graph_output(g, ys[k]));
    ck_assert_int_eq(clg_tensor_ndim(y1), 1);
    ck_assert_int_eq(clg_tensor_dim(y1, 0), OUT);
    ck_assert_int_eq(clg_tensor_ndim(y3), 3);
    ck_assert_int_eq(clg_tensor_dim(y3, 2), OUT);
    /* a wrong feature size poisons another graph */
    clg_graph *bad = clg_graph_new(ctx);
    const int64_t sb[2] = {4, IN + 1};
    clg_linear_forward(bad, &fc, clg_input(bad, "x", CLG_F32, 2, sb));
    ck_assert_int_eq(clg_graph_status(bad), CLG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(bad), "[4, 6]"));
    ck_assert_ptr_nonnull(strstr(clg_graph_error(bad), "lin_f.weight"));
    clg_graph_free(bad);

    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    float hx[4][4 * 3 * IN];
    clg_test_rng r;
    clg_test_rng_seed(&r, 31);
    for (int k = 0; k < 3; ++k) {
        clg_test_fill(&r, hx[k], (size_t)clg_tensor_numel(xs[k]), -2.0f, 2.0f);
        clg_assert_ok(clg_plan_write(p, xs[k], hx[k], (size_t)clg_tensor_numel(xs[k]) * 4));
    }
    memcpy(hx[3], hx[1], sizeof hx[1]);
    clg_assert_ok(clg_plan_run(p));
    for (int k = 0; k < 4; ++k) {
        int64_t rows = clg_tensor_numel(xs[k]) / IN;
        const float *wk = k == 3 ? w2 : w;
        float got[6 * OUT], want[6 * OUT];
        double tol = 0.0;
        for (int64_t i = 0; i < rows; ++i)
            for (int o = 0; o < OUT; ++o) {
                double acc = k == 3 ? 0.0 : bias[o], mag = fabs(acc);
                for (int c = 0; c < IN; ++c) {
                    acc += (double)hx[k][i * IN + c] * wk[o * IN + c];
                    mag += fabs((double)hx[k][i * IN + c] * wk[o * IN + c]);
                }
                want[i * OUT + o] = (float)acc;
                tol = fmax(tol, (IN + 2) * ULP * mag); /* a dot product of IN terms + bias */
            }
        clg_assert_ok(clg_plan_read(p, ys[k], got, (size_t)rows * OUT * sizeof *got));
        clg_assert_close(got, want, (size_t)(rows * OUT), tol, 0);
    }
    clg_graph_free(g);
    free(w);
    free(w2);
    free(bias);

    /* d/dx of a weighted sum of the layer's output */
    g = clg_graph_new(ctx);
    float gx[2 * 3 * IN];
    clg_test_fill(&r, gx, 2 * 3 * IN, -1.0f, 1.0f);
    clg_gc_input in = {clg_input(g, "x", CLG_F32, 3, s3), gx, "linear x"};
    clg_gc_require(&in, 1);
    clg_tensor *loss = clg_gc_weighted_sum(g, clg_linear_forward(g, &fc, in.tensor), 3u);
    /* linear in x: central differences are exact up to rounding (eps 1e-2, loss ~10) */
    clg_gradcheck(g, loss, &in, 1, 1e-2f, 2e-3f, 1e-2f);
    clg_graph_free(g);
}
END_TEST

static Suite *init_suite(void) {
    Suite *s = suite_create("init");
    TCase *tc = tcase_create("device");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_gains_and_fans);
    tcase_add_test(tc, test_constant_and_zeros);
    tcase_add_test(tc, test_uniform);
    tcase_add_test(tc, test_normal);
    tcase_add_test(tc, test_truncated_normal);
    tcase_add_test(tc, test_xavier);
    tcase_add_test(tc, test_kaiming);
    tcase_add_test(tc, test_seeds);
    tcase_add_test(tc, test_init_errors);
    tcase_add_test(tc, test_linear_init);
    tcase_add_test(tc, test_linear_forward);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return clg_test_run(init_suite());
}
