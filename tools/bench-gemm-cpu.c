// Checks and times the CPU-device SGEMM kernels of cl/gemm_cpu.cl against a plain C reference,
// and prints GFLOP/s side by side with CLBlast (default parameters) and OpenBLAS (loaded with
// dlopen when present, 1 and 2 threads) for the shapes clgrad's models run. The kernels are
// built here from the file (so edits to it can be timed before a rebuild), but the plan of the
// "chosen" column is the library's own (clg_gemm_cpu_choose), so it cannot drift from what
// clgrad runs. Built by meson: ninja -C build tools/bench-gemm-cpu.
#define _POSIX_C_SOURCE 200809L
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clgrad/device.h"
#include "gemm/gemm_internal.h"

// ---------------------------------------------------------------------------------------------
// Small helpers

static _Noreturn void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

#define CL_CHECK(call)                                                                             \
    do {                                                                                           \
        cl_int err_ = (call);                                                                      \
        if (err_ != CL_SUCCESS)                                                                    \
            die("%s:%d: %s failed: OpenCL error %d", __FILE__, __LINE__, #call, err_);             \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// xorshift: fixed seed, same inputs on every run.
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", path);
    s[n] = 0;
    fclose(f);
    return s;
}

// ---------------------------------------------------------------------------------------------
// The problem, as a dispatcher would receive it

enum { ACT_NONE, ACT_RELU, ACT_TANH, ACT_SIGMOID, ACT_GELU_TANH, ACT_COUNT };
static const char *act_names[ACT_COUNT] = {"none", "relu", "tanh", "sigmoid", "gelu"};

// C[b] = act(alpha * op(A[b]) op(B[b]) + beta * C[b] + bias), all row-major, element offsets,
// op(A) is M x K, op(B) is K x N; a batch stride of 0 broadcasts that operand.
typedef struct {
    int ta, tb; // 1 = transposed
    int m, n, k, batch;
    float alpha, beta;
    cl_mem a, b, c, bias; // bias NULL = none; else bias[bias_off + n]
    int a_off, lda, a_bs;
    int b_off, ldb, b_bs;
    int c_off, ldc, c_bs;
    int bias_off;
    int act;
} gemm_problem;

typedef struct {
    cl_context ctx;
    cl_command_queue q;
    cl_kernel pack, gemm;
    int mr, nr, pack_k;
    int units;           // compute units (threads pocl runs work-groups on)
    uint32_t loop_limit; // clgrad's loop limit for the device (0: none)
    cl_mem scratch;      // packed operands, grown on demand
    size_t scratch_size;
} gemm_cpu;

static size_t round_up(size_t x, size_t m) {
    return (x + m - 1) / m * m;
}

static size_t ceil_div(size_t x, size_t m) {
    return (x + m - 1) / m;
}

#define ARG(kern, i, v) CL_CHECK(clSetKernelArg(kern, (i), sizeof(v), &(v)))

// Local size of the GEMM kernel; --local changes it for experiments (0 = let pocl choose).
static size_t local_x = 1, local_y = 1;

static void enqueue_3d(gemm_cpu *g, cl_kernel k, size_t g0, size_t g1, size_t g2) {
    // Local size 1: a pocl work-group is then one call of our work-item, and pocl's implicit
    // work-item loop vectorizer has nothing to fight with (see tools/gemm-cpu-notes.md).
    size_t gs[3] = {g0, g1, g2}, ls[3] = {1, 1, 1};
    if (k == g->gemm && local_x) {
        ls[0] = local_x, ls[1] = local_y;
        gs[0] = round_up(g0, local_x), gs[1] = round_up(g1, local_y);
    }
    CL_CHECK(clEnqueueNDRangeKernel(g->q, k, 3, NULL, gs, k == g->gemm && !local_x ? NULL : ls, 0,
                                    NULL, NULL));
}

// Packs X(r, k) = X[off + b * bs + r * rs + k * cs], r < rows, into panels of w rows.
static void enqueue_pack(gemm_cpu *g, int rows, int k, int w, cl_mem x, int off, int rs, int cs,
                         int bs, int batch, cl_mem xp, int xp_off) {
    cl_kernel kn = g->pack;
    ARG(kn, 0, rows);
    ARG(kn, 1, k);
    ARG(kn, 2, w);
    ARG(kn, 3, x);
    ARG(kn, 4, off);
    ARG(kn, 5, rs);
    ARG(kn, 6, cs);
    ARG(kn, 7, bs);
    ARG(kn, 8, xp);
    ARG(kn, 9, xp_off);
    enqueue_3d(g, kn, ceil_div((size_t)rows, (size_t)w), ceil_div((size_t)k, (size_t)g->pack_k),
               (size_t)batch);
}

static void ensure_scratch(gemm_cpu *g, size_t floats) {
    if (floats * sizeof(float) <= g->scratch_size) return;
    if (g->scratch) clReleaseMemObject(g->scratch);
    cl_int err;
    g->scratch = clCreateBuffer(g->ctx, CL_MEM_READ_WRITE, floats * sizeof(float), NULL, &err);
    CL_CHECK(err);
    g->scratch_size = floats * sizeof(float);
}

// One operand as clg_gemm_cpu reads it (see the comment above the kernel).
typedef struct {
    cl_mem buf;
    int off, rs, cs, bs, packed; // V uses cs as v_ks and ignores rs
} gemm_operand;

// The dispatcher in miniature (clg_gemm_cpu_prepare's mapping): maps op(A), op(B) onto the
// kernel's S (scalar) and V (vector) operands as the plan says, packing where it asks or the
// layout requires.
//   Unswapped: S = op(A), V = op(B). Swapped, C^T = op(B)^T op(A)^T: S = op(B)^T, V = op(A)^T,
//   C and bias strides swapped.
//   V is read in place only as rows along n at least NR wide (NN's B, TT's swapped A); any
//   other V is packed, whatever the plan says.
static void gemm_cpu_run(gemm_cpu *g, const gemm_problem *p, clg_gemm_cpu_plan plan) {
    const int mr = g->mr, nr = g->nr;
    if (p->m <= 0 || p->n <= 0 || p->batch <= 0) return;
    const int swap = plan.swap;
    const int m = swap ? p->n : p->m, n = swap ? p->m : p->n;
    // Scalar operand S(m, k) and vector operand V(k, n) of the (possibly swapped) problem, as
    // (row stride, column stride) views before packing.
    cl_mem s_buf = swap ? p->b : p->a, v_buf = swap ? p->a : p->b;
    const int s_off = swap ? p->b_off : p->a_off, s_bs = swap ? p->b_bs : p->a_bs;
    const int s_t = swap ? !p->tb : p->ta; // S stored k-major
    const int s_ld = swap ? p->ldb : p->lda;
    const int s_rs = s_t ? 1 : s_ld, s_cs = s_t ? s_ld : 1;
    const int v_off = swap ? p->a_off : p->b_off, v_bs = swap ? p->a_bs : p->b_bs;
    // V(k, n) = v[k * v_ks + n * v_ns]; only v_ns == 1 can be read in place.
    const int v_t = swap ? !p->ta : p->tb; // V stored n-major
    const int v_ld = swap ? p->lda : p->ldb;
    const int v_ks = v_t ? 1 : v_ld, v_ns = v_t ? v_ld : 1;
    if (v_ns != 1 || n < nr) plan.pack_v = true;
    if (p->k == 0) // nothing to read: C = act(beta C + bias); flag both operands as packed,
        plan.pack_s = plan.pack_v = false; // which needs neither a pack nor N >= NR

    gemm_operand so = {s_buf, s_off, s_rs, s_cs, s_bs, 0};
    gemm_operand vo = {v_buf, v_off, 0, v_ks, v_bs, 0};
    const size_t mp = round_up((size_t)m, (size_t)mr), np = round_up((size_t)n, (size_t)nr);
    const int s_batches = s_bs ? p->batch : 1, v_batches = v_bs ? p->batch : 1;
    const size_t s_size = plan.pack_s ? mp * (size_t)p->k * (size_t)s_batches : 0;
    const size_t v_size = plan.pack_v ? np * (size_t)p->k * (size_t)v_batches : 0;
    if (s_size + v_size) ensure_scratch(g, s_size + v_size);
    if (plan.pack_s) {
        // A batch stride of 0 stays 0: a broadcast operand is packed once.
        enqueue_pack(g, m, p->k, mr, s_buf, s_off, s_rs, s_cs, s_bs, s_batches, g->scratch, 0);
        so = (gemm_operand){g->scratch, 0, 0, 0, s_bs ? (int)mp * p->k : 0, 1};
    }
    if (plan.pack_v) {
        enqueue_pack(g, n, p->k, nr, v_buf, v_off, v_ns, v_ks, v_bs, v_batches, g->scratch,
                     (int)s_size);
        vo = (gemm_operand){g->scratch, (int)s_size, 0, 0, v_bs ? (int)np * p->k : 0, 1};
    }
    if (p->k == 0) so.packed = vo.packed = 1;
    const int c_rs = swap ? 1 : p->ldc, c_cs = swap ? p->ldc : 1;
    const int bias_rs = swap ? 1 : 0, bias_cs = swap ? 0 : 1;
    const int mb = plan.mb > 0 ? plan.mb : 1, nb = plan.nb > 0 ? plan.nb : 1;

    cl_kernel kn = g->gemm;
    int i = 0;
    ARG(kn, i++, m);
    ARG(kn, i++, n);
    ARG(kn, i++, p->k);
    ARG(kn, i++, p->alpha);
    ARG(kn, i++, p->beta);
    ARG(kn, i++, so.buf);
    ARG(kn, i++, so.off);
    ARG(kn, i++, so.rs);
    ARG(kn, i++, so.cs);
    ARG(kn, i++, so.bs);
    ARG(kn, i++, so.packed);
    ARG(kn, i++, vo.buf);
    ARG(kn, i++, vo.off);
    ARG(kn, i++, vo.cs);
    ARG(kn, i++, vo.bs);
    ARG(kn, i++, vo.packed);
    ARG(kn, i++, p->c);
    ARG(kn, i++, p->c_off);
    ARG(kn, i++, c_rs);
    ARG(kn, i++, c_cs);
    ARG(kn, i++, p->c_bs);
    CL_CHECK(clSetKernelArg(kn, (cl_uint)i++, sizeof(cl_mem), p->bias ? &p->bias : NULL));
    ARG(kn, i++, p->bias_off);
    ARG(kn, i++, bias_rs);
    ARG(kn, i++, bias_cs);
    ARG(kn, i++, p->act);
    ARG(kn, i++, mb);
    ARG(kn, i++, nb);
    enqueue_3d(g, kn, ceil_div(mp / (size_t)mr, (size_t)mb), ceil_div(np / (size_t)nr, (size_t)nb),
               (size_t)p->batch);
}

// The plan clgrad's CPU backend picks for the problem, on this device: the library's own
// chooser (src/gemm/gemm_cpu.c; tools/gemm-cpu-notes.md has the measurements behind it). It
// plans for the library's 6 x 16 tiles whatever --mr and --nr say.
static clg_gemm_cpu_plan gemm_cpu_choose(const gemm_cpu *g, const gemm_problem *p) {
    const clg_gemm_call call = {
        .trans_a = p->ta,
        .trans_b = p->tb,
        .m = (size_t)p->m,
        .n = (size_t)p->n,
        .k = (size_t)p->k,
        .lda = (size_t)p->lda,
        .a_stride = (size_t)p->a_bs,
        .ldb = (size_t)p->ldb,
        .b_stride = (size_t)p->b_bs,
        .batch = (size_t)p->batch,
    };
    return clg_gemm_cpu_choose(&call, (unsigned)g->units, g->loop_limit);
}

// Reading no operand in place where it can: S and V as stored, TT swapped (S = B, V = A).
static clg_gemm_cpu_plan direct_plan(const gemm_problem *p) {
    return (clg_gemm_cpu_plan){.swap = p->ta && p->tb, .mb = 1, .nb = 1};
}

static const clg_gemm_cpu_plan packed_plan = {.pack_s = true, .pack_v = true, .mb = 1, .nb = 1};

// ---------------------------------------------------------------------------------------------
// Host copies, the reference and the comparison

typedef struct {
    gemm_problem p;
    float *a, *b, *c, *bias; // host copies; c holds C before the call
    size_t a_len, b_len, c_len, bias_len;
} host_case;

static size_t extent(int off, int rows, int cols, int ld, int bs, int batch) {
    return (size_t)off + (size_t)(batch - 1) * (size_t)bs + (size_t)(rows - 1) * (size_t)ld +
           (size_t)cols;
}

static float act_ref(double x, int act) {
    switch (act) {
    case ACT_RELU:
        return (float)(x > 0 ? x : 0);
    case ACT_TANH:
        return (float)tanh(x);
    case ACT_SIGMOID:
        return (float)(1.0 / (1.0 + exp(-x)));
    case ACT_GELU_TANH:
        return (float)(0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
    default:
        return (float)x;
    }
}

// Plain C reference in double; also returns per element the scale sum |alpha a b| + |beta c| used
// to judge the error.
static void gemm_ref(const host_case *h, float *out, double *scale) {
    const gemm_problem *p = &h->p;
    memcpy(out, h->c, h->c_len * sizeof(float));
    for (int bt = 0; bt < p->batch; ++bt)
        for (int i = 0; i < p->m; ++i)
            for (int j = 0; j < p->n; ++j) {
                double s = 0, sa = 0;
                for (int kk = 0; kk < p->k; ++kk) {
                    const size_t ai = (size_t)p->a_off + (size_t)bt * p->a_bs +
                                      (p->ta ? (size_t)kk * p->lda + i : (size_t)i * p->lda + kk);
                    const size_t bi = (size_t)p->b_off + (size_t)bt * p->b_bs +
                                      (p->tb ? (size_t)j * p->ldb + kk : (size_t)kk * p->ldb + j);
                    s += (double)h->a[ai] * h->b[bi];
                    sa += fabs((double)h->a[ai] * h->b[bi]);
                }
                const size_t ci = (size_t)p->c_off + (size_t)bt * p->c_bs + (size_t)i * p->ldc + j;
                double v = p->alpha * s, sc = fabs(p->alpha) * sa + 1.0;
                if (p->beta != 0.0f) {
                    v += (double)p->beta * h->c[ci];
                    sc += fabs((double)p->beta * h->c[ci]);
                }
                if (h->bias) v += h->bias[p->bias_off + j];
                out[ci] = act_ref(v, p->act);
                scale[ci] = sc;
            }
}

static cl_mem upload(cl_context ctx, const float *x, size_t n) {
    cl_int err;
    cl_mem m = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof(float),
                              (void *)x, &err);
    CL_CHECK(err);
    return m;
}

// Builds a problem with random operands; pad adds unused space around every view so that
// offsets and leading dimensions are exercised; C outside the view holds a sentinel.
static host_case make_case(cl_context ctx, int ta, int tb, int m, int n, int k, int batch,
                           int a_bcast, int b_bcast, int pad, float alpha, float beta, int bias,
                           int act) {
    host_case h = {0};
    gemm_problem *p = &h.p;
    p->ta = ta, p->tb = tb, p->m = m, p->n = n, p->k = k, p->batch = batch;
    p->alpha = alpha, p->beta = beta, p->act = act;
    const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    p->a_off = pad ? 3 : 0, p->lda = ac + (pad ? 5 : 0);
    p->b_off = pad ? 7 : 0, p->ldb = bc + (pad ? 2 : 0);
    p->c_off = pad ? 11 : 0, p->ldc = n + (pad ? 3 : 0);
    p->a_bs = a_bcast ? 0 : ar * p->lda + (pad ? 4 : 0);
    p->b_bs = b_bcast ? 0 : br * p->ldb + (pad ? 1 : 0);
    p->c_bs = m * p->ldc + (pad ? 6 : 0);
    p->bias_off = pad ? 5 : 0;
    h.a_len = extent(p->a_off, ar, ac, p->lda, p->a_bs, batch) + (pad ? 9 : 0);
    h.b_len = extent(p->b_off, br, bc, p->ldb, p->b_bs, batch) + (pad ? 9 : 0);
    h.c_len = extent(p->c_off, m, n, p->ldc, p->c_bs, batch) + (pad ? 9 : 0);
    h.a_len += !h.a_len, h.b_len += !h.b_len; // K = 0: keep the buffers non-empty
    h.a = malloc(h.a_len * sizeof(float));
    h.b = malloc(h.b_len * sizeof(float));
    h.c = malloc(h.c_len * sizeof(float));
    for (size_t i = 0; i < h.a_len; ++i)
        h.a[i] = rnd();
    for (size_t i = 0; i < h.b_len; ++i)
        h.b[i] = rnd();
    for (size_t i = 0; i < h.c_len; ++i)
        h.c[i] = beta == 0.0f ? NAN : rnd(); // beta == 0 must not read C
    p->a = upload(ctx, h.a, h.a_len);
    p->b = upload(ctx, h.b, h.b_len);
    p->c = upload(ctx, h.c, h.c_len);
    if (bias) {
        h.bias_len = (size_t)p->bias_off + (size_t)n + 2;
        h.bias = malloc(h.bias_len * sizeof(float));
        for (size_t i = 0; i < h.bias_len; ++i)
            h.bias[i] = rnd();
        p->bias = upload(ctx, h.bias, h.bias_len);
    }
    return h;
}

static void free_case(host_case *h) {
    clReleaseMemObject(h->p.a);
    clReleaseMemObject(h->p.b);
    clReleaseMemObject(h->p.c);
    if (h->p.bias) clReleaseMemObject(h->p.bias);
    free(h->a);
    free(h->b);
    free(h->c);
    free(h->bias);
}

// "pack A+B, 8x4 tiles", in terms of A and B (swapped, S is op(B)^T and V is op(A)^T).
static const char *plan_name(clg_gemm_cpu_plan pl) {
    static char buf[64];
    const bool pack_a = pl.swap ? pl.pack_v : pl.pack_s, pack_b = pl.swap ? pl.pack_s : pl.pack_v;
    snprintf(buf, sizeof buf, "pack %s, %dx%d tiles%s",
             pack_a && pack_b ? "A+B"
             : pack_a         ? "A"
             : pack_b         ? "B"
                              : "-",
             pl.mb, pl.nb, pl.swap ? ", C^T" : "");
    return buf;
}

// Runs one plan on the case and compares all of C, including the untouched space around views
// (NaN sentinels must stay NaN, other sentinels bit-identical). Returns the number of failures.
static int check_case(gemm_cpu *g, host_case *h, clg_gemm_cpu_plan plan, const char *what) {
    const gemm_problem *p = &h->p;
    CL_CHECK(clEnqueueWriteBuffer(g->q, p->c, CL_TRUE, 0, h->c_len * sizeof(float), h->c, 0, NULL,
                                  NULL));
    gemm_cpu_run(g, p, plan);
    float *got = malloc(h->c_len * sizeof(float)), *want = malloc(h->c_len * sizeof(float));
    double *scale = calloc(h->c_len, sizeof(double));
    CL_CHECK(
        clEnqueueReadBuffer(g->q, p->c, CL_TRUE, 0, h->c_len * sizeof(float), got, 0, NULL, NULL));
    gemm_ref(h, want, scale);
    int bad = 0;
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < h->c_len; ++i) {
        if (scale[i] == 0) { // outside every view: must be unchanged
            if (memcmp(&got[i], &h->c[i], sizeof(float)) != 0) {
                if (!bad) fprintf(stderr, "  %s: wrote outside C at element %zu\n", what, i);
                bad++;
            }
            continue;
        }
        const double e = fabs((double)got[i] - want[i]) / scale[i];
        if (!(e <= 2e-6 * sqrt((double)p->k + 1))) {
            bad++;
            if (!(e <= worst)) {
                worst = e;
                worst_i = i;
            }
        }
    }
    if (bad)
        fprintf(stderr, "  FAIL %s (%s): %d bad elements, e.g. [%zu] got %g want %g\n", what,
                plan_name(plan), bad, worst_i, got[worst_i], want[worst_i]);
    free(got);
    free(want);
    free(scale);
    return bad ? 1 : 0;
}

