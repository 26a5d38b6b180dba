/* GEMM dispatch: the only file that includes CLBlast. A call is prepared once at compile time:
 * its backend is chosen per device and shape class by measuring both backends on that shape
 * (the choice is cached in the cache folder, keyed by device and driver), then the backend
 * creates what the call needs. CLBLast calls go through row-major SGEMM with a scratch buffer
 * owned here (not allocated per call) or strided-batched SGEMM; CLBlast status codes become
 * clgrad's. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <clblast_c.h>

#include "core/clock.h"
#include "core/context.h"
#include "core/error.h"
#include "core/program.h"
#include "gemm/gemm_internal.h"

#define CHOICES_FORMAT "clgrad-gemm-choices-1"
#define MEASURE_RUNS 3
#define MEASURE_GIVE_UP 3.0 /* a candidate this many times slower after one run has lost */

const char *clg_gemm_backend_name(clg_gemm_backend backend) {
    switch (backend) {
    case CLG_GEMM_CLBLAST:
        return "clblast";
    case CLG_GEMM_CPU:
        return "cpu";
    default:
        return "?";
    }
}

/* ---- the choices file ---- */

static uint64_t fnv(const char *s, uint64_t h) {
    for (; *s; ++s) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static clg_status add_choice(clg_gemm_state *s, const clg_gemm_choice *c) {
    if (s->n_choices == s->cap_choices) {
        size_t nc = s->cap_choices ? s->cap_choices * 2 : 32;
        clg_gemm_choice *n = realloc(s->choices, nc * sizeof *n);
        if (!n) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "GEMM choices: out of host memory");
        s->choices = n;
        s->cap_choices = nc;
    }
    s->choices[s->n_choices++] = *c;
    return CLG_OK;
}

static void load_choices(clg_gemm_state *s) {
    FILE *f = s->choices_path[0] ? fopen(s->choices_path, "r") : NULL;
    if (!f) return;
    char line[256];
    if (!fgets(line, sizeof line, f) || strncmp(line, CHOICES_FORMAT, strlen(CHOICES_FORMAT))) {
        fclose(f);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        clg_gemm_choice c = {0};
        if (sscanf(line, "%95s %15s %lf %lf", c.key, c.winner, &c.ms[0], &c.ms[1]) != 4) continue;
        if (add_choice(s, &c) != CLG_OK) break;
    }
    fclose(f);
}

/* Append one choice as one write to a file opened O_APPEND (so concurrent processes interleave
 * whole lines) and O_NOFOLLOW (a link planted at the name is refused, not written through); a
 * lost race only costs a repeated measurement. */
static void save_choice(const clg_gemm_state *s, const clg_gemm_choice *c) {
    if (!s->choices_path[0]) return;
    int fd = open(s->choices_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        clg_trace("GEMM choices: cannot append to %s: %s", s->choices_path, strerror(errno));
        return;
    }
    struct stat sb;
    bool fresh = fstat(fd, &sb) == 0 && sb.st_size == 0;
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s %s %.6f %.6f\n", fresh ? CHOICES_FORMAT : "",
                     fresh ? "\n" : "", c->key, c->winner, c->ms[0], c->ms[1]);
    if (n > 0 && (size_t)n < sizeof line && write(fd, line, (size_t)n) != (ssize_t)n)
        clg_trace("GEMM choices: writing %s failed: %s", s->choices_path, strerror(errno));
    close(fd);
}

const char *clg_gemm_find_choice(clg_context *ctx, const char *key) {
    if (clg_gemm_ready(ctx) != CLG_OK) return NULL;
    clg_gemm_state *s = ctx->gemm;
    for (size_t i = 0; i < s->n_choices; ++i)
        if (strcmp(s->choices[i].key, key) == 0) return s->choices[i].winner;
    return NULL;
}

clg_status clg_gemm_record_choice(clg_context *ctx, const char *key, const char *winner,
                                  double ms0, double ms1) {
    clg_gemm_choice c = {.ms = {ms0, ms1}};
    snprintf(c.key, sizeof c.key, "%s", key);
    snprintf(c.winner, sizeof c.winner, "%s", winner);
    clg_status st = clg_gemm_ready(ctx);
    if (st == CLG_OK) st = add_choice(ctx->gemm, &c);
    if (st == CLG_OK) save_choice(ctx->gemm, &c);
    return st;
}

const char *clg_gemm_conv_forced(clg_context *ctx) {
    return clg_gemm_ready(ctx) == CLG_OK ? ctx->gemm->conv_forced : NULL;
}

