/* Reinforcement-learning environments: the generator against xoshiro256**'s and splitmix64's
 * published outputs, CartPole-v1 replaying Gymnasium's trajectories (tests/fixtures, made by
 * tools/make_cartpole_fixture.py), FrozenLake's model entry by entry as Gymnasium builds it and
 * its sampled moves, the grid world's model, and refused input. Host only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/cartpole_gymnasium.h"
#include "harness.h"

/* ---- Random numbers ---- */

START_TEST(rng_reference_outputs) {
    /* xoshiro256**'s reference code from the state {1, 2, 3, 4} */
    clg_rng r = {{1, 2, 3, 4}};
    ck_assert_uint_eq(clg_rng_next(&r), 11520u);
    ck_assert_uint_eq(clg_rng_next(&r), 0u);
    ck_assert_uint_eq(clg_rng_next(&r), 1509978240u);
    ck_assert_uint_eq(clg_rng_next(&r), 1215971899390074240u);
    /* splitmix64 from 0 starts 0xe220a8397b1dcdaf, the value its reference code prints */
    clg_rng_seed(&r, 0);
    ck_assert_uint_eq(r.s[0], 0xe220a8397b1dcdafu);
    ck_assert_uint_eq(r.s[1], 0x6e789e6aa1b965f4u);
    /* seeded streams (computed independently in Python) */
    clg_rng_seed(&r, 42);
    ck_assert_uint_eq(clg_rng_next(&r), 0x15780b2e0c2ec716u);
    ck_assert_uint_eq(clg_rng_next(&r), 0x6104d9866d113a7eu);
    ck_assert_uint_eq(clg_rng_next(&r), 0xae17533239e499a1u);
}
END_TEST

START_TEST(rng_ranges) {
    clg_rng r;
    clg_rng_seed(&r, 7);
    int counts[5] = {0};
    double sum = 0, lo = 1, hi = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
        double u = clg_rng_uniform(&r);
        ck_assert(u >= 0 && u < 1);
        sum += u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        uint32_t k = clg_rng_below(&r, 5);
        ck_assert_uint_lt(k, 5);
        counts[k]++;
    }
    ck_assert_double_eq_tol(sum / n, 0.5, 0.003); /* 4.5 standard errors */
    ck_assert(lo < 1e-4 && hi > 1 - 1e-4);
    for (int k = 0; k < 5; ++k)
        ck_assert_int_lt(abs(counts[k] - n / 5), 800); /* ~4.5 standard errors of 179 */
    ck_assert_uint_eq(clg_rng_below(&r, 1), 0);
    ck_assert_uint_eq(clg_rng_below(&r, 0), 0);
    /* a copy replays */
    clg_rng a = r, b = r;
    for (int i = 0; i < 10; ++i)
        ck_assert_uint_eq(clg_rng_next(&a), clg_rng_next(&b));
}
END_TEST

/* ---- CartPole-v1 ---- */

