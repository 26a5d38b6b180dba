/* Parameters as the RL and self-supervised families use them: device copies (a DQN's hard
 * target update), lerp (Polyak averaging), the requires_grad switch, reading a gradient after a
 * run, and clg_detach, each against values computed here. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define N 2600 /* more than two of the CPU form's 1024-element runs per work-item */

static int serial;

static clg_param *param(clg_context *ctx, const char *what, int64_t n, clg_dtype dtype) {
    char name[64];
    snprintf(name, sizeof name, "param%d.%s", serial++, what);
    clg_param *p = clg_param_new(ctx, name, dtype, 1, &n);
    ck_assert_msg(p != NULL, "%s", clg_last_error());
    return p;
}

START_TEST(copy_and_lerp) {
    clg_context *ctx = clg_test_context();
    static float a[N], b[N], got[N], want[N];
    clg_test_rng r;
    clg_test_rng_seed(&r, 5);
    clg_test_fill(&r, a, N, -3.0f, 3.0f);
    clg_test_fill(&r, b, N, -3.0f, 3.0f);
    clg_param *target = param(ctx, "target", N, CLG_F32), *online = param(ctx, "online", N, CLG_F32);
    clg_assert_ok(clg_param_write(target, a, sizeof a));
    clg_assert_ok(clg_param_write(online, b, sizeof b));
    /* Polyak: target <- target + tau (online - target), twice */
    clg_assert_ok(clg_param_lerp(target, online, 0.25f));
    clg_assert_ok(clg_param_lerp(target, online, 0.25f));
    clg_assert_ok(clg_param_read(target, got, sizeof got));
    for (int i = 0; i < N; ++i) {
        double t = a[i];
        for (int k = 0; k < 2; ++k) t += 0.25 * (b[i] - t);
        want[i] = (float)t;
    }
    clg_assert_close(got, want, N, 1e-6, 1e-6);
    /* tau 0 leaves it, tau 1 is a copy; the source never changes */
    memcpy(want, got, sizeof got);
    clg_assert_ok(clg_param_lerp(target, online, 0.0f));
    clg_assert_ok(clg_param_read(target, got, sizeof got));
    ck_assert(memcmp(got, want, sizeof got) == 0);
    clg_assert_ok(clg_param_lerp(target, online, 1.0f));
    clg_assert_ok(clg_param_read(target, got, sizeof got));
    ck_assert(memcmp(got, b, sizeof b) == 0);
    clg_assert_ok(clg_param_read(online, got, sizeof got));
    ck_assert(memcmp(got, b, sizeof b) == 0);
    /* copy: bit for bit, also for i32 */
    clg_assert_ok(clg_param_write(target, a, sizeof a));
    clg_assert_ok(clg_param_copy(online, target));
    clg_assert_ok(clg_param_read(online, got, sizeof got));
    ck_assert(memcmp(got, a, sizeof a) == 0);
    clg_param *i1 = param(ctx, "i1", 3, CLG_I32), *i2 = param(ctx, "i2", 3, CLG_I32);
    const int32_t iv[3] = {7, -8, 9};
    int32_t ig[3];
    clg_assert_ok(clg_param_write(i1, iv, sizeof iv));
    clg_assert_ok(clg_param_copy(i2, i1));
    clg_assert_ok(clg_param_read(i2, ig, sizeof ig));
    ck_assert(memcmp(ig, iv, sizeof iv) == 0);
    /* what does not fit is refused with both names */
    clg_param *small = param(ctx, "small", 3, CLG_F32);
    ck_assert_int_eq(clg_param_copy(small, target), CLG_ERR_SHAPE);
    ck_assert_msg(strstr(clg_last_error(), clg_param_name(small)) &&
                      strstr(clg_last_error(), clg_param_name(target)),
                  "%s", clg_last_error());
    ck_assert_int_eq(clg_param_lerp(small, target, 0.5f), CLG_ERR_SHAPE);
    ck_assert_int_eq(clg_param_lerp(i2, i1, 0.5f), CLG_ERR_SHAPE); /* i32 */
    ck_assert_int_eq(clg_param_lerp(target, online, 1.5f), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_param_lerp(target, online, NAN), CLG_ERR_INVALID_ARGUMENT);
    clg_context *other = NULL;
    clg_assert_ok(clg_context_create(NULL, &other));
    clg_param *foreign = clg_param_new(other, "foreign", CLG_F32, 1, (int64_t[]){N});
    ck_assert_int_eq(clg_param_copy(target, foreign), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_param_lerp(target, foreign, 0.5f), CLG_ERR_INVALID_ARGUMENT);
    clg_context_free(other);
}
END_TEST

