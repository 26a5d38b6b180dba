/* End to end: a two-layer network (2 -> 16 tanh -> 2) of matmul, add, tanh, log_softmax,
 * one_hot and mean, trained by SGD on two moons (not linearly separable), must pass 95%
 * held-out accuracy; trained with lr 0 or with its hidden layer cut off from the gradient, it
 * must not: the threshold is out of reach of a broken gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), S(__VA_ARGS__)

enum { N_TRAIN = 256, N_TEST = 256, HIDDEN = 16, STEPS = 300 };

#define LR 1.0f
#define ACC_THRESHOLD 0.95
#define LOSS_THRESHOLD 0.10f

/* Two moons with noise, centred: class 0 the upper arc, class 1 the lower one, shifted so that
 * each reaches into the other's hollow. */
static void make_moons(uint64_t seed, int n, float *x, int32_t *y) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    for (int i = 0; i < n; ++i) {
        int c = i % 2;
        double t = clg_test_uniform(&r, 0.0f, 3.14159265f);
        double px = c ? 1.0 - cos(t) : cos(t), py = c ? 0.5 - sin(t) : sin(t);
        /* noise: a sum of three uniforms, roughly normal with sd 0.1 */
        double nx = 0.0, ny = 0.0;
        for (int k = 0; k < 3; ++k) {
            nx += clg_test_uniform(&r, -0.173f, 0.173f);
            ny += clg_test_uniform(&r, -0.173f, 0.173f);
        }
        x[2 * i] = (float)(px + nx - 0.5);
        x[2 * i + 1] = (float)(py + ny - 0.25);
        y[i] = c;
    }
}

typedef enum trial_kind {
    TRIAL_SGD,           /* the real thing */
    TRIAL_LR_ZERO,       /* no update at all */
    TRIAL_FROZEN_HIDDEN, /* the hidden layer gets no gradient: only the output layer learns */
} trial_kind;

typedef struct trial_result {
    float first_loss, final_loss;
    double train_acc, test_acc;
    size_t kernels;
} trial_result;

typedef struct model {
    clg_param *w1, *b1, *w2, *b2;
} model;

static clg_tensor *forward(clg_graph *g, const model *m, clg_tensor *x) {
    clg_tensor *h =
        clg_tanh(g, clg_add(g, clg_matmul(g, x, clg_param_tensor(g, m->w1), false, false),
                            clg_param_tensor(g, m->b1)));
    return clg_add(g, clg_matmul(g, h, clg_param_tensor(g, m->w2), false, false),
                   clg_param_tensor(g, m->b2));
}

static clg_param *new_param(clg_context *ctx, const char *prefix, const char *name, int64_t rows,
                            int64_t cols, float scale, uint64_t seed) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    clg_param *p = clg_param_new(ctx, full, CLG_F32, 2, (const int64_t[]){rows, cols});
    ck_assert_msg(p != NULL, "%s", clg_last_error());
    float *v = calloc((size_t)(rows * cols), sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    if (scale > 0.0f) clg_test_fill(&r, v, (size_t)(rows * cols), -scale, scale);
    clg_assert_ok(clg_param_write(p, v, (size_t)(rows * cols) * sizeof *v));
    free(v);
    return p;
}

static double accuracy(const float *logits, const int32_t *y, int n) {
    int right = 0;
    for (int i = 0; i < n; ++i)
        right += (logits[2 * i + 1] > logits[2 * i]) == (y[i] == 1);
    return (double)right / n;
}