static int run_checks(gemm_cpu *g, int verbose) {
    static const int sizes[][3] = {{1, 1, 1},    {1, 17, 5},   {9, 1, 3},     {7, 5, 3},
                                   {13, 17, 19}, {6, 16, 1},   {33, 47, 29},  {64, 64, 64},
                                   {50, 9, 32},  {9, 32, 100}, {97, 129, 67}, {40, 35, 700},
                                   {5, 20, 0},   {3, 7, 0}};
    // Every packing choice (pack S, pack V, mb, nb), with and without K blocking (KC defaults
    // to 256), each computing C and C^T: every route clg_gemm_cpu_choose can take.
    static const int plans[][4] = {{0, 0, 1, 1}, {1, 1, 1, 1}, {1, 0, 1, 1},
                                   {0, 1, 2, 2}, {0, 0, 3, 2}, {1, 1, 2, 3}};
    int fails = 0, count = 0;
    char what[160];
    for (size_t pi = 0; pi < 2 * sizeof plans / sizeof plans[0]; ++pi) {
        const int *pv = plans[pi / 2];
        const clg_gemm_cpu_plan plan = {
            .swap = pi % 2, .pack_s = pv[0], .pack_v = pv[1], .mb = pv[2], .nb = pv[3]};
        const char *pn = plan.swap ? "C^T " : "";
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
            for (int t = 0; t < 4; ++t) {
                const int m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                const int ta = t >> 1, tb = t & 1, pad = (int)(s % 2);
                const float beta = s % 3 == 0 ? 0.0f : 0.5f;
                host_case h =
                    make_case(g->ctx, ta, tb, m, n, k, 1, 0, 0, pad, 1.5f, beta, 0, ACT_NONE);
                snprintf(what, sizeof what, "%s%c%c %dx%dx%d pad %d beta %g", pn, "NT"[ta],
                         "NT"[tb], m, n, k, pad, beta);
                fails += check_case(g, &h, plan, what);
                count++;
                free_case(&h);
            }
        // Strided batches, each operand broadcast in turn, with offsets.
        for (int t = 0; t < 4; ++t)
            for (int bc = 0; bc < 3; ++bc) {
                const int ta = t >> 1, tb = t & 1;
                host_case h = make_case(g->ctx, ta, tb, 23, 37, 41, 3, bc == 1, bc == 2, 1, 1.0f,
                                        0.25f, 0, ACT_NONE);
                snprintf(what, sizeof what, "%s%c%c batch 3 broadcast %c", pn, "NT"[ta], "NT"[tb],
                         "-AB"[bc]);
                fails += check_case(g, &h, plan, what);
                count++;
                free_case(&h);
            }
        // Epilogues: bias by column and every activation, on interior and edge tiles.
        for (int act = 0; act < ACT_COUNT; ++act)
            for (int t = 0; t < 4; ++t) {
                const int ta = t >> 1, tb = t & 1;
                host_case h = make_case(g->ctx, ta, tb, 31, 45, 300, 2, 0, 1, 1, 0.5f,
                                        act % 2 ? 0.0f : 1.0f, 1, act);
                snprintf(what, sizeof what, "%s%c%c bias + %s", pn, "NT"[ta], "NT"[tb],
                         act_names[act]);
                fails += check_case(g, &h, plan, what);
                count++;
                free_case(&h);
            }
    }
    if (verbose || fails) printf("checks: %d of %d cases failed\n", fails, count);
    return fails;
}