START_TEST(cartpole_gymnasium_trajectories) {
    clg_cartpole *env;
    clg_assert_ok(clg_cartpole_new(1, &env));
    int ends_x = 0, ends_theta = 0, ends_truncated = 0;
    double worst = 0;
    for (int e = 0; e < CARTPOLE_EPISODES; ++e) {
        const cartpole_episode *ep = &cartpole_episodes[e];
        clg_assert_ok(clg_cartpole_set_state(env, ep->init));
        int steps = 0;
        clg_step_result res = {0, false, false};
        while (!res.terminated && !res.truncated) {
            int i = ep->first + steps;
            ck_assert_msg(steps < ep->steps,
                          "episode %d (%s): still running after Gymnasium's %d steps", e,
                          ep->policy, ep->steps);
            float obs[4];
            clg_assert_ok(clg_cartpole_step(env, cartpole_actions[i], obs, &res));
            steps++;
            for (int k = 0; k < 4; ++k) {
                float want = (float)cartpole_states[4 * i + k];
                double d = fabs((double)obs[k] - (double)want);
                worst = fmax(worst, d);
                ck_assert_msg(d <= 1e-6, "episode %d (%s) step %d obs[%d]: %.9g, Gymnasium %.9g", e,
                              ep->policy, steps, k, (double)obs[k], (double)want);
            }
            ck_assert_double_eq(res.reward, cartpole_rewards[i]);
            ck_assert_msg(res.terminated == ((cartpole_flags[i] & 1) != 0) &&
                              res.truncated == ((cartpole_flags[i] & 2) != 0),
                          "episode %d (%s) step %d: terminated %d truncated %d, flags %d", e,
                          ep->policy, steps, res.terminated, res.truncated, cartpole_flags[i]);
        }
        ck_assert_int_eq(steps, ep->steps);
        ck_assert_int_eq(clg_cartpole_steps(env), ep->steps);
        double s[4];
        clg_cartpole_state(env, s);
        if (strcmp(ep->end, "x") == 0) {
            ck_assert(fabs(s[0]) > 2.4 && res.terminated);
            ends_x++;
        } else if (strcmp(ep->end, "theta") == 0) {
            ck_assert(fabs(s[2]) > 12 * 2 * 3.14159265358979323846 / 360 && res.terminated);
            ends_theta++;
        } else {
            ck_assert_str_eq(ep->end, "truncated");
            ck_assert(res.truncated && !res.terminated && steps == CLG_CARTPOLE_MAX_STEPS);
            ends_truncated++;
        }
    }
    ck_assert(ends_x > 0 && ends_theta > 0 && ends_truncated > 0);
    printf("cartpole: %d Gymnasium episodes (%d by |x|, %d by |theta|, %d truncated), "
           "largest observation difference %.3g\n",
           CARTPOLE_EPISODES, ends_x, ends_theta, ends_truncated, worst);
    clg_cartpole_free(env);
}
END_TEST

/* Replayed open loop, the falling pole amplifies rounding about e^4 per simulated second: a
 * sin or cos one unit in the last place off at every step moves these observations by up to
 * 1.1 within 500 steps (measured), so the replay above agrees to 1e-6 only because this libm
 * and numpy's round alike (here to the bit). Restarting each step from Gymnasium's own state
 * before it checks the arithmetic of every step without that amplification. */
START_TEST(cartpole_gymnasium_single_steps) {
    clg_cartpole *env;
    clg_assert_ok(clg_cartpole_new(1, &env));
    for (int e = 0; e < CARTPOLE_EPISODES; ++e) {
        const cartpole_episode *ep = &cartpole_episodes[e];
        for (int t = 0; t < ep->steps; ++t) {
            int i = ep->first + t;
            clg_assert_ok(
                clg_cartpole_set_state(env, t ? &cartpole_states[4 * (i - 1)] : ep->init));
            clg_step_result res;
            clg_assert_ok(clg_cartpole_step(env, cartpole_actions[i], NULL, &res));
            double got[4];
            clg_cartpole_state(env, got);
            for (int k = 0; k < 4; ++k) {
                double want = cartpole_states[4 * i + k];
                ck_assert_msg(fabs(got[k] - want) <= 1e-12 * (1 + fabs(want)),
                              "episode %d (%s) step %d state[%d]: %.17g, Gymnasium %.17g", e,
                              ep->policy, t + 1, k, got[k], want);
            }
            ck_assert_int_eq(res.terminated, (cartpole_flags[i] & 1) != 0);
        }
    }
    clg_cartpole_free(env);
}
END_TEST

