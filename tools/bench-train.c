/* Training-step throughput of the reference models on the selected device, with random
 * data of the real shapes (the data does not change the work): the MNIST MLP 784-128-64-10 at
 * batch 128 and the classic MNIST CNN at batch 64, both cross-entropy + Adam; and (charlm,
 * not in "both") examples/char_lm's step: embedding 128 -> LSTM 2 x 256 -> linear 65 over 12
 * windows of 64 characters, AdamW with clipping. Prints the median samples/s (windows for
 * charlm) of several timed blocks of steps, after warm-up steps that compile.
 *   bench-train [--model mlp|cnn|both|charlm] [--runs N] [--steps N] [--device SPEC] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <clgrad/clgrad.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if ((x) != CLG_OK) {                                                                   \
            fprintf(stderr, "bench-train: %s: %s\n", #x, clg_last_error());                   \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static clg_tensor *mlp(clg_context *ctx, clg_graph *g, clg_tensor *x) {
    clg_linear l1, l2, l3;
    CHECK(clg_linear_init(ctx, &l1, "fc1", 784, 128, true, 1));
    CHECK(clg_linear_init(ctx, &l2, "fc2", 128, 64, true, 2));
    CHECK(clg_linear_init(ctx, &l3, "fc3", 64, 10, true, 3));
    clg_tensor *h = clg_relu(g, clg_linear_forward(g, &l1, x));
    h = clg_relu(g, clg_linear_forward(g, &l2, h));
    return clg_linear_forward(g, &l3, h);
}

static clg_tensor *conv_param(clg_context *ctx, clg_graph *g, const char *name, int64_t o,
                              int64_t c) {
    char w[64], b[64];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    clg_param *pw = clg_param_new(ctx, w, CLG_F32, 4, (int64_t[]){o, c, 3, 3});
    clg_param *pb = clg_param_new(ctx, b, CLG_F32, 1, (int64_t[]){o});
    if (!pw || !pb) CHECK(CLG_ERR_OUT_OF_MEMORY);
    CHECK(clg_init_kaiming_normal(pw, 0.0f, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU, 7));
    (void)pb;
    return clg_param_tensor(g, pw);
}

static clg_tensor *cnn(clg_context *ctx, clg_graph *g, clg_tensor *x) {
    clg_conv2d_params same = {.padding = CLG_PADDING_SAME};
    clg_pool2d_params pool = {.kernel_h = 2, .kernel_w = 2};
    clg_tensor *w1 = conv_param(ctx, g, "conv1", 32, 1);
    clg_tensor *b1 = clg_param_tensor(g, clg_param_find(ctx, "conv1.bias"));
    clg_tensor *h = clg_max_pool2d(g, clg_relu(g, clg_conv2d(g, x, w1, b1, &same)), &pool);
    clg_tensor *w2 = conv_param(ctx, g, "conv2", 64, 32);
    clg_tensor *b2 = clg_param_tensor(g, clg_param_find(ctx, "conv2.bias"));
    h = clg_max_pool2d(g, clg_relu(g, clg_conv2d(g, h, w2, b2, &same)), &pool);
    clg_linear fc;
    CHECK(clg_linear_init(ctx, &fc, "fc", 3136, 10, true, 9));
    return clg_linear_forward(g, &fc, clg_flatten(g, h, 1));
}

/* char_lm's model on ids [T, B]: logits [T, B, V]. */
static clg_tensor *charlm(clg_context *ctx, clg_graph *g, clg_tensor *ids, int64_t vocab) {
    clg_param *embed = clg_param_new(ctx, "embed.weight", CLG_F32, 2, (int64_t[]){vocab, 128});
    if (!embed) CHECK(CLG_ERR_OUT_OF_MEMORY);
    CHECK(clg_init_normal(embed, 0.0f, 1.0f, 1));
    clg_rnn rnn;
    clg_rnn_config rc = {.cell = CLG_CELL_LSTM, .input_size = 128, .hidden_size = 256,
                         .num_layers = 2};
    CHECK(clg_rnn_init(ctx, &rnn, "rnn", &rc, 2));
    clg_linear head;
    CHECK(clg_linear_init(ctx, &head, "head", 256, vocab, true, 3));
    clg_tensor *h = clg_embedding(g, clg_param_tensor(g, embed), ids);
    h = clg_rnn_forward(g, &rnn, h, NULL, NULL, false, 0, NULL);
    return clg_linear_forward(g, &head, h);
}

