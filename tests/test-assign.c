/* clg_assign: the write lands on the parameter on every run, and it is ordered by the graph:
 * ops built before the assign read the old value even when the compiler would like to fuse
 * them into a consumer built after it. */
#include <string.h>

#include "harness.h"

START_TEST(assign_updates_and_orders) {
    clg_context *ctx = clg_test_context();
    clg_param *p = clg_param_new(ctx, "assign.p", CLG_F32, 1, (int64_t[]){3});
    ck_assert_ptr_nonnull(p);
    const float init[3] = {1.0f, 2.0f, 3.0f};
    clg_assert_ok(clg_param_write(p, init, sizeof init));
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 1, (int64_t[]){3});
    clg_tensor *pt = clg_param_tensor(g, p);
    clg_tensor *before = clg_mul_scalar(g, pt, 2.0f); /* reads the old value */
    clg_assert_ok(clg_assign(g, p, clg_add_scalar(g, pt, 10.0f)));
    /* built after the assign, and the only consumer of `before`: a fusion candidate */
    clg_tensor *z = clg_add(g, before, x);
    clg_assert_ok(clg_graph_output(g, z));
    clg_plan *plan = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &plan));
    const float zero[3] = {0, 0, 0};
    float old[3] = {1.0f, 2.0f, 3.0f};
    for (int run = 0; run < 3; ++run) {
        clg_assert_ok(clg_plan_write(plan, x, zero, sizeof zero));
        clg_assert_ok(clg_plan_run(plan));
        float got[3], pv[3], want[3], wantp[3];
        clg_assert_ok(clg_plan_read(plan, z, got, sizeof got));
        clg_assert_ok(clg_param_read(p, pv, sizeof pv));
        for (int i = 0; i < 3; ++i) {
            want[i] = 2.0f * old[i];
            wantp[i] = old[i] + 10.0f;
            old[i] = wantp[i];
        }
        clg_assert_close(got, want, 3, 0, 0);
        clg_assert_close(pv, wantp, 3, 0, 0);
    }
}
END_TEST

START_TEST(assign_rejects_mismatch) {
    clg_context *ctx = clg_test_context();
    clg_param *p = clg_param_new(ctx, "assign.q", CLG_F32, 1, (int64_t[]){3});
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *v = clg_input(g, "v", CLG_F32, 1, (int64_t[]){4});
    ck_assert_int_eq(clg_assign(g, p, v), CLG_ERR_SHAPE);
    ck_assert_msg(strstr(clg_last_error(), "assign.q"), "%s", clg_last_error());
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
}
END_TEST

int main(void) {
    Suite *s = suite_create("assign");
    TCase *tc = tcase_create("assign");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, assign_updates_and_orders);
    tcase_add_test(tc, assign_rejects_mismatch);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
