/* How graph work scales with graph size: an unrolled tanh RNN (batch 32, hidden 256, vocabulary
 * 65, a cross-entropy loss on every step, Adam) for T steps, timing graph building,
 * clg_backward, the compile with cold and with warm caches, and one training step, and counting
 * nodes, kernels per step, distinct programs built and intermediate bytes. Each measurement of
 * a T runs in a child process of its own: the cold one with empty cache folders (clgrad's and
 * pocl's), the warm one with the folders the cold one filled.
 *   bench-graph [--steps 16,64,256,1024] [--runs N]
 *   bench-graph --child T COLD  (what the parent runs; prints one result line) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

#include "bench-child.h"
#include "core/clock.h"
#include "core/context.h"
#include "core/program.h"

#define B 32
#define H 256
#define V 65

static int RUNS = 5;

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if ((x) != CLG_OK) {                                                                   \
            fprintf(stderr, "bench-graph: %s: %s\n", #x, clg_last_error());                   \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

typedef struct result {
    int T;
    size_t nodes, kernels, programs;
    double build_ms, backward_ms, compile_ms, step_ms;
    double peak_mib;
} result;

/* h_t = tanh(E[x_t] W_xh + h_{t-1} W_hh + b_h), logits_t = h_t W_hy + b_y, loss = mean over t of
 * cross_entropy(logits_t, y_t). */
static result child(int T) {
    result r = {.T = T};
    clg_context *ctx = NULL;
    CHECK(clg_context_create(NULL, &ctx));
    clg_param *emb = clg_param_new(ctx, "emb", CLG_F32, 2, (int64_t[]){V, H});
    clg_param *whh = clg_param_new(ctx, "w_hh", CLG_F32, 2, (int64_t[]){H, H});
    clg_param *bh = clg_param_new(ctx, "b_h", CLG_F32, 1, (int64_t[]){H});
    clg_param *why = clg_param_new(ctx, "w_hy", CLG_F32, 2, (int64_t[]){H, V});
    clg_param *by = clg_param_new(ctx, "b_y", CLG_F32, 1, (int64_t[]){V});
    if (!emb || !whh || !bh || !why || !by) CHECK(CLG_ERR_OUT_OF_MEMORY);
    CHECK(clg_init_normal(emb, 0.0f, 0.1f, 1));
    CHECK(clg_init_normal(whh, 0.0f, 0.05f, 2));
    CHECK(clg_init_normal(why, 0.0f, 0.05f, 3));
    double t0 = clg_now_ms();
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_I32, 2, (int64_t[]){T, B});
    clg_tensor *y = clg_input(g, "y", CLG_I32, 2, (int64_t[]){T, B});
    clg_tensor *h = clg_full(g, 0.0f, 2, (int64_t[]){B, H}), *loss = NULL;
    for (int t = 0; t < T; ++t) {
        clg_tensor *xt = clg_reshape(g, clg_slice(g, x, 0, t, t + 1, 1), 1, (int64_t[]){B});
        clg_tensor *yt = clg_reshape(g, clg_slice(g, y, 0, t, t + 1, 1), 1, (int64_t[]){B});
        clg_tensor *in = clg_embedding(g, clg_param_tensor(g, emb), xt);
        clg_tensor *rec = clg_matmul(g, h, clg_param_tensor(g, whh), false, false);
        h = clg_tanh(g, clg_add(g, clg_add(g, in, rec), clg_param_tensor(g, bh)));
        clg_tensor *logits = clg_add(g, clg_matmul(g, h, clg_param_tensor(g, why), false, false),
                                     clg_param_tensor(g, by));
        clg_tensor *l = clg_cross_entropy(g, logits, yt, CLG_REDUCTION_MEAN);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    loss = clg_mul_scalar(g, loss, 1.0f / (float)T);
    CHECK(clg_graph_output(g, loss));
    CHECK(clg_graph_status(g));
    double t1 = clg_now_ms();
    CHECK(clg_backward(g, loss));
    double t2 = clg_now_ms();
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAM);
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    CHECK(opt ? clg_optimizer_apply(opt, g, NULL) : CLG_ERR_OUT_OF_MEMORY);
    clg_plan *plan = NULL;
    double t3 = clg_now_ms();
    CHECK(clg_graph_compile(g, NULL, &plan));
    double t4 = clg_now_ms();
    r.build_ms = t1 - t0;
    r.backward_ms = t2 - t1;
    r.compile_ms = t4 - t3;
    r.nodes = clg_graph_node_count(g);
    r.kernels = clg_plan_kernel_count(plan);
    r.peak_mib = (double)clg_plan_peak_bytes(plan) / 1048576.0;
    clg_program_stats ps = clg_program_cache_stats(ctx);
    r.programs = ps.disk_hits + ps.disk_misses;
    int32_t *xs = malloc((size_t)T * B * sizeof *xs), *ys = malloc((size_t)T * B * sizeof *ys);
    for (int i = 0; i < T * B; ++i) {
        xs[i] = (i * 7 + 3) % V;
        ys[i] = (i * 11 + 5) % V;
    }
    double ms[16];
    float l = 0.0f;
    for (int k = -1; k < RUNS; ++k) {
        double s0 = clg_now_ms();
        CHECK(clg_plan_write(plan, x, xs, (size_t)T * B * sizeof *xs));
        CHECK(clg_plan_write(plan, y, ys, (size_t)T * B * sizeof *ys));
        CHECK(clg_plan_run(plan));
        CHECK(clg_plan_read(plan, loss, &l, sizeof l));
        if (k >= 0) ms[k] = clg_now_ms() - s0;
    }
    r.step_ms = clg_median(ms, RUNS);
    free(xs);
    free(ys);
    clg_context_free(ctx);
    return r;
}