// ---------------------------------------------------------------------------------------------
// CLBlast (default parameters) and OpenBLAS

static void clblast_run(gemm_cpu *g, const gemm_problem *p) {
    const CLBlastTranspose ta = p->ta ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = p->tb ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode st;
    if (p->batch == 1)
        st = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)p->m, (size_t)p->n, (size_t)p->k,
                          p->alpha, p->a, (size_t)p->a_off, (size_t)p->lda, p->b, (size_t)p->b_off,
                          (size_t)p->ldb, p->beta, p->c, (size_t)p->c_off, (size_t)p->ldc, &g->q,
                          NULL);
    else
        st = CLBlastSgemmStridedBatched(
            CLBlastLayoutRowMajor, ta, tb, (size_t)p->m, (size_t)p->n, (size_t)p->k, p->alpha, p->a,
            (size_t)p->a_off, (size_t)p->lda, (size_t)p->a_bs, p->b, (size_t)p->b_off,
            (size_t)p->ldb, (size_t)p->b_bs, p->beta, p->c, (size_t)p->c_off, (size_t)p->ldc,
            (size_t)p->c_bs, (size_t)p->batch, &g->q, NULL);
    if (st != CLBlastSuccess) die("CLBlast SGEMM failed: status %d", (int)st);
}

