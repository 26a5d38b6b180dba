/* Tabular Q-learning (Watkins 1989) with epsilon-greedy exploration, and the schedules that
 * anneal its exploration and learning rate. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "rl/rl_internal.h"

double clg_schedule_value(const clg_schedule *sc, double t) {
    if (!sc) return 0;
    double f = sc->span > 0 ? fmin(fmax(t, 0) / sc->span, 1.0) : 1.0;
    switch (sc->kind) {
    case CLG_SCHEDULE_LINEAR:
        return sc->start * (1 - f) + sc->end * f; /* exact at both ends */
    case CLG_SCHEDULE_EXPONENTIAL:
        return sc->start * pow(sc->end / sc->start, f);
    case CLG_SCHEDULE_INVERSE:
        return sc->span > 0 ? fmax(sc->end, sc->start / (1 + fmax(t, 0) / sc->span)) : sc->end;
    case CLG_SCHEDULE_CONSTANT:
    default:
        return sc->start;
    }
}

clg_qlearn_options clg_qlearn_defaults(int64_t episodes) {
    clg_qlearn_options o = {
        .episodes = episodes,
        .gamma = 0.99,
        .epsilon = {CLG_SCHEDULE_LINEAR, 1.0, 0.05, fmax(1.0, 0.8 * (double)episodes)},
        .alpha = {CLG_SCHEDULE_INVERSE, 1.0, 0.01, 20.0},
        .alpha_per_visit = true,
        .q_init = 0.0,
        .seed = 1,
    };
    return o;
}

static clg_status check_schedule(const char *what, const clg_schedule *sc, double lo, double hi) {
    if ((unsigned)sc->kind >= CLG_SCHEDULE_KIND_COUNT)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qlearn: %s schedule kind %d is unknown",
                        what, (int)sc->kind);
    bool ok = sc->start >= lo && sc->start <= hi;
    if (sc->kind != CLG_SCHEDULE_CONSTANT)
        ok = ok && sc->end >= lo && sc->end <= hi && sc->span > 0;
    if (sc->kind == CLG_SCHEDULE_EXPONENTIAL) ok = ok && sc->start > 0 && sc->end > 0;
    if (!ok)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_qlearn: %s schedule (start %g, end %g, span %g) leaves [%g, %g] "
                        "or has no positive span",
                        what, sc->start, sc->end, sc->span, lo, hi);
    return CLG_OK;
}

/* The best action in row q; ties broken uniformly at random when rng is given (with zero
 * initial values a fixed tie-break would walk every unexplored state the same way), else by
 * the lowest index. */
static int greedy(const double *q, int actions, clg_rng *rng) {
    int best = 0, ties = 1;
    for (int a = 1; a < actions; ++a) {
        if (q[a] > q[best]) {
            best = a;
            ties = 1;
        } else if (rng && q[a] == q[best] && clg_rng_below(rng, (uint32_t)++ties) == 0) {
            best = a; /* reservoir choice: each of the ties kept with probability 1 / ties */
        }
    }
    return best;
}

clg_status clg_qlearn(const clg_mdp *m, const clg_qlearn_options *o, double *q_out, int32_t *policy,
                      clg_qlearn_stats *stats) {
    if (!m || !o)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qlearn: %s is NULL", m ? "opts" : "mdp");
    if (o->episodes < 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qlearn: episodes %lld is negative",
                        (long long)o->episodes);
    if (!(o->gamma >= 0 && o->gamma <= 1))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qlearn: gamma %g is outside [0, 1]",
                        o->gamma);
    if (!isfinite(o->q_init))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qlearn: q_init is not finite");
    clg_status st = check_schedule("epsilon", &o->epsilon, 0, 1);
    if (st == CLG_OK) st = check_schedule("alpha", &o->alpha, 0, 1);
    if (st != CLG_OK) return st;

    const int A = m->actions;
    const size_t n = (size_t)m->states * (size_t)A;
    double *q = calloc(n, sizeof *q);
    int64_t *visits = o->alpha_per_visit ? calloc(n, sizeof *visits) : NULL;
    if (!q || (o->alpha_per_visit && !visits)) {
        free(q);
        free(visits);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_qlearn: out of memory for %zu entries", n);
    }
    for (int32_t s = 0; s < m->states; ++s)
        for (int a = 0; a < A; ++a)
            q[(size_t)s * A + a] = m->terminal[s] ? 0.0 : o->q_init;

    clg_rng rng;
    clg_rng_seed(&rng, o->seed);
    clg_qlearn_stats acc = {0, 0};
    for (int64_t e = 0; e < o->episodes; ++e) {
        double epsilon = clg_schedule_value(&o->epsilon, (double)e);
        double alpha = clg_schedule_value(&o->alpha, (double)e);
        int32_t s = m->start;
        for (int k = 0; k < m->max_steps; ++k) {
            double *row = q + (size_t)s * A;
            int a = clg_rng_uniform(&rng) < epsilon ? (int)clg_rng_below(&rng, (uint32_t)A)
                                                    : greedy(row, A, &rng);
            const clg_transition *t = clg_mdp_draw(m, s, a, clg_rng_uniform(&rng));
            /* a terminal outcome has no future; a truncated episode's last state still has
             * one, so the time limit never stops the bootstrap */
            double target = t->reward;
            if (!t->terminal) {
                const double *next = q + (size_t)t->next * A;
                target += o->gamma * next[greedy(next, A, NULL)];
            }
            if (visits) alpha = clg_schedule_value(&o->alpha, (double)visits[(size_t)s * A + a]++);
            row[a] += alpha * (target - row[a]);
            acc.steps++;
            s = t->next;
            if (t->terminal) {
                acc.successes += m->goal[s];
                break;
            }
        }
    }
    if (q_out)
        for (size_t i = 0; i < n; ++i)
            q_out[i] = q[i];
    if (policy)
        for (int32_t s = 0; s < m->states; ++s)
            policy[s] = greedy(q + (size_t)s * A, A, NULL);
    if (stats) *stats = acc;
    free(q);
    free(visits);
    return CLG_OK;
}
