/* Batch normalisation on the device against a plain-C reference: training (batch statistics,
 * the running-statistics update after one and two runs, the analytic gradients of x, weight and
 * bias) for 2-D and 1-D inputs with and without affine parameters, evaluation with running
 * statistics (and without, falling back to the batch's), central finite differences in
 * training mode, and error messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

#define MOMENTUM 0.1f
#define EPS 1e-5f

static float *alloc_f(int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fill(float *v, int64_t n, uint64_t seed, float lo, float hi) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, (size_t)n, lo, hi);
}

/* x viewed as [N, C, S] (S = product of the axes after the channel axis). */
typedef struct bn_ref {
    int64_t n, c, s;
} bn_ref;

/* Batch mean and biased variance per channel. */
static void batch_stats(bn_ref d, const float *x, double *mean, double *var) {
    double cnt = (double)(d.n * d.s);
    for (int64_t c = 0; c < d.c; ++c) {
        double m = 0.0, v = 0.0;
        for (int64_t n = 0; n < d.n; ++n)
            for (int64_t s = 0; s < d.s; ++s)
                m += x[(n * d.c + c) * d.s + s];
        m /= cnt;
        for (int64_t n = 0; n < d.n; ++n)
            for (int64_t s = 0; s < d.s; ++s) {
                double t = x[(n * d.c + c) * d.s + s] - m;
                v += t * t;
            }
        mean[c] = m;
        var[c] = v / cnt;
    }
}

/* y and the gradients of sum(y * gy) given per-channel statistics; `batch`: the statistics
 * are the batch's own (training), so they depend on x too. w, b may be NULL. */
static void bn_forward_backward(bn_ref d, const float *x, const float *w, const float *b,
                                const double *mean, const double *var, bool batch, const float *gy,
                                float *y, float *dx, float *dw, float *db) {
    double cnt = (double)(d.n * d.s);
    for (int64_t c = 0; c < d.c; ++c) {
        double inv = 1.0 / sqrt(var[c] + (double)EPS), gamma = w ? w[c] : 1.0;
        double sum_g = 0.0, sum_gx = 0.0;
        for (int64_t n = 0; n < d.n; ++n)
            for (int64_t s = 0; s < d.s; ++s) {
                int64_t i = (n * d.c + c) * d.s + s;
                double xh = (x[i] - mean[c]) * inv;
                y[i] = (float)(xh * gamma + (b ? b[c] : 0.0));
                sum_g += gy[i];
                sum_gx += gy[i] * xh;
            }
        if (dw) dw[c] = (float)sum_gx;
        if (db) db[c] = (float)sum_g;
        for (int64_t n = 0; n < d.n; ++n)
            for (int64_t s = 0; s < d.s; ++s) {
                int64_t i = (n * d.c + c) * d.s + s;
                double xh = (x[i] - mean[c]) * inv;
                dx[i] = (float)(batch ? gamma * inv / cnt * (cnt * gy[i] - sum_g - xh * sum_gx)
                                      : gamma * inv * gy[i]);
            }
    }
}

static void check_close(clg_plan *p, clg_tensor *t, const float *want, int64_t n, double atol,
                        double rtol, const char *what) {
    ck_assert_msg(t != NULL, "%s: no tensor", what);
    ck_assert_int_eq(clg_tensor_numel(t), n);
    float *got = alloc_f(n);
    clg_assert_ok(clg_plan_read(p, t, got, (size_t)n * sizeof *got));
    for (int64_t i = 0; i < n; ++i)
        if (!(fabs((double)got[i] - want[i]) <= atol + rtol * fabs(want[i]))) {
            double gv = got[i], wv = want[i];
            free(got);
            ck_abort_msg("%s: element %lld of %lld is %.7g, want %.7g", what, (long long)i,
                         (long long)n, gv, wv);
        }
    free(got);
}