// OpenBLAS through dlopen, so this tool builds and runs without it.
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                               const float *, int, float, float *, int);
static cblas_sgemm_fn ob_sgemm;
static void (*ob_set_threads)(int);

static int openblas_load(void) {
    // This machine's OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE make OpenBLAS pick slower kernels;
    // OpenBLAS reads them when it is loaded, so drop them first. Threads are set per call.
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("OPENBLAS_L2_SIZE");
    const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        *(void **)&ob_sgemm = dlsym(h, "cblas_sgemm");
        *(void **)&ob_set_threads = dlsym(h, "openblas_set_num_threads");
        if (ob_sgemm && ob_set_threads) return 1;
        dlclose(h);
    }
    return 0;
}

typedef struct {
    float *a, *b, *c;
} host_bufs;

static void openblas_run(const gemm_problem *p, const host_bufs *hb) {
    for (int bt = 0; bt < p->batch; ++bt)
        ob_sgemm(CBLAS_ROW_MAJOR, p->ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
                 p->tb ? CBLAS_TRANS : CBLAS_NO_TRANS, p->m, p->n, p->k, p->alpha,
                 hb->a + p->a_off + (size_t)bt * p->a_bs, p->lda,
                 hb->b + p->b_off + (size_t)bt * p->b_bs, p->ldb, p->beta,
                 hb->c + p->c_off + (size_t)bt * p->c_bs, p->ldc);
}

