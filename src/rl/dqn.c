/* The DQN agent (Mnih et al. 2015, as Stable-Baselines3 schedules it): epsilon-greedy acting
 * through a batch-1 forward plan, a replay buffer, and bursts of updates through a training
 * plan whose TD target reads a frozen target network refreshed every N steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "clgrad/dqn.h"
#include "clgrad/ops.h"
#include "clgrad/optim.h"
#include "core/error.h"

struct clg_dqn {
    clg_context *ctx;
    clg_dqn_config cfg;
    int obs_dim, actions;
    clg_qnet online, target;
    clg_optimizer *opt;
    clg_replay *replay;
    clg_rng rng;
    clg_graph *act_g, *train_g;
    clg_plan *act_plan, *train_plan;
    clg_tensor *act_obs, *act_choice;
    clg_tensor *t_obs, *t_action, *t_reward, *t_next, *t_term, *loss;
    float *b_obs, *b_next, *b_reward, *b_term;
    int32_t *b_action;
    int64_t steps, updates;
    bool learned;
};

clg_dqn_config clg_dqn_defaults(void) {
    return (clg_dqn_config){
        .hidden = {256, 256},
        .n_hidden = 2,
        .lr = 2.3e-3f,
        .batch = 64,
        .buffer = 100000,
        .learning_starts = 1000,
        .gamma = 0.99f,
        .target_update_interval = 10,
        .tau = 1.0f,
        .train_freq = 256,
        .gradient_steps = 128,
        .exploration_fraction = 0.16,
        .exploration_initial_eps = 1.0,
        .exploration_final_eps = 0.04,
        .clip_norm = 10.0f,
        .huber_delta = 1.0f,
        .double_dqn = false,
        .bootstrap_terminal = false,
        .total_steps = 50000,
        .seed = 0,
    };
}

static clg_status graph_status(clg_graph *g, const char *what) {
    clg_status st = clg_graph_status(g);
    if (st != CLG_OK) return clg_fail(st, "clg_dqn_new: %s graph: %s", what, clg_graph_error(g));
    return CLG_OK;
}

static clg_status build_act(clg_dqn *d) {
    d->act_g = clg_graph_new(d->ctx);
    if (!d->act_g) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_dqn_new: out of memory");
    const int64_t shape[2] = {1, d->obs_dim};
    d->act_obs = clg_input(d->act_g, "obs", CLG_F32, 2, shape);
    d->act_choice =
        clg_argmax(d->act_g, clg_qnet_forward(d->act_g, &d->online, d->act_obs), 1, false);
    clg_graph_output(d->act_g, d->act_choice);
    clg_status st = graph_status(d->act_g, "acting");
    return st != CLG_OK ? st : clg_graph_compile(d->act_g, NULL, &d->act_plan);
}

static clg_status build_train(clg_dqn *d) {
    clg_graph *g = d->train_g = clg_graph_new(d->ctx);
    if (!g) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_dqn_new: out of memory");
    const int64_t B = d->cfg.batch;
    const int64_t s_obs[2] = {B, d->obs_dim}, s_col[2] = {B, 1};
    d->t_obs = clg_input(g, "obs", CLG_F32, 2, s_obs);
    d->t_action = clg_input(g, "action", CLG_I32, 2, s_col);
    d->t_reward = clg_input(g, "reward", CLG_F32, 2, s_col);
    d->t_next = clg_input(g, "next_obs", CLG_F32, 2, s_obs);
    d->t_term = clg_input(g, "terminated", CLG_F32, 2, s_col);
    clg_tensor *q = clg_qnet_forward(g, &d->online, d->t_obs);    /* (B, A) */
    clg_tensor *q_sa = clg_take_along_axis(g, q, d->t_action, 1); /* (B, 1) */
    clg_tensor *q_next = clg_qnet_forward(g, &d->target, d->t_next);
    clg_tensor *q_next_online =
        d->cfg.double_dqn ? clg_qnet_forward(g, &d->online, d->t_next) : NULL;
    clg_tensor *term = d->cfg.bootstrap_terminal ? clg_mul_scalar(g, d->t_term, 0.0f) : d->t_term;
    clg_tensor *y = clg_dqn_td_target(g, q_next, q_next_online, d->t_reward, term, d->cfg.gamma);
    d->loss = clg_huber_loss(g, q_sa, y, d->cfg.huber_delta, CLG_REDUCTION_MEAN);
    clg_graph_output(g, d->loss);
    clg_status st = graph_status(g, "training");
    if (st == CLG_OK) st = clg_backward(g, d->loss);
    if (st == CLG_OK) st = clg_optimizer_apply(d->opt, g, NULL);
    return st != CLG_OK ? st : clg_graph_compile(g, NULL, &d->train_plan);
}

