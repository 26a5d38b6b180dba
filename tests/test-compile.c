/* Compiler and runtime: fused and unfused plans agree with each other and with plain C; guard
 * bytes stay intact and their check fires on corruption; the memory planner never shares bytes
 * between live tensors (ranges recomputed from the graph) yet reuses memory; user errors are
 * clear and sticky; training runs queue without waiting, reading being the one sync. */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compile/compile_internal.h"
#include "core/context.h"
#include "graph/graph_internal.h"
#include "harness.h"
#include "runtime/plan.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), S(__VA_ARGS__)

/* ---- host waits, counted by interposing the OpenCL calls that block ---- */

static int host_waits;
static bool counting_waits;

/* The next definition of name (libOpenCL's), looked up once into fp. */
#define REAL(name, fp)                                                                             \
    do {                                                                                           \
        if (!(fp)) {                                                                               \
            void *sym_ = dlsym(RTLD_NEXT, #name);                                                  \
            memcpy(&(fp), &sym_, sizeof(fp));                                                      \
        }                                                                                          \
    } while (0)

CL_API_ENTRY cl_int CL_API_CALL clFinish(cl_command_queue q) {
    static cl_int(CL_API_CALL * real)(cl_command_queue);
    REAL(clFinish, real);
    if (counting_waits) host_waits++;
    return real(q);
}

CL_API_ENTRY cl_int CL_API_CALL clWaitForEvents(cl_uint n, const cl_event *events) {
    static cl_int(CL_API_CALL * real)(cl_uint, const cl_event *);
    REAL(clWaitForEvents, real);
    if (counting_waits) host_waits++;
    return real(n, events);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueReadBuffer(cl_command_queue q, cl_mem m, cl_bool blocking,
                                                    size_t off, size_t size, void *ptr, cl_uint nw,
                                                    const cl_event *w, cl_event *ev) {
    static cl_int(CL_API_CALL * real)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *,
                                      cl_uint, const cl_event *, cl_event *);
    REAL(clEnqueueReadBuffer, real);
    if (counting_waits && blocking) host_waits++;
    return real(q, m, blocking, off, size, ptr, nw, w, ev);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue q, cl_mem m, cl_bool blocking,
                                                     size_t off, size_t size, const void *ptr,
                                                     cl_uint nw, const cl_event *w, cl_event *ev) {
    static cl_int(CL_API_CALL * real)(cl_command_queue, cl_mem, cl_bool, size_t, size_t,
                                      const void *, cl_uint, const cl_event *, cl_event *);
    REAL(clEnqueueWriteBuffer, real);
    if (counting_waits && blocking) host_waits++;
    return real(q, m, blocking, off, size, ptr, nw, w, ev);
}

/* ---- helpers ---- */

static void fill(float *v, size_t n, uint64_t seed, float lo, float hi) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, n, lo, hi);
}

static clg_plan *compile(clg_graph *g, bool no_fusion, size_t guard_bytes) {
    clg_compile_options o = {.no_fusion = no_fusion, .guard_bytes = guard_bytes};
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &o, &p));
    return p;
}

static float *read_all(clg_plan *p, clg_tensor *t) {
    size_t n = (size_t)clg_tensor_numel(t);
    float *v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_assert_ok(clg_plan_read(p, t, v, n * sizeof *v));
    return v;
}

static bool contains(const char *haystack, const char *needle) {
    return strstr(haystack, needle) != NULL;
}

/* ---- the memory-plan invariant, recomputed from the graph ---- */

typedef struct live_stats {
    size_t n_tensors;
    size_t sum_bytes;    /* every arena tensor's own bytes */
    size_t reused_pairs; /* pairs sharing bytes (necessarily at different times) */
} live_stats;

static bool in_arena(const clg_plan *p, const clg_tensor *t) {
    const clg_storage *s = &p->storage[t->id];
    if (t->base != t || !s->mem) return false;
    for (size_t a = 0; a < p->n_arenas; ++a)
        if (p->arenas[a] == s->mem) return true;
    return false;
}

/* Live range of every arena tensor: from the schedule step that computes it (tensors are
 * computed in creation order, one step each) to the last step that reads it, where a node
 * computed inside another's kernel (fused) or a view reads at its consumers' step, and
 * outputs (and, with an optimizer, parameter gradients) live to the end. Asserts that no two
 * tensors whose ranges intersect share a byte of the same arena. */
static live_stats check_live_ranges(const clg_plan *p, const clg_graph *g, bool optimizer) {
    size_t n = p->n_nodes;
    int *step = malloc(n * sizeof *step), *when = malloc(n * sizeof *when);
    int *end = malloc(n * sizeof *end);
    bool *reach = calloc(n, sizeof *reach);
    ck_assert(step && when && end && reach);
    const int END = 1 << 29;
    for (size_t i = n; i-- > 0;) {
        const clg_tensor *t = g->nodes[i];
        bool root = t->is_output || t->is_effect ||
                    (optimizer && t->param && t->param->trainable && t->grad);
        if (root) {
            reach[i] = true;
            if (t->grad && optimizer && t->param) reach[t->grad->id] = true;
        }
    }
    for (size_t i = n; i-- > 0;) {
        if (!reach[i]) continue;
        const clg_tensor *t = g->nodes[i];
        for (int k = 0; k < t->n_in; ++k)
            reach[t->in[k]->id] = true;
        reach[t->base->id] = true;
    }
    int steps = 0;
    for (size_t i = 0; i < n; ++i)
        step[i] = reach[i] && in_arena(p, g->nodes[i]) ? steps++ : -1;
    /* when[i]: the step at which node i's own reads happen */
    for (size_t i = n; i-- > 0;) {
        when[i] = step[i];
        end[i] = step[i];
        if (!reach[i] || step[i] >= 0) continue;
        const clg_tensor *t = g->nodes[i];
        if (t->is_output) when[i] = END;
        for (size_t j = i + 1; j < n; ++j) {
            if (!reach[j]) continue;
            const clg_tensor *u = g->nodes[j];
            for (int k = 0; k < u->n_in; ++k)
                if (u->in[k] == t && when[j] > when[i]) when[i] = when[j];
        }
    }
    for (size_t j = 0; j < n; ++j) {
        if (!reach[j]) continue;
        const clg_tensor *u = g->nodes[j];
        for (int k = 0; k < u->n_in; ++k) {
            int b = u->in[k]->base->id;
            if (when[j] > end[b]) end[b] = when[j];
        }
        if (u->is_output) end[u->base->id] = END;
        if (optimizer && u->param && u->param->trainable && u->grad) end[u->grad->base->id] = END;
    }
    live_stats st = {0};
    for (size_t i = 0; i < n; ++i) {
        if (step[i] < 0) continue;
        const clg_tensor *a = g->nodes[i];
        size_t ab = (size_t)clg_tensor_numel(a) * clg_dtype_size(a->dtype);
        st.n_tensors++;
        st.sum_bytes += ab;
        const clg_storage *sa = &p->storage[i];
        for (size_t j = i + 1; j < n; ++j) {
            if (step[j] < 0) continue;
            const clg_tensor *b = g->nodes[j];
            const clg_storage *sb = &p->storage[j];
            if (sa->mem != sb->mem) continue;
            size_t bb = (size_t)clg_tensor_numel(b) * clg_dtype_size(b->dtype);
            size_t a0 = (size_t)sa->offset * 4, b0 = (size_t)sb->offset * 4;
            bool share = a0 < b0 + bb && b0 < a0 + ab;
            if (!share) continue;
            bool live_together = step[i] <= end[j] && step[j] <= end[i];
            ck_assert_msg(!live_together,
                          "%s (node %zu, steps %d..%d, bytes %zu..%zu) and %s (node %zu, "
                          "steps %d..%d, bytes %zu..%zu) are live together and share memory",
                          a->info->name, i, step[i], end[i], a0, a0 + ab, b->info->name, j, step[j],
                          end[j], b0, b0 + bb);
            st.reused_pairs++;
        }
    }
    free(step);
    free(when);
    free(end);
    free(reach);
    return st;
}

