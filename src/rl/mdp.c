/* Finite MDPs: the model's storage and accessors, and episodes sampled from it (the
 * environment FrozenLake and the grid world are, and what Q-learning and rollouts step). */
#include <stdlib.h>

#include "core/error.h"
#include "rl/rl_internal.h"

clg_mdp *clg_mdp_alloc(int rows, int cols, int actions, int per_pair) {
    clg_mdp *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->rows = rows;
    m->cols = cols;
    m->states = rows * cols;
    m->actions = actions;
    m->capacity = m->states * actions * per_pair;
    m->cells = calloc((size_t)m->states, 1);
    m->terminal = calloc((size_t)m->states, sizeof *m->terminal);
    m->goal = calloc((size_t)m->states, sizeof *m->goal);
    m->first = calloc((size_t)m->states * (size_t)actions + 1, sizeof *m->first);
    m->outcomes = calloc((size_t)m->capacity, sizeof *m->outcomes);
    if (!m->cells || !m->terminal || !m->goal || !m->first || !m->outcomes) {
        clg_mdp_free(m);
        return NULL;
    }
    return m;
}

void clg_mdp_add(clg_mdp *m, double prob, int32_t next, double reward, bool terminal) {
    /* builders size the model for their largest pair: running out is a bug in them */
    if (m->count >= m->capacity) abort();
    m->outcomes[m->count++] = (clg_transition){prob, next, reward, terminal};
}

void clg_mdp_close_pair(clg_mdp *m, int32_t state, int action) {
    m->first[state * m->actions + action + 1] = m->count;
}

void clg_mdp_free(clg_mdp *m) {
    if (!m) return;
    free(m->cells);
    free(m->terminal);
    free(m->goal);
    free(m->first);
    free(m->outcomes);
    free(m);
}

int clg_mdp_states(const clg_mdp *m) {
    return m ? m->states : 0;
}

int clg_mdp_actions(const clg_mdp *m) {
    return m ? m->actions : 0;
}

int clg_mdp_rows(const clg_mdp *m) {
    return m ? m->rows : 0;
}

int clg_mdp_cols(const clg_mdp *m) {
    return m ? m->cols : 0;
}

int32_t clg_mdp_start(const clg_mdp *m) {
    return m ? m->start : 0;
}

int clg_mdp_max_steps(const clg_mdp *m) {
    return m ? m->max_steps : 0;
}

static bool in_range(const clg_mdp *m, int32_t s) {
    return m && s >= 0 && s < m->states;
}

char clg_mdp_cell(const clg_mdp *m, int32_t s) {
    return in_range(m, s) ? m->cells[s] : 0;
}

bool clg_mdp_is_terminal(const clg_mdp *m, int32_t s) {
    return in_range(m, s) && m->terminal[s];
}

bool clg_mdp_is_goal(const clg_mdp *m, int32_t s) {
    return in_range(m, s) && m->goal[s];
}

int clg_mdp_transitions(const clg_mdp *m, int32_t s, int a, const clg_transition **list) {
    if (list) *list = NULL;
    if (!in_range(m, s) || a < 0 || a >= m->actions) return 0;
    int32_t pair = s * m->actions + a;
    if (list) *list = m->outcomes + m->first[pair];
    return (int)(m->first[pair + 1] - m->first[pair]);
}

/* ---- Episodes ---- */

struct clg_mdp_env {
    const clg_mdp *mdp;
    clg_rng rng;
    int32_t state;
    int steps;
    bool started, done;
};

clg_status clg_mdp_env_new(const clg_mdp *mdp, uint64_t seed, clg_mdp_env **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mdp_env_new: out is NULL");
    *out = NULL;
    if (!mdp) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mdp_env_new: mdp is NULL");
    clg_mdp_env *env = calloc(1, sizeof *env);
    if (!env) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_mdp_env_new: out of memory");
    env->mdp = mdp;
    clg_rng_seed(&env->rng, seed);
    *out = env;
    return CLG_OK;
}

void clg_mdp_env_free(clg_mdp_env *env) {
    free(env);
}

clg_status clg_mdp_env_reset(clg_mdp_env *env, const uint64_t *seed, int32_t *state) {
    if (!env) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mdp_env_reset: env is NULL");
    if (seed) clg_rng_seed(&env->rng, *seed);
    env->state = env->mdp->start;
    env->steps = 0;
    env->started = true;
    env->done = false;
    if (state) *state = env->state;
    return CLG_OK;
}

clg_status clg_mdp_env_step(clg_mdp_env *env, int action, int32_t *next, clg_step_result *result) {
    if (!env) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mdp_env_step: env is NULL");
    const clg_mdp *m = env->mdp;
    if (action < 0 || action >= m->actions)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mdp_env_step: action %d is outside [0, %d)",
                        action, m->actions);
    if (!env->started || env->done)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_mdp_env_step: %s",
                        env->started ? "the episode has ended; reset first"
                                     : "reset before the first step");
    const clg_transition *t = clg_mdp_draw(m, env->state, action, clg_rng_uniform(&env->rng));
    env->state = t->next;
    env->steps++;
    bool truncated = env->steps >= m->max_steps;
    env->done = t->terminal || truncated;
    if (next) *next = t->next;
    if (result) {
        result->reward = t->reward;
        result->terminated = t->terminal;
        result->truncated = truncated;
    }
    return CLG_OK;
}