/* The file tools/clgrad-tune writes for this device and driver: lines
 * "<kernel> <NAME>=<value> ..." applied with CLBlastOverrideParameters (a missing file leaves
 * CLBlast's own database in charge). */
void clg_gemm_tuning_path(const clg_context *ctx, const char *dir, char *out, size_t size) {
    uint64_t h = fnv("clgrad-clblast-tuning-1", 0xcbf29ce484222325ull);
    h = fnv(ctx->info.name, h);
    h = fnv(ctx->info.driver_version, h);
    h = fnv(ctx->info.platform_name, h);
    h = fnv(ctx->info.platform_version, h);
    snprintf(out, size, "%s/clblast-%016llx.txt", dir, (unsigned long long)h);
}

clg_status clg_gemm_apply_tuning_line(clg_context *ctx, const char *line) {
    char kernel[64];
    int used = 0;
    if (sscanf(line, "%63s%n", kernel, &used) != 1) return CLG_OK;
    const char *names[32];
    size_t values[32];
    char store[32][48];
    size_t n = 0;
    const char *p = line + used;
    char name[48];
    unsigned long v;
    int adv = 0;
    while (n < 32 && sscanf(p, " %47[A-Z_0-9]=%lu%n", name, &v, &adv) == 2) {
        snprintf(store[n], sizeof store[n], "%s", name);
        names[n] = store[n];
        values[n++] = (size_t)v;
        p += adv;
    }
    if (n == 0) return CLG_OK;
    CLBlastStatusCode code =
        CLBlastOverrideParameters(ctx->device, kernel, CLBlastPrecisionSingle, n, names, values);
    if (code != CLBlastSuccess)
        return clg_fail(CLG_ERR_OPENCL, "applying CLBlast tuning for %s (%zu parameters): status %d",
                        kernel, n, (int)code);
    clg_trace("CLBlast %s: %zu tuned parameters applied", kernel, n);
    return CLG_OK;
}

static void load_tuning(clg_context *ctx, const char *dir) {
    char path[4200];
    clg_gemm_tuning_path(ctx, dir, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (line[0] != '#' && clg_gemm_apply_tuning_line(ctx, line) != CLG_OK)
            clg_trace("%s: %s (ignored)", path, clg_last_error());
    fclose(f);
}

static void gemm_state_free(void *object) {
    clg_gemm_state *s = object;
    clg_context *ctx = s->ctx;
    clg_buffer_release(ctx, s->temp);
    clg_buffer_release(ctx, s->cpu_scratch);
    for (size_t i = 0; i < s->n_old_scratch; ++i) clg_buffer_release(ctx, s->old_scratch[i]);
    free(s->old_scratch);
    free(s->choices);
    free(s);
    ctx->gemm = NULL;
}

/* The state, its environment switches and its caches, made on the context's first GEMM. */
static clg_status gemm_state_new(clg_context *ctx, clg_gemm_state *s) {
    s->ctx = ctx;
    s->forced = -1;
    const char *force = getenv("CLGRAD_GEMM");
    if (force && *force) {
        if (strcmp(force, "clblast") == 0) s->forced = CLG_GEMM_CLBLAST;
        else if (strcmp(force, "cpu") == 0) s->forced = CLG_GEMM_CPU;
        else
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "CLGRAD_GEMM='%s': expected 'clblast' or 'cpu' (or unset: measured)",
                            force);
    }
    const char *conv = getenv("CLGRAD_CONV");
    if (conv && *conv) {
        if (strcmp(conv, "im2col") == 0) s->conv_forced = "im2col";
        else if (strcmp(conv, "convgemm") == 0) s->conv_forced = "convgemm";
        else
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "CLGRAD_CONV='%s': expected 'im2col' or 'convgemm' (or unset: "
                            "measured)",
                            conv);
    }
    char dir[4096];
    if (clg_cache_dir(dir, sizeof dir)) {
        uint64_t h = fnv(CHOICES_FORMAT, 0xcbf29ce484222325ull);
        h = fnv(ctx->info.name, h);
        h = fnv(ctx->info.driver_version, h);
        h = fnv(ctx->info.platform_name, h);
        h = fnv(ctx->info.platform_version, h);
        snprintf(s->choices_path, sizeof s->choices_path, "%s/gemm-%016llx.txt", dir,
                 (unsigned long long)h);
        load_choices(s);
        load_tuning(ctx, dir);
    }
    return CLG_OK;
}