/* ---- (a) fused vs unfused, and guard bytes over every kind of kernel ---- */

typedef struct mixed {
    clg_graph *g;
    clg_tensor *x, *v, *w;
    clg_tensor *loss, *c, *s, *gsum;
    clg_tensor *outs[8];
    int n_outs;
    float xv[60], vv[60], wv[40];
} mixed;

static const int32_t mixed_idx[5] = {5, 0, 2, 2, 9}; /* repeated, and 9 out of range */

/* Elementwise chains, a max and a sum with fused prologues, a GEMM, a transposed and sliced
 * view, concat, pad, index_select, and the backward of it all. */
static void mixed_build(mixed *m) {
    clg_graph *g = m->g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    fill(m->xv, 60, 71, -1.0f, 1.0f);
    fill(m->vv, 60, 72, -1.0f, 1.0f);
    fill(m->wv, 40, 73, -1.0f, 1.0f);
    m->x = clg_input(g, "x", CLG_F32, ND(6, 10));
    m->v = clg_input(g, "v", CLG_F32, ND(6, 10));
    m->w = clg_input(g, "w", CLG_F32, ND(10, 4));
    clg_assert_ok(clg_requires_grad(m->x));
    clg_assert_ok(clg_requires_grad(m->v));
    clg_assert_ok(clg_requires_grad(m->w));
    int ax1 = 1, ax0 = 0;
    clg_tensor *h = clg_tanh(g, clg_add(g, clg_mul_scalar(g, m->x, 2.0f), m->v));
    clg_tensor *mx = clg_max(g, h, 1, &ax1, true);
    clg_tensor *e = clg_exp(g, clg_sub(g, h, mx));
    m->s = clg_sum(g, e, 1, &ax1, true);
    clg_tensor *sm = clg_div(g, e, m->s);
    clg_tensor *r = clg_relu(g, clg_add_scalar(g, clg_matmul(g, sm, m->w, false, false), 0.5f));
    clg_tensor *sl = clg_slice(g, clg_transpose(g, r, 0, 1), 1, 1, 6, 2); /* [4,3] */
    m->c = clg_concat(g, 2, (clg_tensor *const[]){sl, clg_sigmoid(g, sl)}, 1);
    clg_tensor *p = clg_pad(g, m->c, S(1, 0), S(0, 2), 0.25f);
    clg_tensor *sel = clg_index_select(g, m->x, 0, clg_constant(g, CLG_I32, ND(5), mixed_idx));
    m->gsum = clg_sum(g, clg_mul(g, sel, sel), 1, &ax0, false);
    m->loss = clg_add(g, clg_mean(g, p, 0, NULL, false),
                      clg_mul_scalar(g, clg_mean(g, m->gsum, 0, NULL, false), 0.1f));
    clg_assert_ok(clg_graph_output(g, m->loss));
    clg_assert_ok(clg_backward(g, m->loss));
    clg_tensor *outs[] = {
        m->loss, m->c, m->s, m->gsum, clg_grad(g, m->x), clg_grad(g, m->v), clg_grad(g, m->w)};
    m->n_outs = 7;
    for (int i = 0; i < m->n_outs; ++i) {
        ck_assert_ptr_nonnull(outs[i]);
        m->outs[i] = outs[i];
        clg_assert_ok(clg_graph_output(g, outs[i]));
    }
}

static void mixed_run(mixed *m, clg_plan *p) {
    clg_assert_ok(clg_plan_write(p, m->x, m->xv, sizeof m->xv));
    clg_assert_ok(clg_plan_write(p, m->v, m->vv, sizeof m->vv));
    clg_assert_ok(clg_plan_write(p, m->w, m->wv, sizeof m->wv));
    clg_assert_ok(clg_plan_run(p));
}

/* Plain-C forward of the mixed graph: loss, c [4,6], s [6,1], gsum [10]. */
static void mixed_reference(const mixed *m, double *loss, float *c, float *s, float *gsum) {
    double h[60], sm[60], r[24];
    for (int i = 0; i < 6; ++i) {
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < 10; ++j) {
            h[i * 10 + j] = tanh(2.0 * m->xv[i * 10 + j] + m->vv[i * 10 + j]);
            if (h[i * 10 + j] > mx) mx = h[i * 10 + j];
        }
        for (int j = 0; j < 10; ++j)
            sum += exp(h[i * 10 + j] - mx);
        s[i] = (float)sum;
        for (int j = 0; j < 10; ++j)
            sm[i * 10 + j] = exp(h[i * 10 + j] - mx) / sum;
        for (int k = 0; k < 4; ++k) {
            double acc = 0.0;
            for (int j = 0; j < 10; ++j)
                acc += sm[i * 10 + j] * m->wv[j * 4 + k];
            r[i * 4 + k] = acc + 0.5 > 0.0 ? acc + 0.5 : 0.0;
        }
    }
    double padsum = 0.25 * (5 * 8 - 4 * 6);
    for (int k = 0; k < 4; ++k)
        for (int q = 0; q < 3; ++q) {
            double vsl = r[(1 + 2 * q) * 4 + k]; /* transpose, then columns 1, 3, 5 */
            double vsg = 1.0 / (1.0 + exp(-vsl));
            c[k * 6 + q] = (float)vsl;
            c[k * 6 + 3 + q] = (float)vsg;
            padsum += vsl + vsg;
        }
    double gs = 0.0;
    for (int j = 0; j < 10; ++j) {
        double acc = 0.0;
        for (int i = 0; i < 5; ++i) {
            int32_t row = mixed_idx[i];
            double xv = row >= 0 && row < 6 ? m->xv[row * 10 + j] : 0.0;
            acc += xv * xv;
        }
        gsum[j] = (float)acc;
        gs += acc;
    }
    *loss = padsum / 40.0 + 0.1 * gs / 10.0;
}

