/* The training loop the MNIST examples share: data loading and normalisation, a training plan
 * (forward, backward, optimizer: one wait per step) and an evaluation plan over the same
 * parameters, progress, per-epoch log, checkpoints and the final report. An example supplies
 * its model through the callbacks below. */
#ifndef CLG_EXAMPLES_CLASSIFIER_H
#define CLG_EXAMPLES_CLASSIFIER_H

#include <clgrad/clgrad.h>

#include "train_cli.h"

typedef struct classifier_model {
    const char *name; /* "mlp_mnist": default checkpoint and log file names derive from it */
    const train_cli *cli; /* the example's flags, for the checkpoint's run record */
    int sample_ndim;  /* shape of one input sample as the model wants it, e.g. [784] or */
    int64_t sample_shape[3]; /* [1, 28, 28] */
    int classes;             /* outputs of the model: every label must be below this */
    float clip_norm;         /* > 0: clip the global gradient norm to this (recurrent models) */
    /* Create and initialise the parameters in ctx. */
    clg_status (*init)(clg_context *ctx, void *model, const train_flags *flags);
    /* Logits [batch, classes] from x [batch, sample...]; training selects dropout/batch norm
     * behaviour. */
    clg_tensor *(*forward)(clg_graph *g, void *model, clg_tensor *x, bool training,
                           const train_flags *flags);
    void *model;
} classifier_model;

typedef struct classifier_result {
    double test_accuracy;
    double samples_per_s;
    clg_context *ctx; /* still open, for post-training work (saliency maps); caller frees */
    clg_dataset *test;
} classifier_result;

/* Train and evaluate as the flags say, print the report. Returns the process exit status. */
int classifier_run(const classifier_model *m, const train_flags *flags, classifier_result *out);

#endif
