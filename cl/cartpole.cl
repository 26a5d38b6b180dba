/* A batch of CartPole-v1 environments, one work-item each (ops/cartpole.c): Gymnasium's step
 * in the same expression order as src/rl/cartpole.c, in double precision where the device has
 * it (CLG_CARTPOLE_FP64=1), and resets drawn from Philox keyed by the batch's seed with counter
 * (environment, episode), so every environment has its own stream. Built after cl/random.cl. */

#ifndef CLG_CARTPOLE_FP64
#define CLG_CARTPOLE_FP64 0
#endif

#if CLG_CARTPOLE_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double clg_real;
#define CLG_CP_STRIDE 4 /* a state row is 8 int32 words: 4 doubles */
#else
typedef float clg_real;
#define CLG_CP_STRIDE 8 /* the same 8 words, the first 4 as floats */
#endif

/* No contractions: a fused multiply-add rounds once where the host (and NumPy) rounds twice. */
#pragma OPENCL FP_CONTRACT OFF

/* numpy's uniform(-0.05, 0.05) for the 4 state variables of episode `episode` of env i:
 * 53-bit uniforms from word pairs, as numpy's random_standard_uniform builds them. */
void clg_cartpole_draw(__global clg_real *s, uint i, uint episode, uint key_lo, uint key_hi) {
    uint4 a = clg_philox((uint4)(i, episode, 0u, 0x43503031u), (uint2)(key_lo, key_hi));
    uint4 b = clg_philox((uint4)(i, episode, 1u, 0x43503031u), (uint2)(key_lo, key_hi));
    uint w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    for (int k = 0; k < 4; ++k) {
#if CLG_CARTPOLE_FP64
        double u = ((double)(w[2 * k] >> 5) * 67108864.0 + (double)(w[2 * k + 1] >> 6)) *
                   (1.0 / 9007199254740992.0);
        s[k] = -0.05 + 0.1 * u;
#else
        s[k] = -0.05f + 0.1f * clg_u01(w[2 * k]);
#endif
    }
}

/* counters [N, 2]: steps in the episode, episodes begun; obs [N, 4] */
__kernel void cartpole_reset(__global clg_real *state, __global int *counters,
                             __global float *obs, int n, uint key_lo, uint key_hi) {
    int i = get_global_id(0);
    if (i >= n) return;
    __global clg_real *s = state + (size_t)i * CLG_CP_STRIDE;
    int episode = counters[2 * i + 1];
    clg_cartpole_draw(s, (uint)i, (uint)episode, key_lo, key_hi);
    counters[2 * i] = 0;
    counters[2 * i + 1] = episode + 1;
    for (int k = 0; k < 4; ++k)
        obs[4 * i + k] = (float)s[k];
}

/* info [N, 8]: the observation the step reached (before any reset), reward, terminated,
 * truncated, and the episode's length when it ended (0 otherwise). An episode that ended is
 * reset at once: obs then holds the new episode's first observation. Action 1 pushes right,
 * any other left. */
__kernel void cartpole_step(__global clg_real *state, __global int *counters, __global float *obs,
                            __global float *info, __global const int *action, int action_offset,
                            int action_stride, int n, uint key_lo, uint key_hi) {
    int i = get_global_id(0);
    if (i >= n) return;
    const clg_real gravity = 9.8, masscart = 1.0, masspole = 0.1, length = 0.5;
    const clg_real force_mag = 10.0, tau = 0.02, x_threshold = 2.4;
    const clg_real total_mass = masspole + masscart;
    const clg_real polemass_length = masspole * length;
    const clg_real theta_threshold = 12 * 2 * (clg_real)3.14159265358979323846 / 360;
    __global clg_real *s = state + (size_t)i * CLG_CP_STRIDE;
    clg_real x = s[0], x_dot = s[1], theta = s[2], theta_dot = s[3];
    clg_real force = action[action_offset + i * action_stride] == 1 ? force_mag : -force_mag;
    clg_real costheta = cos(theta);
    clg_real sintheta = sin(theta);
    clg_real temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
    clg_real thetaacc = (gravity * sintheta - costheta * temp) /
                        (length * ((clg_real)4.0 / (clg_real)3.0 -
                                   masspole * (costheta * costheta) / total_mass));
    clg_real xacc = temp - polemass_length * thetaacc * costheta / total_mass;
    x = x + tau * x_dot;
    x_dot = x_dot + tau * xacc;
    theta = theta + tau * theta_dot;
    theta_dot = theta_dot + tau * thetaacc;
    s[0] = x;
    s[1] = x_dot;
    s[2] = theta;
    s[3] = theta_dot;
    int steps = counters[2 * i] + 1;
    bool terminated =
        x < -x_threshold || x > x_threshold || theta < -theta_threshold || theta > theta_threshold;
    bool truncated = steps >= 500;
    __global float *inf = info + 8 * i;
    for (int k = 0; k < 4; ++k)
        inf[k] = (float)s[k];
    inf[4] = 1.0f;
    inf[5] = terminated ? 1.0f : 0.0f;
    inf[6] = truncated ? 1.0f : 0.0f;
    inf[7] = terminated || truncated ? (float)steps : 0.0f;
    if (terminated || truncated) {
        int episode = counters[2 * i + 1];
        clg_cartpole_draw(s, (uint)i, (uint)episode, key_lo, key_hi);
        counters[2 * i + 1] = episode + 1;
        steps = 0;
    }
    counters[2 * i] = steps;
    for (int k = 0; k < 4; ++k)
        obs[4 * i + k] = (float)s[k];
}
