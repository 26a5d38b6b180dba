/* Deep Q-learning's parts on the device: the batched CartPole kernel against the host
 * environment step for step, the replay buffer's sampling, the TD target with and without
 * Double DQN against plain C, epsilon-greedy choice, and one plan that observes, acts and
 * steps N environments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The device's state rows as doubles (fp64 devices; else the floats widened). */
static void read_state(clg_cartpole_vec *v, bool fp64, double *state) {
    int64_t n = clg_cartpole_vec_size(v);
    int32_t raw[8 * 256];
    ck_assert(n <= 256);
    clg_assert_ok(clg_param_read(clg_cartpole_vec_state(v), raw, (size_t)n * 8 * sizeof(int32_t)));
    for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < 4; ++k) {
            if (fp64) {
                memcpy(&state[4 * i + k], (const char *)raw + (size_t)i * 32 + (size_t)k * 8, 8);
            } else {
                float f;
                memcpy(&f, (const char *)raw + (size_t)i * 32 + (size_t)k * 4, 4);
                state[4 * i + k] = f;
            }
        }
}

START_TEST(cartpole_batch_matches_host) {
    clg_context *ctx = clg_test_context();
    bool fp64 = clg_context_device(ctx)->fp64;
    /* fp64: the same double expressions; only cos/sin may differ by an ulp, and episodes
     * under random actions last ~20 steps, too short to grow that past 1e-9. float: the
     * step's own rounding, re-synchronised at every reset */
    double tol = fp64 ? 1e-9 : 2e-3;
    enum { N = 37, STEPS = 400 };
    clg_cartpole_vec *v;
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cpv", N, 1234, &v));
    clg_cartpole *host[N];
    double st[4 * N], hs[4];
    float obs[4 * N], info[8 * N];
    int32_t cnt[2 * N];
    read_state(v, fp64, st);
    clg_assert_ok(clg_param_read(clg_cartpole_vec_obs(v), obs, sizeof obs));
    for (int i = 0; i < N; ++i) {
        clg_assert_ok(clg_cartpole_new(0, &host[i]));
        clg_assert_ok(clg_cartpole_set_state(host[i], st + 4 * i));
        for (int k = 0; k < 4; ++k) {
            ck_assert(fabs(st[4 * i + k]) < 0.05);
            ck_assert_float_eq(obs[4 * i + k], (float)st[4 * i + k]);
        }
    }
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 99);
    int ended = 0;
    double worst = 0;
    for (int t = 0; t < STEPS; ++t) {
        int32_t act[N];
        for (int i = 0; i < N; ++i)
            act[i] = clg_test_uniform(&rng, 0, 1) < 0.5f ? 0 : 1;
        clg_assert_ok(clg_cartpole_vec_step(v, act));
        read_state(v, fp64, st);
        clg_assert_ok(clg_param_read(clg_cartpole_vec_obs(v), obs, sizeof obs));
        clg_assert_ok(clg_param_read(clg_cartpole_vec_info(v), info, sizeof info));
        clg_assert_ok(clg_param_read(clg_cartpole_vec_counters(v), cnt, sizeof cnt));
        for (int i = 0; i < N; ++i) {
            float hobs[4];
            clg_step_result r;
            clg_assert_ok(clg_cartpole_step(host[i], act[i], hobs, &r));
            clg_cartpole_state(host[i], hs);
            const float *inf = info + 8 * i;
            for (int k = 0; k < 4; ++k) {
                double d = fabs((double)inf[k] - (double)hobs[k]);
                worst = fmax(worst, d);
                ck_assert_msg(d <= tol + 1e-6 * fabs(hobs[k]),
                              "step %d env %d obs[%d]: device %.9g host %.9g", t, i, k,
                              (double)inf[k], (double)hobs[k]);
            }
            ck_assert_float_eq(inf[4], 1.0f);
            ck_assert_msg((inf[5] != 0) == r.terminated && (inf[6] != 0) == r.truncated,
                          "step %d env %d: device terminated %g truncated %g, host %d %d", t, i,
                          (double)inf[5], (double)inf[6], r.terminated, r.truncated);
            bool done = r.terminated || r.truncated;
            if (!done) {
                for (int k = 0; k < 4; ++k)
                    ck_assert_msg(fabs(st[4 * i + k] - hs[k]) <= tol,
                                  "step %d env %d state[%d]: "
                                  "%.17g vs %.17g",
                                  t, i, k, st[4 * i + k], hs[k]);
                ck_assert_int_eq(cnt[2 * i], clg_cartpole_steps(host[i]));
                ck_assert_float_eq(inf[7], 0.0f);
            } else {
                /* auto-reset: a fresh state in range, the host restarted from it */
                ++ended;
                ck_assert_float_eq(inf[7], (float)clg_cartpole_steps(host[i]));
                ck_assert_int_eq(cnt[2 * i], 0);
                for (int k = 0; k < 4; ++k) {
                    ck_assert(fabs(st[4 * i + k]) < 0.05);
                    ck_assert_float_eq(obs[4 * i + k], (float)st[4 * i + k]);
                }
                clg_assert_ok(clg_cartpole_set_state(host[i], st + 4 * i));
            }
        }
    }
    ck_assert_msg(ended > 300, "only %d episodes ended", ended);
    for (int i = 0; i < N; ++i)
        clg_cartpole_free(host[i]);
    clg_cartpole_vec_free(v);
}
END_TEST