START_TEST(fused_matches_unfused) {
    mixed m;
    mixed_build(&m);
    clg_plan *fused = compile(m.g, false, 0), *plain = compile(m.g, true, 0);
    ck_assert_msg(clg_plan_kernel_count(fused) < clg_plan_kernel_count(plain),
                  "fusion saves no kernel: %zu fused, %zu unfused", clg_plan_kernel_count(fused),
                  clg_plan_kernel_count(plain));
    mixed_run(&m, fused);
    mixed_run(&m, plain);
    for (int i = 0; i < m.n_outs; ++i) {
        float *a = read_all(fused, m.outs[i]), *b = read_all(plain, m.outs[i]);
        /* the same arithmetic in both; only contraction into fma may differ */
        clg_assert_close(a, b, (size_t)clg_tensor_numel(m.outs[i]), 1e-6, 1e-5);
        free(a);
        free(b);
    }
    double loss;
    float c[24], s[6], gsum[10], got[24];
    mixed_reference(&m, &loss, c, s, gsum);
    clg_plan *plans[] = {fused, plain};
    for (int k = 0; k < 2; ++k) {
        float lf = (float)loss, l;
        clg_assert_ok(clg_plan_read(plans[k], m.loss, &l, sizeof l));
        clg_assert_close(&l, &lf, 1, 1e-5, 1e-4);
        clg_assert_ok(clg_plan_read(plans[k], m.c, got, sizeof c));
        clg_assert_close(got, c, 24, 1e-5, 1e-4);
        clg_assert_ok(clg_plan_read(plans[k], m.s, got, sizeof s));
        clg_assert_close(got, s, 6, 1e-5, 1e-4);
        clg_assert_ok(clg_plan_read(plans[k], m.gsum, got, sizeof gsum));
        clg_assert_close(got, gsum, 10, 1e-5, 1e-4);
    }
    live_stats a = check_live_ranges(fused, m.g, false), b = check_live_ranges(plain, m.g, false);
    ck_assert_uint_gt(a.n_tensors, 0);
    ck_assert_uint_gt(b.n_tensors, a.n_tensors);
    clg_graph_free(m.g);
}
END_TEST

/* ---- (b) guard bytes ---- */

START_TEST(guards_untouched) {
    mixed m;
    mixed_build(&m);
    clg_plan *ref = compile(m.g, false, 0);
    mixed_run(&m, ref);
    for (int nf = 0; nf < 2; ++nf) {
        clg_plan *p = compile(m.g, nf, 256);
        mixed_run(&m, p);
        mixed_run(&m, p);
        clg_assert_ok(clg_plan_check_guards(p));
        for (int i = 0; i < m.n_outs; ++i) {
            float *a = read_all(p, m.outs[i]), *b = read_all(ref, m.outs[i]);
            clg_assert_close(a, b, (size_t)clg_tensor_numel(m.outs[i]), 1e-6, 1e-5);
            free(a);
            free(b);
        }
        clg_plan_free(p);
    }
    ck_assert_int_eq(clg_plan_check_guards(ref), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_plan_check_guards(NULL), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(m.g);
}
END_TEST

static void write_word(clg_plan *p, cl_mem mem, size_t byte, uint32_t value) {
    cl_int err = clEnqueueWriteBuffer(p->ctx->queue, mem, CL_TRUE, byte, sizeof value, &value, 0,
                                      NULL, NULL);
    ck_assert_int_eq(err, CL_SUCCESS);
}

/* The check can fail: a word of guard just past a tensor, then just before one, overwritten
 * directly in the arena. */
START_TEST(guards_detect_corruption) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(3, 5));
    clg_tensor *y = clg_exp(g, x), *z = clg_sum(g, clg_mul(g, y, y), 0, NULL, false);
    clg_assert_ok(clg_graph_output(g, y));
    clg_assert_ok(clg_graph_output(g, z));
    clg_plan *p = compile(g, true, 256);
    float xv[15];
    fill(xv, 15, 81, -1.0f, 1.0f);
    clg_assert_ok(clg_plan_write(p, x, xv, sizeof xv));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    const clg_storage *s = clg_plan_storage(p, y);
    ck_assert_msg(in_arena(p, y), "exp's result should live in the arena");
    size_t first = (size_t)s->offset * 4, past = first + 15 * 4;
    write_word(p, s->mem, past, 0x12345678u);
    ck_assert_int_eq(clg_plan_check_guards(p), CLG_ERR_INTERNAL);
    ck_assert_msg(contains(clg_last_error(), "guard"), "message: %s", clg_last_error());
    write_word(p, s->mem, past, CLG_GUARD_PATTERN); /* the pattern back: clean again */
    clg_assert_ok(clg_plan_check_guards(p));
    write_word(p, s->mem, first - 4, 0u);
    ck_assert_int_eq(clg_plan_check_guards(p), CLG_ERR_INTERNAL);
    clg_graph_free(g);
}
END_TEST

/* And a kernel that writes one element too far: pad's fill kernel with its output offset
 * moved by one, so its last write lands in the guard after the tensor. */
START_TEST(guards_detect_kernel_overrun) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(2, 3));
    clg_tensor *y = clg_pad(g, x, S(0, 0), S(1, 0), 5.0f); /* [3,3]: fill, then copy */
    clg_assert_ok(clg_graph_output(g, y));
    clg_plan *p = compile(g, false, 256);
    float xv[6] = {1, 2, 3, 4, 5, 6};
    clg_assert_ok(clg_plan_write(p, x, xv, sizeof xv));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    clg_step *fill_step = NULL;
    for (size_t i = 0; i < p->n_steps; ++i)
        if (strcmp(p->steps[i].label, "fill") == 0) fill_step = &p->steps[i];
    ck_assert_msg(fill_step != NULL, "pad should lower to a fill and a copy");
    cl_int off = (cl_int)clg_plan_storage(p, y)->offset + 1; /* fill_strided arg 1: dst_off */
    ck_assert_int_eq(clSetKernelArg(fill_step->kernel, 1, sizeof off, &off), CL_SUCCESS);
    clg_assert_ok(clg_plan_run(p));
    ck_assert_int_eq(clg_plan_check_guards(p), CLG_ERR_INTERNAL);
    clg_graph_free(g);
}
END_TEST

/* ---- (c) the memory planner ---- */

/* Many equal-sized intermediates (each read twice, so fusion keeps them), small sums that live
 * to the end, a long-lived exp(x), an output in the middle of the chain, and concat
 * rotations: every kind of lifetime that tempts a planner to share memory too early. */
START_TEST(planner_no_live_overlap) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    enum { N = 2048, STEPS = 24 };
    float xv[N];
    fill(xv, N, 91, -1.0f, 1.0f);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(N));
    clg_tensor *k0 = clg_exp(g, x), *h = x, *h8 = NULL, *sums[STEPS];
    for (int i = 0; i < STEPS; ++i) {
        if (i % 6 == 5)
            h = clg_concat(g, 2,
                           (clg_tensor *const[]){clg_slice(g, h, 0, N / 2, N, 1),
                                                 clg_slice(g, h, 0, 0, N / 2, 1)},
                           0);
        else
            h = clg_add_scalar(g, clg_mul(g, clg_sin(g, h), h), 0.1f);
        sums[i] = clg_sum(g, h, 0, NULL, false);
        if (i == 8) h8 = h;
    }
    clg_tensor *y = clg_add(g, h, k0), *total = sums[0];
    for (int i = 1; i < STEPS; ++i)
        total = clg_add(g, total, sums[i]);
    clg_assert_ok(clg_graph_output(g, y));
    clg_assert_ok(clg_graph_output(g, total));
    clg_assert_ok(clg_graph_output(g, h8));

    /* plain C */
    double hv[N], tmp[N], want_total = 0.0, want_h8[N];
    for (int j = 0; j < N; ++j)
        hv[j] = xv[j];
    for (int i = 0; i < STEPS; ++i) {
        if (i % 6 == 5) {
            for (int j = 0; j < N; ++j)
                tmp[j] = hv[(j + N / 2) % N];
            memcpy(hv, tmp, sizeof hv);
        } else {
            for (int j = 0; j < N; ++j)
                hv[j] = sin(hv[j]) * hv[j] + 0.1;
        }
        for (int j = 0; j < N; ++j)
            want_total += hv[j];
        if (i == 8) memcpy(want_h8, hv, sizeof hv);
    }
    float want_y[N], want_h8f[N], want_totalf = (float)want_total;
    for (int j = 0; j < N; ++j) {
        want_y[j] = (float)(hv[j] + exp((double)xv[j]));
        want_h8f[j] = (float)want_h8[j];
    }

    for (int nf = 0; nf < 2; ++nf) {
        clg_plan *p = compile(g, nf, 0);
        live_stats st = check_live_ranges(p, g, false);
        /* reuse happens, and the arena is well below the sum of what it holds */
        ck_assert_msg(st.reused_pairs > 0, "no tensor reuses another's memory");
        ck_assert_msg(clg_plan_peak_bytes(p) * 3 < st.sum_bytes,
                      "%s: peak %zu bytes for %zu tensors of %zu bytes in all",
                      nf ? "unfused" : "fused", clg_plan_peak_bytes(p), st.n_tensors, st.sum_bytes);
        clg_assert_ok(clg_plan_write(p, x, xv, sizeof xv));
        clg_assert_ok(clg_plan_run(p));
        float got[N], gt;
        clg_assert_ok(clg_plan_read(p, y, got, sizeof got));
        clg_assert_close(got, want_y, N, 1e-5, 1e-4);
        clg_assert_ok(clg_plan_read(p, h8, got, sizeof got));
        clg_assert_close(got, want_h8f, N, 1e-5, 1e-4);
        clg_assert_ok(clg_plan_read(p, total, &gt, sizeof gt));
        clg_assert_close(&gt, &want_totalf, 1, 1e-3, 1e-5);
        clg_plan_free(p);
    }
    clg_graph_free(g);
}
END_TEST

