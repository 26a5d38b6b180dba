/* DQN learns CartPole: a short run with a fixed seed must beat a return that a broken target
 * cannot reach, and the two broken controls (the target network never refreshed from the
 * online one; terminal states bootstrapped as if the episode went on) must fall short of it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

/* Returns the greedy policy's mean return over 20 evaluation episodes. */
static double train(clg_dqn_config cfg, const char *name) {
    clg_context *ctx = clg_test_context();
    clg_dqn *d;
    clg_assert_ok(clg_dqn_new(ctx, name, &cfg, 4, 2, &d));
    clg_cartpole *env;
    clg_assert_ok(clg_cartpole_new(cfg.seed, &env));
    float obs[4], next[4];
    clg_assert_ok(clg_cartpole_reset(env, NULL, obs));
    for (int64_t t = 0; t < cfg.total_steps; ++t) {
        int32_t a;
        clg_step_result r;
        clg_assert_ok(clg_dqn_act(d, obs, -1.0, &a));
        clg_assert_ok(clg_cartpole_step(env, a, next, &r));
        clg_assert_ok(clg_dqn_observe(d, obs, a, (float)r.reward, next, r.terminated));
        if (r.terminated || r.truncated)
            clg_assert_ok(clg_cartpole_reset(env, NULL, obs));
        else
            for (int k = 0; k < 4; ++k)
                obs[k] = next[k];
    }
    double mean;
    clg_assert_ok(clg_dqn_evaluate_cartpole(d, 20, 4242, &mean, NULL));
    fprintf(stderr, "%s: evaluation mean return %.1f after %lld steps, %lld updates\n", name, mean,
            (long long)cfg.total_steps, (long long)clg_dqn_updates(d));
    clg_cartpole_free(env);
    clg_dqn_free(d);
    return mean;
}

/* The defaults scaled down: a smaller network, learning sooner and more often. */
static clg_dqn_config short_config(void) {
    clg_dqn_config c = clg_dqn_defaults();
    c.hidden[0] = c.hidden[1] = 64;
    c.total_steps = 20000;
    c.learning_starts = 500;
    c.train_freq = 64;
    c.gradient_steps = 32;
    c.exploration_fraction = 0.2;
    c.seed = 3;
    return c;
}

#define THRESHOLD 100.0

START_TEST(dqn_learns_cartpole) {
    double m = train(short_config(), "good");
    ck_assert_msg(m >= THRESHOLD, "mean return %.1f < %.0f", m, THRESHOLD);
}
END_TEST

START_TEST(dqn_stale_target_fails) {
    clg_dqn_config c = short_config();
    c.target_update_interval = 0;
    double m = train(c, "stale");
    ck_assert_msg(m < THRESHOLD, "a never-refreshed target reached %.1f", m);
}
END_TEST

START_TEST(dqn_bootstrapped_terminal_fails) {
    clg_dqn_config c = short_config();
    c.bootstrap_terminal = true;
    double m = train(c, "bootstrapped");
    ck_assert_msg(m < THRESHOLD, "bootstrapping terminal states reached %.1f", m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dqn-train");
    TCase *tc = tcase_create("dqn-train");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dqn_learns_cartpole);
    tcase_add_test(tc, dqn_stale_target_fails);
    tcase_add_test(tc, dqn_bootstrapped_terminal_fails);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
