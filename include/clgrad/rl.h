/* Reinforcement learning on the host: a seedable generator, environments (CartPole-v1,
 * FrozenLake, a deterministic grid world), the exact transition model of the discrete ones,
 * value iteration and tabular Q-learning. Plain C: no OpenCL device is touched.
 * Ownership: objects returned through an out pointer belong to the caller and are released
 * with their _free function; _free(NULL) is a no-op; caller arrays are only borrowed. */
#ifndef CLGRAD_RL_H
#define CLGRAD_RL_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Random numbers ---- */

/* xoshiro256** 1.0 (Blackman and Vigna), its state seeded from a 64-bit seed by splitmix64.
 * Integer arithmetic only, so a seed gives the same stream on every machine and compiler. A
 * value type (no allocation): copy it to fork a stream that replays; the fields are private. */
typedef struct clg_rng {
    uint64_t s[4];
} clg_rng;

void clg_rng_seed(clg_rng *rng, uint64_t seed);
uint64_t clg_rng_next(clg_rng *rng);
/* Uniform in [0, 1) with 53 random bits: the top 53 bits of the next output times 2^-53. */
double clg_rng_uniform(clg_rng *rng);
/* Uniform integer in [0, n) without modulo bias (rejection); n >= 1. */
uint32_t clg_rng_below(clg_rng *rng, uint32_t n);

/* What one step returned besides the observation. An episode ends on terminated (the task's
 * own end: no value follows) or truncated (the time limit: the state still has a value). */
typedef struct clg_step_result {
    double reward;
    bool terminated;
    bool truncated;
} clg_step_result;

/* ---- CartPole-v1 ---- */

/* Gymnasium's CartPole-v1: gravity 9.8, cart 1.0 kg, pole 0.1 kg of half-length 0.5 m, force
 * 10 N, tau 0.02 s, explicit Euler, in double precision as Gymnasium computes it; the episode
 * terminates at |x| > 2.4 or |theta| > 12 degrees and is truncated after 500 steps; reward 1
 * per step including the last. Observations (x, x_dot, theta, theta_dot) are the state
 * rounded to float, as Gymnasium returns them. Actions: 0 pushes left, 1 right. */
#define CLG_CARTPOLE_OBSERVATIONS 4
#define CLG_CARTPOLE_ACTIONS 2
#define CLG_CARTPOLE_MAX_STEPS 500

typedef struct clg_cartpole clg_cartpole;

/* A new environment whose reset stream starts from seed; reset it before stepping. */
clg_status clg_cartpole_new(uint64_t seed, clg_cartpole **out);
void clg_cartpole_free(clg_cartpole *env);
/* Start an episode: each state variable uniform in (-0.05, 0.05). seed NULL draws from the
 * environment's stream; a seed restarts that stream first (the same seed, the same episodes).
 * obs (4 floats) may be NULL. */
clg_status clg_cartpole_reset(clg_cartpole *env, const uint64_t *seed, float *obs);
/* Start an episode from a given state (x, x_dot, theta, theta_dot), for tests and fixtures.
 * Non-finite values are CLG_ERR_INVALID_ARGUMENT. */
clg_status clg_cartpole_set_state(clg_cartpole *env, const double *state);
/* The full-precision state (4 doubles). */
void clg_cartpole_state(const clg_cartpole *env, double *state);
/* One step; obs (4 floats) and result may be NULL. An action other than 0 or 1, or a step
 * before reset or after the episode ended, is CLG_ERR_INVALID_ARGUMENT. */
clg_status clg_cartpole_step(clg_cartpole *env, int action, float *obs, clg_step_result *result);
/* Steps taken in the current episode. */
int clg_cartpole_steps(const clg_cartpole *env);

/* ---- Finite MDPs: FrozenLake and the grid world ---- */

/* A finite Markov decision process on a grid of cells (state = row * cols + col) with its
 * transition model, as Gymnasium's P[s][a]: for every state and action a list of outcomes.
 * Entering a terminal state ends the episode; terminal states (holes, goals, pits, walls)
 * lead only to themselves with reward 0. Episodes start in the start state and are truncated
 * after max_steps steps (Gymnasium's limits: 100 on FrozenLake 4x4, 200 on 8x8). */