/* Both placements on random lifetimes, sizes and arena limits: no two tensors live at once
 * share a byte, offsets aligned, arenas within the limit. The by-start placement must also
 * stay close to the greedy one on training-shaped lifetimes (checked in memplan_chain). */
typedef clg_status (*memplan_fn)(size_t, const size_t *, const int *, const int *, size_t,
                                 size_t, int *, size_t *, size_t **, size_t *);
static const memplan_fn planners[] = {clg_memplan_greedy, clg_memplan_by_start};

START_TEST(memplan_random) {
    memplan_fn plan = planners[_i];
    clg_test_rng r;
    clg_test_rng_seed(&r, 101);
    enum { MAXN = 48 };
    for (int trial = 0; trial < 300; ++trial) {
        size_t n = 1 + (size_t)clg_test_uniform(&r, 0.0f, (float)MAXN - 0.01f);
        size_t bytes[MAXN], offset[MAXN];
        int start[MAXN], end[MAXN], arena[MAXN];
        for (size_t i = 0; i < n; ++i) {
            bytes[i] = 1 + (size_t)clg_test_uniform(&r, 0.0f, 6000.0f);
            start[i] = (int)clg_test_uniform(&r, 0.0f, 40.0f);
            end[i] = start[i] + (int)clg_test_uniform(&r, 0.0f, 12.0f);
        }
        size_t max_bytes = trial % 3 == 0 ? 8192 : trial % 3 == 1 ? 20000 : (size_t)-1;
        size_t *arena_bytes = NULL, n_arenas = 0;
        clg_assert_ok(plan(n, bytes, start, end, max_bytes, 256, arena, offset, &arena_bytes,
                                  &n_arenas));
        for (size_t i = 0; i < n; ++i) {
            ck_assert_int_ge(arena[i], 0);
            ck_assert_uint_lt((size_t)arena[i], n_arenas);
            ck_assert_uint_eq(offset[i] % 256, 0);
            ck_assert_uint_le(offset[i] + bytes[i], arena_bytes[arena[i]]);
            ck_assert_uint_le(offset[i] + bytes[i], max_bytes);
            for (size_t j = 0; j < i; ++j) {
                bool live = start[i] <= end[j] && start[j] <= end[i];
                bool share = arena[i] == arena[j] && offset[i] < offset[j] + bytes[j] &&
                             offset[j] < offset[i] + bytes[i];
                ck_assert_msg(!(live && share),
                              "trial %d: tensors %zu and %zu are live together and overlap", trial,
                              i, j);
            }
        }
        for (size_t a = 0; a < n_arenas; ++a)
            ck_assert_uint_le(arena_bytes[a], max_bytes);
        free(arena_bytes);
    }
}
END_TEST

/* Lifetimes of an unrolled recurrent training graph: step t's kept activation lives until its
 * backward step 2T - t, two temporaries per step die at once. No placement can use less than
 * the largest sum of bytes live at one step; both must stay within 1.25x of that bound. */
START_TEST(memplan_chain) {
    memplan_fn plan = planners[_i];
    enum { T = 300, PER = 3, N = 2 * T * PER };
    static size_t bytes[N], offset[N];
    static int start[N], end[N], arena[N];
    size_t n = 0;
    for (int t = 0; t < 2 * T; ++t) {
        bool fwd = t < T;
        bytes[n] = fwd ? 32768 : 16384; /* kept activation, or the backward's gradient */
        start[n] = t;
        end[n++] = fwd ? 2 * T - t : t + 1;
        for (int k = 0; k < PER - 1; ++k) { /* temporaries of odd sizes */
            bytes[n] = 1000 + 700 * (size_t)((t * 7 + k * 3) % 11);
            start[n] = t;
            end[n++] = t + (k & 1);
        }
    }
    size_t bound = 0;
    for (int t = 0; t <= 2 * T + 1; ++t) {
        size_t live = 0;
        for (size_t i = 0; i < n; ++i)
            if (start[i] <= t && t <= end[i]) live += (bytes[i] + 255) / 256 * 256;
        if (live > bound) bound = live;
    }
    size_t *arena_bytes = NULL, n_arenas = 0;
    clg_assert_ok(plan(n, bytes, start, end, (size_t)-1, 256, arena, offset, &arena_bytes,
                       &n_arenas));
    ck_assert_uint_eq(n_arenas, 1);
    ck_assert_msg(arena_bytes[0] <= bound + bound / 4, "planner %d: %zu bytes, bound %zu", _i,
                  arena_bytes[0], bound);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < i; ++j) {
            bool live = start[i] <= end[j] && start[j] <= end[i];
            bool share = offset[i] < offset[j] + bytes[j] && offset[j] < offset[i] + bytes[i];
            ck_assert_msg(!(live && share), "tensors %zu and %zu overlap", i, j);
        }
    free(arena_bytes);
}
END_TEST

/* ---- (d) errors ---- */