static void check_param(clg_param *p, const double *want, int64_t n, const char *what) {
    float got[64];
    ck_assert_int_le(n, 64);
    clg_assert_ok(clg_param_read(p, got, (size_t)n * sizeof *got));
    for (int64_t i = 0; i < n; ++i)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-6 + 1e-5 * fabs(want[i]),
                      "%s[%lld] is %.7g, want %.7g", what, (long long)i, (double)got[i], want[i]);
}

static clg_param *new_stat(const char *name, int64_t c, float lo, float hi, uint64_t seed,
                           double *host) {
    clg_param *p = clg_param_new(clg_test_context(), name, CLG_F32, 1, &c);
    ck_assert_msg(p != NULL, "%s: %s", name, clg_last_error());
    float v[64];
    ck_assert_int_le(c, 64);
    fill(v, c, seed, lo, hi);
    clg_assert_ok(clg_param_write(p, v, (size_t)c * sizeof *v));
    for (int64_t i = 0; i < c; ++i)
        host[i] = v[i];
    return p;
}

typedef struct bn_case {
    const char *name;
    int nd;
    int64_t shape[4];
    bool affine, running;
} bn_case;

START_TEST(batch_norm_training) {
    static const bn_case cases[] = {
        {"2d [3, 5, 4, 3]", 4, {3, 5, 4, 3}, true, true},
        {"2d [2, 3, 1, 1] (two values per channel)", 4, {2, 3, 1, 1}, true, true},
        {"1d [6, 4]", 2, {6, 4}, true, true},
        {"1d [4, 3, 5], no affine, no running statistics", 3, {4, 3, 5}, false, false},
    };
    enum { NC = sizeof cases / sizeof cases[0] };
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float *x[NC], *w[NC], *b[NC], *gy[NC];
    double rm[NC][8], rv[NC][8];
    clg_param *prm[NC], *prv[NC];
    clg_tensor *tx[NC], *tw[NC], *tb[NC], *ty[NC], *loss = NULL;
    for (int k = 0; k < NC; ++k) {
        const bn_case *cs = &cases[k];
        int64_t n = 1, C = cs->shape[1];
        for (int d = 0; d < cs->nd; ++d)
            n *= cs->shape[d];
        x[k] = alloc_f(n);
        gy[k] = alloc_f(n);
        w[k] = alloc_f(C);
        b[k] = alloc_f(C);
        fill(x[k], n, 60 + (uint64_t)k, -2.0f, 3.0f);
        fill(gy[k], n, 70 + (uint64_t)k, 0.5f, 1.5f);
        fill(w[k], C, 80 + (uint64_t)k, 0.5f, 1.5f);
        fill(b[k], C, 90 + (uint64_t)k, -1.0f, 1.0f);
        char name[64];
        prm[k] = prv[k] = NULL;
        if (cs->running) {
            snprintf(name, sizeof name, "bn_train%d.running_mean", k);
            prm[k] = new_stat(name, C, -0.5f, 0.5f, 100 + (uint64_t)k, rm[k]);
            snprintf(name, sizeof name, "bn_train%d.running_var", k);
            prv[k] = new_stat(name, C, 0.5f, 2.0f, 110 + (uint64_t)k, rv[k]);
        }
        tx[k] = clg_input(g, "x", CLG_F32, cs->nd, cs->shape);
        tw[k] = cs->affine ? clg_input(g, "w", CLG_F32, 1, &C) : NULL;
        tb[k] = cs->affine ? clg_input(g, "b", CLG_F32, 1, &C) : NULL;
        clg_assert_ok(clg_requires_grad(tx[k]));
        if (cs->affine) {
            clg_assert_ok(clg_requires_grad(tw[k]));
            clg_assert_ok(clg_requires_grad(tb[k]));
        }
        ty[k] = cs->nd == 4
                    ? clg_batch_norm2d(g, tx[k], tw[k], tb[k], prm[k], prv[k], MOMENTUM, EPS, true)
                    : clg_batch_norm1d(g, tx[k], tw[k], tb[k], prm[k], prv[k], MOMENTUM, EPS, true);
        ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s: %s", cs->name, clg_graph_error(g));
        clg_tensor *term =
            clg_sum(g, clg_mul(g, ty[k], clg_constant(g, CLG_F32, cs->nd, cs->shape, gy[k])), 0,
                    NULL, false);
        loss = loss ? clg_add(g, loss, term) : term;
        clg_assert_ok(clg_graph_output(g, ty[k]));
    }
    clg_assert_ok(clg_backward(g, loss));
    for (int k = 0; k < NC; ++k) {
        clg_assert_ok(clg_graph_output(g, clg_grad(g, tx[k])));
        if (tw[k]) clg_assert_ok(clg_graph_output(g, clg_grad(g, tw[k])));
        if (tb[k]) clg_assert_ok(clg_graph_output(g, clg_grad(g, tb[k])));
    }
    clg_compile_options opts = {.guard_bytes = 64};
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &opts, &p));
    for (int k = 0; k < NC; ++k) {
        int64_t C = cases[k].shape[1];
        clg_assert_ok(
            clg_plan_write(p, tx[k], x[k], (size_t)clg_tensor_numel(tx[k]) * sizeof(float)));
        if (tw[k]) clg_assert_ok(clg_plan_write(p, tw[k], w[k], (size_t)C * sizeof(float)));
        if (tb[k]) clg_assert_ok(clg_plan_write(p, tb[k], b[k], (size_t)C * sizeof(float)));
    }
    for (int run = 1; run <= 2; ++run) {
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_finish(p));
        clg_assert_ok(clg_plan_check_guards(p));
        for (int k = 0; k < NC; ++k) {
            const bn_case *cs = &cases[k];
            bn_ref d = {cs->shape[0], cs->shape[1], 1};
            for (int i = 2; i < cs->nd; ++i)
                d.s *= cs->shape[i];
            int64_t n = d.n * d.c * d.s;
            double mean[8], var[8];
            batch_stats(d, x[k], mean, var);
            if (cs->running) {
                double cnt = (double)(d.n * d.s);
                for (int64_t c = 0; c < d.c; ++c) {
                    rm[k][c] = (1.0 - MOMENTUM) * rm[k][c] + MOMENTUM * mean[c];
                    rv[k][c] = (1.0 - MOMENTUM) * rv[k][c] + MOMENTUM * var[c] * cnt / (cnt - 1);
                }
                char what[200];
                snprintf(what, sizeof what, "%s: running_mean after run %d", cs->name, run);
                check_param(prm[k], rm[k], d.c, what);
                snprintf(what, sizeof what, "%s: running_var after run %d", cs->name, run);
                check_param(prv[k], rv[k], d.c, what);
            }
            if (run == 2) continue;
            float *y = alloc_f(n), *dx = alloc_f(n), dw[8], db[8];
            bn_forward_backward(d, x[k], cs->affine ? w[k] : NULL, cs->affine ? b[k] : NULL, mean,
                                var, true, gy[k], y, dx, dw, db);
            char what[200];
            snprintf(what, sizeof what, "%s: forward", cs->name);
            check_close(p, ty[k], y, n, 1e-4, 1e-4, what);
            snprintf(what, sizeof what, "%s: d/dx", cs->name);
            check_close(p, clg_grad(g, tx[k]), dx, n, 1e-4, 1e-3, what);
            if (cs->affine) {
                snprintf(what, sizeof what, "%s: d/dweight", cs->name);
                check_close(p, clg_grad(g, tw[k]), dw, d.c, 1e-4, 1e-4, what);
                snprintf(what, sizeof what, "%s: d/dbias", cs->name);
                check_close(p, clg_grad(g, tb[k]), db, d.c, 1e-4, 1e-4, what);
            }
            free(y);
            free(dx);
        }
    }
    for (int k = 0; k < NC; ++k) {
        free(x[k]);
        free(gy[k]);
        free(w[k]);
        free(b[k]);
    }
    clg_plan_free(p);
    clg_graph_free(g);
}
END_TEST

