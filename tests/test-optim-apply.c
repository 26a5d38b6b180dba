/* Optimizers as consumers of gradients (clg_optimizer_apply): parameter groups with their own
 * learning rate and weight decay against a plain-C reference of torch.optim's AdamW, frozen
 * parameters that stay bit-identical, gradient accumulation over 4 runs against one run of
 * the 4x batch, two optimizers on two plans of one context and on disjoint parameters of one
 * graph, a plan that outlives its optimizer, the errors of misuse, and checkpoints of groups. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "scratch.h"

#define N 5

static int serial;

static clg_param *new_param(clg_context *ctx, const char *what, int64_t n, const float *v) {
    char name[64];
    snprintf(name, sizeof name, "apply%d.%s", serial++, what);
    clg_param *p = clg_param_new(ctx, name, CLG_F32, 1, &n);
    ck_assert_msg(p != NULL, "%s", clg_last_error());
    clg_assert_ok(clg_param_write(p, v, (size_t)n * sizeof(float)));
    return p;
}

/* loss = sum over params of sum(w^2 / 2 + c w): the gradient of w is w + c. */
static clg_tensor *quadratic(clg_graph *g, clg_param *const *ps, int n, const float *c) {
    clg_tensor *loss = NULL;
    for (int i = 0; i < n; ++i) {
        clg_tensor *w = clg_param_tensor(g, ps[i]);
        clg_tensor *ct = clg_constant(g, CLG_F32, 1, (int64_t[]){N}, c);
        clg_tensor *l = clg_add(g, clg_mul_scalar(g, clg_square(g, w), 0.5f), clg_mul(g, ct, w));
        l = clg_sum(g, l, 0, NULL, false);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    return loss;
}

/* torch.optim.AdamW on one element, in double. */
typedef struct adamw_ref {
    double p, m, v;
} adamw_ref;

static void adamw_step(adamw_ref *r, double c, double lr, double wd, int64_t t) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double g = r->p + c;
    r->p *= 1.0 - lr * wd;
    r->m = b1 * r->m + (1 - b1) * g;
    r->v = b2 * r->v + (1 - b2) * g * g;
    double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
    r->p -= lr / bc1 * r->m / (sqrt(r->v) / sqrt(bc2) + eps);
}

static void read_param(clg_param *p, float *out) {
    clg_assert_ok(clg_param_read(p, out, (size_t)clg_param_numel(p) * sizeof(float)));
}

START_TEST(groups_have_their_own_settings) {
    clg_context *ctx = clg_test_context();
    const float w0[N] = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f}, c[N] = {0.3f, -0.1f, 1.0f, -2.0f, 0.7f};
    clg_param *decay = new_param(ctx, "matrix", N, w0), *plain = new_param(ctx, "bias", N, w0);
    clg_param *frozen = new_param(ctx, "frozen", N, w0);
    clg_param_set_requires_grad(frozen, false);
    clg_optimizer_config c0 = clg_optimizer_defaults(CLG_OPT_ADAMW);
    c0.lr = 1e-2f;
    c0.weight_decay = 0.1f;
    clg_optimizer *opt = clg_optimizer_new(ctx, &c0);
    ck_assert_ptr_nonnull(opt);
    clg_optimizer_config c1 = c0;
    c1.lr = 3e-3f;
    c1.weight_decay = 0.0f;
    size_t group = 9;
    clg_assert_ok(clg_optimizer_add_group(opt, &plain, 1, &c1, &group));
    ck_assert_uint_eq(group, 1);
    ck_assert_int_eq(clg_optimizer_group_of(opt, plain), 1);
    ck_assert_int_eq(clg_optimizer_group_of(opt, decay), 0);
    ck_assert_int_eq(clg_optimizer_group_of(opt, frozen), -1);
    /* a parameter belongs to one group, and groups share kind and clipping */
    ck_assert_int_eq(clg_optimizer_add_group(opt, &plain, 1, &c1, NULL), CLG_ERR_INVALID_ARGUMENT);
    clg_optimizer_config bad = c1;
    bad.kind = CLG_OPT_SGD;
    ck_assert_int_eq(clg_optimizer_add_group(opt, &decay, 1, &bad, NULL), CLG_ERR_INVALID_ARGUMENT);

    clg_graph *g = clg_graph_new(ctx);
    clg_param *ps[3] = {decay, plain, frozen};
    clg_tensor *loss = quadratic(g, ps, 3, c);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_optimizer_apply(opt, g, NULL));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    adamw_ref rd[N], rp[N];
    for (int i = 0; i < N; ++i) rd[i] = rp[i] = (adamw_ref){w0[i], 0, 0};
    for (int64_t t = 1; t <= 6; ++t) {
        clg_assert_ok(clg_plan_run(p));
        float got_d[N], got_p[N], got_f[N];
        read_param(decay, got_d);
        read_param(plain, got_p);
        read_param(frozen, got_f);
        float want_d[N], want_p[N];
        for (int i = 0; i < N; ++i) {
            adamw_step(&rd[i], c[i], 1e-2, 0.1, t);
            adamw_step(&rp[i], c[i], 3e-3, 0.0, t);
            want_d[i] = (float)rd[i].p;
            want_p[i] = (float)rp[i].p;
        }
        clg_assert_close(got_d, want_d, N, 1e-6, 1e-5);
        clg_assert_close(got_p, want_p, N, 1e-6, 1e-5);
        ck_assert(memcmp(got_f, w0, sizeof w0) == 0); /* frozen: bit for bit */
    }
    ck_assert_int_eq(clg_optimizer_steps(opt), 6);
    ck_assert_float_eq(clg_optimizer_group_lr(opt, 1), 3e-3f);
    clg_graph_free(g);
    clg_optimizer_free(opt);
}
END_TEST