START_TEST(cartpole_reset_and_misuse) {
    clg_cartpole *a, *b;
    clg_assert_ok(clg_cartpole_new(5, &a));
    clg_assert_ok(clg_cartpole_new(99, &b));
    ck_assert_int_eq(clg_cartpole_step(a, 1, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "reset"));
    /* the same seed, the same starts, whatever the stream did before */
    float oa[4], ob[4];
    uint64_t seed = 123;
    clg_assert_ok(clg_cartpole_reset(a, &seed, oa));
    clg_assert_ok(clg_cartpole_reset(b, NULL, ob));
    clg_assert_ok(clg_cartpole_reset(b, &seed, ob));
    ck_assert(memcmp(oa, ob, sizeof oa) == 0);
    /* starts are uniform in (-0.05, 0.05) and the stream moves on */
    double lo = 1, hi = -1;
    for (int i = 0; i < 2000; ++i) {
        clg_assert_ok(clg_cartpole_reset(a, NULL, oa));
        for (int k = 0; k < 4; ++k) {
            ck_assert(oa[k] >= -0.05f && oa[k] <= 0.05f);
            lo = fmin(lo, oa[k]);
            hi = fmax(hi, oa[k]);
        }
    }
    ck_assert(lo < -0.049 && hi > 0.049);
    /* observations are the state rounded to float */
    double st[4] = {0.1, -0.2, 0.03, 0.4}, got[4];
    clg_assert_ok(clg_cartpole_set_state(a, st));
    clg_step_result res;
    clg_assert_ok(clg_cartpole_step(a, 0, oa, &res));
    clg_cartpole_state(a, got);
    for (int k = 0; k < 4; ++k)
        ck_assert(oa[k] == (float)got[k]);
    ck_assert(got[0] == 0.1 + 0.02 * -0.2); /* x moved with the old velocity */
    ck_assert_int_eq(clg_cartpole_step(a, 2, oa, &res), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_cartpole_step(a, -1, oa, &res), CLG_ERR_INVALID_ARGUMENT);
    st[2] = NAN;
    ck_assert_int_eq(clg_cartpole_set_state(a, st), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_cartpole_set_state(a, NULL), CLG_ERR_INVALID_ARGUMENT);
    /* a finished episode refuses another step until reset */
    double edge[4] = {2.39, 1.0, 0, 0};
    clg_assert_ok(clg_cartpole_set_state(a, edge));
    clg_assert_ok(clg_cartpole_step(a, 1, oa, &res));
    ck_assert(res.terminated && !res.truncated && res.reward == 1.0);
    ck_assert_int_eq(clg_cartpole_step(a, 1, oa, &res), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "ended"));
    ck_assert_int_eq(clg_cartpole_new(1, NULL), CLG_ERR_INVALID_ARGUMENT);
    clg_cartpole_free(a);
    clg_cartpole_free(b);
    clg_cartpole_free(NULL);
}
END_TEST

/* ---- FrozenLake and the grid world ---- */

static void expect_outcome(const clg_transition *t, double prob, int next, double reward,
                           bool terminal) {
    ck_assert_double_eq(t->prob, prob);
    ck_assert_int_eq(t->next, next);
    ck_assert_double_eq(t->reward, reward);
    ck_assert_int_eq(t->terminal, terminal);
}

START_TEST(frozenlake_model) {
    clg_mdp *m;
    clg_assert_ok(clg_frozenlake_new(4, true, &m));
    ck_assert_int_eq(clg_mdp_states(m), 16);
    ck_assert_int_eq(clg_mdp_actions(m), 4);
    ck_assert_int_eq(clg_mdp_start(m), 0);
    ck_assert_int_eq(clg_mdp_max_steps(m), 100);
    const char *map = "SFFFFHFHFFFHHFFG";
    for (int s = 0; s < 16; ++s) {
        ck_assert_int_eq(clg_mdp_cell(m, s), map[s]);
        ck_assert_int_eq(clg_mdp_is_terminal(m, s), map[s] == 'H' || map[s] == 'G');
        ck_assert_int_eq(clg_mdp_is_goal(m, s), map[s] == 'G');
        for (int a = 0; a < 4; ++a) {
            const clg_transition *t;
            int n = clg_mdp_transitions(m, s, a, &t);
            ck_assert_int_eq(n, clg_mdp_is_terminal(m, s) ? 1 : 3);
            double sum = 0;
            for (int i = 0; i < n; ++i)
                sum += t[i].prob;
            ck_assert_double_eq_tol(sum, 1.0, 1e-15);
        }
    }
    /* Gymnasium's P[s][a], entry by entry: success 1/3 in the middle, fail (1 - 1/3) / 2 on
     * either side, moves (a - 1) mod 4, a, (a + 1) mod 4 */
    const double third = 1.0 / 3.0, fail = (1.0 - third) / 2.0;
    const clg_transition *t;
    clg_mdp_transitions(m, 0, CLG_GRID_LEFT, &t); /* up (stays), left (stays), down */
    expect_outcome(&t[0], fail, 0, 0, false);
    expect_outcome(&t[1], third, 0, 0, false);
    expect_outcome(&t[2], fail, 4, 0, false);
    clg_mdp_transitions(m, 14, CLG_GRID_RIGHT, &t); /* down (stays), right (goal), up (hole) */
    expect_outcome(&t[0], fail, 14, 0, false);
    expect_outcome(&t[1], third, 15, 1, true);
    expect_outcome(&t[2], fail, 10, 0, false);
    clg_mdp_transitions(m, 1, CLG_GRID_DOWN, &t); /* left, down (hole), right */
    expect_outcome(&t[0], fail, 0, 0, false);
    expect_outcome(&t[1], third, 5, 0, true);
    expect_outcome(&t[2], fail, 2, 0, false);
    clg_mdp_transitions(m, 5, CLG_GRID_UP, &t); /* a hole keeps the agent */
    expect_outcome(&t[0], 1.0, 5, 0, true);
    clg_mdp_free(m);

    clg_assert_ok(clg_frozenlake_new(4, false, &m));
    ck_assert_int_eq(clg_mdp_transitions(m, 14, CLG_GRID_RIGHT, &t), 1);
    expect_outcome(&t[0], 1.0, 15, 1, true);
    ck_assert_int_eq(clg_mdp_transitions(m, 0, CLG_GRID_UP, &t), 1);
    expect_outcome(&t[0], 1.0, 0, 0, false);
    ck_assert_int_eq(clg_mdp_transitions(m, 16, 0, &t), 0);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(clg_mdp_transitions(m, 0, 4, &t), 0);
    clg_mdp_free(m);

    clg_assert_ok(clg_frozenlake_new(8, true, &m));
    ck_assert_int_eq(clg_mdp_states(m), 64);
    ck_assert_int_eq(clg_mdp_max_steps(m), 200);
    int holes = 0;
    for (int s = 0; s < 64; ++s)
        holes += clg_mdp_cell(m, s) == 'H';
    ck_assert_int_eq(holes, 10);
    ck_assert(clg_mdp_is_goal(m, 63));
    clg_mdp_free(m);
}
END_TEST

