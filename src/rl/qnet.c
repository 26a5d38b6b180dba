/* Q-networks as graphs: the MLP, target-network updates, the TD target and epsilon-greedy
 * action choice, all built from engine ops (so their kernels and gradients are the engine's). */
#include <stdio.h>

#include "clgrad/dqn.h"
#include "clgrad/ops.h"
#include "core/error.h"
#include "graph/graph_internal.h"

clg_status clg_qnet_init(clg_context *ctx, clg_qnet *net, const char *name, int64_t inputs,
                         const int64_t *hidden, int n_hidden, int64_t actions, uint64_t seed) {
    if (!ctx || !net || !name || (n_hidden > 0 && !hidden))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qnet_init: NULL argument");
    if (n_hidden < 0 || n_hidden > CLG_QNET_MAX_HIDDEN)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qnet_init: %d hidden layers (at most %d)",
                        n_hidden, CLG_QNET_MAX_HIDDEN);
    net->n_layers = n_hidden + 1;
    int64_t in = inputs;
    for (int k = 0; k <= n_hidden; ++k) {
        int64_t out = k < n_hidden ? hidden[k] : actions;
        char lname[256];
        snprintf(lname, sizeof lname, "%s.%d", name, k);
        /* seeds one apart per layer would overlap: clg_linear_init derives the bias's seed */
        clg_status st = clg_linear_init(ctx, &net->layers[k], lname, in, out, true,
                                        seed + 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1));
        if (st != CLG_OK) return st;
        in = out;
    }
    return CLG_OK;
}

clg_tensor *clg_qnet_forward(clg_graph *g, const clg_qnet *net, clg_tensor *x) {
    for (int k = 0; k < net->n_layers; ++k) {
        x = clg_linear_forward(g, &net->layers[k], x);
        if (k + 1 < net->n_layers) x = clg_relu(g, x);
    }
    return x;
}

int clg_qnet_params(const clg_qnet *net, clg_param **out) {
    int n = 0;
    for (int k = 0; k < net->n_layers; ++k) {
        out[n++] = net->layers[k].weight;
        out[n++] = net->layers[k].bias;
    }
    return n;
}

clg_status clg_qnet_update(clg_qnet *dst, const clg_qnet *src, float tau) {
    if (!dst || !src || dst->n_layers != src->n_layers)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_qnet_update: networks differ");
    clg_param *d[2 * (CLG_QNET_MAX_HIDDEN + 1)], *s[2 * (CLG_QNET_MAX_HIDDEN + 1)];
    int n = clg_qnet_params(dst, d);
    clg_qnet_params(src, s);
    for (int k = 0; k < n; ++k) {
        clg_status st = tau >= 1.0f ? clg_param_copy(d[k], s[k]) : clg_param_lerp(d[k], s[k], tau);
        if (st != CLG_OK) return st;
    }
    return CLG_OK;
}

clg_tensor *clg_dqn_td_target(clg_graph *g, clg_tensor *q_next_target, clg_tensor *q_next_online,
                              clg_tensor *reward, clg_tensor *terminated, float gamma) {
    const int axis = 1;
    CLG_GUARD(g, "dqn_td_target", 3, q_next_target, reward, terminated);
    if (q_next_online) CLG_GUARD(g, "dqn_td_target", 1, q_next_online);
    int64_t b = q_next_target->shape[0];
    /* a [B] reward against [B, 1] values would broadcast to [B, B] without a word */
    if (q_next_target->ndim != 2 || reward->ndim != 2 || reward->shape[0] != b ||
        reward->shape[1] != 1 || !clg_same_shape(reward, terminated) ||
        (q_next_online && !clg_same_shape(q_next_online, q_next_target))) {
        char s0[200], s1[200], s2[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "dqn_td_target: q_next %s, reward %s and terminated %s: want "
                              "[B, A], [B, 1] and [B, 1] (q_next_online as q_next)",
                              clg_tensor_describe(q_next_target, s0, sizeof s0),
                              clg_tensor_describe(reward, s1, sizeof s1),
                              clg_tensor_describe(terminated, s2, sizeof s2));
    }
    clg_tensor *next;
    if (q_next_online) {
        /* Double DQN: the online network picks, the target network values the pick */
        clg_tensor *pick = clg_argmax(g, clg_detach(g, q_next_online), axis, true);
        next = clg_take_along_axis(g, q_next_target, pick, axis);
    } else {
        next = clg_max(g, q_next_target, 1, &axis, true);
    }
    next = clg_detach(g, next);
    clg_tensor *alive = clg_sub(g, clg_scalar(g, 1.0f), terminated);
    return clg_add(g, reward, clg_mul(g, clg_mul_scalar(g, alive, gamma), next));
}

clg_tensor *clg_epsilon_greedy(clg_graph *g, clg_tensor *q, clg_tensor *epsilon, uint64_t seed) {
    CLG_GUARD(g, "epsilon_greedy", 2, q, epsilon);
    if (q->ndim != 2 || q->dtype != CLG_F32 || clg_tensor_numel(epsilon) != 1) {
        char s0[200], s1[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "epsilon_greedy: q %s and epsilon %s: want [N, A] f32 and one "
                              "element",
                              clg_tensor_describe(q, s0, sizeof s0),
                              clg_tensor_describe(epsilon, s1, sizeof s1));
    }
    int64_t n = clg_tensor_dim(q, 0), a = clg_tensor_dim(q, 1);
    clg_tensor *greedy = clg_cast(g, clg_argmax(g, q, 1, false), CLG_F32);
    /* two streams: whether to explore, and which action */
    clg_tensor *coin = clg_rand_uniform(g, 1, &n, 0.0f, 1.0f, seed);
    clg_tensor *pick = clg_rand_uniform(g, 1, &n, 0.0f, (float)a, seed ^ 0x5DEECE66Dull);
    const int64_t one = 1;
    clg_tensor *eps = clg_reshape(g, epsilon, 1, &one);
    /* pick < a always (u < 1 in 24 bits times a small a rounds below a); the clamp guards */
    pick = clg_clamp(g, pick, 0.0f, (float)a - 1.0f);
    clg_tensor *f = clg_where(g, clg_lt(g, coin, eps), pick, greedy);
    return clg_cast(g, f, CLG_I32);
}
