/* Planning and tabular Q-learning: value iteration's optimum checked independently (the
 * policy's linear system solved here, its greedy certificate, Monte Carlo with this file's own
 * sampler, Gymnasium's published optimum) and against hand-computed shortest paths; then
 * Q-learning reaching that optimum, and a broken update (gamma 0) that must fall short. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define MAXS 64

/* ---- Independent references ---- */

/* Solve (I - gamma P_pi) v = r_pi by Gaussian elimination with partial pivoting (terminal
 * states: v = 0), straight from the outcome lists. */
static void solve_policy(const clg_mdp *m, const int32_t *pol, double gamma, double *v) {
    int n = clg_mdp_states(m);
    static double a[MAXS][MAXS + 1];
    for (int s = 0; s < n; ++s) {
        for (int j = 0; j <= n; ++j)
            a[s][j] = 0;
        a[s][s] = 1;
        if (clg_mdp_is_terminal(m, s)) continue;
        const clg_transition *t;
        int k = clg_mdp_transitions(m, s, pol[s], &t);
        for (int i = 0; i < k; ++i) {
            a[s][n] += t[i].prob * t[i].reward;
            if (!t[i].terminal) a[s][t[i].next] -= gamma * t[i].prob;
        }
    }
    for (int c = 0; c < n; ++c) {
        int p = c;
        for (int r = c + 1; r < n; ++r)
            if (fabs(a[r][c]) > fabs(a[p][c])) p = r;
        for (int j = 0; j <= n; ++j) {
            double tmp = a[c][j];
            a[c][j] = a[p][j];
            a[p][j] = tmp;
        }
        ck_assert(fabs(a[c][c]) > 1e-12);
        for (int r = 0; r < n; ++r) {
            if (r == c) continue;
            double f = a[r][c] / a[c][c];
            for (int j = c; j <= n; ++j)
                a[r][j] -= f * a[c][j];
        }
    }
    for (int s = 0; s < n; ++s)
        v[s] = a[s][n] / a[s][s];
}

static double q_value(const clg_mdp *m, int s, int a, double gamma, const double *v) {
    const clg_transition *t;
    int k = clg_mdp_transitions(m, s, a, &t);
    double q = 0;
    for (int i = 0; i < k; ++i)
        q += t[i].prob * (t[i].reward + (t[i].terminal ? 0 : gamma * v[t[i].next]));
    return q;
}

/* Success within the model's step limit by simulation with the test's own generator. */
static double monte_carlo_success(const clg_mdp *m, const int32_t *pol, int episodes,
                                  uint64_t seed) {
    clg_test_rng rng;
    clg_test_rng_seed(&rng, seed);
    int wins = 0;
    for (int e = 0; e < episodes; ++e) {
        int s = clg_mdp_start(m);
        for (int k = 0; k < clg_mdp_max_steps(m) && !clg_mdp_is_terminal(m, s); ++k) {
            const clg_transition *t;
            int n = clg_mdp_transitions(m, s, pol[s], &t);
            double u = (double)clg_test_uniform(&rng, 0, 1), cum = 0;
            int i = 0;
            for (; i < n - 1; ++i) {
                cum += t[i].prob;
                if (cum > u) break;
            }
            s = t[i].next;
        }
        wins += clg_mdp_is_goal(m, s);
    }
    return (double)wins / episodes;
}

/* ---- Value iteration ---- */

