/* clgrad-tune: tune CLBlast's SGEMM for the selected device on the shapes clgrad runs, store
 * the result next to the program cache (keyed by device and driver), and re-measure which
 * GEMM backend wins per shape class with the tuned CLBlast.
 *
 * It times, for each shape (the MNIST MLP's and CNN's products and two squares): CLBlast with
 * its own parameters (its database, or its defaults for an unknown device), CLBlast with each
 * candidate Xgemm configuration (CLBlastOverrideParameters), the direct/indirect switch point
 * (XGEMM_MIN_INDIRECT_SIZE), and clgrad's CPU kernels. A tuning is stored only if it beats
 * CLBlast's own parameters on the whole set, so devices CLBlast already knows keep its
 * database unless tuning measures better.
 *   clgrad-tune [--device SPEC] [--quick] [--dry-run] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

#include "core/clock.h"
#include "core/context.h"
#include "core/program.h"
#include "gemm/gemm_internal.h"
#include "core/atomic_file.h"

typedef struct shape {
    const char *name;
    bool ta, tb;
    size_t m, n, k, batch;
} shape;

static const shape SHAPES[] = {
    {"mlp fc1 forward 128x784 . 784x128^T", false, true, 128, 128, 784, 1},
    {"mlp fc1 weight grad 128^T x 784", true, false, 128, 784, 128, 1},
    {"mlp fc2 forward 128x128 . 128x64^T", false, true, 128, 64, 128, 1},
    {"cnn conv1 (batched 64 x 32x9 . 9x784)", false, false, 32, 784, 9, 64},
    {"cnn conv2 folded 64x288 . 288x12544", false, false, 64, 12544, 288, 1},
    {"cnn conv2 weight grad 64x12544 . 12544x288", false, true, 64, 288, 12544, 1},
    {"square 256", false, false, 256, 256, 256, 1},
    {"square 512", false, false, 512, 512, 512, 1},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

static const char *XGEMM_NAMES[16] = {"GEMMK", "KREG",  "KWG",  "KWI", "MDIMA", "MDIMC",
                                      "MWG",   "NDIMB", "NDIMC", "NWG", "SA",    "SB",
                                      "STRM",  "STRN",  "VWM",  "VWN"};

/* Candidate Xgemm configurations: register tiles of 4-8 x 4-8 per work-item, vector widths
 * 4-8, with and without local memory; CPU devices want no local memory and wide vectors, GPUs
 * local memory and more work-items. Values in XGEMM_NAMES order. */
static const size_t CANDIDATES[][16] = {
    {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 8, 8},
    {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 8, 8},
    {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4},
    {0, 1, 16, 2, 16, 16, 64, 16, 16, 64, 0, 0, 0, 0, 4, 4},
    {0, 1, 32, 2, 8, 8, 32, 8, 8, 32, 0, 0, 0, 0, 4, 4},
    {0, 1, 16, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8},
    {0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 1, 1, 0, 0, 2, 2},
    {0, 1, 32, 2, 16, 16, 128, 16, 16, 128, 1, 1, 0, 0, 4, 4},
    {0, 1, 16, 2, 16, 16, 64, 16, 16, 64, 1, 1, 1, 1, 4, 4},
};
#define N_CANDIDATES (sizeof CANDIDATES / sizeof CANDIDATES[0])
static const size_t SWITCH_POINTS[] = {64, 128, 256, 512, 1024, 2048};

typedef struct bufs {
    cl_mem a, b, c;
} bufs;

static bool make_bufs(clg_context *ctx, const shape *s, bufs *out) {
    size_t na = s->m * s->k * s->batch, nb = s->k * s->n * s->batch, nc = s->m * s->n * s->batch;
    const float fill = 0.5f;
    cl_mem *m[3] = {&out->a, &out->b, &out->c};
    size_t n[3] = {na, nb, nc};
    for (int i = 0; i < 3; ++i) {
        if (clg_buffer_create(ctx, n[i] * 4, "tuning", m[i]) != CLG_OK) return false;
        clEnqueueFillBuffer(ctx->queue, *m[i], &fill, sizeof fill, 0, n[i] * 4, 0, NULL, NULL);
    }
    return true;
}

