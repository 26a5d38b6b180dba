/* The replay buffer: a ring of transitions in host memory, sampled uniformly over the slots
 * written so far (an unwritten slot would hand the learner zeros as if they were a state). */
#include <stdlib.h>
#include <string.h>

#include "clgrad/dqn.h"
#include "core/error.h"

struct clg_replay {
    int64_t capacity, next, size;
    int obs_dim;
    float *obs, *next_obs, *rewards, *terminated;
    int32_t *actions;
};

clg_status clg_replay_new(int64_t capacity, int obs_dim, clg_replay **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_replay_new: out is NULL");
    *out = NULL;
    if (capacity < 1 || obs_dim < 1 || capacity > INT64_MAX / 4 / obs_dim)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_replay_new: capacity %lld and obs_dim "
                        "%d must be at least 1",
                        (long long)capacity, obs_dim);
    clg_replay *r = calloc(1, sizeof *r);
    if (!r) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_replay_new: out of memory");
    size_t n = (size_t)capacity, d = (size_t)obs_dim;
    r->capacity = capacity;
    r->obs_dim = obs_dim;
    r->obs = malloc(n * d * sizeof(float));
    r->next_obs = malloc(n * d * sizeof(float));
    r->rewards = malloc(n * sizeof(float));
    r->terminated = malloc(n * sizeof(float));
    r->actions = malloc(n * sizeof(int32_t));
    if (!r->obs || !r->next_obs || !r->rewards || !r->terminated || !r->actions) {
        clg_replay_free(r);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                        "clg_replay_new: out of memory for %lld "
                        "transitions",
                        (long long)capacity);
    }
    *out = r;
    return CLG_OK;
}

void clg_replay_free(clg_replay *r) {
    if (!r) return;
    free(r->obs);
    free(r->next_obs);
    free(r->rewards);
    free(r->terminated);
    free(r->actions);
    free(r);
}

clg_status clg_replay_add(clg_replay *r, const float *obs, int32_t action, float reward,
                          const float *next_obs, bool terminated) {
    if (!r || !obs || !next_obs)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_replay_add: NULL argument");
    size_t i = (size_t)r->next, d = (size_t)r->obs_dim;
    memcpy(r->obs + i * d, obs, d * sizeof(float));
    memcpy(r->next_obs + i * d, next_obs, d * sizeof(float));
    r->actions[i] = action;
    r->rewards[i] = reward;
    r->terminated[i] = terminated ? 1.0f : 0.0f;
    r->next = (r->next + 1) % r->capacity;
    if (r->size < r->capacity) r->size++;
    return CLG_OK;
}

int64_t clg_replay_size(const clg_replay *r) {
    return r ? r->size : 0;
}

/* Uniform in [0, n) for n up to 2^63: rejection on 64-bit draws. */
static int64_t below64(clg_rng *rng, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = clg_rng_next(rng);
    while (x >= limit);
    return (int64_t)(x % n);
}

clg_status clg_replay_sample(clg_replay *r, clg_rng *rng, int64_t batch, int64_t *index, float *obs,
                             int32_t *actions, float *rewards, float *next_obs, float *terminated) {
    if (!r || !rng || batch < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_replay_sample: NULL argument or batch "
                        "%lld < 1",
                        (long long)batch);
    if (r->size == 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_replay_sample: the buffer is empty");
    size_t d = (size_t)r->obs_dim;
    for (int64_t b = 0; b < batch; ++b) {
        size_t i = (size_t)below64(rng, (uint64_t)r->size);
        if (index) index[b] = (int64_t)i;
        if (obs) memcpy(obs + (size_t)b * d, r->obs + i * d, d * sizeof(float));
        if (next_obs) memcpy(next_obs + (size_t)b * d, r->next_obs + i * d, d * sizeof(float));
        if (actions) actions[b] = r->actions[i];
        if (rewards) rewards[b] = r->rewards[i];
        if (terminated) terminated[b] = r->terminated[i];
    }
    return CLG_OK;
}