// ---------------------------------------------------------------------------------------------
// Timing

enum { IMPL_DIRECT, IMPL_PACKED, IMPL_AUTO, IMPL_CLBLAST, IMPL_OB1, IMPL_OB2, IMPL_COUNT };
static const char *impl_names[IMPL_COUNT] = {"direct",  "packed",    "chosen",
                                             "CLBlast", "OpenBLAS1", "OpenBLAS2"};
static clg_gemm_cpu_plan forced_plan; // --plan: replaces the chosen plan when mb > 0

typedef struct {
    const char *name;
    int ta, tb, m, n, k, batch, a_bcast, b_bcast;
} bench_shape;

enum { MAX_RUNS = 64 };

static void run_impl(gemm_cpu *g, int impl, const gemm_problem *p, const host_bufs *hb) {
    switch (impl) {
    case IMPL_DIRECT:
        gemm_cpu_run(g, p, direct_plan(p));
        break;
    case IMPL_PACKED:
        gemm_cpu_run(g, p, packed_plan);
        break;
    case IMPL_AUTO:
        gemm_cpu_run(g, p, forced_plan.mb > 0 ? forced_plan : gemm_cpu_choose(g, p));
        break;
    case IMPL_CLBLAST:
        clblast_run(g, p);
        break;
    default:
        openblas_run(p, hb);
    }
}

