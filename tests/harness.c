/* Shared test helpers (see harness.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

static clg_context *test_ctx;

static void free_context(void) {
    clg_context_free(test_ctx);
    test_ctx = NULL;
}

clg_context *clg_test_context(void) {
    if (test_ctx) return test_ctx;
    clg_status st = clg_context_create(NULL, &test_ctx);
    if (st == CLG_ERR_NO_PLATFORM) {
        fprintf(stderr, "SKIP: no OpenCL device: %s\n", clg_last_error());
        exit(77);
    }
    if (st != CLG_OK) {
        fprintf(stderr, "cannot create a context: %s: %s\n", clg_status_name(st),
                clg_last_error());
        exit(1);
    }
    atexit(free_context);
    return test_ctx;
}

int clg_test_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

void clg_test_rng_seed(clg_test_rng *r, uint64_t seed) {
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!r->s) r->s = 1;
}

float clg_test_uniform(clg_test_rng *r, float lo, float hi) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    double u = (double)(r->s >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

void clg_test_fill(clg_test_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; ++i) x[i] = clg_test_uniform(r, lo, hi);
}

void clg_test_assert_close(const char *file, int line, const float *got, const float *want,
                           size_t n, double atol, double rtol) {
    size_t first_bad = n, worst = 0;
    double worst_excess = 0.0;
    for (size_t i = 0; i < n; ++i) {
        double diff = fabs((double)got[i] - (double)want[i]);
        double tol = atol + rtol * fabs((double)want[i]);
        bool bad = !(diff <= tol); /* also catches NaN */
        if (bad && first_bad == n) first_bad = i;
        if (bad && (isnan(diff) || diff - tol > worst_excess)) {
            worst_excess = isnan(diff) ? INFINITY : diff - tol;
            worst = i;
        }
    }
    if (first_bad != n)
        ck_assert_msg(0,
                      "%s:%d: %zu values: first mismatch at [%zu]: got %.8g want %.8g; worst at "
                      "[%zu]: got %.8g want %.8g (atol %g rtol %g)",
                      file, line, n, first_bad, (double)got[first_bad], (double)want[first_bad],
                      worst, (double)got[worst], (double)want[worst], atol, rtol);
}

void clg_test_assert_ok(const char *file, int line, clg_status st, const char *expr) {
    if (st != CLG_OK)
        ck_assert_msg(0, "%s:%d: %s returned %s: %s", file, line, expr, clg_status_name(st),
                      clg_last_error());
}

const char *clg_test_path(const char *relative) {
    static char buf[4096];
    const char *dir = getenv("CLGRAD_TEST_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests", relative);
    return buf;
}
