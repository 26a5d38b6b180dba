/* The classic fully connected MNIST classifier, 784 -> 128 -> 64 -> 10, trained end to end on
 * the bundled MNIST: ReLU + cross-entropy by default; with --loss mse the literal tutorial
 * version (no activations, mean squared error on one-hot targets: a linear model in
 * disguise). Run: build/examples/mlp_mnist --help */
#include <stdio.h>
#include <string.h>

#include "common/classifier.h"

typedef struct mlp {
    clg_linear fc1, fc2, fc3;
    bool linear; /* --loss mse: the tutorial's activation-free version */
} mlp;

static clg_status mlp_init(clg_context *ctx, void *model, const train_flags *f) {
    mlp *m = model;
    m->linear = strcmp(f->loss, "mse") == 0;
    clg_status st = clg_linear_init(ctx, &m->fc1, "fc1", 784, 128, true, f->seed);
    if (st == CLG_OK) st = clg_linear_init(ctx, &m->fc2, "fc2", 128, 64, true, f->seed + 1);
    if (st == CLG_OK) st = clg_linear_init(ctx, &m->fc3, "fc3", 64, 10, true, f->seed + 2);
    if (st != CLG_OK || m->linear) return st;
    /* He initialisation for the layers that feed a ReLU keeps the activations' variance
     * constant through depth (PyTorch's default Linear init shrinks it by 3x per layer). */
    st = clg_init_kaiming_normal(m->fc1.weight, 0.0f, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU,
                                 f->seed + 10);
    if (st == CLG_OK)
        st = clg_init_kaiming_normal(m->fc2.weight, 0.0f, CLG_FAN_MODE_IN,
                                     CLG_NONLINEARITY_RELU, f->seed + 11);
    if (st == CLG_OK) st = clg_init_zeros(m->fc1.bias);
    if (st == CLG_OK) st = clg_init_zeros(m->fc2.bias);
    return st;
}

static clg_tensor *mlp_forward(clg_graph *g, void *model, clg_tensor *x, bool training,
                               const train_flags *f) {
    (void)training;
    (void)f;
    mlp *m = model;
    clg_tensor *h = clg_linear_forward(g, &m->fc1, x);
    if (!m->linear) h = clg_relu(g, h);
    h = clg_linear_forward(g, &m->fc2, h);
    if (!m->linear) h = clg_relu(g, h);
    return clg_linear_forward(g, &m->fc3, h);
}

int main(int argc, char **argv) {
    train_flags flags = {.data = CLG_EXAMPLES_DATA_DIR "/mnist",
                         .epochs = 10,
                         .batch = 128,
                         .lr = 2e-3f,
                         .optimizer = "adam",
                         .loss = "ce",
                         .seed = 1};
    train_cli cli = {.program = "mlp_mnist", .default_epochs = 10};
    int rc = train_flags_parse(&cli, &flags, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    mlp model = {0};
    classifier_model cm = {.name = "mlp_mnist", .cli = &cli, .sample_ndim = 1,
                           .sample_shape = {784}, .classes = 10, .init = mlp_init,
                           .forward = mlp_forward, .model = &model};
    printf("MLP 784-128-64-10, %s, %s lr %g, batch %d, %d epochs, seed %llu\n",
           strcmp(flags.loss, "mse") == 0 ? "no activations + MSE (tutorial version)"
                                          : "ReLU + cross-entropy",
           flags.optimizer, (double)flags.lr, flags.batch, flags.epochs,
           (unsigned long long)flags.seed);
    classifier_result res;
    rc = classifier_run(&cm, &flags, &res);
    if (rc == 0) {
        clg_dataset_free(res.test);
        clg_context_free(res.ctx);
    }
    return rc;
}
