/* The raw engine in one page: build a two-layer network from ops, differentiate it, compile
 * one training plan (forward, backward and SGD update: one sync per step) and train it to
 * separate two interleaved spirals. Run: build/examples/raw_engine [--device SPEC] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

#define BATCH 128
#define HIDDEN 32
#define STEPS 600

#define CHECK(call)                                                                            \
    do {                                                                                       \
        clg_status st_ = (call);                                                               \
        if (st_ != CLG_OK) {                                                                   \
            fprintf(stderr, "raw_engine: %s: %s\n", clg_status_name(st_), clg_last_error());   \
            clg_context_free(ctx);                                                             \
            return 1;                                                                          \
        }                                                                                      \
    } while (0)

/* A point of spiral `label` (0 or 1) at random position t, in [-1, 1]^2. */
static void spiral_point(unsigned *seed, float *xy, int *label) {
    *label = (int)(rand_r(seed) & 1);
    float t = (float)rand_r(seed) / (float)RAND_MAX;
    float r = 0.1f + 0.9f * t, a = 3.0f * 3.14159265f * t + (float)*label * 3.14159265f;
    xy[0] = r * cosf(a) + 0.03f * ((float)rand_r(seed) / (float)RAND_MAX - 0.5f);
    xy[1] = r * sinf(a) + 0.03f * ((float)rand_r(seed) / (float)RAND_MAX - 0.5f);
}

/* Weights start as small uniform noise, written from the host. */
static clg_param *param(clg_context *ctx, const char *name, int64_t rows, int64_t cols,
                        float scale, unsigned *seed) {
    int64_t shape[2] = {rows, cols};
    clg_param *p = clg_param_new(ctx, name, CLG_F32, cols ? 2 : 1, shape);
    if (!p) return NULL;
    int64_t n = rows * (cols ? cols : 1);
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; ++i)
        w[i] = scale * (2.0f * (float)rand_r(seed) / (float)RAND_MAX - 1.0f);
    clg_status st = clg_param_write(p, w, (size_t)n * sizeof *w);
    free(w);
    return st == CLG_OK ? p : NULL;
}

int main(int argc, char **argv) {
    const char *device = NULL;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device = argv[++i];
        } else {
            fprintf(stderr, "usage: raw_engine [--device SPEC]\n");
            return 2;
        }
    }
    clg_context *ctx = NULL;
    CHECK(clg_context_create(device, &ctx));
    unsigned seed = 7;
    clg_param *w1 = param(ctx, "w1", 2, HIDDEN, 1.0f, &seed);
    clg_param *b1 = param(ctx, "b1", HIDDEN, 0, 0.1f, &seed);
    clg_param *w2 = param(ctx, "w2", HIDDEN, HIDDEN, 0.3f, &seed);
    clg_param *b2 = param(ctx, "b2", HIDDEN, 0, 0.1f, &seed);
    clg_param *w3 = param(ctx, "w3", HIDDEN, 2, 0.3f, &seed);
    if (!w1 || !b1 || !w2 || !b2 || !w3) CHECK(CLG_ERR_OUT_OF_MEMORY);

    /* logits = tanh(tanh(x w1 + b1) w2 + b2) w3; loss = mean cross-entropy */
    clg_graph *g = clg_graph_new(ctx);
    int64_t xs[2] = {BATCH, 2}, ys[1] = {BATCH};
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, xs);
    clg_tensor *y = clg_input(g, "y", CLG_I32, 1, ys);
    clg_tensor *h = clg_tanh(g, clg_add(g, clg_matmul(g, x, clg_param_tensor(g, w1), false, false),
                                        clg_param_tensor(g, b1)));
    h = clg_tanh(g, clg_add(g, clg_matmul(g, h, clg_param_tensor(g, w2), false, false),
                            clg_param_tensor(g, b2)));
    clg_tensor *logits = clg_matmul(g, h, clg_param_tensor(g, w3), false, false);
    clg_tensor *picked = clg_sum(g, clg_mul(g, clg_log_softmax(g, logits, 1), clg_one_hot(g, y, 2)),
                                 1, (int[]){1}, false);
    clg_tensor *loss = clg_neg(g, clg_mean(g, picked, 0, NULL, false));
    clg_tensor *correct =
        clg_sum(g, clg_eq(g, clg_argmax(g, logits, 1, false), y), 0, NULL, false);
    CHECK(clg_graph_output(g, loss));
    CHECK(clg_graph_output(g, correct));
    CHECK(clg_backward(g, loss));

    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_SGD);
    oc.lr = 0.3f;
    oc.momentum = 0.9f;
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    if (!opt) CHECK(CLG_ERR_INVALID_ARGUMENT);
    clg_plan *plan = NULL;
    CHECK(clg_optimizer_apply(opt, g, NULL));
    CHECK(clg_graph_compile(g, NULL, &plan));
    printf("device: %s; %zu kernels per training step\n", clg_context_device(ctx)->name,
           clg_plan_kernel_count(plan));

    float hx[BATCH * 2];
    int hy[BATCH];
    float l = 0.0f, acc = 0.0f;
    for (int step = 1; step <= STEPS; ++step) {
        for (int i = 0; i < BATCH; ++i) spiral_point(&seed, &hx[2 * i], &hy[i]);
        CHECK(clg_plan_write(plan, x, hx, sizeof hx));
        CHECK(clg_plan_write(plan, y, hy, sizeof hy));
        CHECK(clg_plan_run(plan));
        CHECK(clg_plan_read(plan, loss, &l, sizeof l)); /* the step's one wait */
        CHECK(clg_plan_read(plan, correct, &acc, sizeof acc));
        if (step % 100 == 0)
            printf("step %4d  loss %.4f  batch accuracy %5.1f%%\n", step, l,
                   100.0f * acc / BATCH);
    }
    clg_context_free(ctx);
    return 0;
}