clg_status clg_gemm_ready(clg_context *ctx) {
    if (ctx->gemm) return CLG_OK;
    clg_gemm_state *s = calloc(1, sizeof *s);
    if (!s) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "GEMM state: out of host memory");
    clg_status st = gemm_state_new(ctx, s);
    if (st == CLG_OK) st = clg_context_own(ctx, s, gemm_state_free, true);
    if (st != CLG_OK) {
        free(s->choices);
        free(s);
        return st;
    }
    ctx->gemm = s;
    return CLG_OK;
}

/* ---- CLBlast ---- */

static clg_status clblast_fail(CLBlastStatusCode code, const char *what, const clg_gemm_call *c) {
    clg_status st = code == CLBlastTempBufferAllocFailure || code == CLBlastOpenCLOutOfResources
                        ? CLG_ERR_OUT_OF_MEMORY
                        : CLG_ERR_OPENCL;
    if (code == CLBlastOpenCLBuildProgramFailure) st = CLG_ERR_BUILD;
    return clg_fail(st, "%s (m=%zu n=%zu k=%zu batch=%zu, trans %d/%d): CLBlast status %d", what,
                    c->m, c->n, c->k, c->batch, c->trans_a, c->trans_b, (int)code);
}

static CLBlastTranspose tr(bool t) {
    return t ? CLBlastTransposeYes : CLBlastTransposeNo;
}

/* CLBlast has no epilogue: a small kernel applies bias and activation after the product. */
static clg_status prepare_epilogue(clg_context *ctx, clg_gemm_call *c) {
    c->epilogue = NULL;
    if (!c->bias && c->act == CLG_GEMM_ACT_NONE) return CLG_OK;
    cl_kernel k;
    clg_status st = clg_kernel_new(ctx, "gemm_epilogue", "gemm_epilogue", &k);
    if (st != CLG_OK) return st;
    cl_int has_bias = c->bias != NULL, act = (cl_int)c->act;
    cl_int ints[] = {(cl_int)c->c_off, (cl_int)c->ldc, (cl_int)c->c_stride, (cl_int)c->m,
                     (cl_int)c->n};
    cl_int bints[] = {(cl_int)c->bias_off, (cl_int)c->bias_rs, (cl_int)c->bias_cs};
    cl_mem bias = c->bias ? c->bias : c->c;
    cl_int err = clSetKernelArg(k, 0, sizeof c->c, &c->c);
    for (int i = 0; i < 5 && err == CL_SUCCESS; ++i)
        err = clSetKernelArg(k, (cl_uint)(1 + i), sizeof ints[i], &ints[i]);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 6, sizeof bias, &bias);
    for (int i = 0; i < 3 && err == CL_SUCCESS; ++i)
        err = clSetKernelArg(k, (cl_uint)(7 + i), sizeof bints[i], &bints[i]);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 10, sizeof has_bias, &has_bias);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 11, sizeof act, &act);
    if (err != CL_SUCCESS) {
        clReleaseKernel(k);
        return clg_fail_cl(err, "setting up the GEMM epilogue");
    }
    c->epilogue = k;
    return CLG_OK;
}

static clg_status clblast_prepare(clg_context *ctx, clg_gemm_call *call) {
    call->temp = NULL;
    clg_status st = prepare_epilogue(ctx, call);
    if (st != CLG_OK || call->batch != 1) return st;
    size_t bytes = 0;
    CLBlastStatusCode code = CLBlastSGemmTempBufferSize(
        CLBlastLayoutRowMajor, tr(call->trans_a), tr(call->trans_b), call->m, call->n, call->k,
        call->a_off, call->lda, call->b_off, call->ldb, call->c_off, call->ldc, &ctx->queue,
        &bytes);
    if (code != CLBlastSuccess) return clblast_fail(code, "sizing the GEMM scratch buffer", call);
    clg_gemm_state *s = ctx->gemm;
    if (bytes < 256) bytes = 256; /* CLBlast wraps the handle even when it needs no scratch */
    if (bytes > s->temp_bytes) {
        cl_mem m;
        st = clg_buffer_create(ctx, bytes, "the GEMM scratch buffer", &m);
        if (st != CLG_OK) return st;
        if (s->temp) {
            clFinish(ctx->queue); /* steps queued earlier may still use the old scratch */
            clg_buffer_release(ctx, s->temp);
        }
        s->temp = m;
        s->temp_bytes = bytes;
    }
    return CLG_OK;
}