/* mean over rows of (x . w - y)^2: accumulating 4 quarter batches, then updating, equals one
 * update on the whole batch (SGD with momentum and Adam, two updates each). */
enum { ROWS = 16, DIM = 3 };

static clg_plan *regression(clg_context *ctx, clg_param *w, clg_optimizer *opt, int rows,
                            int accumulate, clg_tensor **x, clg_tensor **y) {
    clg_graph *g = clg_graph_new(ctx);
    *x = clg_input(g, "x", CLG_F32, 2, (int64_t[]){rows, DIM});
    *y = clg_input(g, "y", CLG_F32, 2, (int64_t[]){rows, 1});
    clg_tensor *pred = clg_matmul(g, *x, clg_reshape(g, clg_param_tensor(g, w), 2,
                                                     (int64_t[]){DIM, 1}),
                                  false, false);
    clg_tensor *loss = clg_mse_loss(g, pred, *y, CLG_REDUCTION_MEAN);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_optimizer_apply(opt, g, &(clg_apply_options){.accumulate = accumulate}));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    return p;
}

static void accumulation_case(clg_optimizer_kind kind) {
    clg_context *ctx = clg_test_context();
    float x[ROWS * DIM], y[ROWS], w0[DIM] = {0.5f, -1.0f, 2.0f};
    clg_test_rng r;
    clg_test_rng_seed(&r, 7);
    clg_test_fill(&r, x, ROWS * DIM, -1.0f, 1.0f);
    clg_test_fill(&r, y, ROWS, -1.0f, 1.0f);
    clg_param *wa = new_param(ctx, "acc", DIM, w0), *wb = new_param(ctx, "big", DIM, w0);
    clg_optimizer_config cfg = clg_optimizer_defaults(kind);
    cfg.lr = 0.1f;
    if (kind == CLG_OPT_SGD) cfg.momentum = 0.9f;
    cfg.clip_norm = 0.5f; /* active: the norm of the mean gradient, not of the sum */
    clg_optimizer *oa = clg_optimizer_new_params(ctx, &cfg, &wa, 1);
    clg_optimizer *ob = clg_optimizer_new_params(ctx, &cfg, &wb, 1);
    clg_tensor *xa, *ya, *xb, *yb;
    clg_plan *pa = regression(ctx, wa, oa, ROWS / 4, 4, &xa, &ya);
    clg_plan *pb = regression(ctx, wb, ob, ROWS, 0, &xb, &yb);
    for (int update = 1; update <= 2; ++update) {
        for (int q = 0; q < 4; ++q) {
            float before[DIM];
            read_param(wa, before);
            clg_assert_ok(clg_plan_write(pa, xa, x + q * (ROWS / 4) * DIM, sizeof x / 4));
            clg_assert_ok(clg_plan_write(pa, ya, y + q * (ROWS / 4), sizeof y / 4));
            clg_assert_ok(clg_plan_run(pa));
            float after[DIM];
            read_param(wa, after);
            /* nothing moves until the fourth run */
            if (q < 3) ck_assert(memcmp(before, after, sizeof before) == 0);
        }
        ck_assert_int_eq(clg_optimizer_steps(oa), update);
        clg_assert_ok(clg_plan_write(pb, xb, x, sizeof x));
        clg_assert_ok(clg_plan_write(pb, yb, y, sizeof y));
        clg_assert_ok(clg_plan_run(pb));
        float ga[DIM], gb[DIM];
        read_param(wa, ga);
        read_param(wb, gb);
        clg_assert_close(ga, gb, DIM, 1e-6, 1e-5);
        ck_assert(memcmp(ga, w0, sizeof w0) != 0);
    }
    clg_plan_free(pa);
    clg_plan_free(pb);
    clg_optimizer_free(oa);
    clg_optimizer_free(ob);
}