START_TEST(batch_norm_eval) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    const int64_t shape[4] = {2, 3, 3, 5}, C = 3, n = 90;
    bn_ref d = {2, 3, 15};
    float x[90], gy[90], w[3], b[3];
    double rm[3], rv[3];
    fill(x, n, 1, -2.0f, 2.0f);
    fill(gy, n, 2, 0.5f, 1.5f);
    fill(w, C, 3, 0.5f, 1.5f);
    fill(b, C, 4, -1.0f, 1.0f);
    clg_param *prm = new_stat("bn_eval.running_mean", C, -0.5f, 0.5f, 5, rm);
    clg_param *prv = new_stat("bn_eval.running_var", C, 0.5f, 2.0f, 6, rv);
    clg_tensor *tx = clg_input(g, "x", CLG_F32, 4, shape);
    clg_tensor *tw = clg_input(g, "w", CLG_F32, 1, &C);
    clg_tensor *tb = clg_input(g, "b", CLG_F32, 1, &C);
    clg_assert_ok(clg_requires_grad(tx));
    clg_assert_ok(clg_requires_grad(tw));
    clg_assert_ok(clg_requires_grad(tb));
    clg_tensor *y = clg_batch_norm2d(g, tx, tw, tb, prm, prv, MOMENTUM, EPS, false);
    /* no running statistics: evaluation falls back to the batch's */
    clg_tensor *yb = clg_batch_norm2d(g, tx, NULL, NULL, NULL, NULL, MOMENTUM, EPS, false);
    clg_tensor *loss =
        clg_sum(g, clg_mul(g, y, clg_constant(g, CLG_F32, 4, shape, gy)), 0, NULL, false);
    clg_assert_ok(clg_graph_output(g, y));
    clg_assert_ok(clg_graph_output(g, yb));
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_graph_output(g, clg_grad(g, tx)));
    clg_assert_ok(clg_graph_output(g, clg_grad(g, tw)));
    clg_assert_ok(clg_graph_output(g, clg_grad(g, tb)));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, tx, x, sizeof x));
    clg_assert_ok(clg_plan_write(p, tw, w, sizeof w));
    clg_assert_ok(clg_plan_write(p, tb, b, sizeof b));
    clg_assert_ok(clg_plan_run(p));
    float want[90], dx[90], dw[3], db[3];
    bn_forward_backward(d, x, w, b, rm, rv, false, gy, want, dx, dw, db);
    check_close(p, y, want, n, 1e-5, 1e-5, "eval: forward");
    check_close(p, clg_grad(g, tx), dx, n, 1e-5, 1e-5, "eval: d/dx");
    check_close(p, clg_grad(g, tw), dw, C, 1e-4, 1e-4, "eval: d/dweight");
    check_close(p, clg_grad(g, tb), db, C, 1e-4, 1e-4, "eval: d/dbias");
    double mean[3], var[3];
    batch_stats(d, x, mean, var);
    bn_forward_backward(d, x, NULL, NULL, mean, var, true, gy, want, dx, NULL, NULL);
    check_close(p, yb, want, n, 1e-4, 1e-4, "eval without running statistics: forward");
    /* evaluation leaves the running statistics alone */
    check_param(prm, rm, C, "eval: running_mean");
    check_param(prv, rv, C, "eval: running_var");
    clg_plan_free(p);
    clg_graph_free(g);
}
END_TEST