START_TEST(vi_frozenlake_slippery) {
    clg_mdp *m;
    clg_assert_ok(clg_frozenlake_new(4, true, &m));
    const double gamma = 0.99;
    double v[16], lin[16];
    int32_t pol[16];
    clg_assert_ok(clg_value_iteration(m, gamma, 1e-12, v, pol));
    /* the policy's own values, solved exactly, are value iteration's ... */
    solve_policy(m, pol, gamma, lin);
    for (int s = 0; s < 16; ++s)
        ck_assert_double_eq_tol(v[s], lin[s], 1e-9);
    /* ... and no action beats the policy against them: it is optimal */
    for (int s = 0; s < 16; ++s)
        for (int a = 0; a < 4; ++a)
            ck_assert(q_value(m, s, a, gamma, lin) <= lin[s] + 1e-12);
    ck_assert_double_eq_tol(v[0], 0.542026, 1e-6);
    double eval[16];
    clg_assert_ok(clg_policy_evaluate(m, pol, gamma, 1e-12, eval));
    for (int s = 0; s < 16; ++s)
        ck_assert_double_eq_tol(eval[s], lin[s], 1e-9);

    /* success within Gymnasium's 100 steps: exactly, by simulation (200,000 episodes, 4.5
     * standard errors), and as Gymnasium registers it ("optimum = 0.74") */
    double p, mc = monte_carlo_success(m, pol, 200000, 5), rate, bound;
    clg_assert_ok(clg_policy_success(m, pol, 0, &p));
    ck_assert_double_eq_tol(p, mc, 0.0045);
    ck_assert_double_eq_tol(p, 0.74, 0.005);
    clg_assert_ok(clg_policy_rollouts(m, pol, 200000, 6, &rate));
    ck_assert_double_eq_tol(rate, p, 0.0045);
    clg_assert_ok(clg_optimal_success(m, 0, &bound));
    ck_assert(bound >= p && bound < p + 0.01);
    /* without a time limit the best policy reaches the goal with probability 14/17, which is
     * also value iteration's value at gamma 1 */
    double pinf, v1[16];
    clg_assert_ok(clg_policy_success(m, pol, -1, &pinf));
    ck_assert_double_eq_tol(pinf, 14.0 / 17.0, 1e-9);
    clg_assert_ok(clg_value_iteration(m, 1.0, 1e-13, v1, NULL));
    ck_assert_double_eq_tol(v1[0], 14.0 / 17.0, 1e-9);
    printf("frozenlake 4x4 slippery: V(start) %.6f at gamma %.2f, success in 100 steps %.6f "
           "(simulated %.4f, bound %.6f), unlimited %.6f\n",
           v[0], gamma, p, mc, bound, pinf);
    clg_mdp_free(m);

    clg_assert_ok(clg_frozenlake_new(8, true, &m));
    int32_t pol8[64];
    clg_assert_ok(clg_value_iteration(m, gamma, 1e-12, NULL, pol8));
    clg_assert_ok(clg_policy_success(m, pol8, 0, &p));
    clg_assert_ok(clg_optimal_success(m, 0, &bound));
    ck_assert_double_eq_tol(bound, 0.91, 0.005); /* Gymnasium: "optimum = 0.91" */
    ck_assert(p > 0.85 && p <= bound);
    printf("frozenlake 8x8 slippery: success in 200 steps %.6f at gamma %.2f, bound %.6f\n", p,
           gamma, bound);
    clg_mdp_free(m);
}
END_TEST

/* Without slipping the values are gamma^(d - 1), d the moves to the goal; ties go to the
 * first action in the order left, down, right, up. */
START_TEST(vi_frozenlake_deterministic) {
    static const int dist[16] = {6, 5, 4, 5, 5, -1, 3, -1, 4, 3, 2, -1, -1, 2, 1, 0};
    static const int32_t want[16] = {1, 2, 1, 0, 1, 0, 1, 0, 2, 1, 1, 0, 0, 2, 2, 0};
    clg_mdp *m;
    clg_assert_ok(clg_frozenlake_new(4, false, &m));
    double v[16];
    int32_t pol[16];
    clg_assert_ok(clg_value_iteration(m, 0.9, 1e-13, v, pol));
    for (int s = 0; s < 16; ++s) {
        ck_assert_double_eq_tol(v[s], dist[s] > 0 ? pow(0.9, dist[s] - 1) : 0.0, 1e-12);
        ck_assert_msg(pol[s] == want[s], "state %d: action %d, want %d", s, pol[s], want[s]);
    }
    double p;
    clg_assert_ok(clg_policy_success(m, pol, 0, &p));
    ck_assert_double_eq(p, 1.0);
    clg_assert_ok(clg_policy_success(m, pol, 5, &p)); /* six moves needed */
    ck_assert_double_eq(p, 0.0);
    clg_mdp_free(m);
}
END_TEST

/* The grid world's shortest paths, drawn from the map by hand (moves to the goal):
 *   S . # . .     8 9 # 7 6
 *   . # # # .     7 # # # 5
 *   . . P . .     6 5 P 3 4
 *   # . # . #     # 4 # 2 #
 *   P . . . G     P 3 2 1 G
 * A path of d moves pays d - 1 steps of -1 and then 10. */
static const int grid_dist[25] = {8, 9, -1, 7, 6,  7, -1, -1, -1, 5, 6, 5, -1,
                                  3, 4, -1, 4, -1, 2, -1, -1, 3,  2, 1, 0};
static const int32_t grid_policy[25] = {1, 0, 0, 2, 1, 1, 0, 0, 0, 1, 2, 1, 0,
                                        1, 0, 0, 1, 0, 1, 0, 0, 2, 2, 2, 0};

static double grid_value(int d, double gamma) {
    if (d <= 0) return 0;
    double v = 10 * pow(gamma, d - 1);
    for (int k = 0; k < d - 1; ++k)
        v -= pow(gamma, k);
    return v;
}