START_TEST(errors_shape_sticky) {
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx);
    ck_assert_ptr_nonnull(g);
    clg_tensor *a = clg_input(g, "a", CLG_F32, ND(2, 3));
    clg_tensor *b = clg_input(g, "b", CLG_F32, ND(4, 3));
    clg_tensor *bad = clg_add(g, a, b);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    char first[2048];
    snprintf(first, sizeof first, "%s", clg_graph_error(g));
    ck_assert_msg(contains(first, "add") && contains(first, "[2, 3]") && contains(first, "[4, 3]"),
                  "message should name the op and both shapes: %s", first);
    /* poisoned: later builders (even correct ones) return the poison tensor, first error kept */
    ck_assert_ptr_eq(clg_relu(g, a), bad);
    ck_assert_ptr_eq(clg_matmul(g, a, a, false, false), bad);
    ck_assert_ptr_eq(clg_add(g, bad, a), bad);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_str_eq(clg_graph_error(g), first);
    ck_assert_int_eq(clg_graph_output(g, a), CLG_ERR_SHAPE);
    static char sentinel;
    clg_plan *p = (clg_plan *)(void *)&sentinel; /* must come back NULL */
    ck_assert_int_eq(clg_graph_compile(g, NULL, &p), CLG_ERR_SHAPE);
    ck_assert_ptr_null(p);
    ck_assert_msg(contains(clg_last_error(), first), "compile reports: %s", clg_last_error());
    ck_assert_int_eq(clg_backward(g, bad), CLG_ERR_SHAPE);
    clg_graph_free(g);

    g = clg_graph_new(ctx);
    a = clg_input(g, "a", CLG_F32, ND(2, 3));
    b = clg_input(g, "b", CLG_F32, ND(4, 5));
    clg_matmul(g, a, b, false, false);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_msg(contains(clg_graph_error(g), "matmul") &&
                      contains(clg_graph_error(g), "[2, 3]") &&
                      contains(clg_graph_error(g), "[4, 5]"),
                  "%s", clg_graph_error(g));
    clg_graph_free(g);

    g = clg_graph_new(ctx);
    a = clg_input(g, "a", CLG_F32, ND(2, 3, 4));
    b = clg_input(g, "b", CLG_F32, ND(5, 4, 2));
    clg_matmul(g, a, b, false, false);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_msg(contains(clg_graph_error(g), "matmul") &&
                      contains(clg_graph_error(g), "[2, 3, 4]") &&
                      contains(clg_graph_error(g), "[5, 4, 2]"),
                  "%s", clg_graph_error(g));
    clg_graph_free(g);

    g = clg_graph_new(ctx);
    a = clg_input(g, "a", CLG_F32, ND(2, 3));
    b = clg_input(g, "b", CLG_F32, ND(3, 4));
    clg_concat(g, 2, (clg_tensor *const[]){a, b}, 0);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_msg(contains(clg_graph_error(g), "concat") &&
                      contains(clg_graph_error(g), "[2, 3]") &&
                      contains(clg_graph_error(g), "[3, 4]"),
                  "%s", clg_graph_error(g));
    clg_graph_free(g);

    g = clg_graph_new(ctx);
    a = clg_input(g, "a", CLG_F32, ND(2, 3));
    clg_index_select(g, a, 0, clg_input(g, "idx", CLG_F32, ND(2)));
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_DTYPE);
    ck_assert_msg(contains(clg_graph_error(g), "index_select"), "%s", clg_graph_error(g));
    clg_graph_free(g);
}
END_TEST

START_TEST(errors_graph_and_null) {
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx), *h = clg_graph_new(ctx);
    clg_tensor *a = clg_input(g, "a", CLG_F32, ND(2, 3));
    clg_tensor *other = clg_input(h, "other", CLG_F32, ND(2, 3));
    clg_add(g, a, other);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_GRAPH);
    ck_assert_msg(contains(clg_graph_error(g), "add") &&
                      contains(clg_graph_error(g), "another graph"),
                  "%s", clg_graph_error(g));
    ck_assert_int_eq(clg_graph_status(h), CLG_OK); /* the other graph is unharmed */
    clg_graph_free(g);

    g = clg_graph_new(ctx);
    a = clg_input(g, "a", CLG_F32, ND(2, 3));
    ck_assert_ptr_null(clg_add(NULL, a, a));
    ck_assert_ptr_null(clg_matmul(NULL, a, a, false, false));
    clg_tensor *bad = clg_add(g, NULL, a);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_msg(contains(clg_graph_error(g), "add"), "%s", clg_graph_error(g));
    ck_assert_ptr_eq(clg_matmul(g, a, NULL, false, true), bad);
    clg_graph_free(g);

    g = clg_graph_new(ctx);
    a = clg_input(g, "a", CLG_F32, ND(2, 3));
    clg_concat(g, 2, (clg_tensor *const[]){a, NULL}, 0);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    g = clg_graph_new(ctx);
    clg_concat(g, 0, NULL, 0);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    g = clg_graph_new(ctx);
    clg_matmul(g, NULL, clg_input(g, "b", CLG_F32, ND(2, 2)), false, false);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    clg_graph_free(h);
    ck_assert_int_eq(clg_graph_compile(NULL, NULL, &(clg_plan *){NULL}), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(NULL);
    clg_plan_free(NULL);
}
END_TEST

START_TEST(errors_backward_and_compile) {
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *a = clg_input(g, "a", CLG_F32, ND(2, 3));
    clg_assert_ok(clg_requires_grad(a));
    clg_tensor *y = clg_tanh(g, a);
    ck_assert_int_eq(clg_backward(g, y), CLG_ERR_SHAPE); /* not a scalar */
    ck_assert_msg(contains(clg_last_error(), "[2, 3]"), "%s", clg_last_error());
    ck_assert_int_eq(clg_graph_status(g), CLG_OK); /* a call error, not a poisoned graph */
    /* nothing marked: nothing to compute */
    clg_plan *p = NULL;
    ck_assert_int_eq(clg_graph_compile(g, NULL, &p), CLG_ERR_GRAPH);
    ck_assert_ptr_null(p);
    ck_assert_msg(contains(clg_last_error(), "clg_graph_output"), "%s", clg_last_error());
    /* the graph is still usable: a scalar loss differentiates and runs */
    clg_tensor *loss = clg_sum(g, y, 0, NULL, false);
    clg_assert_ok(clg_backward(g, loss));
    ck_assert_int_eq(clg_backward(g, loss), CLG_ERR_GRAPH); /* once per graph */
    clg_assert_ok(clg_graph_output(g, clg_grad(g, a)));
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    float av[6] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f}, got[6], want[6];
    for (int i = 0; i < 6; ++i)
        want[i] = (float)(1.0 - tanh(av[i]) * tanh(av[i]));
    clg_assert_ok(clg_plan_write(p, a, av, sizeof av));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, clg_grad(g, a), got, sizeof got));
    clg_assert_close(got, want, 6, 1e-6, 1e-5);
    clg_graph_free(g);
}
END_TEST

/* A tensor above CL_DEVICE_MAX_MEM_ALLOC_SIZE fails the compile with CLG_ERR_OUT_OF_MEMORY,
 * naming the op and shape, before anything is queued; the context keeps working. */
