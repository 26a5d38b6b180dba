/* Engine benchmark on the selected device (medians of several runs):
 *   - the device's fp32 peak, measured by a kernel of independent multiply-adds (--peak), so
 *     that GEMM rates can be read against what this device does rather than a datasheet;
 *   - SGEMM GFLOP/s for each GEMM backend at 128..2048 (or --sizes) and at the MLP's shapes
 *     (64x784 . 784x128 and its two backward products), strided-batched at attention shapes;
 *   - elementwise (fused a * b + c) and reduction (sum) GB/s on 16M floats;
 *   - per-kernel launch overhead (a chain of unfused tiny kernels, queued back to back);
 *   - kernels per training step of the two-layer network of examples/raw_engine.c.
 *   bench-engine [--device SPEC] [--runs N] [--sizes 1024,2048,...] [--backend clblast|cpu]
 *                [--peak] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

#include "core/clock.h"
#include "core/context.h"
#include "gemm/gemm_internal.h"

static int RUNS = 5;
static int ONLY_BACKEND = -1; /* --backend: time one GEMM backend only (big sizes on a GPU) */

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if ((x) != CLG_OK) {                                                                   \
            fprintf(stderr, "bench-engine: %s: %s\n", #x, clg_last_error());                  \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Median ms of `reps` back-to-back enqueues of a prepared call, one wait at the end. */
static double time_gemm(clg_context *ctx, clg_gemm_call *c, int reps) {
    double ms[16];
    CHECK(clg_gemm_enqueue(ctx, c, NULL, NULL));
    clFinish(ctx->queue);
    for (int r = 0; r < RUNS; ++r) {
        double t0 = clg_now_ms();
        for (int i = 0; i < reps; ++i) CHECK(clg_gemm_enqueue(ctx, c, NULL, NULL));
        clFinish(ctx->queue);
        ms[r] = (clg_now_ms() - t0) / reps;
    }
    return clg_median(ms, RUNS);
}

static cl_mem buffer(clg_context *ctx, size_t floats) {
    cl_mem m;
    CHECK(clg_buffer_create(ctx, floats * 4, "benchmark", &m));
    const float fill = 0.25f;
    clEnqueueFillBuffer(ctx->queue, m, &fill, sizeof fill, 0, floats * 4, 0, NULL, NULL);
    return m;
}

/* Each work-item runs eight independent float8 fused multiply-add chains: explicit vectors fill
 * a CPU's vector units (pocl maps float8 to AVX) and are eight scalar chains apiece on a GPU,
 * and eight chains hide the FMA latency on both; the chains feed one store so that the
 * compiler cannot drop them. */
static const char PEAK_SRC[] =
    "#define F8(i) float8 x##i = (float8)(get_global_id(0) * 1e-7f + i * 1e-3f);\n"
    "#define STEP(i) x##i = fma(x##i, a, b);\n"
    "__kernel void peak(__global float *out, float a, float b, int iters) {\n"
    "    F8(0) F8(1) F8(2) F8(3) F8(4) F8(5) F8(6) F8(7)\n"
    "    for (int i = 0; i < iters; ++i) {\n"
    "        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)\n"
    "    }\n"
    "    float8 s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;\n"
    "    out[get_global_id(0)] = s.s0 + s.s1 + s.s2 + s.s3 + s.s4 + s.s5 + s.s6 + s.s7;\n"
    "}\n";

static void peak_rate(clg_context *ctx) {
    cl_int err;
    const char *src = PEAK_SRC;
    cl_program prog = clCreateProgramWithSource(ctx->cl, 1, &src, NULL, &err);
    if (err == CL_SUCCESS) err = clBuildProgram(prog, 1, &ctx->device, "", NULL, NULL);
    cl_kernel k = err == CL_SUCCESS ? clCreateKernel(prog, "peak", &err) : NULL;
    if (err != CL_SUCCESS) {
        fprintf(stderr, "bench-engine: peak kernel: OpenCL error %d\n", err);
        exit(1);
    }
    /* enough work-items for every compute unit many times over */
    size_t global = (size_t)ctx->info.compute_units * 2048;
    cl_mem out;
    CHECK(clg_buffer_create(ctx, global * sizeof(float), "peak", &out));
    float a = 0.999f, b = 1e-3f;
    int iters = 64;
    clSetKernelArg(k, 0, sizeof out, &out);
    clSetKernelArg(k, 1, sizeof a, &a);
    clSetKernelArg(k, 2, sizeof b, &b);
    double ms = 0.0, ms_runs[16];
    /* grow the loop until one launch takes 20 ms, so launch cost does not count */
    for (;;) {
        clSetKernelArg(k, 3, sizeof iters, &iters);
        clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL);
        clFinish(ctx->queue);
        double t0 = clg_now_ms();
        clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL);
        clFinish(ctx->queue);
        ms = clg_now_ms() - t0;
        if (ms > 20.0 || iters > (1 << 24)) break;
        iters *= 4;
    }
    for (int r = 0; r < RUNS; ++r) {
        double t0 = clg_now_ms();
        clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL);
        clFinish(ctx->queue);
        ms_runs[r] = clg_now_ms() - t0;
    }
    ms = clg_median(ms_runs, RUNS);
    /* 8 FMAs of 8 lanes per iteration, 2 flops each */
    printf("fp32 peak (independent multiply-adds, %zu work-items x %d x 64): %.1f GFLOP/s\n",
           global, iters, 2.0 * 64.0 * (double)iters * (double)global / (ms * 1e6));
    clg_buffer_release(ctx, out);
    clReleaseKernel(k);
    clReleaseProgram(prog);
}