typedef struct clg_mdp clg_mdp;

typedef struct clg_transition {
    double prob;
    int32_t next;
    double reward;
    bool terminal; /* next is terminal: nothing is bootstrapped after this outcome */
} clg_transition;

/* Actions, Gymnasium's FrozenLake order. */
typedef enum clg_grid_action {
    CLG_GRID_LEFT = 0,
    CLG_GRID_DOWN,
    CLG_GRID_RIGHT,
    CLG_GRID_UP,
    CLG_GRID_ACTION_COUNT
} clg_grid_action;

/* FrozenLake from rows of 'S' (start, one), 'F' (frozen), 'H' (hole), 'G' (goal): reward 1
 * on entering a goal, 0 otherwise; H and G are terminal; a move off the edge stays. Slippery:
 * the intended move with probability 1/3 and each perpendicular one with 1/3 (listed
 * (a - 1) mod 4, a, (a + 1) mod 4, as Gymnasium does). A bad map is CLG_ERR_INVALID_ARGUMENT
 * naming the row and column. */
clg_status clg_frozenlake_from_map(const char *const *rows, int nrows, bool slippery, int max_steps,
                                   clg_mdp **out);
/* Gymnasium's maps: size 4 ("SFFF", "FHFH", "FFFH", "HFFG", 100 steps) or 8 (200 steps). */
clg_status clg_frozenlake_new(int size, bool slippery, clg_mdp **out);

/* A deterministic grid world from rows of 'S' (start), '.' (free), '#' (wall: a move into it
 * stays), 'P' (pit, terminal), 'G' (goal, terminal). A move costs step_reward; entering a
 * goal pays goal_reward instead, a pit pit_reward. */
typedef struct clg_gridworld_options {
    double step_reward; /* e.g. -1 */
    double goal_reward; /* e.g. 10 */
    double pit_reward;  /* e.g. -10 */
    int max_steps;
} clg_gridworld_options;
clg_status clg_gridworld_from_map(const char *const *rows, int nrows,
                                  const clg_gridworld_options *opts, clg_mdp **out);
/* clgrad's 5x5 world (step -1, goal 10, pit -10, 100 steps):
 *   S . # . .
 *   . # # # .
 *   . . P . .
 *   # . # . #
 *   P . . . G */
clg_status clg_gridworld_new(clg_mdp **out);

void clg_mdp_free(clg_mdp *mdp);
int clg_mdp_states(const clg_mdp *mdp);
int clg_mdp_actions(const clg_mdp *mdp);
int clg_mdp_rows(const clg_mdp *mdp);
int clg_mdp_cols(const clg_mdp *mdp);
int32_t clg_mdp_start(const clg_mdp *mdp);
int clg_mdp_max_steps(const clg_mdp *mdp);
/* The map letter of a state ('S', 'F', 'H', 'G', '.', '#', 'P'); 0 out of range. */
char clg_mdp_cell(const clg_mdp *mdp, int32_t state);
bool clg_mdp_is_terminal(const clg_mdp *mdp, int32_t state);
/* Goal states: entering one is a success (what success rates count). */
bool clg_mdp_is_goal(const clg_mdp *mdp, int32_t state);
/* The outcomes of action in state (owned by the model); their count, 0 when out of range. */
int clg_mdp_transitions(const clg_mdp *mdp, int32_t state, int action, const clg_transition **list);

/* Episodes on a model (which the environment borrows and which must outlive it). */
typedef struct clg_mdp_env clg_mdp_env;
clg_status clg_mdp_env_new(const clg_mdp *mdp, uint64_t seed, clg_mdp_env **out);
void clg_mdp_env_free(clg_mdp_env *env);
/* Back to the start state; a non-NULL seed restarts the environment's stream first. */
clg_status clg_mdp_env_reset(clg_mdp_env *env, const uint64_t *seed, int32_t *state);
/* Sample an outcome of action as Gymnasium does (the first outcome whose cumulative
 * probability exceeds a uniform draw). A bad action, or a step before reset or after the
 * episode ended, is CLG_ERR_INVALID_ARGUMENT. */