static clg_status clblast_enqueue(clg_context *ctx, const clg_gemm_call *c, cl_event *first,
                                  cl_event *last) {
    cl_event *event = c->epilogue ? first : last;
    CLBlastStatusCode code;
    if (c->batch == 1) {
        /* Scratch is looked up now, not stored in the call: a later prepare may grow it. */
        code = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, tr(c->trans_a), tr(c->trans_b),
                                          c->m, c->n, c->k, c->alpha, c->a, c->a_off, c->lda,
                                          c->b, c->b_off, c->ldb, c->beta, c->c, c->c_off,
                                          c->ldc, &ctx->queue, event, ctx->gemm->temp);
    } else {
        code = CLBlastSgemmStridedBatched(
            CLBlastLayoutRowMajor, tr(c->trans_a), tr(c->trans_b), c->m, c->n, c->k, c->alpha,
            c->a, c->a_off, c->lda, c->a_stride, c->b, c->b_off, c->ldb, c->b_stride, c->beta,
            c->c, c->c_off, c->ldc, c->c_stride, c->batch, &ctx->queue, event);
    }
    if (code != CLBlastSuccess) return clblast_fail(code, "GEMM", c);
    if (c->epilogue) {
        size_t global[3] = {c->n, c->m, c->batch};
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, c->epilogue, 3, NULL, global, NULL, 0,
                                            NULL, last);
        if (err != CL_SUCCESS) return clg_fail_cl(err, "queueing the GEMM epilogue");
    }
    return CLG_OK;
}

clg_status clg_gemm_convgemm(clg_context *ctx, const clg_convgemm_call *c, cl_event *event) {
    CLBlastStatusCode code = CLBlastSconvgemm(
        CLBlastKernelModeCrossCorrelation, c->channels, c->height, c->width, c->kernel_h,
        c->kernel_w, c->pad_h, c->pad_w, c->stride_h, c->stride_w, c->dilation_h, c->dilation_w,
        c->num_kernels, c->batch, c->im, c->im_off, c->kernel, c->kernel_off, c->result,
        c->result_off, &ctx->queue, event);
    if (code == CLBlastSuccess) return CLG_OK;
    return clg_fail(code == CLBlastOpenCLBuildProgramFailure ? CLG_ERR_BUILD : CLG_ERR_OPENCL,
                    "convgemm (batch %zu, %zu -> %zu channels, %zux%zu image, %zux%zu kernel): "
                    "CLBlast status %d",
                    c->batch, c->channels, c->num_kernels, c->height, c->width, c->kernel_h,
                    c->kernel_w, (int)code);
}

/* ---- choosing a backend ---- */

static int log2_bucket(size_t x) {
    int b = 0;
    while (x > 1) {
        x >>= 1;
        ++b;
    }
    return b;
}

/* Shapes whose sizes fall in the same powers of two and that share transposes and batching
 * behave alike: one measurement serves them all. */
static void shape_class(const clg_gemm_call *c, char *key, size_t size) {
    snprintf(key, size, "%c%c%s-m%d-n%d-k%d", c->trans_a ? 'T' : 'N', c->trans_b ? 'T' : 'N',
             c->batch > 1 ? "-batched" : "", log2_bucket(c->m), log2_bucket(c->n),
             log2_bucket(c->k));
}

/* Elements an operand spans: the last batch entry's last row's end. */
static size_t extent(size_t rows, size_t cols, size_t ld, size_t stride, size_t batch) {
    return (batch - 1) * stride + (rows - 1) * ld + cols;
}

static clg_status backend_prepare(clg_context *ctx, clg_gemm_call *c, clg_gemm_backend b) {
    c->backend = b;
    c->epilogue = NULL;
    c->n_kernels = 0;
    return b == CLG_GEMM_CPU ? clg_gemm_cpu_prepare(ctx, c) : clblast_prepare(ctx, c);
}

clg_status clg_gemm_prepare_backend(clg_context *ctx, clg_gemm_call *call, clg_gemm_backend b) {
    clg_status st = clg_gemm_ready(ctx);
    return st == CLG_OK ? backend_prepare(ctx, call, b) : st;
}

const char *clg_gemm_choices_path(clg_context *ctx) {
    return clg_gemm_ready(ctx) == CLG_OK ? ctx->gemm->choices_path : "";
}

