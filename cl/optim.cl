/* Optimizer updates, in place on the parameter and its state: each work-item updates `run`
 * consecutive elements (1 on GPUs; a long run on CPU devices, where a work-item costs more
 * than an element's update and the loop vectorises). Formulas follow torch.optim. The
 * gradient read is gscale times the buffer (1/N of a sum accumulated over N runs, else 1),
 * then scaled for global-norm clipping; norm partials (of the buffers) are summed per
 * work-item from a small buffer, so no extra pass is needed. */

float clg_clip_scale(__global const float *norm_sq, int n_norm, float clip, float gscale) {
    if (clip <= 0.0f) return gscale;
    float s = 0.0f;
    for (int i = 0; i < n_norm; ++i) s += norm_sq[i];
    float norm = sqrt(s) * gscale;
    return norm > clip ? gscale * (clip / (norm + 1e-6f)) : gscale;
}

/* Gradient accumulation: acc = g on the first run of N, acc += g on the others. */
__kernel void grad_accumulate(__global float *acc, __global const float *g, int g_off, int n,
                              int first, int run) {
    int i0 = get_global_id(0) * run, i1 = min(n, i0 + run);
    if (first)
        for (int i = i0; i < i1; ++i) acc[i] = g[g_off + i];
    else
        for (int i = i0; i < i1; ++i) acc[i] += g[g_off + i];
}

/* Sum of squares of one gradient into norm_sq[slot]; one work-group. */
__kernel void grad_sumsq(__global const float *g, int g_off, int n, __global float *norm_sq,
                         int slot) {
    __local float sh[256];
    int lid = get_local_id(0), L = get_local_size(0);
    float acc = 0.0f;
    for (int i = lid; i < n; i += L) {
        float v = g[g_off + i];
        acc += v * v;
    }
    sh[lid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = L / 2; s > 0; s >>= 1) {
        if (lid < s) sh[lid] += sh[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) norm_sq[slot] = sh[0];
}

__kernel void sgd_update(__global float *p, __global const float *g, int g_off,
                         __global float *buf, int n, float lr, float momentum, int nesterov,
                         float weight_decay, __global const float *norm_sq, int n_norm,
                         float clip, float gscale, int run) {
    int i0 = get_global_id(0) * run, i1 = min(n, i0 + run);
    float scale = clg_clip_scale(norm_sq, n_norm, clip, gscale);
    for (int i = i0; i < i1; ++i) {
        float grad = g[g_off + i] * scale + weight_decay * p[i];
        if (momentum != 0.0f) {
            float b = momentum * buf[i] + grad;
            buf[i] = b;
            grad = nesterov ? grad + momentum * b : b;
        }
        p[i] -= lr * grad;
    }
}

/* Adam and AdamW: bc1 = 1 - beta1^t, bc2 = 1 - beta2^t. decoupled: AdamW's p *= 1 - lr wd. */
__kernel void adam_update(__global float *p, __global const float *g, int g_off,
                          __global float *m, __global float *v, int n, float lr, float beta1,
                          float beta2, float eps, float weight_decay, int decoupled, float bc1,
                          float bc2, __global const float *norm_sq, int n_norm, float clip,
                          float gscale, int run) {
    int i0 = get_global_id(0) * run, i1 = min(n, i0 + run);
    float scale = clg_clip_scale(norm_sq, n_norm, clip, gscale);
    for (int i = i0; i < i1; ++i) {
        float w = p[i];
        float grad = g[g_off + i] * scale;
        if (decoupled)
            w *= 1.0f - lr * weight_decay;
        else
            grad += weight_decay * w;
        float mi = beta1 * m[i] + (1.0f - beta1) * grad;
        float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrt(vi) / sqrt(bc2) + eps;
        p[i] = w - (lr / bc1) * mi / denom;
    }
}

__kernel void rmsprop_update(__global float *p, __global const float *g, int g_off,
                             __global float *sq, __global float *buf, int n, float lr,
                             float alpha, float eps, float momentum, float weight_decay,
                             __global const float *norm_sq, int n_norm, float clip,
                             float gscale, int run) {
    int i0 = get_global_id(0) * run, i1 = min(n, i0 + run);
    float scale = clg_clip_scale(norm_sq, n_norm, clip, gscale);
    for (int i = i0; i < i1; ++i) {
        float grad = g[g_off + i] * scale + weight_decay * p[i];
        float s = alpha * sq[i] + (1.0f - alpha) * grad * grad;
        sq[i] = s;
        float step = grad / (sqrt(s) + eps);
        if (momentum > 0.0f) {
            float b = momentum * buf[i] + step;
            buf[i] = b;
            step = b;
        }
        p[i] -= lr * step;
    }
}

/* Polyak averaging of a target network: dst = (1 - tau) dst + tau src, as torch.lerp computes
 * it: from the nearer end, so tau 0 and 1 give dst and src exactly. */
__kernel void param_lerp(__global float *dst, __global const float *src, int n, float tau,
                         int run) {
    int i0 = get_global_id(0) * run, i1 = min(n, i0 + run);
    for (int i = i0; i < i1; ++i) {
        float d = src[i] - dst[i];
        dst[i] = tau < 0.5f ? dst[i] + tau * d : src[i] - d * (1.0f - tau);
    }
}