/* Batch norm is not linear in x, so the step is small: the truncation error (~eps^2 times the
 * third derivative) and the float rounding of the loss (~1e-6 |L| / eps) both stay near 1e-4.
 * The exact check of the same gradients is batch_norm_training's, against the closed form. */
#define GC_EPS 1e-2f
#define GC_ATOL 2e-3f
#define GC_RTOL 1e-2f

START_TEST(batch_norm_gradcheck) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    float x[36], w[3], b[3], x1[15], w1[3];
    fill(x, 36, 41, -1.0f, 1.0f);
    fill(w, 3, 42, 0.5f, 1.5f);
    fill(b, 3, 43, -1.0f, 1.0f);
    fill(x1, 15, 44, -1.0f, 1.0f);
    fill(w1, 3, 45, 0.5f, 1.5f);
    /* Order: clg_gradcheck reads each input's analytic gradient after the previous input's
     * perturbed runs (its last element left at x - eps), so each gradient must not depend on
     * the input before it: the images first, then d/dbias (depends on nothing), then the
     * weights (not on the bias, nor on each other). */
    clg_gc_input in[5] = {
        {clg_input(g, "x", CLG_F32, 4, (int64_t[]){2, 3, 3, 2}), x, "batch_norm2d x"},
        {clg_input(g, "x1", CLG_F32, 2, (int64_t[]){5, 3}), x1, "batch_norm1d x"},
        {clg_input(g, "b", CLG_F32, 1, (int64_t[]){3}), b, "batch_norm2d bias"},
        {clg_input(g, "w", CLG_F32, 1, (int64_t[]){3}), w, "batch_norm2d weight"},
        {clg_input(g, "w1", CLG_F32, 1, (int64_t[]){3}), w1, "batch_norm1d weight"},
    };
    clg_gc_require(in, 5);
    clg_tensor *y = clg_batch_norm2d(g, in[0].tensor, in[3].tensor, in[2].tensor, NULL, NULL,
                                     MOMENTUM, EPS, true);
    clg_tensor *y1 =
        clg_batch_norm1d(g, in[1].tensor, in[4].tensor, NULL, NULL, NULL, MOMENTUM, EPS, true);
    clg_tensor *loss = clg_add(g, clg_gc_weighted_sum(g, y, 51), clg_gc_weighted_sum(g, y1, 52));
    ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s", clg_graph_error(g));
    clg_gradcheck(g, loss, in, 5, GC_EPS, GC_ATOL, GC_RTOL);
    clg_graph_free(g);
}
END_TEST