START_TEST(errors_too_large) {
    clg_context *ctx = clg_test_context();
    const clg_device_info *dev = clg_context_device(ctx);
    /* n x n f32 above the device's largest allocation, with n*n still indexable (int32) */
    int64_t n = 46000;
    if ((uint64_t)n * (uint64_t)n * 4u <= dev->max_alloc_bytes) {
        fprintf(stderr,
                "errors_too_large: %s allows %llu-byte buffers; [46000, 46000] f32 fits, so the "
                "per-buffer limit is not exercised here\n",
                dev->name, (unsigned long long)dev->max_alloc_bytes);
    } else {
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *col = clg_input(g, "col", CLG_F32, ND(n, 1));
        clg_tensor *row = clg_input(g, "row", CLG_F32, ND(1, n));
        clg_tensor *big = clg_add(g, col, row); /* [n, n], from two small inputs */
        clg_assert_ok(clg_graph_output(g, big));
        clg_plan *p = NULL;
        ck_assert_int_eq(clg_graph_compile(g, NULL, &p), CLG_ERR_OUT_OF_MEMORY);
        ck_assert_ptr_null(p);
        const char *msg = clg_last_error();
        ck_assert_msg(contains(msg, "add") && contains(msg, "[46000, 46000]"),
                      "the message should name the op and its shape: %s", msg);
        clg_graph_free(g);
    }
    /* [70000, 70000] f32: more elements than the kernels' 32-bit indices reach, refused
     * already by the builder (CLG_ERR_SHAPE, naming the shape), or if a later version indexes
     * with 64 bits, by the compile as too large for one buffer */
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *col = clg_input(g, "col", CLG_F32, ND(70000, 1));
    clg_tensor *row = clg_input(g, "row", CLG_F32, ND(1, 70000));
    clg_tensor *big = clg_add(g, col, row);
    clg_status st = clg_graph_status(g);
    if (st == CLG_OK) {
        clg_assert_ok(clg_graph_output(g, big));
        clg_plan *p = NULL;
        st = clg_graph_compile(g, NULL, &p);
        ck_assert_ptr_null(p);
        ck_assert_int_eq(st, CLG_ERR_OUT_OF_MEMORY);
    } else {
        ck_assert_int_eq(st, CLG_ERR_SHAPE);
        ck_assert_int_eq(clg_graph_compile(g, NULL, &(clg_plan *){NULL}), CLG_ERR_SHAPE);
    }
    ck_assert_msg(contains(clg_last_error(), "add") && contains(clg_last_error(), "[70000, 70000]"),
                  "%s", clg_last_error());
    clg_graph_free(g);
    /* nothing was left half-done */
    clg_assert_ok(clg_context_finish(ctx));
    g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(4));
    clg_tensor *y = clg_mul_scalar(g, x, 3.0f);
    clg_assert_ok(clg_graph_output(g, y));
    clg_plan *p = compile(g, false, 0);
    float xv[4] = {1, 2, 3, 4}, got[4], want[4] = {3, 6, 9, 12};
    clg_assert_ok(clg_plan_write(p, x, xv, sizeof xv));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, y, got, sizeof got));
    clg_assert_close(got, want, 4, 0, 0);
    clg_graph_free(g);
}
END_TEST

START_TEST(errors_read_write) {
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx), *h = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(2, 3));
    clg_tensor *mid = clg_exp(g, x);
    clg_tensor *kept = clg_sum(g, clg_mul(g, mid, mid), 0, NULL, false);
    clg_assert_ok(clg_graph_output(g, kept));
    clg_tensor *foreign = clg_input(h, "x", CLG_F32, ND(2, 3));
    clg_plan *p = compile(g, true, 0);
    float xv[6] = {0}, buf[6];
    ck_assert_int_eq(clg_plan_write(p, x, xv, 5 * sizeof(float)), CLG_ERR_SHAPE);
    ck_assert_msg(contains(clg_last_error(), "[2, 3]") && contains(clg_last_error(), "'x'"), "%s",
                  clg_last_error());
    ck_assert_int_eq(clg_plan_write(p, mid, xv, sizeof xv), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_plan_write(p, foreign, xv, sizeof xv), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_plan_write(p, x, NULL, sizeof xv), CLG_ERR_INVALID_ARGUMENT);
    clg_assert_ok(clg_plan_write(p, x, xv, sizeof xv));
    clg_assert_ok(clg_plan_run(p));
    /* an intermediate that is not an output is not kept */
    ck_assert_int_eq(clg_plan_read(p, mid, buf, sizeof buf), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_msg(contains(clg_last_error(), "clg_graph_output"), "%s", clg_last_error());
    ck_assert_int_eq(clg_plan_read(p, foreign, buf, sizeof buf), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_plan_read(p, kept, buf, 2 * sizeof(float)), CLG_ERR_SHAPE);
    float k;
    clg_assert_ok(clg_plan_read(p, kept, &k, sizeof k));
    ck_assert_float_eq_tol(k, 6.0f, 1e-5f);              /* sum of exp(0)^2 */
    clg_assert_ok(clg_plan_read(p, x, buf, sizeof buf)); /* inputs can be read back */
    ck_assert_int_eq(clg_plan_run(NULL), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    clg_graph_free(h);
}
END_TEST

/* Builders give their nodes typed attributes, and the one printer describes them (the lines
 * CLGRAD_LOG prints for each scheduled step); an op's error names its settings the same way. */
START_TEST(node_attrs_described) {
    clg_context *ctx = clg_test_context();
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(2, 3, 8, 8));
    clg_tensor *w = clg_input(g, "w", CLG_F32, ND(5, 4));
    char d[512];
    const clg_pool2d_params pool = {.kernel_h = 2, .kernel_w = 2};
    ck_assert_str_eq(clg_node_describe(clg_max_pool2d(g, x, &pool), d, sizeof d),
                     "max_pool2d [2, 3, 4, 4] f32 pool2d{kernel=2x2 stride=2x2 pad=0x0}");
    ck_assert_str_eq(clg_node_describe(clg_mean(g, x, 1, (int[]){-3}, true), d, sizeof d),
                     "sum [2, 1, 8, 8] f32 reduce{axes=[1] scale=0.333333}");
    ck_assert_str_eq(clg_node_describe(clg_max(g, x, 2, (int[]){0, 3}, true), d, sizeof d),
                     "max [1, 3, 8, 1] f32 reduce{axes=[0, 3] scale=1}");
    ck_assert_str_eq(clg_node_describe(clg_leaky_relu(g, x, 0.25f), d, sizeof d),
                     "leaky_relu [2, 3, 8, 8] f32 scalars{a=0.25 b=0}");
    ck_assert_str_eq(clg_node_describe(clg_clamp(g, x, -1.0f, 2.0f), d, sizeof d),
                     "clamp [2, 3, 8, 8] f32 scalars{a=-1 b=2}");
    ck_assert_str_eq(clg_node_describe(clg_relu(g, x), d, sizeof d), "relu [2, 3, 8, 8] f32");
    ck_assert_str_eq(clg_node_describe(clg_scalar(g, 0.5f), d, sizeof d),
                     "scalar [] f32 scalar{value=0.5}");
    clg_tensor *a = clg_input(g, "a", CLG_F32, ND(3, 4));
    ck_assert_str_eq(clg_node_describe(clg_matmul(g, a, w, false, true), d, sizeof d),
                     "matmul [3, 5] f32 matmul{trans_a=false trans_b=true}");
    ck_assert_str_eq(clg_node_describe(clg_slice(g, x, -1, 1, 8, 2), d, sizeof d),
                     "slice [2, 3, 8, 4] f32 slice{axis=3 start=1 step=2}");
    ck_assert_str_eq(clg_node_describe(clg_permute(g, x, (int[]){0, 2, 3, 1}), d, sizeof d),
                     "permute [2, 8, 8, 3] f32 permute{perm=[0, 2, 3, 1]}");
    ck_assert_str_eq(clg_node_describe(clg_concat(g, 2, (clg_tensor *const[]){a, a}, -1), d,
                                       sizeof d),
                     "concat [3, 8] f32 axis{axis=1}");
    ck_assert_str_eq(clg_node_describe(clg_pad(g, a, S(1, 0), S(0, 2), -1.0f), d, sizeof d),
                     "pad [4, 6] f32 embed{start=[1, 0] step=[1, 1] value=-1}");
    ck_assert_str_eq(clg_node_describe(clg_rand_normal(g, ND(4), 0.0f, 0.5f, 42), d, sizeof d),
                     "rand_normal [4] f32 random{a=0 b=0.5 seed=42}");
    ck_assert_int_eq(clg_graph_status(g), CLG_OK);
    clg_max_pool2d(g, x, &(clg_pool2d_params){.kernel_h = 2, .kernel_w = 3, .pad_h = 2});
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_msg(contains(clg_graph_error(g), "max_pool2d: bad window "
                                               "pool2d{kernel=2x3 stride=2x3 pad=2x0}"),
                  "%s", clg_graph_error(g));
    clg_graph_free(g);
}
END_TEST

