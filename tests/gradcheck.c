/* Central finite differences against clg_backward (see gradcheck.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gradcheck.h"
#include "harness.h"

void clg_gc_require(clg_gc_input *inputs, int n) {
    for (int i = 0; i < n; ++i) clg_assert_ok(clg_requires_grad(inputs[i].tensor));
}

clg_tensor *clg_gc_weighted_sum(clg_graph *g, clg_tensor *y, unsigned seed) {
    int64_t n = clg_tensor_numel(y);
    float *r = malloc((size_t)n * sizeof *r);
    ck_assert_ptr_nonnull(r);
    clg_test_rng rng;
    clg_test_rng_seed(&rng, seed);
    clg_test_fill(&rng, r, (size_t)n, 0.5f, 1.5f);
    clg_tensor *w = clg_constant(g, CLG_F32, clg_tensor_ndim(y), clg_tensor_shape(y), r);
    free(r);
    return clg_sum(g, clg_mul(g, y, w), 0, NULL, false);
}

static float run_loss(clg_plan *p, clg_tensor *loss, clg_gc_input *in, int n) {
    for (int i = 0; i < n; ++i)
        clg_assert_ok(clg_plan_write(p, in[i].tensor, in[i].values,
                                     (size_t)clg_tensor_numel(in[i].tensor) * sizeof(float)));
    clg_assert_ok(clg_plan_run(p));
    float l = 0.0f;
    clg_assert_ok(clg_plan_read(p, loss, &l, sizeof l));
    return l;
}

void clg_gradcheck(clg_graph *g, clg_tensor *loss, clg_gc_input *in, int n, float eps,
                   float atol, float rtol) {
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_tensor **grads = calloc((size_t)n, sizeof *grads);
    ck_assert_ptr_nonnull(grads);
    for (int i = 0; i < n; ++i) {
        grads[i] = clg_grad(g, in[i].tensor);
        ck_assert_msg(grads[i] != NULL, "%s: no gradient reaches this input", in[i].label);
        clg_assert_ok(clg_graph_output(g, grads[i]));
    }
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    /* All analytic gradients come from one clean run, before any input is perturbed. */
    run_loss(p, loss, in, n);
    float **analytic = calloc((size_t)n, sizeof *analytic);
    ck_assert_ptr_nonnull(analytic);
    for (int i = 0; i < n; ++i) {
        int64_t m = clg_tensor_numel(in[i].tensor);
        analytic[i] = malloc((size_t)m * sizeof *analytic[i]);
        ck_assert_ptr_nonnull(analytic[i]);
        clg_assert_ok(clg_plan_read(p, grads[i], analytic[i], (size_t)m * sizeof *analytic[i]));
    }
    for (int i = 0; i < n; ++i) {
        int64_t m = clg_tensor_numel(in[i].tensor);
        for (int64_t k = 0; k < m; ++k) {
            float keep = in[i].values[k];
            in[i].values[k] = keep + eps;
            float lp = run_loss(p, loss, in, n);
            in[i].values[k] = keep - eps;
            float lm = run_loss(p, loss, in, n);
            in[i].values[k] = keep;
            double numeric = ((double)lp - (double)lm) / (2.0 * (double)eps);
            double a = analytic[i][k];
            if (!(fabs(a - numeric) <= atol + rtol * fabs(numeric)))
                ck_abort_msg("gradient of %s, element %lld (x = %g): analytic %.7g, numeric %.7g",
                             in[i].label, (long long)k, (double)keep, a, numeric);
        }
    }
    for (int i = 0; i < n; ++i) free(analytic[i]);
    free(analytic);
    clg_plan_free(p);
    free(grads);
}