START_TEST(accumulation_equals_the_big_batch) {
    accumulation_case(CLG_OPT_SGD);
    accumulation_case(CLG_OPT_ADAM);
}
END_TEST

/* Two plans of one context, each with its optimizer (SGD and Adam), run in turn; and two
 * optimizers updating disjoint parameters of one graph. */
START_TEST(several_optimizers) {
    clg_context *ctx = clg_test_context();
    const float w0[N] = {1, 2, 3, 4, 5}, c[N] = {-1, 0.5f, 0, 2, -3};
    clg_param *a = new_param(ctx, "sgd", N, w0), *b = new_param(ctx, "adam", N, w0);
    clg_optimizer_config cs = clg_optimizer_defaults(CLG_OPT_SGD);
    cs.lr = 0.1f;
    clg_optimizer_config ca = clg_optimizer_defaults(CLG_OPT_ADAMW);
    ca.lr = 0.05f;
    clg_optimizer *os = clg_optimizer_new_params(ctx, &cs, &a, 1);
    clg_optimizer *oa = clg_optimizer_new_params(ctx, &ca, &b, 1);
    clg_graph *ga = clg_graph_new(ctx), *gb = clg_graph_new(ctx);
    clg_tensor *la = quadratic(ga, &a, 1, c), *lb = quadratic(gb, &b, 1, c);
    clg_assert_ok(clg_graph_output(ga, la));
    clg_assert_ok(clg_graph_output(gb, lb));
    clg_assert_ok(clg_backward(ga, la));
    clg_assert_ok(clg_backward(gb, lb));
    clg_assert_ok(clg_optimizer_apply(os, ga, NULL));
    clg_assert_ok(clg_optimizer_apply(oa, gb, NULL));
    clg_plan *pa = NULL, *pb = NULL;
    clg_assert_ok(clg_graph_compile(ga, NULL, &pa));
    clg_assert_ok(clg_graph_compile(gb, NULL, &pb));
    double ra[N];
    adamw_ref rb[N];
    for (int i = 0; i < N; ++i) {
        ra[i] = w0[i];
        rb[i] = (adamw_ref){w0[i], 0, 0};
    }
    for (int t = 1; t <= 3; ++t) {
        clg_assert_ok(clg_plan_run(pa));
        clg_assert_ok(clg_plan_run(pb));
        clg_assert_ok(clg_plan_run(pb)); /* Adam's plan runs twice as often */
        float got_a[N], got_b[N], want_a[N], want_b[N];
        for (int i = 0; i < N; ++i) {
            ra[i] -= 0.1 * (ra[i] + c[i]);
            adamw_step(&rb[i], c[i], 0.05, 0.01, 2 * t - 1);
            adamw_step(&rb[i], c[i], 0.05, 0.01, 2 * t);
            want_a[i] = (float)ra[i];
            want_b[i] = (float)rb[i].p;
        }
        read_param(a, got_a);
        read_param(b, got_b);
        clg_assert_close(got_a, want_a, N, 1e-6, 1e-6);
        clg_assert_close(got_b, want_b, N, 1e-6, 1e-5);
    }
    ck_assert_int_eq(clg_optimizer_steps(os), 3);
    ck_assert_int_eq(clg_optimizer_steps(oa), 6);

    /* both optimizers on one graph over both parameters: each updates its own */
    clg_graph *g = clg_graph_new(ctx);
    clg_param *both[2] = {a, b};
    clg_tensor *l = quadratic(g, both, 2, c);
    clg_assert_ok(clg_graph_output(g, l));
    ck_assert_int_eq(clg_optimizer_apply(os, g, NULL), CLG_ERR_GRAPH); /* no backward yet */
    clg_assert_ok(clg_backward(g, l));
    clg_assert_ok(clg_optimizer_apply(os, g, NULL));
    ck_assert_int_eq(clg_optimizer_apply(os, g, NULL), CLG_ERR_GRAPH); /* twice */
    clg_assert_ok(clg_optimizer_apply(oa, g, NULL));
    /* a catch-all optimizer would update a parameter already taken */
    clg_optimizer *all = clg_optimizer_new(ctx, &cs);
    ck_assert_int_eq(clg_optimizer_apply(all, g, NULL), CLG_ERR_GRAPH);
    ck_assert_msg(strstr(clg_last_error(), "already updated by another optimizer"), "%s",
                  clg_last_error());
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    float pa0[N], pb0[N];
    read_param(a, pa0);
    read_param(b, pb0);
    clg_assert_ok(clg_plan_run(p));
    ck_assert_int_eq(clg_optimizer_steps(os), 4);
    ck_assert_int_eq(clg_optimizer_steps(oa), 7);
    float pa1[N], want[N];
    read_param(a, pa1);
    for (int i = 0; i < N; ++i) want[i] = pa0[i] - 0.1f * (pa0[i] + c[i]);
    clg_assert_close(pa1, want, N, 1e-6, 1e-6);

    /* the plan keeps its optimizers alive after they are freed */
    clg_optimizer_free(os);
    clg_optimizer_free(oa);
    clg_optimizer_free(all);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_run(pa));
    clg_graph_free(g);
    clg_graph_free(ga);
    clg_graph_free(gb);
}
END_TEST