clg_status clg_dqn_new(clg_context *ctx, const char *name, const clg_dqn_config *cfg, int obs_dim,
                       int actions, clg_dqn **out) {
    if (!out || !ctx || !name || !cfg)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dqn_new: NULL argument");
    *out = NULL;
    if (obs_dim < 1 || actions < 2 || cfg->batch < 1 || cfg->buffer < cfg->batch ||
        cfg->train_freq < 1 || cfg->gradient_steps < 0 || cfg->learning_starts < 0 ||
        !(cfg->tau > 0.0f && cfg->tau <= 1.0f) || !(cfg->gamma >= 0.0f && cfg->gamma <= 1.0f) ||
        cfg->total_steps < 1 || cfg->target_update_interval < 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_dqn_new: bad configuration (obs_dim %d, actions %d, batch %lld, "
                        "buffer %lld, train_freq %lld, tau %g, gamma %g, total_steps %lld)",
                        obs_dim, actions, (long long)cfg->batch, (long long)cfg->buffer,
                        (long long)cfg->train_freq, (double)cfg->tau, (double)cfg->gamma,
                        (long long)cfg->total_steps);
    clg_dqn *d = calloc(1, sizeof *d);
    if (!d) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_dqn_new: out of memory");
    d->ctx = ctx;
    d->cfg = *cfg;
    d->obs_dim = obs_dim;
    d->actions = actions;
    clg_rng_seed(&d->rng, cfg->seed ^ 0xD1B54A32D192ED03ull);
    char on[256], tg[256];
    snprintf(on, sizeof on, "%s.online", name);
    snprintf(tg, sizeof tg, "%s.target", name);
    clg_status st =
        clg_qnet_init(ctx, &d->online, on, obs_dim, cfg->hidden, cfg->n_hidden, actions, cfg->seed);
    if (st == CLG_OK)
        st = clg_qnet_init(ctx, &d->target, tg, obs_dim, cfg->hidden, cfg->n_hidden, actions,
                           cfg->seed + 1);
    clg_param *ps[2 * (CLG_QNET_MAX_HIDDEN + 1)];
    if (st == CLG_OK) {
        int n = clg_qnet_params(&d->target, ps);
        for (int k = 0; k < n; ++k)
            clg_param_set_requires_grad(ps[k], false); /* read, never trained */
        st = clg_qnet_update(&d->target, &d->online, 1.0f);
    }
    if (st == CLG_OK) {
        clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAM);
        oc.lr = cfg->lr;
        oc.clip_norm = cfg->clip_norm;
        int n = clg_qnet_params(&d->online, ps);
        d->opt = clg_optimizer_new_params(ctx, &oc, ps, (size_t)n);
        if (!d->opt)
            st = clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dqn_new: optimizer: %s", clg_last_error());
    }
    if (st == CLG_OK) st = clg_replay_new(cfg->buffer, obs_dim, &d->replay);
    size_t B = (size_t)cfg->batch;
    if (st == CLG_OK) {
        d->b_obs = malloc(B * (size_t)obs_dim * sizeof(float));
        d->b_next = malloc(B * (size_t)obs_dim * sizeof(float));
        d->b_reward = malloc(B * sizeof(float));
        d->b_term = malloc(B * sizeof(float));
        d->b_action = malloc(B * sizeof(int32_t));
        if (!d->b_obs || !d->b_next || !d->b_reward || !d->b_term || !d->b_action)
            st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_dqn_new: out of memory");
    }
    if (st == CLG_OK) st = build_act(d);
    if (st == CLG_OK) st = build_train(d);
    if (st != CLG_OK) {
        clg_dqn_free(d);
        return st;
    }
    *out = d;
    return CLG_OK;
}

void clg_dqn_free(clg_dqn *d) {
    if (!d) return;
    clg_graph_free(d->act_g);
    clg_graph_free(d->train_g);
    clg_optimizer_free(d->opt);
    clg_replay_free(d->replay);
    free(d->b_obs);
    free(d->b_next);
    free(d->b_reward);
    free(d->b_term);
    free(d->b_action);
    free(d);
}

/* Stable-Baselines3's linear schedule on the fraction of total steps done. */
double clg_dqn_epsilon(const clg_dqn *d) {
    const clg_dqn_config *c = &d->cfg;
    double progress = (double)d->steps / (double)c->total_steps;
    if (c->exploration_fraction <= 0 || progress > c->exploration_fraction)
        return c->exploration_final_eps;
    return c->exploration_initial_eps +
           progress * (c->exploration_final_eps - c->exploration_initial_eps) /
               c->exploration_fraction;
}