/* ---- (e) one sync per run ---- */

typedef struct net {
    clg_graph *g;
    clg_tensor *x, *y, *loss;
    clg_optimizer *opt;
    clg_plan *plan;
    float xv[64];
    int32_t yv[32];
} net;

/* 2 -> 8 tanh -> 2 classes, mean NLL, trained by SGD in every run. */
static void net_build(net *n, const char *prefix) {
    clg_context *ctx = clg_test_context();
    char name[96];
    const int64_t shapes[4][2] = {{2, 8}, {1, 8}, {8, 2}, {1, 2}};
    const char *names[4] = {"W1", "b1", "W2", "b2"};
    clg_param *ps[4];
    for (int i = 0; i < 4; ++i) {
        snprintf(name, sizeof name, "%s.%s", prefix, names[i]);
        ps[i] = clg_param_new(ctx, name, CLG_F32, 2, shapes[i]);
        ck_assert_msg(ps[i] != NULL, "%s", clg_last_error());
        float v[16];
        fill(v, 16, 200 + (uint64_t)i, -0.7f, 0.7f);
        clg_assert_ok(clg_param_write(ps[i], v, (size_t)(shapes[i][0] * shapes[i][1]) * 4));
    }
    clg_graph *g = n->g = clg_graph_new(ctx);
    n->x = clg_input(g, "x", CLG_F32, ND(32, 2));
    n->y = clg_input(g, "y", CLG_I32, ND(32));
    clg_tensor *h =
        clg_tanh(g, clg_add(g, clg_matmul(g, n->x, clg_param_tensor(g, ps[0]), false, false),
                            clg_param_tensor(g, ps[1])));
    clg_tensor *logits = clg_add(g, clg_matmul(g, h, clg_param_tensor(g, ps[2]), false, false),
                                 clg_param_tensor(g, ps[3]));
    int ax = 1;
    clg_tensor *nll =
        clg_neg(g, clg_sum(g, clg_mul(g, clg_one_hot(g, n->y, 2), clg_log_softmax(g, logits, 1)), 1,
                           &ax, false));
    n->loss = clg_mean(g, nll, 0, NULL, false);
    clg_assert_ok(clg_graph_output(g, n->loss));
    clg_assert_ok(clg_backward(g, n->loss));
    clg_optimizer_config cfg = clg_optimizer_defaults(CLG_OPT_SGD);
    cfg.lr = 0.5f;
    n->opt = clg_optimizer_new(ctx, &cfg);
    ck_assert_ptr_nonnull(n->opt);
    clg_assert_ok(clg_optimizer_apply(n->opt, g, NULL));
    clg_assert_ok(clg_graph_compile(g, NULL, &n->plan));
    fill(n->xv, 64, 300, -1.0f, 1.0f);
    for (int i = 0; i < 32; ++i)
        n->yv[i] = n->xv[2 * i] * n->xv[2 * i + 1] > 0.0f;
}

static void net_free(net *n) {
    clg_graph_free(n->g);
    clg_optimizer_free(n->opt);
}

/* Structure: a run is a fixed list of launches (forward and backward GEMMs, generated kernels,
 * one SGD update per parameter), none of which is a host operation. */
START_TEST(sync_training_plan_structure) {
    net n;
    net_build(&n, "sync_structure");
    clg_plan *p = n.plan;
    size_t gemms = 0, updates = 0, other = 0;
    for (size_t i = 0; i < p->n_steps; ++i) {
        const clg_step *s = &p->steps[i];
        ck_assert(s->kind == CLG_STEP_KERNEL || s->kind == CLG_STEP_GEMM);
        if (s->kind == CLG_STEP_GEMM)
            gemms++;
        else if (strcmp(s->label, "sgd_update") == 0)
            updates++;
        else
            other++;
    }
    /* forward x W1, h W2; backward dW2 = h^T g, dh = g W2^T, dW1 = x^T dh (no dx: x needs
     * no gradient) */
    ck_assert_uint_eq(gemms, 5);
    ck_assert_uint_eq(updates, 4);
    ck_assert_uint_eq(clg_plan_kernel_count(p), gemms + updates + other);
    int64_t steps0 = clg_optimizer_steps(n.opt);
    clg_assert_ok(clg_plan_write(p, n.x, n.xv, sizeof n.xv));
    clg_assert_ok(clg_plan_write(p, n.y, n.yv, sizeof n.yv));
    for (int i = 0; i < 7; ++i)
        clg_assert_ok(clg_plan_run(p));
    ck_assert_int_eq(clg_optimizer_steps(n.opt), steps0 + 7);
    ck_assert_uint_eq(clg_plan_kernel_count(p), gemms + updates + other);
    net_free(&n);
}
END_TEST

/* Counted: runs call nothing that blocks; the read of the loss is where the host waits. Also
 * with fresh inputs written before every run, as in a training loop over batches. */
START_TEST(sync_runs_never_wait) {
    net n;
    net_build(&n, "sync_count");
    clg_plan *p = n.plan;
    float first, last;
    clg_assert_ok(clg_plan_write(p, n.x, n.xv, sizeof n.xv));
    clg_assert_ok(clg_plan_write(p, n.y, n.yv, sizeof n.yv));
    clg_assert_ok(clg_plan_run(p)); /* warm: CLBlast builds its kernels on first use */
    clg_assert_ok(clg_plan_read(p, n.loss, &first, sizeof first));

    clg_status st[4] = {CLG_OK, CLG_OK, CLG_OK, CLG_OK};
    host_waits = 0;
    counting_waits = true;
    for (int i = 0; i < 20; ++i)
        if (st[0] == CLG_OK) st[0] = clg_plan_run(p);
    int during_runs = host_waits;
    for (int i = 0; i < 20; ++i) {
        if (st[1] == CLG_OK) st[1] = clg_plan_write(p, n.x, n.xv, sizeof n.xv);
        if (st[1] == CLG_OK) st[1] = clg_plan_write(p, n.y, n.yv, sizeof n.yv);
        if (st[1] == CLG_OK) st[1] = clg_plan_run(p);
    }
    int during_loop = host_waits - during_runs;
    st[2] = clg_plan_read(p, n.loss, &last, sizeof last);
    int in_read = host_waits - during_runs - during_loop;
    counting_waits = false;
    for (int i = 0; i < 3; ++i)
        clg_assert_ok(st[i]);
    ck_assert_msg(during_runs == 0, "20 runs waited on the device %d times", during_runs);
    ck_assert_msg(during_loop == 0,
                  "20 steps of write x, write y, run waited on the device %d times", during_loop);
    ck_assert_msg(in_read >= 1, "reading the loss did not wait for the runs");
    ck_assert_msg(last < first, "40 SGD steps did not lower the loss (%g -> %g)", (double)first,
                  (double)last);
    net_free(&n);
}
END_TEST