/* Median milliseconds of one product with backend b (+inf if it fails to run). */
static double time_shape(clg_context *ctx, const shape *s, const bufs *bf, clg_gemm_backend be,
                         int runs) {
    clg_gemm_call c = {.trans_a = s->ta, .trans_b = s->tb, .m = s->m, .n = s->n, .k = s->k,
                       .alpha = 1.0f, .a = bf->a, .lda = s->ta ? s->m : s->k,
                       .b = bf->b, .ldb = s->tb ? s->k : s->n, .c = bf->c, .ldc = s->n,
                       .batch = s->batch};
    if (s->batch > 1) {
        c.a_stride = 0; /* a shared weight, as conv2d's batched layout has */
        c.b_stride = s->k * s->n;
        c.c_stride = s->m * s->n;
    }
    if (clg_gemm_prepare_backend(ctx, &c, be) != CLG_OK) return 1e30;
    double ms[9];
    bool ok = true;
    for (int r = -1; r < runs && ok; ++r) {
        double t0 = clg_now_ms();
        ok = clg_gemm_enqueue(ctx, &c, NULL, NULL) == CLG_OK && clFinish(ctx->queue) == CL_SUCCESS;
        if (r >= 0) ms[r] = clg_now_ms() - t0;
    }
    clg_gemm_release(&c);
    if (!ok) return 1e30;
    return clg_median(ms, runs);
}

static double gflops(const shape *s, double ms) {
    return 2.0 * (double)s->m * (double)s->n * (double)s->k * (double)s->batch / (ms * 1e6);
}

/* Total time of the set with CLBlast as currently configured. */
static double clblast_total(clg_context *ctx, const bufs *bf, int runs, double *each) {
    double total = 0.0;
    for (size_t i = 0; i < N_SHAPES; ++i) {
        double ms = time_shape(ctx, &SHAPES[i], &bf[i], CLG_GEMM_CLBLAST, runs);
        if (each) each[i] = ms;
        total += ms;
    }
    return total;
}

static bool apply_xgemm(clg_context *ctx, const size_t *values) {
    char line[512];
    int len = snprintf(line, sizeof line, "Xgemm");
    for (int i = 0; i < 16; ++i)
        len += snprintf(line + len, sizeof line - (size_t)len, " %s=%zu", XGEMM_NAMES[i], values[i]);
    return clg_gemm_apply_tuning_line(ctx, line) == CLG_OK;
}

