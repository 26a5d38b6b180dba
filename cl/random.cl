/* Counter-based random numbers (Philox-4x32-10). A value depends only on (key, counter), so
 * every device, work-group size and launch order gives the same uniform bits. These functions
 * are also the prelude of every generated program; the kernels fill parameters on the device
 * (initialisers). Counter words: (element index, stream, run low, run high). */

#define CLG_PHILOX_M0 0xD2511F53u
#define CLG_PHILOX_M1 0xCD9E8D57u
#define CLG_PHILOX_W0 0x9E3779B9u
#define CLG_PHILOX_W1 0xBB67AE85u

uint4 clg_philox(uint4 c, uint2 k) {
    for (int r = 0; r < 10; ++r) {
        uint hi0 = mul_hi(CLG_PHILOX_M0, c.x), lo0 = CLG_PHILOX_M0 * c.x;
        uint hi1 = mul_hi(CLG_PHILOX_M1, c.z), lo1 = CLG_PHILOX_M1 * c.z;
        c = (uint4)(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k += (uint2)(CLG_PHILOX_W0, CLG_PHILOX_W1);
    }
    return c;
}

/* [0, 1) with 24 random bits: exact in float, identical everywhere. */
float clg_u01(uint u) {
    return (float)(u >> 8) * (1.0f / 16777216.0f);
}

/* (0, 1]: safe for log. */
float clg_u01_open(uint u) {
    return (float)((u >> 8) + 1u) * (1.0f / 16777216.0f);
}

float clg_rand_uniform(uint idx, uint stream, uint run_lo, uint run_hi, uint key_lo,
                       uint key_hi) {
    uint4 r = clg_philox((uint4)(idx, stream, run_lo, run_hi), (uint2)(key_lo, key_hi));
    return clg_u01(r.x);
}

/* Box-Muller on the first two words. */
float clg_rand_normal(uint idx, uint stream, uint run_lo, uint run_hi, uint key_lo,
                      uint key_hi) {
    uint4 r = clg_philox((uint4)(idx, stream, run_lo, run_hi), (uint2)(key_lo, key_hi));
    float rad = sqrt(-2.0f * log(clg_u01_open(r.x)));
    return rad * cos(6.283185307179586f * clg_u01(r.y));
}

/* Standard normal restricted to [-2, 2] by redrawing (4 candidates per Philox call; the
 * stream's top byte numbers the attempt). */
float clg_rand_truncated_normal(uint idx, uint stream, uint run_lo, uint run_hi, uint key_lo,
                                uint key_hi) {
    float z = 0.0f;
    for (uint attempt = 0; attempt < 16u; ++attempt) {
        uint4 r = clg_philox((uint4)(idx, (stream & 0x00FFFFFFu) | (attempt << 24), run_lo,
                                     run_hi),
                             (uint2)(key_lo, key_hi));
        float rad0 = sqrt(-2.0f * log(clg_u01_open(r.x)));
        float th0 = 6.283185307179586f * clg_u01(r.y);
        float rad1 = sqrt(-2.0f * log(clg_u01_open(r.z)));
        float th1 = 6.283185307179586f * clg_u01(r.w);
        float c[4] = {rad0 * cos(th0), rad0 * sin(th0), rad1 * cos(th1), rad1 * sin(th1)};
        for (int i = 0; i < 4; ++i)
            if (fabs(c[i]) <= 2.0f) return c[i];
        z = c[0];
    }
    return clamp(z, -2.0f, 2.0f);
}

/* Initialiser fills: kind 0 uniform [a, b), 1 normal (mean a, std b), 2 truncated normal
 * (mean a, std b, cut at 2 std). */
__kernel void clg_fill_random(__global float *out, int n, int kind, float a, float b,
                              uint key_lo, uint key_hi) {
    int i = get_global_id(0);
    if (i >= n) return;
    float v;
    if (kind == 0)
        v = a + (b - a) * clg_rand_uniform((uint)i, 0u, 0u, 0u, key_lo, key_hi);
    else if (kind == 1)
        v = a + b * clg_rand_normal((uint)i, 0u, 0u, 0u, key_lo, key_hi);
    else
        v = a + b * clg_rand_truncated_normal((uint)i, 0u, 0u, 0u, key_lo, key_hi);
    out[i] = v;
}

__kernel void clg_fill_constant(__global float *out, int n, float value) {
    int i = get_global_id(0);
    if (i < n) out[i] = value;
}
