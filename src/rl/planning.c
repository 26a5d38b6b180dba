/* Planning with a known model: value iteration, evaluation of a fixed policy, a policy's exact
 * probability of success and the bound no policy passes, and a success rate measured over
 * sampled episodes. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "rl/rl_internal.h"

#define MAX_SWEEPS 100000
#define SUCCESS_TOL 1e-13
#define TIE_TOL 1e-12

/* sum p (r + gamma V(s') [s' not terminal]) */
static double backup(const clg_mdp *m, int32_t s, int a, double gamma, const double *v) {
    int32_t pair = s * m->actions + a;
    double q = 0;
    for (int32_t i = m->first[pair]; i < m->first[pair + 1]; ++i) {
        const clg_transition *t = &m->outcomes[i];
        q += t->prob * (t->reward + (t->terminal ? 0.0 : gamma * v[t->next]));
    }
    return q;
}

static clg_status check_args(const char *fn, const clg_mdp *m, double gamma, double tol) {
    if (!m) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: mdp is NULL", fn);
    if (!(gamma >= 0 && gamma <= 1))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: gamma %g is outside [0, 1]", fn, gamma);
    if (!(tol > 0))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: tol %g is not positive", fn, tol);
    return CLG_OK;
}

static clg_status check_policy(const char *fn, const clg_mdp *m, const int32_t *policy) {
    if (!policy) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: policy is NULL", fn);
    for (int32_t s = 0; s < m->states; ++s)
        if (!m->terminal[s] && (policy[s] < 0 || policy[s] >= m->actions))
            return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: policy[%d] = %d is outside [0, %d)", fn,
                            (int)s, (int)policy[s], m->actions);
    return CLG_OK;
}

/* Gauss-Seidel sweeps (each state sees the values already updated in this sweep), which
 * converge at least as fast as the textbook synchronous ones to the same fixed point. With
 * a policy: its values; without: the optimal ones. */
static clg_status sweep(const char *fn, const clg_mdp *m, const int32_t *policy, double gamma,
                        double tol, double *v) {
    for (int32_t s = 0; s < m->states; ++s)
        v[s] = 0;
    for (int n = 0; n < MAX_SWEEPS; ++n) {
        double delta = 0;
        for (int32_t s = 0; s < m->states; ++s) {
            if (m->terminal[s]) continue;
            double best;
            if (policy) {
                best = backup(m, s, policy[s], gamma, v);
            } else {
                best = -INFINITY;
                for (int a = 0; a < m->actions; ++a)
                    best = fmax(best, backup(m, s, a, gamma, v));
            }
            delta = fmax(delta, fabs(best - v[s]));
            v[s] = best;
        }
        if (delta < tol) return CLG_OK;
    }
    return clg_fail(CLG_ERR_UNSUPPORTED,
                    "%s: values still moved by more than %g after %d sweeps (gamma %g: a "
                    "reward that a policy can collect forever?)",
                    fn, tol, MAX_SWEEPS, gamma);
}

clg_status clg_value_iteration(const clg_mdp *m, double gamma, double tol, double *values,
                               int32_t *policy) {
    static const char fn[] = "clg_value_iteration";
    clg_status st = check_args(fn, m, gamma, tol);
    if (st != CLG_OK) return st;
    double *v = values ? values : malloc((size_t)m->states * sizeof *v);
    if (!v) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    st = sweep(fn, m, NULL, gamma, tol, v);
    if (st == CLG_OK && policy) {
        for (int32_t s = 0; s < m->states; ++s) {
            policy[s] = 0;
            if (m->terminal[s]) continue;
            double best = -INFINITY;
            for (int a = 0; a < m->actions; ++a)
                best = fmax(best, backup(m, s, a, gamma, v));
            /* the first action within rounding of the best, so that exact ties (mirror-image
             * paths) resolve the same way on every machine */
            for (int a = 0; a < m->actions; ++a) {
                if (backup(m, s, a, gamma, v) >= best - TIE_TOL) {
                    policy[s] = a;
                    break;
                }
            }
        }
    }
    if (v != values) free(v);
    return st;
}

clg_status clg_policy_evaluate(const clg_mdp *m, const int32_t *policy, double gamma, double tol,
                               double *values) {
    static const char fn[] = "clg_policy_evaluate";
    clg_status st = check_args(fn, m, gamma, tol);
    if (st == CLG_OK) st = check_policy(fn, m, policy);
    if (st != CLG_OK) return st;
    if (!values) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: values is NULL", fn);
    return sweep(fn, m, policy, gamma, tol, values);
}

