/* CLGRAD_CHECK_FINITE: a run whose values turn NaN or Inf fails with CLG_ERR_NOT_FINITE
 * naming the first op (or input, or parameter) that holds them, while the same graph
 * compiled normally runs on and returns the NaN (the control: only the check catches it).
 * Finite runs give the same numbers as a plain-C reference in both modes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define N 6

typedef struct net {
    clg_graph *g;
    clg_tensor *x, *out;
} net;

/* out = sum(log(2 x) + 1): a negative element of x makes log the first op to give NaN. */
static net build(clg_context *ctx) {
    net n;
    n.g = clg_graph_new(ctx);
    n.x = clg_input(n.g, "x", CLG_F32, 1, (int64_t[]){N});
    clg_tensor *y = clg_mul_scalar(n.g, n.x, 2.0f);
    clg_tensor *z = clg_log(n.g, y);
    n.out = clg_sum(n.g, clg_add_scalar(n.g, z, 1.0f), 0, NULL, false);
    clg_assert_ok(clg_graph_output(n.g, n.out));
    return n;
}

static clg_plan *compile(net *n, bool check) {
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(n->g, &(clg_compile_options){.check_finite = check}, &p));
    return p;
}

static float reference(const float *x) {
    double s = 0.0;
    for (int i = 0; i < N; ++i) s += log(2.0 * x[i]) + 1.0;
    return (float)s;
}

START_TEST(finite_runs_agree) {
    clg_context *ctx = clg_test_context();
    net n = build(ctx);
    const float x[N] = {0.5f, 1.0f, 2.0f, 3.0f, 0.25f, 7.0f};
    float want = reference(x);
    for (int check = 0; check < 2; ++check) {
        clg_plan *p = compile(&n, check);
        for (int run = 0; run < 2; ++run) {
            float got;
            clg_assert_ok(clg_plan_write(p, n.x, x, sizeof x));
            clg_assert_ok(clg_plan_run(p));
            clg_assert_ok(clg_plan_read(p, n.out, &got, sizeof got));
            clg_assert_close(&got, &want, 1, 1e-5, 1e-5);
        }
        clg_plan_free(p);
    }
    clg_graph_free(n.g);
}
END_TEST

START_TEST(names_the_op) {
    clg_context *ctx = clg_test_context();
    net n = build(ctx);
    const float x[N] = {0.5f, 1.0f, -2.0f, 3.0f, 0.25f, 7.0f};
    /* the control: compiled normally, the NaN goes through unnoticed */
    clg_plan *plain = compile(&n, false);
    float got;
    clg_assert_ok(clg_plan_write(plain, n.x, x, sizeof x));
    clg_assert_ok(clg_plan_run(plain));
    clg_assert_ok(clg_plan_read(plain, n.out, &got, sizeof got));
    ck_assert(isnan(got));
    clg_plan_free(plain);

    clg_plan *p = compile(&n, true);
    clg_assert_ok(clg_plan_write(p, n.x, x, sizeof x));
    ck_assert_int_eq(clg_plan_run(p), CLG_ERR_NOT_FINITE);
    const char *msg = clg_last_error();
    ck_assert_msg(strstr(msg, "op 'log'") && strstr(msg, "NaN at element 2") &&
                      strstr(msg, "'mul' [6] f32"),
                  "%s", msg);
    /* the plan stays usable: finite input, finite run */
    const float ok[N] = {1, 1, 1, 1, 1, 1};
    clg_assert_ok(clg_plan_write(p, n.x, ok, sizeof ok));
    clg_assert_ok(clg_plan_run(p));
    clg_plan_free(p);
    clg_graph_free(n.g);
}
END_TEST

