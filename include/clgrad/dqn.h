/* Deep Q-learning on clgrad graphs: a batch of CartPole environments stepped on the device,
 * a replay buffer, the TD target (plain and Double DQN), and a DQN agent whose networks are
 * plans (acting: a forward plan; learning: a training plan reading a frozen target network).
 * Ownership: objects returned through an out pointer belong to the caller (their _free, NULL
 * a no-op); the parameters they create belong to the context; caller arrays are borrowed. */
#ifndef CLGRAD_DQN_H
#define CLGRAD_DQN_H

#include <stdbool.h>
#include <stdint.h>

#include "graph.h"
#include "nn.h"
#include "rl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CartPole environments on the device ---- */

/* N CartPole-v1 environments in parameters "<name>.state", ".counters", ".obs", ".info" of
 * ctx (shapes in ops.h's clg_cartpole_batch_step), every one reset at creation. */
typedef struct clg_cartpole_vec clg_cartpole_vec;

clg_status clg_cartpole_vec_new(clg_context *ctx, const char *name, int64_t n, uint64_t seed,
                                clg_cartpole_vec **out);
/* Frees the vector's own plans; its parameters stay with the context. */
void clg_cartpole_vec_free(clg_cartpole_vec *vec);
int64_t clg_cartpole_vec_size(const clg_cartpole_vec *vec);
/* Observations f32 [N, 4]: use clg_param_tensor(g, clg_cartpole_vec_obs(v)) as a network's
 * input; state, counters and info as in ops.h. */
clg_param *clg_cartpole_vec_obs(const clg_cartpole_vec *vec);
clg_param *clg_cartpole_vec_state(const clg_cartpole_vec *vec);
clg_param *clg_cartpole_vec_counters(const clg_cartpole_vec *vec);
clg_param *clg_cartpole_vec_info(const clg_cartpole_vec *vec);
/* Add one step of every environment with action (i32, N elements) to g: a side effect of
 * every run of g's plans, after the ops built before it. */
clg_status clg_cartpole_vec_add_step(clg_cartpole_vec *vec, clg_graph *g, clg_tensor *action);
/* Reset every environment (a new episode each), queued. */
clg_status clg_cartpole_vec_reset(clg_cartpole_vec *vec);
/* Step with host actions (N int32), queued: for tests and for comparing with host loops. */
clg_status clg_cartpole_vec_step(clg_cartpole_vec *vec, const int32_t *actions);

/* ---- Replay buffer (host memory) ---- */

/* A ring of capacity transitions (obs, action, reward, next_obs, terminated), the oldest
 * overwritten once full. A truncated step is stored as not terminated: its successor's value
 * is still bootstrapped. */
typedef struct clg_replay clg_replay;

clg_status clg_replay_new(int64_t capacity, int obs_dim, clg_replay **out);
void clg_replay_free(clg_replay *r);
clg_status clg_replay_add(clg_replay *r, const float *obs, int32_t action, float reward,
                          const float *next_obs, bool terminated);
/* Transitions held: min(added, capacity). */
int64_t clg_replay_size(const clg_replay *r);
/* batch indices drawn uniformly (with replacement) from the slots written so far, and the
 * transitions there: obs and next_obs [batch, obs_dim], actions, rewards and terminated
 * (1 or 0) [batch]. Any output may be NULL. CLG_ERR_INVALID_ARGUMENT when the buffer is
 * empty. */
clg_status clg_replay_sample(clg_replay *r, clg_rng *rng, int64_t batch, int64_t *index, float *obs,
                             int32_t *actions, float *rewards, float *next_obs, float *terminated);

/* ---- Q-networks and the TD target ---- */

#define CLG_QNET_MAX_HIDDEN 4

/* An MLP obs -> hidden... (ReLU) -> one value per action, layers "<name>.<k>" as
 * clg_linear_init (torch.nn.Linear's initialisation). */
typedef struct clg_qnet {
    clg_linear layers[CLG_QNET_MAX_HIDDEN + 1];
    int n_layers;
} clg_qnet;

clg_status clg_qnet_init(clg_context *ctx, clg_qnet *net, const char *name, int64_t inputs,
                         const int64_t *hidden, int n_hidden, int64_t actions, uint64_t seed);
/* x [B, inputs] -> [B, actions] */
clg_tensor *clg_qnet_forward(clg_graph *g, const clg_qnet *net, clg_tensor *x);
/* Parameters (weights and biases, layer order): 2 n_layers of them written to out. */
int clg_qnet_params(const clg_qnet *net, clg_param **out);
/* Every parameter of dst <- src's (equal architectures): a hard copy (tau 1) or Polyak
 * averaging dst = (1 - tau) dst + tau src; queued. */