START_TEST(cartpole_batch_truncates_and_seeds) {
    clg_context *ctx = clg_test_context();
    bool fp64 = clg_context_device(ctx)->fp64;
    enum { N = 256 };
    clg_cartpole_vec *a, *b, *c;
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cpa", N, 7, &a));
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cpb", N, 7, &b));
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cpc", N, 8, &c));
    static double sa[4 * N], sb[4 * N], sc[4 * N];
    read_state(a, fp64, sa);
    read_state(b, fp64, sb);
    read_state(c, fp64, sc);
    double mean[4] = {0}, lo = 1, hi = -1;
    int same_c = 0, same_env = 0;
    for (int i = 0; i < 4 * N; ++i) {
        ck_assert(sa[i] == sb[i]); /* a seed replays */
        same_c += sa[i] == sc[i];
        if (i >= 4) same_env += sa[i] == sa[i - 4];
        mean[i % 4] += sa[i] / N;
        lo = fmin(lo, sa[i]);
        hi = fmax(hi, sa[i]);
    }
    ck_assert_int_eq(same_c, 0);   /* another seed, other episodes */
    ck_assert_int_eq(same_env, 0); /* every environment its own stream */
    /* U(-0.05, 0.05): sd 0.0289, the mean of 256 within 5 standard errors */
    for (int k = 0; k < 4; ++k)
        ck_assert_msg(fabs(mean[k]) < 5 * 0.0289 / 16, "mean[%d] %g", k, mean[k]);
    ck_assert(lo > -0.05 && lo < -0.045 && hi < 0.05 && hi > 0.045);

    /* truncation at 500 steps, and the episode counter behind the reset stream */
    int32_t cnt[2 * N];
    clg_assert_ok(clg_param_read(clg_cartpole_vec_counters(a), cnt, sizeof cnt));
    for (int i = 0; i < N; ++i) {
        ck_assert_int_eq(cnt[2 * i + 1], 1);
        cnt[2 * i] = 499;
    }
    clg_assert_ok(clg_param_write(clg_cartpole_vec_counters(a), cnt, sizeof cnt));
    int32_t act[N] = {0};
    clg_assert_ok(clg_cartpole_vec_step(a, act));
    float info[8 * N];
    clg_assert_ok(clg_param_read(clg_cartpole_vec_info(a), info, sizeof info));
    clg_assert_ok(clg_param_read(clg_cartpole_vec_counters(a), cnt, sizeof cnt));
    for (int i = 0; i < N; ++i) {
        ck_assert_float_eq(info[8 * i + 6], 1.0f);
        ck_assert_float_eq(info[8 * i + 5], 0.0f); /* near upright: not terminated */
        ck_assert_float_eq(info[8 * i + 7], 500.0f);
        ck_assert_int_eq(cnt[2 * i], 0);
        ck_assert_int_eq(cnt[2 * i + 1], 2);
    }
    clg_cartpole_vec_free(a);
    clg_cartpole_vec_free(b);
    clg_cartpole_vec_free(c);
}
END_TEST

/* Actions read through a strided view (every other element of an input) step the batch as
 * the same actions written densely do. */