/* p_k(s), the chance to enter a goal within k steps: p_0 = 0 and
 * p_k(s) = sum p ([s' goal] + [s' not terminal] p_{k-1}(s')), synchronous so that k counts
 * steps exactly. */
clg_status clg_policy_success(const clg_mdp *m, const int32_t *policy, int max_steps,
                              double *prob) {
    static const char fn[] = "clg_policy_success";
    if (!m) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: mdp is NULL", fn);
    clg_status st = check_policy(fn, m, policy);
    if (st != CLG_OK) return st;
    if (!prob) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: prob is NULL", fn);
    if (max_steps < -1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: max_steps %d (0: the model's, -1: none)", fn,
                        max_steps);
    int horizon = max_steps == 0 ? m->max_steps : max_steps;
    double *p = calloc((size_t)m->states * 2, sizeof *p);
    if (!p) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    double *cur = p, *nxt = p + m->states;
    bool converged = false;
    for (long k = 0; horizon < 0 ? k < 100L * MAX_SWEEPS : k < horizon; ++k) {
        double delta = 0;
        for (int32_t s = 0; s < m->states; ++s) {
            nxt[s] = 0;
            if (m->terminal[s]) continue;
            int32_t pair = s * m->actions + policy[s];
            for (int32_t i = m->first[pair]; i < m->first[pair + 1]; ++i) {
                const clg_transition *t = &m->outcomes[i];
                nxt[s] += t->prob * (m->goal[t->next] ? 1.0 : t->terminal ? 0.0 : cur[t->next]);
            }
            delta = fmax(delta, fabs(nxt[s] - cur[s]));
        }
        double *tmp = cur;
        cur = nxt;
        nxt = tmp;
        if (horizon < 0 && delta < SUCCESS_TOL) {
            converged = true;
            break;
        }
    }
    *prob = cur[m->start];
    free(p);
    if (horizon < 0 && !converged)
        return clg_fail(CLG_ERR_UNSUPPORTED, "%s: no convergence within %ld steps", fn,
                        100L * MAX_SWEEPS);
    return CLG_OK;
}

clg_status clg_optimal_success(const clg_mdp *m, int max_steps, double *prob) {
    static const char fn[] = "clg_optimal_success";
    if (!m || !prob)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, m ? "prob" : "mdp");
    if (max_steps < 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: max_steps %d is negative", fn, max_steps);
    int horizon = max_steps == 0 ? m->max_steps : max_steps;
    double *p = calloc((size_t)m->states * 2, sizeof *p);
    if (!p) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    double *cur = p, *nxt = p + m->states;
    /* p_k(s) = max_a sum p ([s' goal] + [s' not terminal] p_{k-1}(s')): with k steps left
     * the best action may differ from the one with k + 1 left */
    for (int k = 0; k < horizon; ++k) {
        for (int32_t s = 0; s < m->states; ++s) {
            nxt[s] = 0;
            if (m->terminal[s]) continue;
            for (int a = 0; a < m->actions; ++a) {
                int32_t pair = s * m->actions + a;
                double q = 0;
                for (int32_t i = m->first[pair]; i < m->first[pair + 1]; ++i) {
                    const clg_transition *t = &m->outcomes[i];
                    q += t->prob * (m->goal[t->next] ? 1.0 : t->terminal ? 0.0 : cur[t->next]);
                }
                nxt[s] = fmax(nxt[s], q);
            }
        }
        double *tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    *prob = cur[m->start];
    free(p);
    return CLG_OK;
}

clg_status clg_policy_rollouts(const clg_mdp *m, const int32_t *policy, int64_t episodes,
                               uint64_t seed, double *success_rate) {
    static const char fn[] = "clg_policy_rollouts";
    if (!m) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: mdp is NULL", fn);
    clg_status st = check_policy(fn, m, policy);
    if (st != CLG_OK) return st;
    if (!success_rate || episodes < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: %s", fn,
                        success_rate ? "episodes must be positive" : "success_rate is NULL");
    clg_rng rng;
    clg_rng_seed(&rng, seed);
    int64_t wins = 0;
    for (int64_t e = 0; e < episodes; ++e) {
        int32_t s = m->start;
        for (int k = 0; k < m->max_steps; ++k) {
            const clg_transition *t = clg_mdp_draw(m, s, policy[s], clg_rng_uniform(&rng));
            s = t->next;
            if (t->terminal) {
                wins += m->goal[s];
                break;
            }
        }
    }
    *success_rate = (double)wins / (double)episodes;
    return CLG_OK;
}