static trial_result train(trial_kind kind, const char *prefix, int steps) {
    clg_context *ctx = clg_test_context();
    static float xtr[2 * N_TRAIN], xte[2 * N_TEST], logits[2 * N_TEST];
    static int32_t ytr[N_TRAIN], yte[N_TEST];
    make_moons(1, N_TRAIN, xtr, ytr);
    make_moons(2, N_TEST, xte, yte);

    /* Xavier-uniform weights, zero biases; the same seeds in every trial */
    model m = {
        .w1 = new_param(ctx, prefix, "fc1.weight", 2, HIDDEN, sqrtf(6.0f / (2 + HIDDEN)), 11),
        .b1 = new_param(ctx, prefix, "fc1.bias", 1, HIDDEN, 0.0f, 12),
        .w2 = new_param(ctx, prefix, "fc2.weight", HIDDEN, 2, sqrtf(6.0f / (HIDDEN + 2)), 13),
        .b2 = new_param(ctx, prefix, "fc2.bias", 1, 2, 0.0f, 14),
    };
    if (kind == TRIAL_FROZEN_HIDDEN) {
        clg_param_set_requires_grad(m.w1, false);
        clg_param_set_requires_grad(m.b1, false);
    }

    /* training graph: mean negative log-likelihood, SGD update in every run */
    clg_graph *g = clg_graph_new(ctx);
    ck_assert_ptr_nonnull(g);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(N_TRAIN, 2));
    clg_tensor *y = clg_input(g, "y", CLG_I32, ND(N_TRAIN));
    int ax = 1;
    clg_tensor *picked =
        clg_sum(g, clg_mul(g, clg_one_hot(g, y, 2), clg_log_softmax(g, forward(g, &m, x), 1)), 1,
                &ax, false);
    clg_tensor *loss = clg_neg(g, clg_mean(g, picked, 0, NULL, false));
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_optimizer_config cfg = clg_optimizer_defaults(CLG_OPT_SGD);
    cfg.lr = kind == TRIAL_LR_ZERO ? 0.0f : LR;
    clg_optimizer *opt = clg_optimizer_new(ctx, &cfg);
    ck_assert_msg(opt != NULL, "%s", clg_last_error());
    clg_assert_ok(clg_optimizer_apply(opt, g, NULL));
    clg_plan *plan = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &plan));

    /* evaluation graph: another batch size over the same parameters */
    clg_graph *ge = clg_graph_new(ctx);
    ck_assert_ptr_nonnull(ge);
    clg_tensor *xe = clg_input(ge, "x", CLG_F32, ND(N_TEST, 2));
    clg_tensor *le = forward(ge, &m, xe);
    clg_assert_ok(clg_graph_output(ge, le));
    clg_plan *eval = NULL;
    clg_assert_ok(clg_graph_compile(ge, NULL, &eval));

    trial_result res = {.kernels = clg_plan_kernel_count(plan)};
    clg_assert_ok(clg_plan_write(plan, x, xtr, sizeof xtr));
    clg_assert_ok(clg_plan_write(plan, y, ytr, sizeof ytr));
    for (int step = 0; step < steps; ++step) {
        clg_assert_ok(clg_plan_run(plan));
        /* the loss is that of the parameters before this run's update */
        if (step == 0) clg_assert_ok(clg_plan_read(plan, loss, &res.first_loss, sizeof(float)));
    }
    clg_assert_ok(clg_plan_read(plan, loss, &res.final_loss, sizeof(float)));
    ck_assert_int_eq(clg_optimizer_steps(opt), steps);

    clg_assert_ok(clg_plan_write(eval, xe, xtr, sizeof xtr));
    clg_assert_ok(clg_plan_run(eval));
    clg_assert_ok(clg_plan_read(eval, le, logits, sizeof logits));
    res.train_acc = accuracy(logits, ytr, N_TRAIN);
    clg_assert_ok(clg_plan_write(eval, xe, xte, sizeof xte));
    clg_assert_ok(clg_plan_run(eval));
    clg_assert_ok(clg_plan_read(eval, le, logits, sizeof logits));
    res.test_acc = accuracy(logits, yte, N_TEST);
    fprintf(stderr,
            "%s: loss %.4f -> %.4f after %d SGD steps (%zu kernels per step), accuracy train "
            "%.1f%% test %.1f%%\n",
            prefix, (double)res.first_loss, (double)res.final_loss, steps, res.kernels,
            100.0 * res.train_acc, 100.0 * res.test_acc);
    clg_graph_free(g);
    clg_graph_free(ge);
    clg_optimizer_free(opt);
    return res;
}

/* The moons need the hidden layer: a linear boundary gets about 85% of them. */
START_TEST(two_layer_net_learns_moons) {
    trial_result r = train(TRIAL_SGD, "train.sgd", STEPS);
    ck_assert_msg(r.final_loss < LOSS_THRESHOLD, "loss %g, want < %g", (double)r.final_loss,
                  (double)LOSS_THRESHOLD);
    ck_assert_msg(r.final_loss < 0.25f * r.first_loss, "loss %g -> %g", (double)r.first_loss,
                  (double)r.final_loss);
    ck_assert_msg(r.train_acc > ACC_THRESHOLD, "train accuracy %.3f", r.train_acc);
    ck_assert_msg(r.test_acc > ACC_THRESHOLD, "test accuracy %.3f", r.test_acc);
}
END_TEST

/* The thresholds are out of reach without a working gradient step. A zero step leaves the
 * loss exactly where it started, so a few runs show it as well as a full training. */
START_TEST(zero_learning_rate_does_not_learn) {
    trial_result r = train(TRIAL_LR_ZERO, "train.lr0", 30);
    ck_assert_msg(r.final_loss == r.first_loss, "lr 0 changed the loss: %g -> %g",
                  (double)r.first_loss, (double)r.final_loss);
    ck_assert_msg(!(r.final_loss < LOSS_THRESHOLD), "untrained loss %g reaches the threshold",
                  (double)r.final_loss);
    ck_assert_msg(!(r.test_acc > ACC_THRESHOLD), "untrained accuracy %.3f reaches the threshold",
                  r.test_acc);
}
END_TEST

/* Without the hidden layer's gradient only the output layer trains (random tanh features):
 * the loss falls, but not to the threshold. */
START_TEST(frozen_hidden_layer_falls_short) {
    trial_result r = train(TRIAL_FROZEN_HIDDEN, "train.frozen", STEPS);
    ck_assert_msg(r.final_loss < r.first_loss, "the output layer did not train: %g -> %g",
                  (double)r.first_loss, (double)r.final_loss);
    ck_assert_msg(!(r.final_loss < LOSS_THRESHOLD),
                  "with the hidden layer frozen the loss still reached %g", (double)r.final_loss);
    ck_assert_msg(!(r.test_acc > ACC_THRESHOLD),
                  "with the hidden layer frozen the accuracy still reached %.3f", r.test_acc);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("two-layer network");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, two_layer_net_learns_moons);
    tcase_add_test(tc, zero_learning_rate_does_not_learn);
    tcase_add_test(tc, frozen_hidden_layer_falls_short);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