static void gemm_row(clg_context *ctx, const char *name, bool ta, bool tb, size_t m, size_t n,
                     size_t k, size_t batch) {
    size_t sa = m * k, sb = k * n, sc = m * n;
    cl_mem a = buffer(ctx, sa * batch), b = buffer(ctx, sb * batch), c = buffer(ctx, sc * batch);
    printf("  %-34s", name);
    for (int be = 0; be < CLG_GEMM_BACKEND_COUNT; ++be) {
        if (ONLY_BACKEND >= 0 && be != ONLY_BACKEND) {
            printf(" %10s", "-");
            continue;
        }
        clg_gemm_call call = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                              .alpha = 1.0f, .a = a, .lda = ta ? m : k, .b = b,
                              .ldb = tb ? k : n, .c = c, .ldc = n, .batch = batch};
        if (batch > 1) {
            call.a_stride = sa;
            call.b_stride = sb;
            call.c_stride = sc;
        }
        CHECK(clg_gemm_prepare_backend(ctx, &call, (clg_gemm_backend)be));
        double flop = 2.0 * (double)m * (double)n * (double)k * (double)batch;
        int reps = flop > 1e9 ? 1 : flop > 1e8 ? 3 : 10;
        double ms = time_gemm(ctx, &call, reps);
        clg_gemm_release(&call);
        printf(" %10.1f", flop / (ms * 1e6));
    }
    printf("\n");
    clg_buffer_release(ctx, a);
    clg_buffer_release(ctx, b);
    clg_buffer_release(ctx, c);
}

/* Median ms of a compiled plan's run (inputs as they are), one wait per run. */
static double time_plan(clg_plan *p, const clg_tensor *out, size_t out_bytes, int reps) {
    void *host = malloc(out_bytes);
    double ms[16];
    CHECK(clg_plan_run(p));
    CHECK(clg_plan_read(p, out, host, out_bytes));
    for (int r = 0; r < RUNS; ++r) {
        double t0 = clg_now_ms();
        for (int i = 0; i < reps; ++i) CHECK(clg_plan_run(p));
        CHECK(clg_plan_finish(p));
        ms[r] = (clg_now_ms() - t0) / reps;
    }
    free(host);
    return clg_median(ms, RUNS);
}