static void finish_impl(gemm_cpu *g, int impl) {
    if (impl <= IMPL_CLBLAST) CL_CHECK(clFinish(g->q));
}

static void set_threads(int impl) {
    if (impl == IMPL_OB1 || impl == IMPL_OB2) ob_set_threads(impl == IMPL_OB1 ? 1 : 2);
}

// Warms an implementation up (pocl compiles a kernel at its first launch, CLBlast builds its
// programs) and returns how many back-to-back calls make one timing of at least min_s.
static int prepare_impl(gemm_cpu *g, int impl, const gemm_problem *p, const host_bufs *hb,
                        double min_s) {
    set_threads(impl);
    run_impl(g, impl, p, hb);
    finish_impl(g, impl);
    const double t0 = now_s();
    run_impl(g, impl, p, hb);
    finish_impl(g, impl);
    const double once = now_s() - t0;
    const int reps = once > 0 ? (int)(min_s / once) + 1 : 1;
    return reps < 1000 ? reps : 1000;
}

// One timing in GFLOP/s: reps calls back to back, one sync at the end (as a training step
// runs). OpenBLAS's idle threads spin for a while after a call; let them go to sleep before
// anything else is timed.
static double time_impl(gemm_cpu *g, int impl, const gemm_problem *p, const host_bufs *hb,
                        int reps) {
    set_threads(impl);
    const double t0 = now_s();
    for (int i = 0; i < reps; ++i)
        run_impl(g, impl, p, hb);
    finish_impl(g, impl);
    const double t = now_s() - t0;
    if (impl == IMPL_OB2) nanosleep(&(struct timespec){0, 200000000}, NULL);
    return 2.0 * p->m * p->n * p->k * p->batch * reps / t * 1e-9;
}

// ---------------------------------------------------------------------------------------------
// Setup and main

// Device `want` in the order platforms and their devices are listed, or with want < 0 the
// first CPU device (pocl's on this project's machines); *plat and *dev get its indices.
static cl_device_id pick_device(int want, char *name, size_t name_len, int *plat, int *dev) {
    cl_platform_id plats[16];
    cl_uint np = 0;
    CL_CHECK(clGetPlatformIDs(16, plats, &np));
    int index = 0;
    for (cl_uint i = 0; i < np; ++i) {
        cl_device_id devs[16];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 16, devs, &nd) != CL_SUCCESS) continue;
        for (cl_uint j = 0; j < nd; ++j, ++index) {
            cl_device_type type;
            CL_CHECK(clGetDeviceInfo(devs[j], CL_DEVICE_TYPE, sizeof type, &type, NULL));
            if (index == want || (want < 0 && (type & CL_DEVICE_TYPE_CPU))) {
                CL_CHECK(clGetDeviceInfo(devs[j], CL_DEVICE_NAME, name_len, name, NULL));
                *plat = (int)i, *dev = (int)j;
                return devs[j];
            }
        }
    }
    die(want < 0 ? "no OpenCL CPU device" : "no OpenCL device %d", want);
}

// What the chooser reads of the device, as clgrad describes it (clg_device_list): its compute
// units and loop limit.
static void describe_device(int plat, int dev, gemm_cpu *g) {
    clg_device_info *list = NULL;
    size_t n = 0;
    if (clg_device_list(&list, &n) != CLG_OK) die("clg_device_list: %s", clg_last_error());
    for (size_t i = 0; i < n; ++i)
        if (list[i].platform_index == plat && list[i].device_index == dev) {
            g->units = (int)list[i].compute_units;
            g->loop_limit = list[i].loop_limit;
            clg_device_list_free(list);
            return;
        }
    clg_device_list_free(list);
    die("device %d:%d is not in clgrad's device list", plat, dev);
}

static const char *default_kernel_path(const char *argv0) {
    static char buf[4096];
    if (access("cl/gemm_cpu.cl", R_OK) == 0) return "cl/gemm_cpu.cl";
    // Next to the source tree when run as <repo>/<builddir>/tools/bench-gemm-cpu.
    const char *slash = strrchr(argv0, '/');
    if (slash) {
        snprintf(buf, sizeof buf, "%.*s/../../cl/gemm_cpu.cl", (int)(slash - argv0), argv0);
        if (access(buf, R_OK) == 0) return buf;
    }
    return "cl/gemm_cpu.cl";
}