/* An op with attributes is named with them: mean(4 x) overflows in its sum of finite terms. */
START_TEST(names_the_op_with_its_attributes) {
    clg_context *ctx = clg_test_context();
    net n = {.g = clg_graph_new(ctx)};
    n.x = clg_input(n.g, "x", CLG_F32, 1, (int64_t[]){N});
    n.out = clg_mean(n.g, clg_mul_scalar(n.g, n.x, 4.0f), 0, NULL, false);
    clg_assert_ok(clg_graph_output(n.g, n.out));
    clg_plan *p = compile(&n, true);
    const float x[N] = {5e37f, 5e37f, 5e37f, 5e37f, 5e37f, 5e37f}; /* 4 x is finite, the sum not */
    clg_assert_ok(clg_plan_write(p, n.x, x, sizeof x));
    ck_assert_int_eq(clg_plan_run(p), CLG_ERR_NOT_FINITE);
    const char *msg = clg_last_error();
    ck_assert_msg(strstr(msg, "op 'sum'") &&
                      strstr(msg, "[1] f32, reduce{axes=[0] scale=0.166667}) produced +Inf"),
                  "%s", msg);
    clg_plan_free(p);
    clg_graph_free(n.g);
}
END_TEST

START_TEST(names_the_input_and_the_environment_switch) {
    clg_context *ctx = clg_test_context();
    net n = build(ctx);
    const float x[N] = {0.5f, 1.0f, 2.0f, INFINITY, 0.25f, 7.0f};
    setenv("CLGRAD_CHECK_FINITE", "1", 1);
    clg_plan *p = compile(&n, false); /* the variable alone turns the check on */
    unsetenv("CLGRAD_CHECK_FINITE");
    clg_assert_ok(clg_plan_write(p, n.x, x, sizeof x));
    ck_assert_int_eq(clg_plan_run(p), CLG_ERR_NOT_FINITE);
    ck_assert_msg(strstr(clg_last_error(), "input 'x' holds +Inf at element 3"), "%s",
                  clg_last_error());
    clg_plan_free(p);
    clg_graph_free(n.g);
}
END_TEST

/* loss = sum(w * c): with a huge step the SGD update overflows w although the loss and the
 * gradient (c) are finite, so the check blames the update, after the ops. A parameter that is
 * already infinite before a run is named as such. */
START_TEST(names_the_parameter) {
    clg_context *ctx = clg_test_context();
    clg_param *w = clg_param_new(ctx, "finite.w", CLG_F32, 1, (int64_t[]){2});
    const float w0[2] = {1e20f, 1.0f};
    clg_assert_ok(clg_param_write(w, w0, sizeof w0));
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *c = clg_full(g, 1e10f, 1, (int64_t[]){2});
    clg_tensor *loss = clg_sum(g, clg_mul(g, clg_param_tensor(g, w), c), 0, NULL, false);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_SGD);
    oc.lr = 1e30f;
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    ck_assert_ptr_nonnull(opt);
    clg_plan *p = NULL;
    clg_assert_ok(clg_optimizer_apply(opt, g, NULL));
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.check_finite = true}, &p));
    ck_assert_int_eq(clg_plan_run(p), CLG_ERR_NOT_FINITE);
    ck_assert_msg(strstr(clg_last_error(), "parameter 'finite.w' holds -Inf at element 0") &&
                      strstr(clg_last_error(), "after the run"),
                  "%s", clg_last_error());
    ck_assert_int_eq(clg_plan_run(p), CLG_ERR_NOT_FINITE);
    ck_assert_msg(strstr(clg_last_error(), "parameter 'finite.w' already holds -Inf"), "%s",
                  clg_last_error());
    clg_plan_free(p);
    clg_optimizer_free(opt);
    clg_graph_free(g);
}
END_TEST

int main(void) {
    Suite *s = suite_create("check-finite");
    TCase *tc = tcase_create("check-finite");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, finite_runs_agree);
    tcase_add_test(tc, names_the_op);
    tcase_add_test(tc, names_the_op_with_its_attributes);
    tcase_add_test(tc, names_the_input_and_the_environment_switch);
    tcase_add_test(tc, names_the_parameter);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
