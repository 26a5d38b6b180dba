/* Wall-clock time and medians, for the choices made by measurement (GEMM backends, convolution
 * lowerings) and the benchmarks in tools/ that see clgrad's internals. */
#ifndef CLG_CORE_CLOCK_H
#define CLG_CORE_CLOCK_H

#include <stdlib.h>
#include <time.h>

static inline double clg_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static inline int clg_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (n >= 1); sorts v. */
static inline double clg_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, clg_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
