/* Short trainings of a classifier on a subset of the bundled MNIST, for the model tests (mlp,
 * cnn): each compares a network with intact gradients against the same network with a
 * deliberately broken one, so a gradient bug cannot pass the accuracy threshold. */
#ifndef CLG_TESTS_FIT_H
#define CLG_TESTS_FIT_H

#include <stdbool.h>
#include <stdint.h>

#include <clgrad/clgrad.h>

/* Logits [batch, 10] of model for x; variant chooses a breakage (0: none; the evaluation graph
 * always gets 0). */
typedef clg_tensor *(*clg_fit_forward)(clg_graph *g, void *model, clg_tensor *x, int variant);

typedef struct clg_fit_options {
    int64_t train_n, test_n; /* the first images of the training and test files */
    int64_t batch;
    int epochs;
    float lr;        /* Adam */
    bool images;     /* x as [batch, 28, 28]; else [batch, 784] */
    bool standardise; /* by the training subset's mean and std; else pixels in [0, 1] */
} clg_fit_options;

/* Train model (its parameters already in ctx; the trainable ones are updated) with Adam on
 * cross-entropy, forward(..., variant) in the training graph, then return the accuracy of
 * forward(..., 0) on the test subset; *last_loss (may be NULL) gets the last step's loss.
 * Fails the running test on any error. */
double clg_fit_mnist(clg_context *ctx, void *model, clg_fit_forward forward, int variant,
                     const clg_fit_options *o, float *last_loss);

/* Identity forward, negated backward: a gradient bug that the forward pass cannot show. */
clg_tensor *clg_fit_broken_identity(clg_graph *g, clg_tensor *x);

#endif