static void bandwidth(clg_context *ctx) {
    const int64_t n = 1 << 24;
    clg_graph *g = clg_graph_new(ctx);
    float *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; ++i) h[i] = (float)(i % 7) * 0.1f;
    clg_tensor *a = clg_constant(g, CLG_F32, 1, &n, h);
    clg_tensor *b = clg_constant(g, CLG_F32, 1, &n, h);
    clg_tensor *c = clg_constant(g, CLG_F32, 1, &n, h);
    free(h);
    clg_tensor *y = clg_add(g, clg_mul(g, a, b), c);
    CHECK(clg_graph_output(g, y));
    clg_plan *p;
    CHECK(clg_graph_compile(g, NULL, &p));
    double ms = time_plan(p, y, (size_t)n * 4, 3);
    printf("elementwise a * b + c, 16M floats (one fused kernel): %.2f ms, %.1f GB/s\n", ms,
           4.0 * 4.0 * (double)n / (ms * 1e6));
    clg_graph *g2 = clg_graph_new(ctx);
    h = calloc((size_t)n, sizeof *h);
    clg_tensor *x = clg_constant(g2, CLG_F32, 1, &n, h);
    free(h);
    clg_tensor *s = clg_sum(g2, x, 0, NULL, false);
    CHECK(clg_graph_output(g2, s));
    CHECK(clg_graph_compile(g2, NULL, &p));
    ms = time_plan(p, s, 4, 3);
    printf("reduction sum, 16M floats -> 1: %.2f ms, %.1f GB/s\n", ms,
           4.0 * (double)n / (ms * 1e6));
    const int64_t rows = 4096, cols = 4096;
    clg_graph *g3 = clg_graph_new(ctx);
    h = calloc((size_t)(rows * cols), sizeof *h);
    x = clg_constant(g3, CLG_F32, 2, (int64_t[]){rows, cols}, h);
    free(h);
    s = clg_sum(g3, x, 1, (int[]){1}, false);
    CHECK(clg_graph_output(g3, s));
    CHECK(clg_graph_compile(g3, NULL, &p));
    ms = time_plan(p, s, (size_t)rows * 4, 3);
    printf("reduction sum over rows, 4096 x 4096 -> 4096: %.2f ms, %.1f GB/s\n", ms,
           4.0 * (double)(rows * cols) / (ms * 1e6));
}

static void launch_overhead(clg_context *ctx) {
    const int chain = 200;
    const int64_t one = 1;
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *in = clg_input(g, "x", CLG_F32, 1, &one), *x = in;
    for (int i = 0; i < chain; ++i) x = clg_add_scalar(g, x, 1.0f);
    CHECK(clg_graph_output(g, x));
    clg_plan *p;
    CHECK(clg_graph_compile(g, &(clg_compile_options){.no_fusion = true}, &p));
    const float zero = 0.0f;
    CHECK(clg_plan_write(p, in, &zero, sizeof zero));
    double ms = time_plan(p, x, 4, 5);
    printf("launch overhead: %zu one-element kernels queued back to back: %.1f us per kernel\n",
           clg_plan_kernel_count(p), ms * 1e3 / (double)clg_plan_kernel_count(p));
}