START_TEST(cartpole_batch_strided_actions) {
    clg_context *ctx = clg_test_context();
    enum { N = 5 };
    clg_cartpole_vec *a, *b;
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cps1", N, 3, &a));
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cps2", N, 3, &b));
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_I32, 1, (int64_t[]){2 * N});
    clg_assert_ok(clg_cartpole_vec_add_step(a, g, clg_slice(g, x, 0, 1, 2 * N, 2)));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    for (int t = 0; t < 30; ++t) {
        int32_t both[2 * N], dense[N];
        for (int i = 0; i < N; ++i) {
            dense[i] = (t * 7 + i * 3) % 5 < 2;
            both[2 * i] = 1 - dense[i];
            both[2 * i + 1] = dense[i];
        }
        clg_assert_ok(clg_plan_write(p, x, both, sizeof both));
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_cartpole_vec_step(b, dense));
    }
    int32_t sa[8 * N], sb[8 * N];
    clg_assert_ok(clg_param_read(clg_cartpole_vec_state(a), sa, sizeof sa));
    clg_assert_ok(clg_param_read(clg_cartpole_vec_state(b), sb, sizeof sb));
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    clg_graph_free(g);
    clg_cartpole_vec_free(a);
    clg_cartpole_vec_free(b);
}
END_TEST

START_TEST(cartpole_batch_rejects) {
    clg_context *ctx = clg_test_context();
    clg_cartpole_vec *v;
    ck_assert_int_eq(clg_cartpole_vec_new(ctx, "cpbad", 0, 1, &v), CLG_ERR_INVALID_ARGUMENT);
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cpr", 3, 1, &v));
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *act = clg_input(g, "a", CLG_I32, 1, (int64_t[]){4});
    ck_assert_int_eq(clg_cartpole_vec_add_step(v, g, act), CLG_ERR_SHAPE);
    ck_assert_msg(strstr(clg_graph_error(g), "cartpole_step"), "%s", clg_graph_error(g));
    clg_graph_free(g);
    g = clg_graph_new(ctx);
    ck_assert_int_eq(clg_cartpole_batch_step(g, clg_cartpole_vec_state(v), clg_cartpole_vec_obs(v),
                                             clg_cartpole_vec_obs(v), clg_cartpole_vec_info(v), act,
                                             1),
                     CLG_ERR_SHAPE);
    ck_assert_msg(strstr(clg_graph_error(g), "counters"), "%s", clg_graph_error(g));
    clg_graph_free(g);
    clg_cartpole_vec_free(v);
}
END_TEST

START_TEST(replay_uniform_within_written) {
    clg_replay *r;
    ck_assert_int_eq(clg_replay_new(0, 4, &r), CLG_ERR_INVALID_ARGUMENT);
    clg_assert_ok(clg_replay_new(100, 2, &r));
    clg_rng rng;
    clg_rng_seed(&rng, 5);
    int64_t idx[1];
    ck_assert_int_eq(clg_replay_sample(r, &rng, 1, idx, NULL, NULL, NULL, NULL, NULL),
                     CLG_ERR_INVALID_ARGUMENT); /* nothing written yet */
    int added = 0;
    /* chi-square critical values at p = 0.001: df 36 -> 67.99, df 99 -> 148.23 */
    const int phases[2][2] = {{37, 37}, {200, 100}};
    const double crit[2] = {67.99, 148.23};
    for (int ph = 0; ph < 2; ++ph) {
        for (int k = 0; k < phases[ph][0]; ++k, ++added) {
            float o[2] = {(float)added, -(float)added}, no[2] = {(float)added + 1, 0};
            clg_assert_ok(clg_replay_add(r, o, added % 2, (float)added, no, added % 3 == 0));
        }
        int held = phases[ph][1];
        ck_assert_int_eq(clg_replay_size(r), held);
        enum { DRAWS = 50000, B = 500 };
        int count[100] = {0};
        float obs[2 * B], next[2 * B], rew[B], term[B];
        int32_t acts[B];
        int64_t index[B];
        for (int d = 0; d < DRAWS / B; ++d) {
            clg_assert_ok(clg_replay_sample(r, &rng, B, index, obs, acts, rew, next, term));
            for (int b = 0; b < B; ++b) {
                /* the transition added as number rew: one of the last `held` */
                int t = (int)rew[b];
                ck_assert(t >= added - held && t < added);
                ck_assert(index[b] >= 0 && index[b] < held);
                ck_assert_float_eq(obs[2 * b], (float)t);
                ck_assert_float_eq(next[2 * b], (float)t + 1);
                ck_assert_int_eq(acts[b], t % 2);
                ck_assert_float_eq(term[b], t % 3 == 0 ? 1.0f : 0.0f);
                count[t - (added - held)]++;
            }
        }
        double expect = (double)DRAWS / held, chi2 = 0;
        for (int k = 0; k < held; ++k)
            chi2 += (count[k] - expect) * (count[k] - expect) / expect;
        ck_assert_msg(chi2 < crit[ph], "chi-square %g over %d slots", chi2, held);
    }
    clg_replay_free(r);
}
END_TEST