static void usage(void) {
    puts("usage: bench-gemm-cpu [options]\n"
         "  --kernel PATH     cl/gemm_cpu.cl (default: found from the current directory)\n"
         "  --device I        OpenCL device index (default: the first CPU device)\n"
         "  --mr N --nr N     tile rows (6) and vector width (16) of the kernels\n"
         "  --plan S,V,MB,NB[,SWAP]\n"
         "                    use this plan for the 'chosen' column, not clgrad's: pack S?,\n"
         "                    pack V?, tiles, compute C^T? (S = op(A), V = op(B); with SWAP 1,\n"
         "                    S = op(B)^T, V = op(A)^T)\n"
         "  --local X,Y|null  local size of clg_gemm_cpu (default 1,1)\n"
         "  --runs N          timings per median (default 7, at least 5)\n"
         "  --min-time S      seconds of back-to-back calls per timing (default 0.05)\n"
         "  --shapes SUBSTR   only the shapes whose name contains SUBSTR\n"
         "  --check-only | --no-check | --no-clblast | --no-openblas\n"
         "Checks cl/gemm_cpu.cl against a C reference, then prints median GFLOP/s per shape for\n"
         "its direct, packed and chosen plans (clgrad's clg_gemm_cpu_choose, for 6 x 16 tiles),\n"
         "CLBlast, and OpenBLAS with 1 and 2 threads.");
}