/* Whether CLBlast is out of the running on this device: it lost to clgrad's CPU kernel by
 * VERDICT_MARGIN or more on each of the first VERDICT_CLASSES shape classes timed here and won
 * none. Then new classes are not timed on it: compiling its kernels for a measurement costs
 * seconds on a CPU device, and a new class should cost milliseconds. pocl's CPU device starts
 * with that verdict (CLBlast measured 5-15x slower there on every shape clgrad runs, README
 * "Speed"; CLGRAD_GEMM_MEASURE=1 times it anyway). CLGRAD_GEMM=clblast still forces it. */
#define VERDICT_CLASSES 3
#define VERDICT_MARGIN 3.0
static bool clblast_far_behind(const clg_gemm_state *s) {
    const clg_device_info *d = &s->ctx->info;
    if (d->type == CLG_DEVICE_CPU && strstr(d->platform_name, "Portable Computing Language") &&
        !clg_env_flag("CLGRAD_GEMM_MEASURE"))
        return true;
    int lost = 0;
    for (size_t i = 0; i < s->n_choices; ++i) {
        const clg_gemm_choice *c = &s->choices[i];
        if (strcmp(c->winner, "clblast") == 0) return false;
        if (strcmp(c->winner, "cpu") != 0 || isnan(c->ms[0])) continue; /* conv, untimed */
        if (c->ms[0] < VERDICT_MARGIN * c->ms[1]) return false;
        ++lost;
    }
    return lost >= VERDICT_CLASSES;
}

/* Time the backends on this shape with buffers of their own (the plan's buffers hold nothing
 * yet, and garbage can hide denormals): out_ms[backend] is the median of MEASURE_RUNS after a
 * warm-up run that compiles, or of fewer when the second backend falls far behind. Both are
 * NaN, measuring nothing, when those buffers would take the context past its memory cap.
 * CLBlast is not timed (NaN, *skipped) where clblast_far_behind says so. */
static clg_status measure(clg_context *ctx, const clg_gemm_call *call, double *out_ms,
                          bool *skipped) {
    *skipped = false;
    clg_gemm_call t = *call;
    size_t ar = t.trans_a ? t.k : t.m, ac = t.trans_a ? t.m : t.k;
    size_t br = t.trans_b ? t.n : t.k, bc = t.trans_b ? t.k : t.n;
    size_t batch = t.batch ? t.batch : 1;
    size_t na = extent(ar, ac, t.lda, t.a_stride, batch), nb = extent(br, bc, t.ldb, t.b_stride, batch);
    size_t nc = extent(t.m, t.n, t.ldc, t.c_stride, batch);
    size_t nbias = t.bias ? t.m * t.bias_rs + t.n * t.bias_cs + 1 : 0;
    if (!clg_memory_fits(ctx, (na + nb + nc + nbias) * 4)) {
        out_ms[CLG_GEMM_CLBLAST] = out_ms[CLG_GEMM_CPU] = NAN;
        return CLG_OK;
    }
    cl_mem a = NULL, b = NULL, c = NULL, bias = NULL;
    clg_status st = clg_buffer_create(ctx, na * 4, "GEMM measurement", &a);
    if (st == CLG_OK) st = clg_buffer_create(ctx, nb * 4, "GEMM measurement", &b);
    if (st == CLG_OK) st = clg_buffer_create(ctx, nc * 4, "GEMM measurement", &c);
    if (st == CLG_OK && t.bias) st = clg_buffer_create(ctx, nbias * 4, "GEMM measurement", &bias);
    const float fill = 0.5f;
    cl_mem bufs[4] = {a, b, c, bias};
    size_t sizes[4] = {na, nb, nc, nbias};
    for (int i = 0; i < 4 && st == CLG_OK; ++i)
        if (bufs[i]) {
            cl_int err = clEnqueueFillBuffer(ctx->queue, bufs[i], &fill, sizeof fill, 0,
                                             sizes[i] * 4, 0, NULL, NULL);
            if (err) st = clg_fail_cl(err, "filling GEMM measurement buffers");
        }
    t.a = a;
    t.b = b;
    t.c = c;
    t.bias = bias;
    t.a_off = t.b_off = t.c_off = t.bias_off = 0;
    bool cpu_fits = clg_gemm_cpu_fits(ctx, call);
    for (int be = 0; be < CLG_GEMM_BACKEND_COUNT && st == CLG_OK; ++be) {
        if (be == CLG_GEMM_CPU && !cpu_fits) {
            out_ms[be] = INFINITY;
            continue;
        }
        if (be == CLG_GEMM_CLBLAST && cpu_fits && clblast_far_behind(ctx->gemm)) {
            out_ms[be] = NAN;
            *skipped = true;
            continue;
        }
        clg_gemm_call u = t;
        st = backend_prepare(ctx, &u, (clg_gemm_backend)be);
        double ms[MEASURE_RUNS];
        int runs = 0;
        for (int r = -1; r < MEASURE_RUNS && st == CLG_OK; ++r) {
            double t0 = clg_now_ms();
            st = clg_gemm_enqueue(ctx, &u, NULL, NULL);
            cl_int err = clFinish(ctx->queue);
            if (st == CLG_OK && err) st = clg_fail_cl(err, "measuring a GEMM");
            if (r < 0) continue;
            ms[runs++] = clg_now_ms() - t0;
            /* Far behind the first backend after one timed run: it has lost, and on a slow
             * device (rusticl on llvmpipe: 34 s for one product) more runs cost minutes. */
            if (be > 0 && !*skipped && ms[0] > MEASURE_GIVE_UP * out_ms[0]) break;
        }
        clg_gemm_release(&u);
        if (st != CLG_OK) break;
        out_ms[be] = clg_median(ms, runs);
    }
    for (int i = 0; i < 4; ++i)
        clg_buffer_release(ctx, bufs[i]);
    return st;
}