START_TEST(td_target_plain_and_double) {
    clg_context *ctx = clg_test_context();
    enum { B = 9, A = 3 };
    const float gamma = 0.97f;
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 3);
    float qt[B * A], qo[B * A], rew[B], term[B];
    clg_test_fill(&rng, qt, B * A, -2, 2);
    clg_test_fill(&rng, qo, B * A, -2, 2);
    clg_test_fill(&rng, rew, B, 0, 1);
    /* rows 0 and 4 terminated (no bootstrap); row 5 was truncated: stored as 0, bootstrapped */
    for (int b = 0; b < B; ++b)
        term[b] = b == 0 || b == 4 ? 1.0f : 0.0f;
    int differ = 0;
    float want_plain[B], want_double[B];
    for (int b = 0; b < B; ++b) {
        int at = 0, ao = 0;
        for (int a = 1; a < A; ++a) {
            if (qt[b * A + a] > qt[b * A + at]) at = a;
            if (qo[b * A + a] > qo[b * A + ao]) ao = a;
        }
        differ += at != ao;
        want_plain[b] = rew[b] + gamma * (1 - term[b]) * qt[b * A + at];
        want_double[b] = rew[b] + gamma * (1 - term[b]) * qt[b * A + ao];
    }
    ck_assert_msg(differ >= 3, "the batch must tell Double DQN apart (%d rows)", differ);
    for (int dbl = 0; dbl < 2; ++dbl) {
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *tq = clg_input(g, "qt", CLG_F32, 2, (int64_t[]){B, A});
        clg_tensor *oq = clg_input(g, "qo", CLG_F32, 2, (int64_t[]){B, A});
        clg_tensor *tr = clg_input(g, "r", CLG_F32, 2, (int64_t[]){B, 1});
        clg_tensor *tt = clg_input(g, "t", CLG_F32, 2, (int64_t[]){B, 1});
        clg_tensor *y = clg_dqn_td_target(g, tq, dbl ? oq : NULL, tr, tt, gamma);
        clg_assert_ok(clg_graph_output(g, y));
        clg_plan *p;
        clg_assert_ok(clg_graph_compile(g, NULL, &p));
        clg_assert_ok(clg_plan_write(p, tq, qt, sizeof qt));
        if (dbl) clg_assert_ok(clg_plan_write(p, oq, qo, sizeof qo));
        clg_assert_ok(clg_plan_write(p, tr, rew, sizeof rew));
        clg_assert_ok(clg_plan_write(p, tt, term, sizeof term));
        clg_assert_ok(clg_plan_run(p));
        float got[B];
        clg_assert_ok(clg_plan_read(p, y, got, sizeof got));
        clg_assert_close(got, dbl ? want_double : want_plain, B, 1e-6, 1e-6);
        ck_assert_float_eq(got[0], rew[0]); /* terminal: the reward alone */
        clg_graph_free(g);
    }
    /* a [B] reward would broadcast against [B, 1] values to [B, B]: refused */
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *tq = clg_input(g, "qt", CLG_F32, 2, (int64_t[]){B, A});
    clg_tensor *tr = clg_input(g, "r", CLG_F32, 1, (int64_t[]){B});
    clg_dqn_td_target(g, tq, NULL, tr, tr, gamma);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_msg(strstr(clg_graph_error(g), "dqn_td_target"), "%s", clg_graph_error(g));
    clg_graph_free(g);
}
END_TEST

