/* Start-up time: from process start to the end of the first training step of a small MLP
 * (context, program builds, plan compile, one run). Run it with the program caches cold or
 * warm to see what clgrad's binary cache buys on each platform:
 *   CLGRAD_CACHE_BINARIES=0|1 CLGRAD_CACHE_DIR=... POCL_CACHE_DIR=... bench-startup */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <clgrad/clgrad.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *device = argc > 1 ? argv[1] : NULL;
    double t0 = now();
    clg_context *ctx = NULL;
    if (clg_context_create(device, &ctx) != CLG_OK) {
        fprintf(stderr, "bench-startup: %s\n", clg_last_error());
        return 1;
    }
    double t_ctx = now();
    const int64_t B = 128, D = 784, H = 128, C = 10;
    clg_param *w1 = clg_param_new(ctx, "w1", CLG_F32, 2, (int64_t[]){D, H});
    clg_param *w2 = clg_param_new(ctx, "w2", CLG_F32, 2, (int64_t[]){H, C});
    clg_param *b1 = clg_param_new(ctx, "b1", CLG_F32, 1, (int64_t[]){H});
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, (int64_t[]){B, D});
    clg_tensor *y = clg_input(g, "y", CLG_I32, 1, (int64_t[]){B});
    clg_tensor *h = clg_relu(g, clg_add(g, clg_matmul(g, x, clg_param_tensor(g, w1), 0, 0),
                                        clg_param_tensor(g, b1)));
    clg_tensor *logits = clg_matmul(g, h, clg_param_tensor(g, w2), 0, 0);
    clg_tensor *loss = clg_neg(g, clg_mean(g, clg_mul(g, clg_log_softmax(g, logits, 1),
                                                      clg_one_hot(g, y, C)),
                                           0, NULL, false));
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAM);
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    clg_plan *plan = NULL;
    static float hx[128 * 784];
    static int hy[128];
    float l;
    if (clg_graph_output(g, loss) || clg_backward(g, loss) ||
        clg_optimizer_apply(opt, g, NULL) != CLG_OK || clg_graph_compile(g, NULL, &plan)) {
        fprintf(stderr, "bench-startup: %s\n", clg_last_error());
        return 1;
    }
    double t_compile = now();
    if (clg_plan_write(plan, x, hx, sizeof hx) || clg_plan_write(plan, y, hy, sizeof hy) ||
        clg_plan_run(plan) || clg_plan_read(plan, loss, &l, sizeof l)) {
        fprintf(stderr, "bench-startup: %s\n", clg_last_error());
        return 1;
    }
    double t_run = now();
    printf("context %.3f s  compile %.3f s  first step %.3f s  total %.3f s  (%s)\n",
           t_ctx - t0, t_compile - t_ctx, t_run - t_compile, t_run - t0,
           clg_context_device(ctx)->platform_name);
    clg_context_free(ctx);
    return 0;
}