static void bench(const char *model, const char *device, int runs, int steps) {
    bool is_cnn = strcmp(model, "cnn") == 0, is_lm = strcmp(model, "charlm") == 0;
    const int64_t batch = is_cnn ? 64 : is_lm ? 12 : 128, T = 64, vocab = 65;
    clg_context *ctx = NULL;
    CHECK(clg_context_create(device, &ctx));
    clg_graph *g = clg_graph_new(ctx);
    int64_t xshape[4] = {batch, 1, 28, 28}, mshape[2] = {batch, 784}, lshape[2] = {T, batch};
    clg_tensor *x = is_cnn  ? clg_input(g, "x", CLG_F32, 4, xshape)
                    : is_lm ? clg_input(g, "x", CLG_I32, 2, lshape)
                            : clg_input(g, "x", CLG_F32, 2, mshape);
    clg_tensor *y = is_lm ? clg_input(g, "y", CLG_I32, 2, lshape) : clg_input(g, "y", CLG_I32, 1, &batch);
    clg_tensor *logits = is_cnn ? cnn(ctx, g, x) : is_lm ? charlm(ctx, g, x, vocab) : mlp(ctx, g, x);
    clg_tensor *loss = clg_cross_entropy(g, logits, y, CLG_REDUCTION_MEAN);
    clg_optimizer_config oc = clg_optimizer_defaults(is_lm ? CLG_OPT_ADAMW : CLG_OPT_ADAM);
    if (is_lm) { /* char_lm's recipe */
        oc.beta2 = 0.99f;
        oc.weight_decay = 0.1f;
        oc.clip_norm = 1.0f;
    }
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    clg_plan *plan = NULL;
    CHECK(clg_graph_output(g, loss));
    CHECK(clg_backward(g, loss));
    CHECK(clg_optimizer_apply(opt, g, NULL));
    CHECK(clg_graph_compile(g, NULL, &plan));

    /* x: f32 pixels, or i32 ids for charlm (4 bytes each either way) */
    size_t n = is_lm ? (size_t)(T * batch) : (size_t)batch * 784;
    size_t ny = is_lm ? n : (size_t)batch;
    float *hx = is_lm ? NULL : malloc(n * sizeof *hx);
    int32_t *ids = is_lm ? malloc(n * sizeof *ids) : NULL;
    int32_t *hy = malloc(ny * sizeof *hy);
    unsigned seed = 1;
    for (size_t i = 0; i < n; ++i) {
        if (is_lm) ids[i] = rand_r(&seed) % (int)vocab;
        else hx[i] = (float)rand_r(&seed) / (float)RAND_MAX;
    }
    const void *xdata = is_lm ? (const void *)ids : (const void *)hx;
    for (size_t i = 0; i < ny; ++i) hy[i] = rand_r(&seed) % (is_lm ? (int)vocab : 10);
    float l;
    for (int i = 0; i < 3; ++i) { /* compile kernels, warm caches */
        CHECK(clg_plan_write(plan, x, xdata, n * 4));
        CHECK(clg_plan_write(plan, y, hy, ny * sizeof *hy));
        CHECK(clg_plan_run(plan));
        CHECK(clg_plan_read(plan, loss, &l, sizeof l));
    }
    double *rates = malloc((size_t)runs * sizeof *rates);
    for (int r = 0; r < runs; ++r) {
        double t0 = now();
        for (int s = 0; s < steps; ++s) {
            CHECK(clg_plan_write(plan, x, xdata, n * 4));
            CHECK(clg_plan_write(plan, y, hy, ny * sizeof *hy));
            CHECK(clg_plan_run(plan));
            CHECK(clg_plan_read(plan, loss, &l, sizeof l)); /* one wait per step, as in training */
        }
        rates[r] = (double)(steps * batch) / (now() - t0);
    }
    qsort(rates, (size_t)runs, sizeof *rates, cmp_double);
    printf("clgrad %s batch %lld: %.0f samples/s (median of %d runs of %d steps; min %.0f max "
           "%.0f), %zu kernels per step, device %s\n",
           model, (long long)batch, rates[runs / 2], runs, steps, rates[0], rates[runs - 1],
           clg_plan_kernel_count(plan), clg_context_device(ctx)->name);
    fflush(stdout);
    free(rates);
    free(hx);
    free(ids);
    free(hy);
    clg_context_free(ctx);
}

int main(int argc, char **argv) {
    const char *model = "both", *device = NULL;
    int runs = 5, steps = 50;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device = argv[++i];
        } else {
            fprintf(stderr, "usage: bench-train [--model mlp|cnn|both|charlm] [--runs N] [--steps N] "
                            "[--device SPEC]\n");
            return 2;
        }
    }
    if (runs < 1 || steps < 1) {
        fprintf(stderr, "bench-train: --runs and --steps must be >= 1\n");
        return 2;
    }
    if (strcmp(model, "charlm") == 0) {
        bench("charlm", device, runs, steps);
        return 0;
    }
    if (strcmp(model, "cnn") != 0) bench("mlp", device, runs, steps);
    if (strcmp(model, "mlp") != 0) bench("cnn", device, runs, steps);
    return 0;
}