START_TEST(vi_gridworld) {
    clg_mdp *m;
    clg_assert_ok(clg_gridworld_new(&m));
    const double gammas[] = {1.0, 0.9, 0.99};
    for (int g = 0; g < 3; ++g) {
        double v[25];
        int32_t pol[25];
        clg_assert_ok(clg_value_iteration(m, gammas[g], 1e-12, v, pol));
        for (int s = 0; s < 25; ++s) {
            ck_assert_double_eq_tol(v[s], grid_value(grid_dist[s], gammas[g]), 1e-9);
            if (!clg_mdp_is_terminal(m, s))
                ck_assert_msg(pol[s] == grid_policy[s], "gamma %g state %d: action %d, want %d",
                              gammas[g], s, pol[s], grid_policy[s]);
        }
    }
    ck_assert_double_eq(grid_value(8, 1.0), 3.0);
    clg_mdp_free(m);
}
END_TEST

START_TEST(vi_refused) {
    clg_mdp *m;
    clg_assert_ok(clg_frozenlake_new(4, true, &m));
    double v[16];
    int32_t pol[16] = {0};
    ck_assert_int_eq(clg_value_iteration(m, 1.5, 1e-9, v, pol), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_value_iteration(m, 0.9, 0, v, pol), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_value_iteration(NULL, 0.9, 1e-9, v, pol), CLG_ERR_INVALID_ARGUMENT);
    pol[3] = 7;
    ck_assert_int_eq(clg_policy_evaluate(m, pol, 0.9, 1e-9, v), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "policy[3] = 7"));
    double p;
    ck_assert_int_eq(clg_policy_success(m, pol, 0, &p), CLG_ERR_INVALID_ARGUMENT);
    pol[3] = 0;
    ck_assert_int_eq(clg_policy_rollouts(m, pol, 0, 1, &p), CLG_ERR_INVALID_ARGUMENT);
    clg_mdp_free(m);
    /* gamma 1 where a policy can earn forever does not converge: reported, not a hang */
    const char *loop[] = {"S.", ".G"};
    const clg_gridworld_options paid = {+1, 10, -10, 100};
    clg_assert_ok(clg_gridworld_from_map(loop, 2, &paid, &m));
    ck_assert_int_eq(clg_value_iteration(m, 1.0, 1e-9, NULL, NULL), CLG_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "sweeps"));
    clg_assert_ok(clg_value_iteration(m, 0.5, 1e-9, NULL, NULL));
    clg_mdp_free(m);
}
END_TEST

/* ---- Q-learning ---- */

START_TEST(schedules) {
    clg_schedule c = {CLG_SCHEDULE_CONSTANT, 0.3, 0, 0};
    clg_schedule l = {CLG_SCHEDULE_LINEAR, 1.0, 0.1, 100};
    clg_schedule e = {CLG_SCHEDULE_EXPONENTIAL, 1.0, 0.01, 100};
    clg_schedule i = {CLG_SCHEDULE_INVERSE, 1.0, 0.05, 10};
    ck_assert_double_eq(clg_schedule_value(&c, 1e9), 0.3);
    ck_assert_double_eq_tol(clg_schedule_value(&l, 50), 0.55, 1e-15);
    ck_assert_double_eq(clg_schedule_value(&l, 1000), 0.1);
    ck_assert_double_eq_tol(clg_schedule_value(&e, 50), 0.1, 1e-15);
    ck_assert_double_eq_tol(clg_schedule_value(&e, 100), 0.01, 1e-15);
    ck_assert_double_eq_tol(clg_schedule_value(&i, 10), 0.5, 1e-15);
    ck_assert_double_eq(clg_schedule_value(&i, 1e6), 0.05);
}
END_TEST

START_TEST(qlearn_frozenlake_slippery) {
    clg_mdp *m;
    clg_assert_ok(clg_frozenlake_new(4, true, &m));
    int32_t best[16], pol[16];
    clg_assert_ok(clg_value_iteration(m, 0.99, 1e-12, NULL, best));
    double optimum;
    clg_assert_ok(clg_policy_success(m, best, 0, &optimum));

    clg_qlearn_options o = clg_qlearn_defaults(20000);
    double q[64];
    clg_qlearn_stats st;
    clg_assert_ok(clg_qlearn(m, &o, q, pol, &st));
    double rate;
    clg_assert_ok(clg_policy_rollouts(m, pol, 10000, 77, &rate));
    printf("q-learning frozenlake 4x4 slippery: %lld episodes, %lld steps, success %.4f over "
           "10000 episodes, optimum %.4f\n",
           (long long)o.episodes, (long long)st.steps, rate, optimum);
    ck_assert_double_eq_tol(rate, optimum, 0.02);
    ck_assert(st.successes > 0 && st.steps > o.episodes);
    /* the greedy policy is the argmax of the returned table */
    for (int s = 0; s < 16; ++s)
        for (int a = 0; a < 4; ++a)
            ck_assert(q[s * 4 + a] <= q[s * 4 + pol[s]]);
    /* the same seed, the same table */
    double q2[64];
    clg_assert_ok(clg_qlearn(m, &o, q2, NULL, NULL));
    ck_assert(memcmp(q, q2, sizeof q) == 0);

    /* the control: gamma 0 learns only the reward of the last move, so the greedy policy
     * knows nothing away from the goal and falls far short */
    o.gamma = 0;
    clg_assert_ok(clg_qlearn(m, &o, NULL, pol, NULL));
    clg_assert_ok(clg_policy_rollouts(m, pol, 10000, 77, &rate));
    printf("control, gamma 0: success %.4f\n", rate);
    ck_assert(rate < optimum - 0.2);
    clg_mdp_free(m);
}
END_TEST