/* Observe -> Q-network -> epsilon-greedy -> environment step, one plan for N environments;
 * with epsilon 0 the actions are the host's argmax of the observations it read. */
START_TEST(act_and_step_in_one_plan) {
    clg_context *ctx = clg_test_context();
    enum { N = 64 };
    clg_cartpole_vec *v;
    clg_assert_ok(clg_cartpole_vec_new(ctx, "cpp", N, 21, &v));
    clg_qnet net;
    clg_assert_ok(clg_qnet_init(ctx, &net, "actq", 4, (int64_t[]){16}, 1, 2, 5));
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *eps = clg_input(g, "eps", CLG_F32, 1, (int64_t[]){1});
    clg_tensor *obs = clg_param_tensor(g, clg_cartpole_vec_obs(v));
    clg_tensor *q = clg_qnet_forward(g, &net, obs);
    clg_tensor *act = clg_epsilon_greedy(g, q, eps, 77);
    clg_assert_ok(clg_graph_output(g, act));
    clg_assert_ok(clg_graph_output(g, q));
    clg_assert_ok(clg_cartpole_vec_add_step(v, g, act));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    float w0[16 * 4], b0[16], w1[2 * 16], b1[2];
    clg_assert_ok(clg_param_read(net.layers[0].weight, w0, sizeof w0));
    clg_assert_ok(clg_param_read(net.layers[0].bias, b0, sizeof b0));
    clg_assert_ok(clg_param_read(net.layers[1].weight, w1, sizeof w1));
    clg_assert_ok(clg_param_read(net.layers[1].bias, b1, sizeof b1));
    for (int run = 0; run < 3; ++run) {
        float o[4 * N];
        clg_assert_ok(clg_param_read(clg_cartpole_vec_obs(v), o, sizeof o));
        float e = 0.0f;
        clg_assert_ok(clg_plan_write(p, eps, &e, sizeof e));
        clg_assert_ok(clg_plan_run(p));
        int32_t a[N];
        float qd[2 * N], info[8 * N];
        clg_assert_ok(clg_plan_read(p, act, a, sizeof a));
        clg_assert_ok(clg_plan_read(p, q, qd, sizeof qd));
        clg_assert_ok(clg_param_read(clg_cartpole_vec_info(v), info, sizeof info));
        for (int i = 0; i < N; ++i) {
            float h[16], qh[2];
            for (int j = 0; j < 16; ++j) {
                float s = b0[j];
                for (int k = 0; k < 4; ++k)
                    s += w0[j * 4 + k] * o[4 * i + k];
                h[j] = s > 0 ? s : 0;
            }
            for (int c = 0; c < 2; ++c) {
                float s = b1[c];
                for (int j = 0; j < 16; ++j)
                    s += w1[c * 16 + j] * h[j];
                qh[c] = s;
            }
            clg_assert_close(qd + 2 * i, qh, 2, 1e-5, 1e-4);
            if (fabsf(qh[0] - qh[1]) > 1e-4f) ck_assert_int_eq(a[i], qh[1] > qh[0] ? 1 : 0);
            /* the step took that action: x_dot moved by -/+ about 0.195 */
            float dv = info[8 * i + 1] - o[4 * i + 1];
            ck_assert_msg(a[i] == 1 ? dv > 0.1f : dv < -0.1f, "env %d action %d dv %g", i, a[i],
                          (double)dv);
        }
    }
    /* epsilon 1: uniform actions, about half each */
    int ones = 0;
    for (int run = 0; run < 8; ++run) {
        float e = 1.0f;
        int32_t a[N];
        clg_assert_ok(clg_plan_write(p, eps, &e, sizeof e));
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_read(p, act, a, sizeof a));
        for (int i = 0; i < N; ++i) {
            ck_assert(a[i] == 0 || a[i] == 1);
            ones += a[i];
        }
    }
    /* 512 fair coins: sd 11.3 */
    ck_assert_msg(abs(ones - 256) < 57, "%d of 512 actions were 1", ones);
    clg_graph_free(g);
    clg_cartpole_vec_free(v);
}
END_TEST

/* The agent's schedules: epsilon's line, learning bursts only past learning_starts and every
 * train_freq steps, the frozen target refreshed every target_update_interval steps (hard), or
 * averaged toward the online network (Polyak). */