START_TEST(batch_norm_errors) {
    clg_context *ctx = clg_test_context();
    struct {
        bool two_d;
        int nd;
        int64_t shape[4];
        int64_t wc;
        const char *needle;
    } cases[] = {
        {false, 2, {1, 3}, 3, "more than one value per channel"},
        {true, 4, {2, 3, 4, 4}, 4, "weight must be [3]"},
        {true, 3, {2, 3, 4}, 3, "[N, C, H, W]"},
    };
    for (int k = 0; k < 3; ++k) {
        clg_graph *g = clg_graph_new(ctx);
        ck_assert_ptr_nonnull(g);
        clg_tensor *x = clg_input(g, "x", CLG_F32, cases[k].nd, cases[k].shape);
        clg_tensor *w = clg_input(g, "w", CLG_F32, 1, &cases[k].wc);
        clg_tensor *y = cases[k].two_d
                            ? clg_batch_norm2d(g, x, w, NULL, NULL, NULL, 0.1f, 1e-5f, true)
                            : clg_batch_norm1d(g, x, w, NULL, NULL, NULL, 0.1f, 1e-5f, true);
        ck_assert_ptr_nonnull(y);
        const char *msg = clg_graph_error(g);
        ck_assert_msg(clg_graph_status(g) != CLG_OK && strstr(msg, "batch_norm") &&
                          strstr(msg, cases[k].needle),
                      "case %d: message '%s' should name batch_norm and '%s'", k, msg,
                      cases[k].needle);
        clg_graph_free(g);
    }
    /* a running statistic of the wrong shape */
    int64_t four = 4;
    clg_param *bad = clg_param_new(ctx, "bn_errors.running_mean", CLG_F32, 1, &four);
    ck_assert_ptr_nonnull(bad);
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, (int64_t[]){5, 3});
    clg_batch_norm1d(g, x, NULL, NULL, bad, bad, 0.1f, 1e-5f, true);
    ck_assert_msg(strstr(clg_graph_error(g), "bn_errors.running_mean"), "message: %s",
                  clg_graph_error(g));
    clg_graph_free(g);
}
END_TEST

int main(void) {
    Suite *s = suite_create("norm");
    TCase *tc = tcase_create("batch_norm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, batch_norm_errors);
    tcase_add_test(tc, batch_norm_training);
    tcase_add_test(tc, batch_norm_eval);
    tcase_add_test(tc, batch_norm_gradcheck);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