START_TEST(qlearn_gridworld) {
    clg_mdp *m;
    clg_assert_ok(clg_gridworld_new(&m));
    int32_t best[25], pol[25];
    double v[25], q[100];
    clg_assert_ok(clg_value_iteration(m, 0.99, 1e-12, v, best));
    for (uint64_t seed = 1; seed <= 3; ++seed) {
        clg_qlearn_options o = clg_qlearn_defaults(10000);
        o.seed = seed;
        clg_assert_ok(clg_qlearn(m, &o, q, pol, NULL));
        for (int s = 0; s < 25; ++s)
            if (!clg_mdp_is_terminal(m, s))
                ck_assert_msg(pol[s] == best[s], "seed %d state %d: action %d, optimal %d",
                              (int)seed, s, pol[s], best[s]);
        /* on the optimal path the learned values have converged to the optimal ones */
        ck_assert_double_eq_tol(q[0 * 4 + best[0]], v[0], 0.01);
        ck_assert_double_eq_tol(q[23 * 4 + best[23]], v[23], 1e-6);
    }
    /* deterministic FrozenLake: always reaches the goal */
    clg_mdp *lake;
    clg_assert_ok(clg_frozenlake_new(4, false, &lake));
    clg_qlearn_options o = clg_qlearn_defaults(2000);
    int32_t lp[16];
    clg_assert_ok(clg_qlearn(lake, &o, NULL, lp, NULL));
    double p;
    clg_assert_ok(clg_policy_success(lake, lp, 0, &p));
    ck_assert_double_eq(p, 1.0);
    clg_mdp_free(lake);
    clg_mdp_free(m);
}
END_TEST

START_TEST(qlearn_refused) {
    clg_mdp *m;
    clg_assert_ok(clg_gridworld_new(&m));
    clg_qlearn_options o = clg_qlearn_defaults(10);
    o.gamma = -0.1;
    ck_assert_int_eq(clg_qlearn(m, &o, NULL, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    o = clg_qlearn_defaults(10);
    o.epsilon.end = 1.5;
    ck_assert_int_eq(clg_qlearn(m, &o, NULL, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "epsilon"));
    o = clg_qlearn_defaults(10);
    o.alpha.kind = CLG_SCHEDULE_KIND_COUNT;
    ck_assert_int_eq(clg_qlearn(m, &o, NULL, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    o = clg_qlearn_defaults(10);
    o.alpha = (clg_schedule){CLG_SCHEDULE_EXPONENTIAL, 0.5, 0, 10};
    ck_assert_int_eq(clg_qlearn(m, &o, NULL, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_qlearn(NULL, &o, NULL, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_qlearn(m, NULL, NULL, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    /* no episodes: the initial table */
    o = clg_qlearn_defaults(0);
    o.q_init = 2.5;
    double q[100];
    clg_assert_ok(clg_qlearn(m, &o, q, NULL, NULL));
    ck_assert_double_eq(q[0], 2.5);
    ck_assert_double_eq(q[24 * 4], 0.0); /* the goal is terminal */
    clg_mdp_free(m);
}
END_TEST

static Suite *rl_tabular_suite(void) {
    Suite *s = suite_create("rl-tabular");
    TCase *tc = tcase_create("rl-tabular");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, vi_frozenlake_slippery);
    tcase_add_test(tc, vi_frozenlake_deterministic);
    tcase_add_test(tc, vi_gridworld);
    tcase_add_test(tc, vi_refused);
    tcase_add_test(tc, schedules);
    tcase_add_test(tc, qlearn_frozenlake_slippery);
    tcase_add_test(tc, qlearn_gridworld);
    tcase_add_test(tc, qlearn_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return clg_test_run(rl_tabular_suite());
}