/* loss = sum(w * c) + sum(detach(w) * d): the gradient of w is c (the detached term gives
 * none); frozen, w gets no gradient at all. */
START_TEST(requires_grad_detach_and_gradients) {
    clg_context *ctx = clg_test_context();
    const int n = 5;
    const float wv[5] = {1, -2, 3, -4, 5}, cv[5] = {0.5f, 1, 1.5f, 2, 2.5f}, dv[5] = {9, 9, 9, 9, 9};
    clg_param *w = param(ctx, "w", n, CLG_F32);
    clg_assert_ok(clg_param_write(w, wv, sizeof wv));
    ck_assert(clg_param_requires_grad(w));
    for (int frozen = 0; frozen < 2; ++frozen) {
        clg_param_set_requires_grad(w, !frozen);
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *wt = clg_param_tensor(g, w);
        clg_tensor *c = clg_constant(g, CLG_F32, 1, (int64_t[]){n}, cv);
        clg_tensor *d = clg_constant(g, CLG_F32, 1, (int64_t[]){n}, dv);
        clg_tensor *loss = clg_add(g, clg_sum(g, clg_mul(g, wt, c), 0, NULL, false),
                                   clg_sum(g, clg_mul(g, clg_detach(g, wt), d), 0, NULL, false));
        clg_assert_ok(clg_graph_output(g, loss));
        clg_assert_ok(clg_backward(g, loss));
        if (frozen) {
            ck_assert_ptr_null(clg_param_grad(g, w));
        } else {
            clg_tensor *gw = clg_param_grad(g, w);
            ck_assert_ptr_nonnull(gw);
            clg_assert_ok(clg_graph_output(g, gw));
        }
        clg_plan *p = NULL;
        clg_assert_ok(clg_graph_compile(g, NULL, &p));
        clg_assert_ok(clg_plan_run(p));
        float grad[5], l;
        clg_assert_ok(clg_plan_read(p, loss, &l, sizeof l));
        double want_l = 0;
        for (int i = 0; i < n; ++i) want_l += wv[i] * (cv[i] + dv[i]);
        ck_assert_msg(fabs(l - want_l) < 1e-4, "loss %g, want %g", (double)l, want_l);
        if (frozen) {
            ck_assert_int_eq(clg_plan_read_grad(p, w, grad, sizeof grad), CLG_ERR_INVALID_ARGUMENT);
            ck_assert_msg(strstr(clg_last_error(), "frozen"), "%s", clg_last_error());
        } else {
            clg_assert_ok(clg_plan_read_grad(p, w, grad, sizeof grad));
            clg_assert_close(grad, cv, n, 0, 0); /* exactly c: detach added nothing */
            ck_assert_int_eq(clg_plan_read_grad(p, w, grad, 4), CLG_ERR_SHAPE);
        }
        clg_graph_free(g);
    }
    ck_assert(!clg_param_requires_grad(w));
    clg_param *ip = param(ctx, "ints", 2, CLG_I32);
    clg_param_set_requires_grad(ip, true); /* i32 parameters never have gradients */
    ck_assert(!clg_param_requires_grad(ip));
}
END_TEST

int main(void) {
    Suite *s = suite_create("param");
    TCase *tc = tcase_create("param");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, copy_and_lerp);
    tcase_add_test(tc, requires_grad_detach_and_gradients);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