int64_t clg_dqn_steps(const clg_dqn *d) {
    return d ? d->steps : 0;
}
int64_t clg_dqn_updates(const clg_dqn *d) {
    return d ? d->updates : 0;
}
clg_qnet *clg_dqn_online(clg_dqn *d) {
    return d ? &d->online : NULL;
}
clg_optimizer *clg_dqn_optimizer(clg_dqn *d) {
    return d ? d->opt : NULL;
}

clg_status clg_dqn_act(clg_dqn *d, const float *obs, double epsilon, int32_t *action) {
    if (!d || !obs || !action)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dqn_act: NULL argument");
    bool explore;
    if (epsilon < 0)
        explore =
            d->steps < d->cfg.learning_starts || clg_rng_uniform(&d->rng) < clg_dqn_epsilon(d);
    else
        explore = epsilon > 0 && clg_rng_uniform(&d->rng) < epsilon;
    if (explore) {
        *action = (int32_t)clg_rng_below(&d->rng, (uint32_t)d->actions);
        return CLG_OK;
    }
    clg_status st =
        clg_plan_write(d->act_plan, d->act_obs, obs, (size_t)d->obs_dim * sizeof(float));
    if (st == CLG_OK) st = clg_plan_run(d->act_plan);
    if (st == CLG_OK) st = clg_plan_read(d->act_plan, d->act_choice, action, sizeof *action);
    return st;
}

static clg_status learn(clg_dqn *d) {
    size_t B = (size_t)d->cfg.batch, D = (size_t)d->obs_dim;
    for (int64_t k = 0; k < d->cfg.gradient_steps; ++k) {
        clg_status st = clg_replay_sample(d->replay, &d->rng, d->cfg.batch, NULL, d->b_obs,
                                          d->b_action, d->b_reward, d->b_next, d->b_term);
        clg_plan *p = d->train_plan;
        if (st == CLG_OK) st = clg_plan_write(p, d->t_obs, d->b_obs, B * D * sizeof(float));
        if (st == CLG_OK) st = clg_plan_write(p, d->t_action, d->b_action, B * sizeof(int32_t));
        if (st == CLG_OK) st = clg_plan_write(p, d->t_reward, d->b_reward, B * sizeof(float));
        if (st == CLG_OK) st = clg_plan_write(p, d->t_next, d->b_next, B * D * sizeof(float));
        if (st == CLG_OK) st = clg_plan_write(p, d->t_term, d->b_term, B * sizeof(float));
        if (st == CLG_OK) st = clg_plan_run(p);
        if (st != CLG_OK) return st;
        d->updates++;
        d->learned = true;
    }
    return CLG_OK;
}

clg_status clg_dqn_observe(clg_dqn *d, const float *obs, int32_t action, float reward,
                           const float *next_obs, bool terminated) {
    if (!d) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dqn_observe: agent is NULL");
    clg_status st = clg_replay_add(d->replay, obs, action, reward, next_obs, terminated);
    if (st != CLG_OK) return st;
    d->steps++;
    const clg_dqn_config *c = &d->cfg;
    if (c->target_update_interval > 0 && d->steps % c->target_update_interval == 0) {
        st = clg_qnet_update(&d->target, &d->online, c->tau);
        if (st != CLG_OK) return st;
    }
    if (d->steps % c->train_freq == 0 && d->steps > c->learning_starts) st = learn(d);
    return st;
}

float clg_dqn_last_loss(clg_dqn *d) {
    float loss = NAN;
    if (d && d->learned) clg_plan_read(d->train_plan, d->loss, &loss, sizeof loss);
    return loss;
}

clg_status clg_dqn_evaluate_cartpole(clg_dqn *d, int episodes, uint64_t seed, double *mean,
                                     double *std) {
    if (!d || episodes < 1 || d->obs_dim != CLG_CARTPOLE_OBSERVATIONS ||
        d->actions != CLG_CARTPOLE_ACTIONS)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_dqn_evaluate_cartpole: needs an agent "
                        "for CartPole's 4 observations and 2 actions and episodes >= 1");
    clg_cartpole *env;
    clg_status st = clg_cartpole_new(seed, &env);
    if (st != CLG_OK) return st;
    double sum = 0, sum2 = 0;
    for (int e = 0; e < episodes && st == CLG_OK; ++e) {
        float obs[4];
        st = clg_cartpole_reset(env, NULL, obs);
        double ret = 0;
        clg_step_result r = {0};
        while (st == CLG_OK && !r.terminated && !r.truncated) {
            int32_t a;
            st = clg_dqn_act(d, obs, 0.0, &a);
            if (st == CLG_OK) st = clg_cartpole_step(env, a, obs, &r);
            ret += r.reward;
        }
        sum += ret;
        sum2 += ret * ret;
    }
    clg_cartpole_free(env);
    double m = sum / episodes;
    if (mean) *mean = m;
    if (std) *std = sqrt(fmax(0.0, sum2 / episodes - m * m));
    return st;
}