/* Run one measurement in a child with the given cache folders; false if it failed. */
static bool measure(const char *self, int T, const char *cache, result *r) {
    char t[32], runs[32], line[512];
    snprintf(t, sizeof t, "%d", T);
    snprintf(runs, sizeof runs, "%d", RUNS);
    char *argv[] = {(char *)self, "--child", t, "--runs", runs, NULL};
    return bench_child_line(argv, cache, line, sizeof line) &&
           sscanf(line, "%d %zu %zu %zu %lf %lf %lf %lf %lf", &r->T, &r->nodes, &r->kernels,
                  &r->programs, &r->build_ms, &r->backward_ms, &r->compile_ms, &r->step_ms,
                  &r->peak_mib) == 9;
}

int main(int argc, char **argv) {
    const char *steps = "16,64,256,1024";
    int child_T = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) RUNS = atoi(argv[++i]);
        else if (strcmp(argv[i], "--child") == 0 && i + 1 < argc) child_T = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench-graph [--steps 16,64,256,1024] [--runs N]\n");
            return 2;
        }
    }
    if (RUNS < 1 || RUNS > 16) RUNS = 5;
    if (child_T > 0) {
        result r = child(child_T);
        printf("%d %zu %zu %zu %.3f %.3f %.3f %.3f %.3f\n", r.T, r.nodes, r.kernels, r.programs,
               r.build_ms, r.backward_ms, r.compile_ms, r.step_ms, r.peak_mib);
        return 0;
    }
    printf("unrolled tanh RNN, batch %d, hidden %d, vocabulary %d, loss on every step, Adam\n", B,
           H, V);
    printf("%6s %8s %9s %9s %10s %10s %11s %11s %8s %9s %9s %9s\n", "T", "nodes", "build ms",
           "us/node", "backward", "us/node", "compile(c)", "compile(w)", "kernels", "programs",
           "step ms", "peak MiB");
    char *list = strdup(steps);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int T = atoi(tok);
        char cache[300];
        if (T < 1 || !bench_child_cache_new("clgrad-bench-graph", cache, sizeof cache)) continue;
        result cold, warm;
        bool ok = measure(argv[0], T, cache, &cold) && measure(argv[0], T, cache, &warm);
        bench_child_cache_remove(cache);
        if (!ok) {
            printf("%6d  failed (run bench-graph --child %d to see why)\n", T, T);
            continue;
        }
        printf("%6d %8zu %9.1f %9.2f %10.1f %10.2f %11.0f %11.0f %8zu %9zu %9.2f %9.1f\n", T,
               warm.nodes, warm.build_ms, 1000.0 * warm.build_ms / (double)warm.nodes,
               warm.backward_ms, 1000.0 * warm.backward_ms / (double)warm.nodes, cold.compile_ms,
               warm.compile_ms, warm.kernels, warm.programs, warm.step_ms, warm.peak_mib);
        fflush(stdout);
    }
    free(list);
    printf("compile(c): empty clgrad and pocl caches (first start on a fresh machine); compile(w): "
           "the same folders, filled. programs: programs built or loaded by the plan's context. "
           "peak: the plan's intermediate buffers at their peak (clg_plan_peak_bytes). "
           "Times are medians of single runs per process; step: median of %d runs\n",
           RUNS);
    return 0;
}