static void training_step_kernels(clg_context *ctx) {
    const int64_t B = 128, H = 32;
    clg_param *w1 = clg_param_new(ctx, "bench.w1", CLG_F32, 2, (int64_t[]){2, H});
    clg_param *b1 = clg_param_new(ctx, "bench.b1", CLG_F32, 1, &H);
    clg_param *w2 = clg_param_new(ctx, "bench.w2", CLG_F32, 2, (int64_t[]){H, H});
    clg_param *b2 = clg_param_new(ctx, "bench.b2", CLG_F32, 1, &H);
    clg_param *w3 = clg_param_new(ctx, "bench.w3", CLG_F32, 2, (int64_t[]){H, 2});
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 2, (int64_t[]){B, 2});
    clg_tensor *y = clg_input(g, "y", CLG_I32, 1, &B);
    clg_tensor *h = clg_tanh(g, clg_add(g, clg_matmul(g, x, clg_param_tensor(g, w1), 0, 0),
                                        clg_param_tensor(g, b1)));
    h = clg_tanh(g, clg_add(g, clg_matmul(g, h, clg_param_tensor(g, w2), 0, 0),
                            clg_param_tensor(g, b2)));
    clg_tensor *loss = clg_cross_entropy(g, clg_matmul(g, h, clg_param_tensor(g, w3), 0, 0), y,
                                         CLG_REDUCTION_MEAN);
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_SGD);
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    clg_plan *p;
    CHECK(clg_graph_output(g, loss));
    CHECK(clg_backward(g, loss));
    CHECK(clg_optimizer_apply(opt, g, NULL));
    CHECK(clg_graph_compile(g, NULL, &p));
    printf("two-layer network (raw_engine's), one SGD training step: %zu kernels\n",
           clg_plan_kernel_count(p));
}

int main(int argc, char **argv) {
    const char *device = NULL;
    size_t squares[16] = {128, 256, 512, 1024, 2048};
    size_t n_squares = 5;
    bool peak = false;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device = argv[++i];
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            RUNS = atoi(argv[++i]);
            if (RUNS < 1 || RUNS > 16) RUNS = 5;
        } else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
            n_squares = 0;
            for (char *s = argv[++i], *end; *s && n_squares < 16; s = *end ? end + 1 : end) {
                long v = strtol(s, &end, 10);
                if (v < 1 || v > 32768 || (*end && *end != ',')) {
                    fprintf(stderr, "bench-engine: --sizes: bad list '%s'\n", argv[i]);
                    return 2;
                }
                squares[n_squares++] = (size_t)v;
            }
        } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            ++i;
            ONLY_BACKEND = strcmp(argv[i], "clblast") == 0 ? CLG_GEMM_CLBLAST
                           : strcmp(argv[i], "cpu") == 0   ? CLG_GEMM_CPU
                                                           : -2;
            if (ONLY_BACKEND == -2) {
                fprintf(stderr, "bench-engine: --backend: clblast or cpu, not '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--peak") == 0) {
            peak = true;
        } else {
            fprintf(stderr, "usage: bench-engine [--device SPEC] [--runs N (1-16)] "
                            "[--sizes N,N,...] [--backend clblast|cpu] [--peak]\n");
            return 2;
        }
    }
    clg_context *ctx = NULL;
    CHECK(clg_context_create(device, &ctx));
    printf("device: %s (%s), medians of %d runs\n", ctx->info.name, ctx->info.platform_name, RUNS);
    if (peak) peak_rate(ctx);
    printf("SGEMM GFLOP/s %25s %10s %10s\n", "", "clblast", "cpu");
    for (size_t i = 0; i < n_squares; ++i) {
        char name[64];
        snprintf(name, sizeof name, "%zu^3", squares[i]);
        gemm_row(ctx, name, false, false, squares[i], squares[i], squares[i], 1);
    }
    gemm_row(ctx, "MLP 64x784 . 784x128", false, false, 64, 128, 784, 1);
    gemm_row(ctx, "  dW = X^T dY (784x64 . 64x128)", true, false, 784, 128, 64, 1);
    gemm_row(ctx, "  dX = dY W^T (64x128 . 128x784)", false, true, 64, 784, 128, 1);
    gemm_row(ctx, "attention QK^T, 64 x [128x64 . 64x128]", false, true, 128, 128, 64, 64);
    gemm_row(ctx, "attention PV, 64 x [128x128 . 128x64]", false, false, 128, 64, 128, 64);
    bandwidth(ctx);
    launch_overhead(ctx);
    training_step_kernels(ctx);
    clg_context_free(ctx);
    return 0;
}