clg_status clg_qnet_update(clg_qnet *dst, const clg_qnet *src, float tau);

/* y = r + gamma (1 - terminated) Q_target(s', a') [B, 1], a' = argmax Q_target(s', .) or, for
 * Double DQN (q_next_online not NULL), argmax Q_online(s', .): q_next_* [B, A], reward and
 * terminated [B, 1] f32 (terminated 1 where the episode really ended; a truncated step is 0).
 * No gradient flows through y. */
clg_tensor *clg_dqn_td_target(clg_graph *g, clg_tensor *q_next_target, clg_tensor *q_next_online,
                              clg_tensor *reward, clg_tensor *terminated, float gamma);
/* One action per row of q [N, A] (i32 [N]): with probability epsilon (an f32 tensor of one
 * element, so it can change per run) uniform over the actions, else the first argmax. Drawn
 * on the device (a fresh draw each run; seed fixes the stream). */
clg_tensor *clg_epsilon_greedy(clg_graph *g, clg_tensor *q, clg_tensor *epsilon, uint64_t seed);

/* ---- The agent ---- */

typedef struct clg_dqn_config {
    int64_t hidden[CLG_QNET_MAX_HIDDEN];
    int n_hidden;
    float lr; /* Adam */
    int64_t batch;
    int64_t buffer;          /* replay capacity */
    int64_t learning_starts; /* steps of uniform random actions before learning */
    float gamma;
    int64_t target_update_interval; /* environment steps between target updates (0: never,
                                       a broken control for tests) */
    float tau;                      /* 1: hard copy, else Polyak averaging */
    int64_t train_freq;             /* environment steps between bursts of learning */
    int64_t gradient_steps;         /* updates per burst */
    double exploration_fraction;    /* of total_steps over which epsilon falls linearly */
    double exploration_initial_eps, exploration_final_eps;
    float clip_norm; /* the global gradient norm is clipped to this */
    float huber_delta;
    bool double_dqn;
    bool bootstrap_terminal; /* broken control for tests: terminal states bootstrapped */
    int64_t total_steps;
    uint64_t seed;
} clg_dqn_config;

/* The tuned rl-zoo (Stable-Baselines3) CartPole-v1 settings: lr 2.3e-3, batch 64, buffer
 * 100000, learning_starts 1000, gamma 0.99, target update every 10 steps (hard), train_freq
 * 256 with 128 gradient steps, epsilon 1 -> 0.04 over 16 % of 50000 steps, net [256, 256];
 * SB3's own defaults for the rest: Huber delta 1, gradient norm 10, no Double DQN. */
clg_dqn_config clg_dqn_defaults(void);

typedef struct clg_dqn clg_dqn;

/* Networks "<name>.online.*" and "<name>.target.*" (frozen) in ctx, the plans and the
 * replay buffer for observations of obs_dim and `actions` actions. */
clg_status clg_dqn_new(clg_context *ctx, const char *name, const clg_dqn_config *config,
                       int obs_dim, int actions, clg_dqn **out);
void clg_dqn_free(clg_dqn *d);
/* The epsilon-greedy action for obs (random before learning_starts); epsilon < 0 uses the
 * schedule at the current step, 0 is greedy (evaluation). */
clg_status clg_dqn_act(clg_dqn *d, const float *obs, double epsilon, int32_t *action);
/* Record a transition and advance the step: target updates and learning bursts happen here
 * on their schedules. */
clg_status clg_dqn_observe(clg_dqn *d, const float *obs, int32_t action, float reward,
                           const float *next_obs, bool terminated);
double clg_dqn_epsilon(const clg_dqn *d);
int64_t clg_dqn_steps(const clg_dqn *d);
int64_t clg_dqn_updates(const clg_dqn *d);
/* The mean Huber loss of the last learning burst's final update (NaN before any). */
float clg_dqn_last_loss(clg_dqn *d);
clg_qnet *clg_dqn_online(clg_dqn *d);
clg_optimizer *clg_dqn_optimizer(clg_dqn *d);
/* Mean return of the greedy policy over episodes of the host CartPole seeded from seed. */
clg_status clg_dqn_evaluate_cartpole(clg_dqn *d, int episodes, uint64_t seed, double *mean,
                                     double *std);

#ifdef __cplusplus
}
#endif

#endif