START_TEST(agent_schedules) {
    clg_context *ctx = clg_test_context();
    clg_dqn_config c = clg_dqn_defaults();
    c.hidden[0] = 8;
    c.n_hidden = 1;
    c.batch = 4;
    c.buffer = 50;
    c.learning_starts = 10;
    c.train_freq = 5;
    c.gradient_steps = 2;
    c.target_update_interval = 3;
    c.total_steps = 100;
    c.exploration_fraction = 0.5;
    clg_dqn *d;
    clg_assert_ok(clg_dqn_new(ctx, "sched", &c, 4, 2, &d));
    clg_param *on = clg_param_find(ctx, "sched.online.0.weight");
    clg_param *tg = clg_param_find(ctx, "sched.target.0.weight");
    ck_assert_ptr_nonnull(on);
    ck_assert_ptr_nonnull(tg);
    ck_assert(clg_param_requires_grad(on) && !clg_param_requires_grad(tg));
    ck_assert_double_eq_tol(clg_dqn_epsilon(d), 1.0, 1e-12);
    const float o[4] = {0.01f, -0.02f, 0.03f, 0.0f}, n[4] = {0.02f, 0.1f, 0.0f, -0.1f};
    float w_on[32], w_tg[32];
    for (int t = 1; t <= 25; ++t) {
        int32_t a;
        clg_assert_ok(clg_dqn_act(d, o, -1.0, &a));
        ck_assert(a == 0 || a == 1);
        clg_assert_ok(clg_dqn_observe(d, o, t % 2, 1.0f, n, t % 7 == 0));
        int64_t bursts = t >= 15 ? (t - 10) / 5 : 0; /* at steps 15, 20, 25 */
        ck_assert_int_eq(clg_dqn_updates(d), 2 * bursts);
        if (t == 24 || t == 25) {
            clg_assert_ok(clg_param_read(on, w_on, sizeof w_on));
            clg_assert_ok(clg_param_read(tg, w_tg, sizeof w_tg));
            int same = 0;
            for (int k = 0; k < 32; ++k)
                same += w_on[k] == w_tg[k];
            /* refreshed at 24; the burst at 25 moved the online network only */
            if (t == 24) ck_assert_int_eq(same, 32);
            if (t == 25) ck_assert_int_lt(same, 32);
        }
    }
    ck_assert_double_eq_tol(clg_dqn_epsilon(d), 1.0 + 0.25 * (0.04 - 1.0) / 0.5, 1e-12);
    ck_assert(isfinite(clg_dqn_last_loss(d)));
    clg_dqn_free(d);

    c.tau = 0.25f;
    c.target_update_interval = 1;
    c.learning_starts = 1000;
    clg_assert_ok(clg_dqn_new(ctx, "polyak", &c, 4, 2, &d));
    on = clg_param_find(ctx, "polyak.online.0.weight");
    tg = clg_param_find(ctx, "polyak.target.0.weight");
    clg_assert_ok(clg_param_read(tg, w_tg, sizeof w_tg));
    for (int k = 0; k < 32; ++k)
        w_on[k] = (float)k / 8.0f;
    clg_assert_ok(clg_param_write(on, w_on, sizeof w_on));
    clg_assert_ok(clg_dqn_observe(d, o, 0, 1.0f, n, false));
    float got[32], want[32];
    clg_assert_ok(clg_param_read(tg, got, sizeof got));
    for (int k = 0; k < 32; ++k)
        want[k] = 0.75f * w_tg[k] + 0.25f * w_on[k];
    clg_assert_close(got, want, 32, 1e-6, 1e-6);
    ck_assert_int_eq(clg_dqn_updates(d), 0);
    ck_assert(isnan(clg_dqn_last_loss(d)));
    clg_dqn_free(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dqn");
    TCase *tc = tcase_create("dqn");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cartpole_batch_matches_host);
    tcase_add_test(tc, cartpole_batch_truncates_and_seeds);
    tcase_add_test(tc, cartpole_batch_strided_actions);
    tcase_add_test(tc, cartpole_batch_rejects);
    tcase_add_test(tc, replay_uniform_within_written);
    tcase_add_test(tc, td_target_plain_and_double);
    tcase_add_test(tc, act_and_step_in_one_plan);
    tcase_add_test(tc, agent_schedules);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
