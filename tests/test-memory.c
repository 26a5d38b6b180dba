/* The device-memory cap: a 2-layer MLP trained by Adam fits under a cap just above its need;
 * a cap below its parameters', its optimizer state's or its plan's need is refused with
 * CLG_ERR_OUT_OF_MEMORY naming what was being allocated and the totals, leaves memory use
 * where it was, and once raised the same model compiles and its training step matches a run
 * without any cap (whose loss matches a plain-C forward pass). Also CLGRAD_MAX_DEVICE_BYTES. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { B = 6, IN = 4, HID = 8, OUT = 3 };
enum { N_W1 = HID * IN, N_B1 = HID, N_W2 = OUT * HID, N_B2 = OUT };
#define PARAM_BYTES ((size_t)(N_W1 + N_B1 + N_W2 + N_B2) * sizeof(float))
#define STATE_BYTES (2 * PARAM_BYTES) /* Adam: exp_avg and exp_avg_sq */

static const char *const NAMES[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
static const int64_t SHAPES[4][2] = {{HID, IN}, {HID, 1}, {OUT, HID}, {OUT, 1}};
static const int NDIMS[4] = {2, 1, 2, 1};
static const int NUMEL[4] = {N_W1, N_B1, N_W2, N_B2};

typedef struct host_data {
    float p[4][N_W1]; /* initial parameters (N_W1 is the largest) */
    float x[B * IN], y[B * OUT];
} host_data;

typedef struct model {
    clg_context *ctx;
    clg_param *p[4];
    clg_graph *g;
    clg_tensor *x, *y, *loss;
    clg_optimizer *opt;
    clg_plan *plan;
} model;

/* What an uncapped run measures and computes, the reference for every capped one. */
typedef struct reference {
    size_t plan_bytes; /* intermediates + inputs + constants */
    size_t used_after_step;
    float loss;
    float p[4][N_W1]; /* parameters after one Adam step */
} reference;

static void make_data(host_data *d) {
    clg_test_rng r;
    clg_test_rng_seed(&r, 7);
    for (int i = 0; i < 4; ++i)
        clg_test_fill(&r, d->p[i], (size_t)NUMEL[i], -0.5f, 0.5f);
    clg_test_fill(&r, d->x, B * IN, -1.0f, 1.0f);
    clg_test_fill(&r, d->y, B * OUT, -1.0f, 1.0f);
}

/* mean((relu(x W1^T + b1) W2^T + b2 - y)^2), in double */
static double plain_loss(const host_data *d) {
    double sum = 0.0;
    for (int b = 0; b < B; ++b) {
        double h[HID];
        for (int j = 0; j < HID; ++j) {
            double a = d->p[1][j];
            for (int i = 0; i < IN; ++i)
                a += (double)d->x[b * IN + i] * d->p[0][j * IN + i];
            h[j] = a > 0.0 ? a : 0.0;
        }
        for (int k = 0; k < OUT; ++k) {
            double o = d->p[3][k];
            for (int j = 0; j < HID; ++j)
                o += h[j] * d->p[2][k * HID + j];
            double e = o - d->y[b * OUT + k];
            sum += e * e;
        }
    }
    return sum / (B * OUT);
}

static clg_context *new_context(void) {
    clg_context *ctx = NULL;
    clg_status st = clg_context_create(NULL, &ctx);
    if (st == CLG_ERR_NO_PLATFORM) {
        fprintf(stderr, "SKIP: no OpenCL device: %s\n", clg_last_error());
        exit(77);
    }
    ck_assert_msg(st == CLG_OK, "clg_context_create: %s: %s", clg_status_name(st),
                  clg_last_error());
    return ctx;
}

/* Create the parameters still missing; false when one fails (clg_param_new returns NULL and
 * the last error says why). */
static bool make_params(model *m, const host_data *d) {
    for (int i = 0; i < 4; ++i) {
        if (m->p[i]) continue;
        m->p[i] = clg_param_new(m->ctx, NAMES[i], CLG_F32, NDIMS[i], SHAPES[i]);
        if (!m->p[i]) return false;
        clg_assert_ok(clg_param_write(m->p[i], d->p[i], (size_t)NUMEL[i] * sizeof(float)));
    }
    return true;
}

/* The training graph (built once per model; compiling may be retried). */
static void make_graph(model *m) {
    m->g = clg_graph_new(m->ctx);
    ck_assert_ptr_nonnull(m->g);
    clg_graph *g = m->g;
    m->x = clg_input(g, "x", CLG_F32, 2, (const int64_t[]){B, IN});
    m->y = clg_input(g, "y", CLG_F32, 2, (const int64_t[]){B, OUT});
    /* in order (C leaves the order of arguments open): the optimizer creates state in the
     * graph's node order, so fc1.weight.exp_avg comes first */
    clg_tensor *w[4];
    for (int i = 0; i < 4; ++i)
        w[i] = clg_param_tensor(g, m->p[i]);
    clg_tensor *h = clg_relu(g, clg_add(g, clg_matmul(g, m->x, w[0], false, true), w[1]));
    clg_tensor *o = clg_add(g, clg_matmul(g, h, w[2], false, true), w[3]);
    m->loss = clg_mse_loss(g, o, m->y, CLG_REDUCTION_MEAN);
    clg_assert_ok(clg_graph_output(g, m->loss));
    clg_assert_ok(clg_backward(g, m->loss));
    clg_optimizer_config cfg = clg_optimizer_defaults(CLG_OPT_ADAM);
    cfg.lr = 0.05f;
    m->opt = clg_optimizer_new(m->ctx, &cfg);
    ck_assert_msg(m->opt != NULL, "%s", clg_last_error());
    clg_assert_ok(clg_optimizer_apply(m->opt, g, NULL));
}

static clg_status compile(model *m) {
    return clg_graph_compile(m->g, NULL, &m->plan);
}

/* One training step: the loss it reports and the parameters after it. */
static void step(model *m, const host_data *d, float *loss, float p[4][N_W1]) {
    clg_assert_ok(clg_plan_write(m->plan, m->x, d->x, sizeof d->x));
    clg_assert_ok(clg_plan_write(m->plan, m->y, d->y, sizeof d->y));
    clg_assert_ok(clg_plan_run(m->plan));
    clg_assert_ok(clg_plan_read(m->plan, m->loss, loss, sizeof *loss));
    for (int i = 0; i < 4; ++i)
        clg_assert_ok(clg_param_read(m->p[i], p[i], (size_t)NUMEL[i] * sizeof(float)));
}

static const reference *get_reference(const host_data *d) {
    static reference ref;
    static bool done;
    if (done) return &ref;
    model m = {.ctx = new_context()};
    clg_assert_ok(clg_context_set_memory_limit(m.ctx, 0));
    size_t used0 = clg_context_memory_used(m.ctx);
    ck_assert_msg(make_params(&m, d), "%s", clg_last_error());
    /* every parameter byte is counted, and nothing else happened */
    ck_assert_uint_eq(clg_context_memory_used(m.ctx) - used0, PARAM_BYTES);
    make_graph(&m);
    clg_assert_ok(compile(&m));
    ref.plan_bytes = clg_plan_peak_bytes(m.plan) + clg_plan_fixed_bytes(m.plan);
    /* the plan's buffers and Adam's state are counted (GEMM scratch may come on top) */
    ck_assert_uint_ge(clg_context_memory_used(m.ctx) - used0,
                      PARAM_BYTES + STATE_BYTES + ref.plan_bytes);
    step(&m, d, &ref.loss, ref.p);
    ref.used_after_step = clg_context_memory_used(m.ctx) - used0;
    ck_assert_msg(fabs(ref.loss - plain_loss(d)) <= 1e-5 + 1e-5 * fabs(plain_loss(d)),
                  "loss %.8g, plain C %.8g", (double)ref.loss, plain_loss(d));
    /* freeing the plan, the graph (its update holds the optimizer) and the optimizer gives
     * their buffers back */
    size_t before_free = clg_context_memory_used(m.ctx);
    clg_plan_free(m.plan);
    clg_graph_free(m.g);
    clg_optimizer_free(m.opt);
    ck_assert_uint_le(clg_context_memory_used(m.ctx) + STATE_BYTES + ref.plan_bytes, before_free);
    clg_context_free(m.ctx);
    done = true;
    return &ref;
}

/* The raised cap lets the same model compile; its step matches the uncapped one. */
static void finish_and_compare(model *m, const host_data *d, const reference *ref) {
    clg_assert_ok(clg_context_set_memory_limit(m->ctx, 0));
    ck_assert_msg(make_params(m, d), "%s", clg_last_error());
    if (!m->g) make_graph(m);
    clg_assert_ok(compile(m));
    float loss, p[4][N_W1];
    step(m, d, &loss, p);
    clg_assert_close(&loss, &ref->loss, 1, 1e-6, 1e-5);
    for (int i = 0; i < 4; ++i)
        clg_assert_close(p[i], ref->p[i], (size_t)NUMEL[i], 1e-6, 1e-5);
    clg_context_free(m->ctx);
}

/* The last error is the cap's refusal, names `what` and carries the totals. */
static void assert_refused(clg_status st, const char *what, size_t holds, size_t cap) {
    const char *msg = clg_last_error();
    ck_assert_msg(st == CLG_ERR_OUT_OF_MEMORY, "expected CLG_ERR_OUT_OF_MEMORY, got %s: %s",
                  clg_status_name(st), msg);
    ck_assert_msg(strstr(msg, "past its device-memory cap"), "not the cap's refusal: %s", msg);
    char h[64], c[64];
    snprintf(h, sizeof h, "holds %zu bytes", holds);
    snprintf(c, sizeof c, "cap is %zu bytes", cap);
    ck_assert_msg(strstr(msg, what), "message does not name %s: %s", what, msg);
    ck_assert_msg(strstr(msg, h), "message lacks '%s': %s", h, msg);
    ck_assert_msg(strstr(msg, c), "message lacks '%s': %s", c, msg);
}

START_TEST(test_fits) {
    static host_data d;
    make_data(&d);
    const reference *ref = get_reference(&d);
    model m = {.ctx = new_context()};
    /* a little room over what the uncapped run ended with: GEMM scratch grows by allocating
     * the new buffer before the old one goes, and measuring a GEMM backend briefly holds
     * copies of the product's operands, so the peak is a few KiB above the end */
    size_t cap = clg_context_memory_used(m.ctx) + ref->used_after_step + 64 * 1024;
    clg_assert_ok(clg_context_set_memory_limit(m.ctx, cap));
    ck_assert_uint_eq(clg_context_memory_limit(m.ctx), cap);
    ck_assert_msg(make_params(&m, &d), "%s", clg_last_error());
    make_graph(&m);
    clg_assert_ok(compile(&m));
    float loss, p[4][N_W1];
    step(&m, &d, &loss, p);
    ck_assert_uint_le(clg_context_memory_used(m.ctx), cap);
    clg_assert_close(&loss, &ref->loss, 1, 1e-6, 1e-5);
    for (int i = 0; i < 4; ++i)
        clg_assert_close(p[i], ref->p[i], (size_t)NUMEL[i], 1e-6, 1e-5);
    clg_context_free(m.ctx);
}
END_TEST

START_TEST(test_parameter_over_cap) {
    static host_data d;
    make_data(&d);
    const reference *ref = get_reference(&d);
    model m = {.ctx = new_context()};
    size_t used0 = clg_context_memory_used(m.ctx);
    /* room for fc1.weight, 4 bytes short of fc1.bias */
    size_t cap = used0 + (N_W1 + N_B1) * sizeof(float) - 4;
    clg_assert_ok(clg_context_set_memory_limit(m.ctx, cap));
    ck_assert(!make_params(&m, &d));
    ck_assert_ptr_nonnull(m.p[0]);
    ck_assert_ptr_null(m.p[1]);
    /* clg_param_new returns NULL; its status is the cap's */
    assert_refused(CLG_ERR_OUT_OF_MEMORY, "parameter 'fc1.bias'", used0 + N_W1 * sizeof(float),
                   cap);
    ck_assert_msg(strstr(clg_last_error(), "allocating parameter 'fc1.bias' (32 bytes)"), "%s",
                  clg_last_error());
    ck_assert_uint_eq(clg_context_memory_used(m.ctx), used0 + N_W1 * sizeof(float));
    ck_assert_ptr_null(clg_param_find(m.ctx, "fc1.bias"));
    finish_and_compare(&m, &d, ref);
}
END_TEST

START_TEST(test_state_over_cap) {
    static host_data d;
    make_data(&d);
    const reference *ref = get_reference(&d);
    model m = {.ctx = new_context()};
    ck_assert_msg(make_params(&m, &d), "%s", clg_last_error());
    make_graph(&m);
    size_t used = clg_context_memory_used(m.ctx);

    /* compile: room for the plan and all but 4 bytes of Adam's state */
    size_t cap = used + ref->plan_bytes + STATE_BYTES - 4;
    clg_assert_ok(clg_context_set_memory_limit(m.ctx, cap));
    clg_status st = compile(&m);
    ck_assert_ptr_null(m.plan);
    assert_refused(st, "optimizer state fc1.weight.exp_avg", used, cap);
    ck_assert_uint_eq(clg_context_memory_used(m.ctx), used);
    ck_assert_uint_eq(clg_optimizer_state_count(m.opt), 0);

    /* creating the state directly: fc1.weight's two moments fit, fc1.bias's first does not,
     * and what was made before it is released again */
    cap = used + 2 * N_W1 * sizeof(float) + N_B1 * sizeof(float) - 4;
    clg_assert_ok(clg_context_set_memory_limit(m.ctx, cap));
    st = clg_optimizer_init_state(m.opt);
    assert_refused(st, "optimizer state fc1.bias.exp_avg", used + 2 * N_W1 * sizeof(float), cap);
    ck_assert_uint_eq(clg_context_memory_used(m.ctx), used);
    ck_assert_uint_eq(clg_optimizer_state_count(m.opt), 0);
    finish_and_compare(&m, &d, ref);
}
END_TEST

START_TEST(test_plan_over_cap) {
    static host_data d;
    make_data(&d);
    const reference *ref = get_reference(&d);
    model m = {.ctx = new_context()};
    ck_assert_msg(make_params(&m, &d), "%s", clg_last_error());
    make_graph(&m);
    size_t used = clg_context_memory_used(m.ctx);
    size_t cap = used + ref->plan_bytes - 4;
    clg_assert_ok(clg_context_set_memory_limit(m.ctx, cap));
    clg_status st = compile(&m);
    ck_assert_ptr_null(m.plan);
    assert_refused(st, "the plan's intermediate tensors", used, cap);
    /* the whole need, broken down, was checked before anything was allocated */
    char need[64];
    snprintf(need, sizeof need, "the plan needs %zu bytes", ref->plan_bytes + STATE_BYTES);
    ck_assert_msg(strstr(clg_last_error(), need), "no '%s' in: %s", need, clg_last_error());
    ck_assert_msg(strstr(clg_last_error(), "nothing was allocated"), "%s", clg_last_error());
    ck_assert_uint_eq(clg_context_memory_used(m.ctx), used);
    /* a second try under the same cap fails the same way: nothing was left behind */
    st = compile(&m);
    assert_refused(st, "the plan's intermediate tensors", used, cap);
    ck_assert_uint_eq(clg_context_memory_used(m.ctx), used);
    finish_and_compare(&m, &d, ref);
}
END_TEST

/* clg_context_create under CLGRAD_MAX_DEVICE_BYTES=value: its status and cap. */
static clg_status create_with(const char *value, size_t *cap) {
    setenv("CLGRAD_MAX_DEVICE_BYTES", value, 1);
    clg_context *ctx = NULL;
    clg_status st = clg_context_create(NULL, &ctx);
    unsetenv("CLGRAD_MAX_DEVICE_BYTES");
    if (st == CLG_ERR_NO_PLATFORM) exit(77);
    *cap = clg_context_memory_limit(ctx);
    if (st == CLG_OK) {
        ck_assert_ptr_nonnull(ctx);
    } else {
        ck_assert_ptr_null(ctx);
    }
    clg_context_free(ctx);
    return st;
}

START_TEST(test_env) {
    static const struct {
        const char *text;
        size_t bytes;
    } good[] = {
        {"0", 0},
        {"", 0},
        {"12345", 12345},
        {"64k", 64 << 10},
        {"64K", 64 << 10},
        {"512M", 512u << 20},
        {"2G", (size_t)2 << 30},
        {"1t", (size_t)1 << 40},
        {"007", 7},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; ++i) {
        size_t cap = 1;
        clg_status st = create_with(good[i].text, &cap);
        ck_assert_msg(st == CLG_OK, "'%s': %s: %s", good[i].text, clg_status_name(st),
                      clg_last_error());
        ck_assert_msg(cap == good[i].bytes, "'%s' gave a cap of %zu, want %zu", good[i].text, cap,
                      good[i].bytes);
    }
    static const char *const bad[] = {
        "abc",          "12MB", "1.5G", "-1", " 12", "12 ", "G", "4X", "99999999999999999999",
        "17179869184T", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        size_t cap;
        clg_status st = create_with(bad[i], &cap);
        ck_assert_msg(st == CLG_ERR_INVALID_ARGUMENT, "'%s' was accepted (%s)", bad[i],
                      clg_status_name(st));
        ck_assert_msg(strstr(clg_last_error(), "CLGRAD_MAX_DEVICE_BYTES"), "'%s': %s", bad[i],
                      clg_last_error());
        ck_assert_msg(strstr(clg_last_error(), "clg_context_create"), "%s", clg_last_error());
    }

    /* the cap read at creation is enforced: 100 bytes hold no 128-byte parameter */
    setenv("CLGRAD_MAX_DEVICE_BYTES", "100", 1);
    clg_context *ctx = new_context();
    unsetenv("CLGRAD_MAX_DEVICE_BYTES");
    size_t used = clg_context_memory_used(ctx);
    clg_param *p = clg_param_new(ctx, "fc1.weight", CLG_F32, 2, (const int64_t[]){HID, IN});
    ck_assert_ptr_null(p);
    assert_refused(CLG_ERR_OUT_OF_MEMORY, "parameter 'fc1.weight'", used, 100);
    ck_assert_uint_eq(clg_context_memory_used(ctx), used);
    /* 0 lifts it */
    clg_assert_ok(clg_context_set_memory_limit(ctx, 0));
    p = clg_param_new(ctx, "fc1.weight", CLG_F32, 2, (const int64_t[]){HID, IN});
    ck_assert_msg(p != NULL, "%s", clg_last_error());
    ck_assert_uint_eq(clg_context_memory_used(ctx), used + N_W1 * sizeof(float));
    clg_context_free(ctx);

    ck_assert_int_eq(clg_context_set_memory_limit(NULL, 1), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_uint_eq(clg_context_memory_used(NULL), 0);
    ck_assert_uint_eq(clg_context_memory_limit(NULL), 0);
}
END_TEST

static Suite *memory_suite(void) {
    Suite *s = suite_create("memory");
    TCase *tc = tcase_create("device");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_fits);
    tcase_add_test(tc, test_parameter_over_cap);
    tcase_add_test(tc, test_state_over_cap);
    tcase_add_test(tc, test_plan_over_cap);
    tcase_add_test(tc, test_env);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    /* every cap in this test is set by the test */
    unsetenv("CLGRAD_MAX_DEVICE_BYTES");
    return clg_test_run(memory_suite());
}