clg_status clg_gemm_prepare(clg_context *ctx, clg_gemm_call *call) {
    clg_status ready = clg_gemm_ready(ctx);
    if (ready != CLG_OK) return ready;
    clg_gemm_state *s = ctx->gemm;
    call->epilogue = NULL;
    call->n_kernels = 0;
    if (s->forced >= 0) return backend_prepare(ctx, call, (clg_gemm_backend)s->forced);
    char key[64];
    shape_class(call, key, sizeof key);
    const char *winner = clg_gemm_find_choice(ctx, key);
    if (!winner) {
        double ms[CLG_GEMM_BACKEND_COUNT];
        bool skipped;
        clg_status st = measure(ctx, call, ms, &skipped);
        if (st != CLG_OK) return st;
        /* Under a tight cap the measurement's buffers would make the compile fail: CLBlast
         * serves every shape, and nothing is recorded, so a later roomier run measures. */
        if (isnan(ms[CLG_GEMM_CPU]) || (!skipped && isnan(ms[CLG_GEMM_CLBLAST]))) {
            clg_trace("GEMM %s: no room under the memory cap to measure: clblast", key);
            return backend_prepare(ctx, call, CLG_GEMM_CLBLAST);
        }
        winner = clg_gemm_backend_name(skipped || ms[CLG_GEMM_CPU] < ms[CLG_GEMM_CLBLAST]
                                           ? CLG_GEMM_CPU
                                           : CLG_GEMM_CLBLAST);
        if (skipped)
            clg_trace("GEMM %s: cpu %.3f ms, clblast not timed (far behind on this device)", key,
                      ms[CLG_GEMM_CPU]);
        else
            clg_trace("GEMM %s: clblast %.3f ms, cpu %.3f ms: %s", key, ms[CLG_GEMM_CLBLAST],
                      ms[CLG_GEMM_CPU], winner);
        st = clg_gemm_record_choice(ctx, key, winner, ms[CLG_GEMM_CLBLAST], ms[CLG_GEMM_CPU]);
        if (st != CLG_OK) return st;
    }
    /* a class's winner may be the CPU kernel where this k is past the device's loop limit */
    bool cpu = strcmp(winner, "cpu") == 0 && clg_gemm_cpu_fits(ctx, call);
    return backend_prepare(ctx, call, cpu ? CLG_GEMM_CPU : CLG_GEMM_CLBLAST);
}

clg_status clg_gemm_enqueue(clg_context *ctx, const clg_gemm_call *c, cl_event *first,
                            cl_event *last) {
    if (c->backend == CLG_GEMM_CPU) return clg_gemm_cpu_enqueue(ctx, c, first, last);
    return clblast_enqueue(ctx, c, first, last);
}

void clg_gemm_release(clg_gemm_call *call) {
    /* newest first, as clg_plan_free releases (pocl unlinks kernels from the newest) */
    for (int i = call->n_kernels; i-- > 0;) clReleaseKernel(call->kernels[i].kernel);
    call->n_kernels = 0;
    if (call->epilogue) clReleaseKernel(call->epilogue);
    call->epilogue = NULL;
}
