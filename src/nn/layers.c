/* Layers: the linear layer (torch.nn.Linear's parameters, names and initialisation).
 * Activations, dropout and flatten are ops (ops.h); a layer only owns parameters and builds
 * its forward pass from ops, so autograd and fusion see through it. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/context.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

/* The bias's seed: a different Philox key from the weight's (splitmix64 step). */
static uint64_t derive_seed(uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

clg_status clg_linear_init(clg_context *ctx, clg_linear *layer, const char *name,
                           int64_t in_features, int64_t out_features, bool bias,
                           uint64_t seed) {
    if (!ctx || !layer || !name || !*name)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_linear_init: ctx, layer and a non-empty name are required");
    memset(layer, 0, sizeof *layer);
    if (in_features < 1 || out_features < 1)
        return clg_fail(CLG_ERR_SHAPE, "clg_linear_init('%s'): bad sizes in %lld, out %lld",
                        name, (long long)in_features, (long long)out_features);
    char wname[512], bname[512];
    snprintf(wname, sizeof wname, "%s.weight", name);
    snprintf(bname, sizeof bname, "%s.bias", name);
    if (clg_param_find(ctx, wname) || (bias && clg_param_find(ctx, bname)))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_linear_init: parameters named '%s' already exist", wname);
    if (in_features > INT32_MAX / out_features)
        return clg_fail(CLG_ERR_SHAPE, "clg_linear_init('%s'): %lld x %lld weights are too many",
                        name, (long long)out_features, (long long)in_features);
    int64_t wshape[2] = {out_features, in_features};
    clg_param *w = clg_param_new(ctx, wname, CLG_F32, 2, wshape);
    if (!w) return CLG_ERR_OUT_OF_MEMORY; /* the sizes were checked: the message says more */
    /* kaiming_uniform(a = sqrt(5)): gain sqrt(2 / 6), bound gain sqrt(3 / in) = 1/sqrt(in) */
    clg_status st = clg_init_kaiming_uniform(w, sqrtf(5.0f), CLG_FAN_MODE_IN,
                                             CLG_NONLINEARITY_LEAKY_RELU, seed);
    clg_param *b = NULL;
    if (st == CLG_OK && bias) {
        b = clg_param_new(ctx, bname, CLG_F32, 1, &out_features);
        float bound = (float)(1.0 / sqrt((double)in_features));
        st = b ? clg_init_uniform(b, -bound, bound, derive_seed(seed)) : CLG_ERR_OUT_OF_MEMORY;
    }
    if (st != CLG_OK) {
        clg_param_discard(b);
        clg_param_discard(w);
        return st;
    }
    *layer = (clg_linear){.weight = w, .bias = b, .in_features = in_features,
                          .out_features = out_features};
    return CLG_OK;
}

clg_tensor *clg_linear_forward(clg_graph *g, const clg_linear *layer, clg_tensor *x) {
    CLG_GUARD(g, "linear", 1, x);
    if (!layer || !layer->weight)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "linear: the layer has no weight");
    if (x->ndim < 1 || x->shape[x->ndim - 1] != layer->in_features) {
        char b[200];
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "linear('%s'): input %s does not end in in_features = %lld",
                              layer->weight->name, clg_shape_str(x->ndim, x->shape, b, sizeof b),
                              (long long)layer->in_features);
    }
    clg_tensor *w = clg_param_tensor(g, layer->weight);
    /* matmul wants a matrix: a single vector [in] goes through as [1, in]. */
    clg_tensor *x2 = x;
    if (x->ndim == 1) {
        int64_t s[2] = {1, layer->in_features};
        x2 = clg_reshape(g, x, 2, s);
    }
    clg_tensor *y = clg_matmul(g, x2, w, false, true); /* [..., in] . [out, in]^T */
    if (layer->bias) y = clg_add(g, y, clg_param_tensor(g, layer->bias));
    if (x->ndim == 1) y = clg_reshape(g, y, 1, &layer->out_features);
    return y;
}
