/* The LSTM probe of issue 13: one GEMM of [x, h] per step, its [B, 4H] result cut into four
 * gate slices, a cross-entropy loss on every step, Adam. Prints nodes, kernels per step, the
 * kernels labelled fill and copy, and the median step time; CLGRAD_PROFILE=1 adds per-kernel
 * times (the fill share).
 *   bench-lstm [--steps T] [--runs N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

#include "core/clock.h"
#include "runtime/plan.h"

#define B 32
#define H 256
#define V 65

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if ((x) != CLG_OK) {                                                                   \
            fprintf(stderr, "bench-lstm: %s: %s\n", #x, clg_last_error());                    \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

int main(int argc, char **argv) {
    int T = 64, runs = 5;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) T = atoi(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench-lstm [--steps T] [--runs N]\n");
            return 2;
        }
    }
    if (T < 1) T = 64;
    if (runs < 1 || runs > 64) runs = 5;
    clg_context *ctx = NULL;
    CHECK(clg_context_create(NULL, &ctx));
    clg_param *emb = clg_param_new(ctx, "emb", CLG_F32, 2, (int64_t[]){V, H});
    clg_param *w = clg_param_new(ctx, "w", CLG_F32, 2, (int64_t[]){2 * H, 4 * H});
    clg_param *b = clg_param_new(ctx, "b", CLG_F32, 1, (int64_t[]){4 * H});
    clg_param *why = clg_param_new(ctx, "w_hy", CLG_F32, 2, (int64_t[]){H, V});
    clg_param *by = clg_param_new(ctx, "b_y", CLG_F32, 1, (int64_t[]){V});
    if (!emb || !w || !b || !why || !by) CHECK(CLG_ERR_OUT_OF_MEMORY);
    CHECK(clg_init_normal(emb, 0.0f, 0.1f, 1));
    CHECK(clg_init_normal(w, 0.0f, 0.05f, 2));
    CHECK(clg_init_normal(why, 0.0f, 0.05f, 3));
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_I32, 2, (int64_t[]){T, B});
    clg_tensor *y = clg_input(g, "y", CLG_I32, 2, (int64_t[]){T, B});
    clg_tensor *h = clg_full(g, 0.0f, 2, (int64_t[]){B, H});
    clg_tensor *c = clg_full(g, 0.0f, 2, (int64_t[]){B, H}), *loss = NULL;
    for (int t = 0; t < T; ++t) {
        clg_tensor *xt = clg_reshape(g, clg_slice(g, x, 0, t, t + 1, 1), 1, (int64_t[]){B});
        clg_tensor *yt = clg_reshape(g, clg_slice(g, y, 0, t, t + 1, 1), 1, (int64_t[]){B});
        clg_tensor *in = clg_embedding(g, clg_param_tensor(g, emb), xt);
        clg_tensor *xh = clg_concat(g, 2, (clg_tensor *[]){in, h}, 1);
        // (B, 4H)
        clg_tensor *z = clg_add(g, clg_matmul(g, xh, clg_param_tensor(g, w), false, false),
                                clg_param_tensor(g, b));
        clg_tensor *ig = clg_sigmoid(g, clg_slice(g, z, 1, 0, H, 1));
        clg_tensor *fg = clg_sigmoid(g, clg_slice(g, z, 1, H, 2 * H, 1));
        clg_tensor *gg = clg_tanh(g, clg_slice(g, z, 1, 2 * H, 3 * H, 1));
        clg_tensor *og = clg_sigmoid(g, clg_slice(g, z, 1, 3 * H, 4 * H, 1));
        c = clg_add(g, clg_mul(g, fg, c), clg_mul(g, ig, gg));
        h = clg_mul(g, og, clg_tanh(g, c));
        clg_tensor *logits = clg_add(g, clg_matmul(g, h, clg_param_tensor(g, why), false, false),
                                     clg_param_tensor(g, by));
        clg_tensor *l = clg_cross_entropy(g, logits, yt, CLG_REDUCTION_MEAN);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    loss = clg_mul_scalar(g, loss, 1.0f / (float)T);
    CHECK(clg_graph_output(g, loss));
    CHECK(clg_backward(g, loss));
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAM);
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    CHECK(opt ? clg_optimizer_apply(opt, g, NULL) : CLG_ERR_OUT_OF_MEMORY);
    clg_plan *plan = NULL;
    double c0 = clg_now_ms();
    CHECK(clg_graph_compile(g, NULL, &plan));
    double compile_ms = clg_now_ms() - c0;
    size_t fills = 0, copies = 0;
    for (size_t i = 0; i < plan->n_steps; ++i) {
        fills += strcmp(plan->steps[i].label, "fill") == 0;
        copies += strcmp(plan->steps[i].label, "copy") == 0;
    }
    int32_t *xs = malloc((size_t)T * B * sizeof *xs), *ys = malloc((size_t)T * B * sizeof *ys);
    if (!xs || !ys) CHECK(CLG_ERR_OUT_OF_MEMORY);
    for (int i = 0; i < T * B; ++i) {
        xs[i] = (i * 7 + 3) % V;
        ys[i] = (i * 11 + 5) % V;
    }
    CHECK(clg_plan_write(plan, x, xs, (size_t)T * B * sizeof *xs));
    CHECK(clg_plan_write(plan, y, ys, (size_t)T * B * sizeof *ys));
    double ms[64];
    float l0 = 0.0f, l = 0.0f;
    for (int k = -1; k < runs; ++k) {
        double s0 = clg_now_ms();
        CHECK(clg_plan_run(plan));
        CHECK(clg_plan_read(plan, loss, &l, sizeof l));
        if (k < 0) l0 = l;
        else ms[k] = clg_now_ms() - s0;
    }
    printf("LSTM T %d, batch %d, hidden %d, vocabulary %d, Adam: %zu nodes, %zu kernels per step "
           "(%zu fill, %zu copy), compile %.0f ms, step %.1f ms (median of %d), loss %.4f -> "
           "%.4f\n",
           T, B, H, V, clg_graph_node_count(g), clg_plan_kernel_count(plan), fills, copies,
           compile_ms, clg_median(ms, runs), runs, (double)l0, (double)l);
    free(xs);
    free(ys);
    clg_plan_free(plan);
    clg_graph_free(g);
    clg_optimizer_free(opt);
    clg_context_free(ctx);
    return 0;
}