int main(int argc, char **argv) {
    const char *kernel_path = NULL, *filter = NULL;
    int device = -1, mr = 6, nr = 16, runs = 7, check = 1, bench = 1, use_clblast = 1,
        use_openblas = 1;
    double min_time = 0.05;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--kernel") && v)
            kernel_path = argv[++i];
        else if (!strcmp(a, "--device") && v)
            device = atoi(argv[++i]);
        else if (!strcmp(a, "--mr") && v)
            mr = atoi(argv[++i]);
        else if (!strcmp(a, "--nr") && v)
            nr = atoi(argv[++i]);
        else if (!strcmp(a, "--plan") && v) {
            int pack_s, pack_v, swap = 0;
            if (sscanf(argv[++i], "%d,%d,%d,%d,%d", &pack_s, &pack_v, &forced_plan.mb,
                       &forced_plan.nb, &swap) < 4)
                die("--plan wants PACK_S,PACK_V,MB,NB[,SWAP], e.g. 0,1,4,1");
            forced_plan.pack_s = pack_s, forced_plan.pack_v = pack_v, forced_plan.swap = swap;
        } else if (!strcmp(a, "--local") && v) {
            if (sscanf(argv[++i], "%zu,%zu", &local_x, &local_y) != 2)
                local_x = 0; // anything else, e.g. "null": NULL local size
        } else if (!strcmp(a, "--runs") && v)
            runs = atoi(argv[++i]);
        else if (!strcmp(a, "--min-time") && v)
            min_time = atof(argv[++i]);
        else if (!strcmp(a, "--shapes") && v)
            filter = argv[++i];
        else if (!strcmp(a, "--check-only"))
            bench = 0;
        else if (!strcmp(a, "--no-check"))
            check = 0;
        else if (!strcmp(a, "--no-clblast"))
            use_clblast = 0;
        else if (!strcmp(a, "--no-openblas"))
            use_openblas = 0;
        else {
            usage();
            return strcmp(a, "--help") ? 2 : 0;
        }
    }
    if (runs < 5) runs = 5; // medians of at least five
    if (runs > MAX_RUNS) runs = MAX_RUNS;
    if (!kernel_path) kernel_path = default_kernel_path(argv[0]);
    char *src = read_file(kernel_path);
    if (!src) die("cannot open %s (run from the repository root or pass --kernel)", kernel_path);

    char dev_name[256] = "";
    int plat_index = 0, dev_index = 0;
    cl_device_id dev = pick_device(device, dev_name, sizeof dev_name, &plat_index, &dev_index);
    cl_int err;
    gemm_cpu g = {0};
    g.mr = mr, g.nr = nr, g.pack_k = 64;
    describe_device(plat_index, dev_index, &g);
    g.ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CL_CHECK(err);
    g.q = clCreateCommandQueue(g.ctx, dev, 0, &err);
    CL_CHECK(err);

    char opts[256];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DMR=%d -DNR=%d -DPACK_K=%d", g.mr, g.nr, g.pack_k);
    cl_program prog = clCreateProgramWithSource(g.ctx, 1, (const char **)&src, NULL, &err);
    CL_CHECK(err);
    double t0 = now_s();
    err = clBuildProgram(prog, 1, &dev, opts, NULL, NULL);
    const double build_s = now_s() - t0;
    if (err != CL_SUCCESS) {
        static char log[1 << 16];
        clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        die("build of %s failed (%d):\n%s", kernel_path, err, log);
    }
    g.pack = clCreateKernel(prog, "clg_gemm_cpu_pack", &err);
    CL_CHECK(err);
    g.gemm = clCreateKernel(prog, "clg_gemm_cpu", &err);
    CL_CHECK(err);
    printf("device: %s\nkernels: %s %s (program build %.2f s)\n", dev_name, kernel_path, opts,
           build_s);

    // First launch compiles each kernel for the device (pocl caches it afterwards).
    {
        host_case h = make_case(g.ctx, 0, 0, 8, 8, 8, 1, 0, 0, 0, 1.0f, 0.0f, 0, ACT_NONE);
        t0 = now_s();
        gemm_cpu_run(&g, &h.p, direct_plan(&h.p));
        CL_CHECK(clFinish(g.q));
        const double gemm_s = now_s() - t0;
        t0 = now_s();
        gemm_cpu_run(&g, &h.p, packed_plan);
        CL_CHECK(clFinish(g.q));
        printf("first launch: clg_gemm_cpu %.0f ms, then clg_gemm_cpu_pack %.0f ms\n", 1e3 * gemm_s,
               1e3 * (now_s() - t0));
        free_case(&h);
    }

    int fails = 0;
    if (check) fails = run_checks(&g, 1);
    if (!bench) return fails ? 1 : 0;

    const int have_ob = use_openblas && openblas_load();
    if (use_openblas && !have_ob)
        printf("OpenBLAS: not found (libopenblas.so.0), columns left empty\n");
    static const bench_shape shapes[] = {
        {"square 128", 0, 0, 128, 128, 128, 1, 0, 0},
        {"square 256", 0, 0, 256, 256, 256, 1, 0, 0},
        {"square 512", 0, 0, 512, 512, 512, 1, 0, 0},
        {"square 1024", 0, 0, 1024, 1024, 1024, 1, 0, 0},
        // MLP 784-128, batch 128: Y = X W, dW = X^T dY, dX = dY W^T (W is 784 x 128).
        {"mlp fwd X.W", 0, 0, 128, 128, 784, 1, 0, 0},
        {"mlp dW=X^T.dY", 1, 0, 784, 128, 128, 1, 0, 0},
        {"mlp dX=dY.W^T", 0, 1, 128, 784, 128, 1, 0, 0},
        // conv1 3x3x1 -> 32 on 28x28, batch 64, im2col with the batch folded into M.
        {"conv1 fwd", 0, 0, 64 * 784, 32, 9, 1, 0, 0},
        {"conv1 dW", 1, 0, 9, 32, 64 * 784, 1, 0, 0},
        {"conv1 dcols", 0, 1, 64 * 784, 9, 32, 1, 0, 0},
        {"conv1 fwd batched", 0, 0, 784, 32, 9, 64, 0, 1},
        // conv2 3x3x32 -> 64 on 14x14, batch 64.
        {"conv2 fwd", 0, 0, 64 * 196, 64, 288, 1, 0, 0},
        {"conv2 dW", 1, 0, 288, 64, 64 * 196, 1, 0, 0},
        {"conv2 dcols", 0, 1, 64 * 196, 288, 64, 1, 0, 0},
        {"conv2 fwd batched", 0, 0, 196, 64, 288, 64, 0, 1},
        {"conv2 dcols batched", 0, 1, 196, 288, 64, 64, 0, 1},
        // Attention-like: batch 32 of 64 x 64 x 64, scores Q K^T and output P V.
        {"attn Q.K^T", 0, 1, 64, 64, 64, 32, 0, 0},
        {"attn P.V", 0, 0, 64, 64, 64, 32, 0, 0},
    };
    int enabled[IMPL_COUNT] = {1, 1, 1, use_clblast, have_ob, have_ob};
    double load[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = 0;
        fclose(la);
    }
    printf("\nGFLOP/s, median of %d runs (each >= %.0f ms of back-to-back calls); load average "
           "before: %.2f %.2f %.2f\n",
           runs, 1e3 * min_time, load[0], load[1], load[2]);
    printf("%-20s %-22s", "shape", "MxNxK [xbatch] op");
    for (int i = 0; i < IMPL_COUNT; ++i)
        printf(" %9s", impl_names[i]);
    printf("  chosen plan\n");
    double at512[IMPL_COUNT] = {0};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
        const bench_shape *sh = &shapes[s];
        if (filter && !strstr(sh->name, filter)) continue;
        host_case h = make_case(g.ctx, sh->ta, sh->tb, sh->m, sh->n, sh->k, sh->batch, sh->a_bcast,
                                sh->b_bcast, 0, 1.0f, 0.0f, 0, ACT_NONE);
        host_bufs hb = {h.a, h.b, malloc(h.c_len * sizeof(float))};
        char dims[64];
        snprintf(dims, sizeof dims, "%dx%dx%d%s%.0d %c%c", sh->m, sh->n, sh->k,
                 sh->batch > 1 ? " x" : "", sh->batch > 1 ? sh->batch : 0, "NT"[sh->ta],
                 "NT"[sh->tb]);
        printf("%-20s %-22s", sh->name, dims);
        fflush(stdout);
        // Timings interleave the implementations, so that a neighbour's load on this shared
        // machine falls on all of them alike.
        int reps[IMPL_COUNT];
        double gf[IMPL_COUNT][MAX_RUNS];
        for (int i = 0; i < IMPL_COUNT; ++i)
            if (enabled[i]) reps[i] = prepare_impl(&g, i, &h.p, &hb, min_time);
        for (int r = 0; r < runs; ++r)
            for (int i = 0; i < IMPL_COUNT; ++i)
                if (enabled[i]) gf[i][r] = time_impl(&g, i, &h.p, &hb, reps[i]);
        for (int i = 0; i < IMPL_COUNT; ++i) {
            if (!enabled[i]) {
                printf(" %9s", "-");
                continue;
            }
            const double med = median(gf[i], runs);
            if (!strcmp(sh->name, "square 512")) at512[i] = med;
            printf(" %9.1f", med);
        }
        printf("  %s\n", plan_name(forced_plan.mb > 0 ? forced_plan : gemm_cpu_choose(&g, &h.p)));
        fflush(stdout);
        free(hb.c);
        free_case(&h);
    }
    la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) == 3)
            printf("load average after: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
        fclose(la);
    }
    if (at512[IMPL_OB2] > 0) {
        printf("\n512^3: chosen plan / OpenBLAS 2 threads = %.2f, / 1 thread = %.2f\n",
               at512[IMPL_AUTO] / at512[IMPL_OB2], at512[IMPL_AUTO] / at512[IMPL_OB1]);
    }
    return fails ? 1 : 0;
}
