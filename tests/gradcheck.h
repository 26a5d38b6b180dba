/* The one gradient-check helper every op test uses: compares the gradients clg_backward builds
 * against central finite differences of the same plan's loss. */
#ifndef CLG_TEST_GRADCHECK_H
#define CLG_TEST_GRADCHECK_H

#include <stddef.h>

#include "clgrad/clgrad.h"

typedef struct clg_gc_input {
    clg_tensor *tensor; /* an f32 graph input (clg_input) */
    float *values;      /* its host values; restored after the check */
    const char *label;  /* named in failure messages, e.g. "tanh x" */
} clg_gc_input;

/* Builds, for each input, clg_requires_grad before the caller's ops: call it on the inputs
 * first, then build the loss, then call clg_gradcheck. */
void clg_gc_require(clg_gc_input *inputs, int n);

/* Reduce y to a scalar loss sum(y * r) with fixed pseudo-random weights r (seeded), so every
 * element of y influences the loss differently. */
clg_tensor *clg_gc_weighted_sum(clg_graph *g, clg_tensor *y, unsigned seed);

/* Compile g (clg_backward on loss, outputs: loss and every input's gradient), then for every
 * element of every input compare the analytic gradient with (L(x+eps) - L(x-eps)) / 2eps.
 * Fails the current check test with the input label, element and both values when
 * |analytic - numeric| > atol + rtol * |numeric|. */
void clg_gradcheck(clg_graph *g, clg_tensor *loss, clg_gc_input *inputs, int n, float eps,
                   float atol, float rtol);

#endif
