/* Shared test helpers: a device context created inside the test (never across fork), seeded
 * random data, and tolerant float comparisons with useful failure messages. */
#ifndef CLG_TEST_HARNESS_H
#define CLG_TEST_HARNESS_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/clgrad.h"

/* Run a suite; returns the process exit status (0 pass, 1 fail). */
int clg_test_run(Suite *s);

/* The context for device tests, created on first use (CLGRAD_DEVICE picks the device) and
 * freed at exit. A machine without any OpenCL device makes the test exit 77 (meson: SKIP). */
clg_context *clg_test_context(void);

/* Deterministic pseudo-random numbers for test inputs (xorshift; independent of clgrad). */
typedef struct clg_test_rng {
    uint64_t s;
} clg_test_rng;
void clg_test_rng_seed(clg_test_rng *r, uint64_t seed);
float clg_test_uniform(clg_test_rng *r, float lo, float hi);
void clg_test_fill(clg_test_rng *r, float *x, size_t n, float lo, float hi);

/* Assert |got[i] - want[i]| <= atol + rtol * |want[i]| for all i; on failure reports the first
 * bad index and the worst error. */
#define clg_assert_close(got, want, n, atol, rtol)                                             \
    clg_test_assert_close(__FILE__, __LINE__, (got), (want), (n), (atol), (rtol))
void clg_test_assert_close(const char *file, int line, const float *got, const float *want,
                           size_t n, double atol, double rtol);

/* Abort the test with the status name and clgrad's last error unless st == CLG_OK. */
#define clg_assert_ok(st) clg_test_assert_ok(__FILE__, __LINE__, (st), #st)
void clg_test_assert_ok(const char *file, int line, clg_status st, const char *expr);

/* Path of a file under tests/ (for fixtures); static buffer. */
const char *clg_test_path(const char *relative);

#endif