clg_status clg_mdp_env_step(clg_mdp_env *env, int action, int32_t *next, clg_step_result *result);

/* ---- Planning ---- */

/* Value iteration: sweeps V(s) = max_a sum p (r + gamma V(s') [not terminal]) in place until
 * no value moves by more than tol, then policy(s) = the first action within 1e-12 of the best
 * (values and policy: one per state; either may be NULL). gamma in [0, 1]; gamma 1 must
 * converge within 100000 sweeps (CLG_ERR_UNSUPPORTED otherwise). */
clg_status clg_value_iteration(const clg_mdp *mdp, double gamma, double tol, double *values,
                               int32_t *policy);
/* The values of a fixed policy, by the same sweeps without the max. */
clg_status clg_policy_evaluate(const clg_mdp *mdp, const int32_t *policy, double gamma, double tol,
                               double *values);
/* The exact probability that the policy, from the start state, enters a goal within
 * max_steps steps (0: the model's own limit; -1: no limit, to 1e-13). */
clg_status clg_policy_success(const clg_mdp *mdp, const int32_t *policy, int max_steps,
                              double *prob);
/* The most any policy can reach: the probability of entering a goal within max_steps steps
 * (0: the model's limit) for a policy that may also look at the steps left, by backward
 * induction. A stationary policy (what value iteration and Q-learning give) can fall short
 * of it: Gymnasium's "optimum" figures for FrozenLake (0.74, 0.91) are this bound. */
clg_status clg_optimal_success(const clg_mdp *mdp, int max_steps, double *prob);
/* The success rate of the policy over episodes sampled with the model's time limit. */
clg_status clg_policy_rollouts(const clg_mdp *mdp, const int32_t *policy, int64_t episodes,
                               uint64_t seed, double *success_rate);

/* ---- Tabular Q-learning ---- */

/* A value that changes with t (an episode number, or a visit count):
 *   constant     start
 *   linear       start (1 - f) + end f     where f = min(t / span, 1)
 *   exponential  start (end / start)^f     (start, end > 0)
 *   inverse      max(end, start / (1 + t / span)) */
typedef enum clg_schedule_kind {
    CLG_SCHEDULE_CONSTANT = 0,
    CLG_SCHEDULE_LINEAR,
    CLG_SCHEDULE_EXPONENTIAL,
    CLG_SCHEDULE_INVERSE,
    CLG_SCHEDULE_KIND_COUNT
} clg_schedule_kind;

typedef struct clg_schedule {
    clg_schedule_kind kind;
    double start;
    double end;
    double span; /* > 0 unless constant */
} clg_schedule;

double clg_schedule_value(const clg_schedule *schedule, double t);

typedef struct clg_qlearn_options {
    int64_t episodes;
    double gamma;
    clg_schedule epsilon; /* exploration, by episode */
    clg_schedule alpha;   /* learning rate, by episode or by the pair's visits */
    bool alpha_per_visit; /* t for alpha: visits of (s, a) before this update */
    double q_init;        /* every entry starts here (terminal states stay 0) */
    uint64_t seed;
} clg_qlearn_options;

/* Defaults that solve FrozenLake 4x4 and the grid world: gamma 0.99, epsilon 1 -> 0.05
 * linearly over 80 % of the episodes, alpha 1 / (1 + visits / 20) down to 0.01 per visit. */
clg_qlearn_options clg_qlearn_defaults(int64_t episodes);

typedef struct clg_qlearn_stats {
    int64_t steps;     /* environment steps taken */
    int64_t successes; /* training episodes that entered a goal */
} clg_qlearn_stats;

/* Q-learning with epsilon-greedy exploration (ties among greedy actions broken at random):
 * Q(s, a) += alpha (r + gamma max Q(s', .) [s' not terminal] - Q(s, a)). A truncated episode
 * still bootstraps its last step. Writes q (states * actions, row per state) and the greedy
 * policy (the first best action per state); either may be NULL, as may stats. */
clg_status clg_qlearn(const clg_mdp *mdp, const clg_qlearn_options *opts, double *q,
                      int32_t *policy, clg_qlearn_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
