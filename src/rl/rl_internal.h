/* The structures behind rl.h's handles, shared by the environments, the planners and
 * Q-learning: a finite MDP's outcome lists in one flat array, and sampling from them. */
#ifndef CLG_RL_INTERNAL_H
#define CLG_RL_INTERNAL_H

#include "clgrad/rl.h"

struct clg_mdp {
    int rows, cols, states, actions;
    int32_t start;
    int max_steps;
    char *cells;    /* map letter per state */
    bool *terminal; /* per state */
    bool *goal;     /* per state */
    int32_t *first; /* outcomes of (s, a): [first[s * actions + a], first[s * actions + a + 1]) */
    clg_transition *outcomes;
    int32_t count; /* outcomes filled so far (while building) */
    int32_t capacity;
};

/* A model of rows x cols cells and `actions` actions with room for `per_pair` outcomes per
 * (state, action); NULL when out of memory (the caller reports it). */
clg_mdp *clg_mdp_alloc(int rows, int cols, int actions, int per_pair);
/* Append an outcome to the pair being filled; pairs are filled in order s = 0.., a = 0..
 * and each is closed with clg_mdp_close_pair. */
void clg_mdp_add(clg_mdp *mdp, double prob, int32_t next, double reward, bool terminal);
void clg_mdp_close_pair(clg_mdp *mdp, int32_t state, int action);

/* Gymnasium's categorical draw: the first outcome whose cumulative probability exceeds u
 * (uniform in [0, 1)); the last one if rounding leaves the sum just under u. */
static inline const clg_transition *clg_mdp_draw(const clg_mdp *mdp, int32_t state, int action,
                                                 double u) {
    int32_t pair = state * mdp->actions + action;
    const clg_transition *t = mdp->outcomes + mdp->first[pair];
    const clg_transition *end = mdp->outcomes + mdp->first[pair + 1];
    double cum = 0;
    for (; t + 1 < end; ++t) {
        cum += t->prob;
        if (cum > u) return t;
    }
    return t;
}

#endif