/* The groups' settings and parameters travel with a checkpoint and are checked on load. */
START_TEST(groups_in_checkpoints) {
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    const float w0[N] = {1, 2, 3, 4, 5};
    clg_param *ps[3];
    const char *names[3] = {"m.weight", "m.bias", "ln.weight"};
    for (int i = 0; i < 3; ++i) {
        ps[i] = clg_param_new(ctx, names[i], CLG_F32, 1, (int64_t[]){N});
        clg_assert_ok(clg_param_write(ps[i], w0, sizeof w0));
    }
    clg_optimizer_config c0 = clg_optimizer_defaults(CLG_OPT_ADAMW), c1 = c0;
    c0.weight_decay = 0.1f;
    c1.weight_decay = 0.0f;
    clg_optimizer *opt = clg_optimizer_new(ctx, &c0);
    clg_assert_ok(clg_optimizer_add_group(opt, ps + 1, 2, &c1, NULL));
    clg_assert_ok(clg_optimizer_set_steps(opt, 3));
    const char *path = clg_scratch_path("groups.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, path, opt));
    clg_checkpoint_info *info = NULL;
    clg_assert_ok(clg_checkpoint_info_read(path, &info));
    ck_assert_str_eq(clg_checkpoint_info_get(info, "clgrad.optimizer.groups"), "2");
    ck_assert_str_eq(clg_checkpoint_info_get(info, "clgrad.optimizer.group1.params"),
                     "[\"m.bias\",\"ln.weight\"]");
    ck_assert_str_eq(clg_checkpoint_info_get(info, "clgrad.optimizer.group1.weight_decay"), "0");
    clg_checkpoint_info_free(info);
    /* the same groups load */
    clg_optimizer *same = clg_optimizer_new(ctx, &c0);
    clg_assert_ok(clg_optimizer_add_group(same, ps + 1, 2, &c1, NULL));
    clg_assert_ok(clg_checkpoint_load(ctx, path, same));
    ck_assert_int_eq(clg_optimizer_steps(same), 3);
    /* another group setting, other members, a missing group: mismatches */
    clg_optimizer_config c2 = c1;
    c2.lr = 5e-4f;
    clg_optimizer *other_lr = clg_optimizer_new(ctx, &c0);
    clg_assert_ok(clg_optimizer_add_group(other_lr, ps + 1, 2, &c2, NULL));
    ck_assert_int_eq(clg_checkpoint_load(ctx, path, other_lr), CLG_ERR_MISMATCH);
    ck_assert_msg(strstr(clg_last_error(), "optimizer group 1 lr: 0.000500000024 in model, "
                                           "0.00100000005 in file"),
                  "%s", clg_last_error());
    clg_optimizer *other_members = clg_optimizer_new(ctx, &c0);
    clg_assert_ok(clg_optimizer_add_group(other_members, ps + 1, 1, &c1, NULL));
    ck_assert_int_eq(clg_checkpoint_load(ctx, path, other_members), CLG_ERR_MISMATCH);
    ck_assert_msg(strstr(clg_last_error(), "optimizer group 1: parameters [m.bias] in model, "
                                           "[m.bias, ln.weight] in file"),
                  "%s", clg_last_error());
    clg_optimizer *one_group = clg_optimizer_new(ctx, &c0);
    ck_assert_int_eq(clg_checkpoint_load(ctx, path, one_group), CLG_ERR_MISMATCH);
    ck_assert_msg(strstr(clg_last_error(), "optimizer groups: 1 in model, 2 in file"), "%s",
                  clg_last_error());
    clg_context_free(ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim-apply");
    TCase *tc = tcase_create("optim-apply");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, clg_scratch_setup, clg_scratch_teardown);
    tcase_add_test(tc, groups_have_their_own_settings);
    tcase_add_test(tc, accumulation_equals_the_big_batch);
    tcase_add_test(tc, several_optimizers);
    tcase_add_test(tc, groups_in_checkpoints);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