/* Sampled moves follow the model: from the start, LEFT slips to 0, 0, 4 with 1/3 each. */
START_TEST(frozenlake_sampling) {
    clg_mdp *m;
    clg_assert_ok(clg_frozenlake_new(4, true, &m));
    clg_mdp_env *env;
    clg_assert_ok(clg_mdp_env_new(m, 3, &env));
    int down = 0;
    const int n = 30000;
    for (int i = 0; i < n; ++i) {
        int32_t s, next;
        clg_step_result res;
        clg_assert_ok(clg_mdp_env_reset(env, NULL, &s));
        ck_assert_int_eq(s, 0);
        clg_assert_ok(clg_mdp_env_step(env, CLG_GRID_LEFT, &next, &res));
        ck_assert(next == 0 || next == 4);
        ck_assert(!res.terminated && !res.truncated && res.reward == 0);
        down += next == 4;
    }
    ck_assert_double_eq_tol((double)down / n, 1.0 / 3.0, 0.012); /* 4.4 standard errors */
    /* the same seed, the same episode; episodes end at a hole or goal, or after 100 steps */
    int32_t s;
    uint64_t seed = 11;
    int lengths[2];
    for (int run = 0; run < 2; ++run) {
        clg_assert_ok(clg_mdp_env_reset(env, &seed, &s));
        clg_step_result res = {0, false, false};
        int k = 0;
        while (!res.terminated && !res.truncated) {
            clg_assert_ok(clg_mdp_env_step(env, CLG_GRID_UP, &s, &res));
            k++;
        }
        ck_assert(res.truncated || clg_mdp_is_terminal(m, s));
        ck_assert_int_le(k, 100);
        lengths[run] = k;
    }
    ck_assert_int_eq(lengths[0], lengths[1]);
    ck_assert_int_eq(clg_mdp_env_step(env, 0, &s, NULL), CLG_ERR_INVALID_ARGUMENT);
    clg_assert_ok(clg_mdp_env_reset(env, NULL, &s));
    ck_assert_int_eq(clg_mdp_env_step(env, 4, &s, NULL), CLG_ERR_INVALID_ARGUMENT);
    /* UP at the top-left corner stays forever on the ice: truncated, not terminated, at 100 */
    clg_mdp *still;
    clg_assert_ok(clg_frozenlake_new(4, false, &still));
    clg_mdp_env *e2;
    clg_assert_ok(clg_mdp_env_new(still, 1, &e2));
    clg_assert_ok(clg_mdp_env_reset(e2, NULL, &s));
    clg_step_result res = {0, false, false};
    int k = 0;
    while (!res.truncated) {
        clg_assert_ok(clg_mdp_env_step(e2, CLG_GRID_UP, &s, &res));
        ck_assert(!res.terminated);
        k++;
    }
    ck_assert_int_eq(k, 100);
    clg_mdp_env_free(e2);
    clg_mdp_free(still);
    clg_mdp_env_free(env);
    clg_mdp_free(m);
}
END_TEST

