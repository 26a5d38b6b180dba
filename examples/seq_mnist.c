/* MNIST as a sequence: an LSTM of 128 units reads each digit row by row (28 steps of 28
 * pixels) and a linear layer classifies its last hidden state, trained through the shared loop
 * (common/classifier.h). --pixels (that is, --arch pixels) reads it pixel by pixel instead: 784
 * steps of one pixel, the long-memory benchmark of the recurrent-network literature. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/classifier.h"

#define HIDDEN 128

typedef struct seq_model {
    clg_rnn lstm;
    clg_linear fc;
    int64_t steps, step_size;
} seq_model;

static clg_status seq_init(clg_context *ctx, void *model, const train_flags *f) {
    seq_model *m = model;
    clg_rnn_config c = {.cell = CLG_CELL_LSTM,
                        .input_size = m->step_size,
                        .hidden_size = HIDDEN,
                        .num_layers = 1,
                        .batch_first = true};
    clg_status st = clg_rnn_init(ctx, &m->lstm, "lstm", &c, f->seed);
    if (st == CLG_OK) st = clg_linear_init(ctx, &m->fc, "fc", HIDDEN, 10, true, f->seed + 1);
    /* A forget-gate bias of 1 (Jozefowicz et al. 2015): the cell starts out remembering, so
     * early gradients reach the first rows instead of fading through a half-closed gate. */
    if (st == CLG_OK) {
        float b[4 * HIDDEN] = {0};
        for (int j = HIDDEN; j < 2 * HIDDEN; ++j)
            b[j] = 1.0f;
        st = clg_param_write(m->lstm.bias_hh[0][0], b, sizeof b);
        if (st == CLG_OK) st = clg_init_zeros(m->lstm.bias_ih[0][0]);
    }
    return st;
}

static clg_tensor *seq_forward(clg_graph *g, void *model, clg_tensor *x, bool training,
                               const train_flags *f) {
    (void)f;
    seq_model *m = model;
    clg_rnn_state last;
    /* the loader's [B, 784] as [B, T, I] (batch_first): [B, 28, 28] or [B, 784, 1] */
    x = clg_reshape(g, x, 3, (const int64_t[]){clg_tensor_dim(x, 0), m->steps, m->step_size});
    clg_rnn_forward(g, &m->lstm, x, NULL, NULL, training, 0, &last);
    clg_tensor *h = clg_squeeze(g, last.h, 0); /* h_n [1, B, H] -> [B, H] */
    return clg_linear_forward(g, &m->fc, h);
}

int main(int argc, char **argv) {
    static const char *const archs[] = {"rows", "pixels", NULL};
    /* --pixels is --arch pixels, so a checkpoint's run record keeps it */
    char **args = malloc((size_t)(argc + 1) * 2 * sizeof *args);
    if (!args) return 1;
    int n = 0;
    for (int i = 0; i < argc; ++i) {
        if (strcmp(argv[i], "--pixels") == 0) {
            args[n++] = "--arch";
            args[n++] = "pixels";
        } else {
            args[n++] = argv[i];
        }
    }
    args[n] = NULL;
    train_flags flags = {.data = CLG_EXAMPLES_DATA_DIR "/mnist",
                         .epochs = 10,
                         .batch = 128,
                         .lr = 2e-3f,
                         .optimizer = "adam",
                         .loss = "ce",
                         .seed = 1,
                         .arch = "rows"};
    train_cli cli = {.program = "seq_mnist",
                     .extra_usage = "[--pixels | --arch rows|pixels]\n       ",
                     .has_arch = true,
                     .archs = archs,
                     .default_epochs = 10};
    int rc = train_flags_parse(&cli, &flags, n, args);
    if (rc) {
        free(args);
        return rc < 0 ? 0 : rc;
    }
    bool pixels = strcmp(flags.arch, "pixels") == 0;
    seq_model model = {.steps = pixels ? 784 : 28, .step_size = pixels ? 1 : 28};
    classifier_model cm = {.name = "seq_mnist",
                           .cli = &cli,
                           .sample_ndim = 1,
                           .sample_shape = {784},
                           .classes = 10,
                           .clip_norm = 1.0f,
                           .init = seq_init,
                           .forward = seq_forward,
                           .model = &model};
    printf("LSTM %d over %lld steps of %lld pixel%s -> linear 10, %s lr %g, batch %d, "
           "%d epochs, seed %llu\n",
           HIDDEN, (long long)model.steps, (long long)model.step_size, pixels ? "" : "s",
           flags.optimizer, (double)flags.lr, flags.batch, flags.epochs,
           (unsigned long long)flags.seed);
    classifier_result res;
    rc = classifier_run(&cm, &flags, &res);
    if (rc == 0) {
        clg_dataset_free(res.test);
        clg_context_free(res.ctx);
    }
    free(args);
    return rc;
}
