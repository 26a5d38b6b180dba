/* xoshiro256** 1.0 (D. Blackman, S. Vigna, "Scrambled linear pseudorandom number
 * generators", 2018) seeded by splitmix64: 256 bits of state, period 2^256 - 1, and only
 * integer shifts, rotations and multiplies, so every machine produces the same stream. */
#include "clgrad/rl.h"

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

/* splitmix64 spreads a seed (even 0 or 1) over the state, which must not be all zero: its
 * outputs for four consecutive counters never are. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void clg_rng_seed(clg_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; ++i)
        rng->s[i] = splitmix64(&seed);
}

uint64_t clg_rng_next(clg_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double clg_rng_uniform(clg_rng *rng) {
    return (double)(clg_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint32_t clg_rng_below(clg_rng *rng, uint32_t n) {
    if (n <= 1) return 0;
    /* 2^64 mod n values at the bottom would make small results likelier: redraw them */
    uint64_t threshold = (0 - (uint64_t)n) % n;
    for (;;) {
        uint64_t r = clg_rng_next(rng);
        if (r >= threshold) return (uint32_t)(r % n);
    }
}