START_TEST(gridworld_model) {
    clg_mdp *m;
    clg_assert_ok(clg_gridworld_new(&m));
    ck_assert_int_eq(clg_mdp_rows(m), 5);
    ck_assert_int_eq(clg_mdp_cols(m), 5);
    const clg_transition *t;
    ck_assert_int_eq(clg_mdp_transitions(m, 0, CLG_GRID_UP, &t), 1);
    expect_outcome(&t[0], 1.0, 0, -1, false); /* off the edge: stays, pays the step */
    clg_mdp_transitions(m, 1, CLG_GRID_RIGHT, &t);
    expect_outcome(&t[0], 1.0, 1, -1, false); /* into the wall at (0, 2): stays */
    clg_mdp_transitions(m, 23, CLG_GRID_RIGHT, &t);
    expect_outcome(&t[0], 1.0, 24, 10, true); /* the goal pays 10 */
    clg_mdp_transitions(m, 21, CLG_GRID_LEFT, &t);
    expect_outcome(&t[0], 1.0, 20, -10, true); /* the pit costs 10 */
    clg_mdp_transitions(m, 11, CLG_GRID_RIGHT, &t);
    expect_outcome(&t[0], 1.0, 12, -10, true);
    ck_assert(clg_mdp_is_terminal(m, 2) && !clg_mdp_is_goal(m, 2)); /* a wall */
    ck_assert_int_eq(clg_mdp_cell(m, 2), '#');
    clg_mdp_free(m);
}
END_TEST

START_TEST(maps_refused) {
    clg_mdp *m = (clg_mdp *)1;
    const char *two_starts[] = {"SF", "FS"};
    ck_assert_int_eq(clg_frozenlake_from_map(two_starts, 2, true, 10, &m),
                     CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "2 start cells"));
    const char *ragged[] = {"SFF", "FG"};
    ck_assert_int_eq(clg_frozenlake_from_map(ragged, 2, true, 10, &m), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "row 1"));
    const char *letter[] = {"SF", "FX"};
    ck_assert_int_eq(clg_frozenlake_from_map(letter, 2, true, 10, &m), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "row 1 column 1 is 'X'"));
    const char *ok[] = {"SH", "FG"};
    ck_assert_int_eq(clg_frozenlake_from_map(ok, 2, true, 0, &m), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_frozenlake_from_map(NULL, 2, true, 10, &m), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_frozenlake_new(5, true, &m), CLG_ERR_INVALID_ARGUMENT);
    clg_assert_ok(clg_frozenlake_from_map(ok, 2, false, 10, &m));
    ck_assert_int_eq(clg_mdp_states(m), 4);
    clg_mdp_free(m);
    const char *lake_letters[] = {"SF", "FG", "H#"};
    const clg_gridworld_options opts = {-1, 1, -1, 10};
    ck_assert_int_eq(clg_gridworld_from_map(lake_letters, 3, &opts, &m), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_gridworld_from_map(ok, 2, NULL, &m), CLG_ERR_INVALID_ARGUMENT);
    clg_mdp_free(NULL);
    clg_mdp_env *env = (clg_mdp_env *)1;
    ck_assert_int_eq(clg_mdp_env_new(NULL, 1, &env), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(env);
    clg_mdp_env_free(NULL);
}
END_TEST

static Suite *rl_envs_suite(void) {
    Suite *s = suite_create("rl-envs");
    TCase *tc = tcase_create("rl-envs");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rng_reference_outputs);
    tcase_add_test(tc, rng_ranges);
    tcase_add_test(tc, cartpole_gymnasium_trajectories);
    tcase_add_test(tc, cartpole_gymnasium_single_steps);
    tcase_add_test(tc, cartpole_reset_and_misuse);
    tcase_add_test(tc, frozenlake_model);
    tcase_add_test(tc, frozenlake_sampling);
    tcase_add_test(tc, gridworld_model);
    tcase_add_test(tc, maps_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return clg_test_run(rl_envs_suite());
}