int main(int argc, char **argv) {
    const char *device = NULL;
    bool quick = false, dry = false;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device = argv[++i];
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            dry = true;
        } else {
            fprintf(stderr, "usage: clgrad-tune [--device SPEC] [--quick] [--dry-run]\n");
            return 2;
        }
    }
    /* tune from CLBlast's own parameters, not from an earlier tuning */
    setenv("CLGRAD_GEMM", "clblast", 1);
    char dir[4096];
    if (!clg_cache_dir(dir, sizeof dir) && !dry) {
        fprintf(stderr, "clgrad-tune: no cache folder (CLGRAD_CACHE_DIR=off?): nowhere to store "
                        "the result; use --dry-run to only measure\n");
        return 1;
    }
    char path[4200];
    clg_context *ctx = NULL;
    if (clg_context_create(device, &ctx) != CLG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", clg_last_error());
        return 1;
    }
    clg_gemm_tuning_path(ctx, dir, path, sizeof path);
    if (!dry) remove(path); /* measure CLBlast's own parameters first */
    clg_context_free(ctx);
    if (clg_context_create(device, &ctx) != CLG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", clg_last_error());
        return 1;
    }
    printf("device: %s (%s, driver %s)\n", ctx->info.name, ctx->info.platform_name,
           ctx->info.driver_version);
    int runs = quick ? 3 : 5;
    bufs bf[N_SHAPES];
    for (size_t i = 0; i < N_SHAPES; ++i)
        if (!make_bufs(ctx, &SHAPES[i], &bf[i])) {
            fprintf(stderr, "clgrad-tune: %s\n", clg_last_error());
            return 1;
        }
    double base[N_SHAPES], best_each[N_SHAPES], cpu[N_SHAPES];
    double base_total = clblast_total(ctx, bf, runs, base);
    printf("CLBlast with its own parameters: %.2f ms for the set\n", base_total);

    /* The direct/indirect switch point first, with CLBlast's own Xgemm parameters: CLBlast
     * cannot go back to them once a candidate is applied. */
    double best_total = base_total;
    size_t best_switch = 0;
    for (size_t i = 0; i < sizeof SWITCH_POINTS / sizeof *SWITCH_POINTS && !quick; ++i) {
        char line[128];
        snprintf(line, sizeof line, "GemmRoutine XGEMM_MIN_INDIRECT_SIZE=%zu", SWITCH_POINTS[i]);
        if (clg_gemm_apply_tuning_line(ctx, line) != CLG_OK) continue;
        double t = clblast_total(ctx, bf, runs, NULL);
        printf("  direct below %zu: %.2f ms%s\n", SWITCH_POINTS[i], t,
               t < best_total ? "  (best so far)" : "");
        if (t < best_total) {
            best_total = t;
            best_switch = SWITCH_POINTS[i];
        }
    }
    if (!quick) {
        char line[128];
        /* CLBlast's default switch point is 384 x 384 x 384 */
        snprintf(line, sizeof line, "GemmRoutine XGEMM_MIN_INDIRECT_SIZE=%zu",
                 best_switch ? best_switch : (size_t)384);
        clg_gemm_apply_tuning_line(ctx, line);
    }
    int best = -1;
    size_t n_cand = quick ? 3 : N_CANDIDATES;
    for (size_t c = 0; c < n_cand; ++c) {
        if (!apply_xgemm(ctx, CANDIDATES[c])) continue;
        double t = clblast_total(ctx, bf, runs, NULL);
        printf("  Xgemm candidate %zu: %.2f ms%s\n", c, t, t < best_total ? "  (best so far)" : "");
        if (t < best_total) {
            best_total = t;
            best = (int)c;
        }
    }
    if (best >= 0) apply_xgemm(ctx, CANDIDATES[best]);
    if (best >= 0 || best_switch)
        clblast_total(ctx, bf, runs, best_each);
    else
        memcpy(best_each, base, sizeof base);
    for (size_t i = 0; i < N_SHAPES; ++i) cpu[i] = time_shape(ctx, &SHAPES[i], &bf[i], CLG_GEMM_CPU, runs);

    printf("\n%-44s %12s %12s %12s  %s\n", "shape", "CLBlast own", "CLBlast tuned", "clgrad cpu",
           "faster");
    for (size_t i = 0; i < N_SHAPES; ++i)
        printf("%-44s %8.1f GF/s %8.1f GF/s %8.1f GF/s  %s\n", SHAPES[i].name,
               gflops(&SHAPES[i], base[i]), gflops(&SHAPES[i], best_each[i]),
               gflops(&SHAPES[i], cpu[i]), cpu[i] < best_each[i] ? "cpu" : "clblast");

    bool improved = best_total < 0.95 * base_total;
    printf("\nCLBlast tuned: %.2f ms vs %.2f ms with its own parameters: %s\n", best_total,
           base_total, improved ? "storing the tuning" : "keeping CLBlast's own parameters");
    if (!dry) {
        /* written as one atomic replacement: never through a planted link, never half */
        char text[2048];
        int len = snprintf(text, sizeof text,
                           "# clgrad-tune for %s (%s, driver %s): %.2f ms -> %.2f ms on the shape "
                           "set\n",
                           ctx->info.name, ctx->info.platform_name, ctx->info.driver_version,
                           base_total, best_total);
        if (improved && best >= 0) {
            len += snprintf(text + len, sizeof text - (size_t)len, "Xgemm");
            for (int i = 0; i < 16; ++i)
                len += snprintf(text + len, sizeof text - (size_t)len, " %s=%zu", XGEMM_NAMES[i],
                                CANDIDATES[best][i]);
            len += snprintf(text + len, sizeof text - (size_t)len, "\n");
        }
        if (improved && best_switch)
            len += snprintf(text + len, sizeof text - (size_t)len,
                            "GemmRoutine XGEMM_MIN_INDIRECT_SIZE=%zu\n", best_switch);
        if (len < 0 || (size_t)len >= sizeof text ||
            clg_atomic_write(path, text, (size_t)len) != CLG_OK) {
            fprintf(stderr, "clgrad-tune: cannot write %s: %s\n", path, clg_last_error());
            return 1;
        }
        printf("tuning written to %s\n", path);
        /* backend choices were measured against the old CLBlast: measure again on next use */
        const char *choices = clg_gemm_choices_path(ctx);
        if (choices[0] && remove(choices) == 0) printf("backend choices reset: %s\n", choices);
    }
    for (size_t i = 0; i < N_SHAPES; ++i) {
        clg_buffer_release(ctx, bf[i].a);
        clg_buffer_release(ctx, bf[i].b);
        clg_buffer_release(ctx, bf[i].c);
    }
    clg_context_free(ctx);
    return 0;
}
