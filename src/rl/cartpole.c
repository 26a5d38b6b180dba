/* CartPole-v1 as Gymnasium 1.x defines it (gymnasium/envs/classic_control/cartpole.py, with
 * the TimeLimit of its registration): the same constants, the same expressions in the same
 * order and double precision throughout, so a state and an action sequence give Gymnasium's
 * trajectory (tests/test-rl-envs.c replays recorded ones). */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "rl/rl_internal.h"

/* No fused multiply-adds either: they round once where Gymnasium rounds twice. GCC does not
 * contract under -std=c11 (and warns about the pragma); clang needs telling. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

struct clg_cartpole {
    double state[4]; /* x, x_dot, theta, theta_dot */
    clg_rng rng;
    int steps;
    bool started, done;
};

static const double gravity = 9.8;
static const double masscart = 1.0;
static const double masspole = 0.1;
static const double length = 0.5; /* half the pole's length */
static const double force_mag = 10.0;
static const double tau = 0.02;
static const double x_threshold = 2.4;
static const double pi = 3.14159265358979323846; /* math.pi: the double nearest pi */

clg_status clg_cartpole_new(uint64_t seed, clg_cartpole **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_new: out is NULL");
    *out = NULL;
    clg_cartpole *env = calloc(1, sizeof *env);
    if (!env) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_cartpole_new: out of memory");
    clg_rng_seed(&env->rng, seed);
    *out = env;
    return CLG_OK;
}

void clg_cartpole_free(clg_cartpole *env) {
    free(env);
}

static void observe(const clg_cartpole *env, float *obs) {
    if (!obs) return;
    for (int i = 0; i < 4; ++i)
        obs[i] = (float)env->state[i];
}

clg_status clg_cartpole_reset(clg_cartpole *env, const uint64_t *seed, float *obs) {
    if (!env) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_reset: env is NULL");
    if (seed) clg_rng_seed(&env->rng, *seed);
    /* numpy's uniform(low, high) is low + (high - low) * u */
    for (int i = 0; i < 4; ++i)
        env->state[i] = -0.05 + 0.1 * clg_rng_uniform(&env->rng);
    env->steps = 0;
    env->started = true;
    env->done = false;
    observe(env, obs);
    return CLG_OK;
}

clg_status clg_cartpole_set_state(clg_cartpole *env, const double *state) {
    if (!env || !state)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_set_state: %s is NULL",
                        env ? "state" : "env");
    for (int i = 0; i < 4; ++i)
        if (!isfinite(state[i]))
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "clg_cartpole_set_state: state[%d] is not finite", i);
    for (int i = 0; i < 4; ++i)
        env->state[i] = state[i];
    env->steps = 0;
    env->started = true;
    env->done = false;
    return CLG_OK;
}

void clg_cartpole_state(const clg_cartpole *env, double *state) {
    if (!env || !state) return;
    for (int i = 0; i < 4; ++i)
        state[i] = env->state[i];
}

int clg_cartpole_steps(const clg_cartpole *env) {
    return env ? env->steps : 0;
}

clg_status clg_cartpole_step(clg_cartpole *env, int action, float *obs, clg_step_result *result) {
    if (!env) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_step: env is NULL");
    if (action != 0 && action != 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_cartpole_step: action %d is not 0 (left) or 1 (right)", action);
    if (!env->started || env->done)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_cartpole_step: %s",
                        env->started ? "the episode has ended; reset first"
                                     : "reset before the first step");
    /* Gymnasium's expressions, kept in its order: a different association would round
     * differently, and the open-loop dynamics grow a difference ~e^4 per simulated second. */
    const double total_mass = masspole + masscart;
    const double polemass_length = masspole * length;
    const double theta_threshold = 12 * 2 * pi / 360;
    double x = env->state[0], x_dot = env->state[1];
    double theta = env->state[2], theta_dot = env->state[3];
    double force = action == 1 ? force_mag : -force_mag;
    double costheta = cos(theta);
    double sintheta = sin(theta);
    double temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
    double thetaacc = (gravity * sintheta - costheta * temp) /
                      (length * (4.0 / 3.0 - masspole * (costheta * costheta) / total_mass));
    double xacc = temp - polemass_length * thetaacc * costheta / total_mass;
    /* "euler": positions advance with the old velocities, then the velocities */
    x = x + tau * x_dot;
    x_dot = x_dot + tau * xacc;
    theta = theta + tau * theta_dot;
    theta_dot = theta_dot + tau * thetaacc;
    env->state[0] = x;
    env->state[1] = x_dot;
    env->state[2] = theta;
    env->state[3] = theta_dot;
    env->steps++;

    bool terminated =
        x < -x_threshold || x > x_threshold || theta < -theta_threshold || theta > theta_threshold;
    bool truncated = env->steps >= CLG_CARTPOLE_MAX_STEPS;
    env->done = terminated || truncated;
    observe(env, obs);
    if (result) {
        result->reward = 1.0; /* every step, the one that terminates included */
        result->terminated = terminated;
        result->truncated = truncated;
    }
    return CLG_OK;
}