/* Writes queued back to back, with no wait in between, each deliver their own data: a
 * parameter accumulates every batch written (acc += x per run). */
START_TEST(sync_queued_writes_keep_their_data) {
    clg_context *ctx = clg_test_context();
    enum { N = 4096, RUNS = 30 };
    clg_param *acc = clg_param_new(ctx, "sync_writes.acc", CLG_F32, ND(N));
    ck_assert_msg(acc != NULL, "%s", clg_last_error());
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, ND(N));
    clg_assert_ok(clg_assign(g, acc, clg_add(g, clg_param_tensor(g, acc), x)));
    clg_plan *p = compile(g, false, 0);
    static float xv[N], want[N], got[N];
    memset(want, 0, sizeof want);
    host_waits = 0;
    counting_waits = true;
    clg_status st = CLG_OK;
    for (int r = 0; r < RUNS && st == CLG_OK; ++r) {
        for (int j = 0; j < N; ++j) {
            xv[j] = (float)((r * 131 + j * 7) % 17) - 8.0f; /* small integers: exact sums */
            want[j] += xv[j];
        }
        st = clg_plan_write(p, x, xv, sizeof xv);
        memset(xv, 0x7f, sizeof xv); /* the caller may reuse its buffer at once */
        if (st == CLG_OK) st = clg_plan_run(p);
    }
    int waits = host_waits;
    counting_waits = false;
    clg_assert_ok(st);
    ck_assert_msg(waits == 0, "%d runs with a fresh batch each waited %d times", RUNS, waits);
    clg_assert_ok(clg_param_read(acc, got, sizeof got));
    clg_assert_close(got, want, N, 0, 0);
    clg_graph_free(g);
}
END_TEST

/* Proved without counting: with the device held busy by one long kernel (about 2 s, sized by
 * timing it), ten runs queue behind it and return long before the queue drains; a run that
 * waited for the device would take the rest of those seconds. (An earlier form shut the queue
 * with a user event; NVIDIA's driver crashed on its own thread when opening it under
 * MALLOC_PERTURB_, a path clgrad never takes, so the gate is now the ordinary busy device.)
 * The busy kernel's loop has a constant trip count and its work scales with the work-items:
 * rusticl did not run a loop bounded by a kernel argument to its end. */
static const char SPIN_SRC[] =
    "__kernel void spin(__global float *x) {\n"
    "    float v = x[get_global_id(0) & 255];\n"
    "    for (int i = 0; i < 4096; ++i) v = fma(v, 0.999f, (float)(i & 7) * 1e-3f);\n"
    "    if (v == 12345.0f) x[0] = v; /* never, but the compiler cannot know */\n"
    "}\n";

static double ms_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-6;
}

static double spin_ms(clg_context *ctx, cl_kernel k, size_t items) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &items, NULL, 0, NULL, NULL),
                     CL_SUCCESS);
    ck_assert_int_eq(clFinish(ctx->queue), CL_SUCCESS);
    return ms_since(&t0);
}

START_TEST(sync_runs_queue_behind_a_busy_device) {
    net n;
    net_build(&n, "sync_gate");
    clg_plan *p = n.plan;
    clg_context *ctx = clg_test_context();
    float before, after;
    clg_assert_ok(clg_plan_write(p, n.x, n.xv, sizeof n.xv));
    clg_assert_ok(clg_plan_write(p, n.y, n.yv, sizeof n.yv));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, n.loss, &before, sizeof before));

    cl_int err;
    const char *src = SPIN_SRC;
    cl_program prog = clCreateProgramWithSource(ctx->cl, 1, &src, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_int_eq(clBuildProgram(prog, 1, &ctx->device, "", NULL, NULL), CL_SUCCESS);
    cl_kernel k = clCreateKernel(prog, "spin", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float init[256];
    for (int i = 0; i < 256; ++i) init[i] = 0.001f * (float)i;
    cl_mem buf = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof init,
                                init, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_int_eq(clSetKernelArg(k, 0, sizeof buf, &buf), CL_SUCCESS);
    /* grow the work until it takes 100 ms, then scale it to about 2 s */
    size_t items = 256;
    double ms = spin_ms(ctx, k, items);
    while (ms < 100.0 && items < ((size_t)1 << 32)) {
        items *= 4;
        ms = spin_ms(ctx, k, items);
    }
    size_t gate_items = (size_t)((double)items * 2000.0 / ms);
    if (gate_items < items) gate_items = items;

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(
        clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &gate_items, NULL, 0, NULL, NULL),
        CL_SUCCESS);
    clFlush(ctx->queue); /* let the device start on it */
    clg_status st = CLG_OK;
    for (int i = 0; i < 10 && st == CLG_OK; ++i)
        st = clg_plan_run(p);
    cl_event marker;
    ck_assert_int_eq(clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &marker), CL_SUCCESS);
    double runs_ms = ms_since(&t0);
    cl_int status = CL_COMPLETE;
    clGetEventInfo(marker, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
    ck_assert_int_eq(clFinish(ctx->queue), CL_SUCCESS);
    double drained_ms = ms_since(&t0);
    clg_assert_ok(st);
    ck_assert_msg(status != CL_COMPLETE && runs_ms < drained_ms / 4,
                  "10 runs took %.1f ms to queue behind a busy device whose queue drained after "
                  "%.0f ms (marker status %d): a run waited for the device",
                  runs_ms, drained_ms, (int)status);
    clg_assert_ok(clg_plan_read(p, n.loss, &after, sizeof after));
    ck_assert_msg(after < before, "10 SGD steps did not lower the loss (%g -> %g)", (double)before,
                  (double)after);
    ck_assert_int_eq(clg_optimizer_steps(n.opt), 11);
    clReleaseEvent(marker);
    clReleaseMemObject(buf);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    net_free(&n);
}
END_TEST

int main(void) {
    Suite *s = suite_create("compile");
    TCase *tf = tcase_create("fusion and guards");
    tcase_set_timeout(tf, 300);
    tcase_add_test(tf, fused_matches_unfused);
    tcase_add_test(tf, guards_untouched);
    tcase_add_test(tf, guards_detect_corruption);
    tcase_add_test(tf, guards_detect_kernel_overrun);
    suite_add_tcase(s, tf);
    TCase *tp = tcase_create("memory plan");
    tcase_set_timeout(tp, 300);
    tcase_add_test(tp, planner_no_live_overlap);
    tcase_add_loop_test(tp, memplan_random, 0, 2);
    tcase_add_loop_test(tp, memplan_chain, 0, 2);
    suite_add_tcase(s, tp);
    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 300);
    tcase_add_test(te, errors_shape_sticky);
    tcase_add_test(te, errors_graph_and_null);
    tcase_add_test(te, errors_backward_and_compile);
    tcase_add_test(te, errors_too_large);
    tcase_add_test(te, errors_read_write);
    tcase_add_test(te, node_attrs_described);
    suite_add_tcase(s, te);
    TCase *ts = tcase_create("one sync per run");
    tcase_set_timeout(ts, 300);
    tcase_add_test(ts, sync_training_plan_structure);
    tcase_add_test(ts, sync_runs_never_wait);
    tcase_add_test(ts, sync_queued_writes_keep_their_data);
    tcase_add_test(ts, sync_runs_queue_behind_a_busy_device);
    suite_add_tcase(s, ts);
    return clg_test_run(s);
}
