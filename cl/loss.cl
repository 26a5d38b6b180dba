/* Fused softmax cross-entropy with integer labels. On GPUs one work-group per row: its lanes
 * stride over the C classes and reduce the row's max and sum of exponentials in local memory,
 * so a row costs one pass for the max and one for the sum whatever C is. On CPU devices
 * (the _item kernels) one work-item per row with serial loops: no barriers, the row stays in
 * the core's cache, and pocl vectorises across the rows of a work-group.
 * Rows and classes: logits[row * C + c] (contiguous), labels[row], a label outside [0, C)
 * gives NaN (loss and gradient) for its row. */

/* Tree reduction of v over the work-group (local size a power of two); every lane gets the
 * result. is_max: max, else sum. */
float clg_ce_reduce(__local float *sh, float v, int is_max) {
    int lid = get_local_id(0), L = get_local_size(0);
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous reduction's readers are done with sh */
    sh[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = L / 2; s > 0; s >>= 1) {
        if (lid < s) sh[lid] = is_max ? fmax(sh[lid], sh[lid + s]) : sh[lid] + sh[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return sh[0];
}

/* m = max_c x[c], s = sum_c exp(x[c] - m) of one row. */
void clg_ce_row_stats(__global const float *x, int C, __local float *sh, float *m, float *s) {
    int lid = get_local_id(0), L = get_local_size(0);
    float mx = -INFINITY;
    for (int c = lid; c < C; c += L) mx = fmax(mx, x[c]);
    mx = clg_ce_reduce(sh, mx, 1);
    float acc = 0.0f;
    for (int c = lid; c < C; c += L) acc += exp(x[c] - mx);
    *s = clg_ce_reduce(sh, acc, 0);
    *m = mx;
}

/* out[row] = scale * (logsumexp(x) - x[label]) = scale * ((m - x[label]) + log(s)):
 * m - x[label] is exact when the label's logit is the max, so a confident row loses no
 * digits to cancellation. */
__kernel void cross_entropy_rows(__global const float *logits, int l_off,
                                 __global const int *labels, int y_off, __global float *out,
                                 int out_off, int C, float scale, __local float *sh) {
    int row = get_group_id(0);
    __global const float *x = logits + l_off + row * C;
    float m, s;
    clg_ce_row_stats(x, C, sh, &m, &s);
    if (get_local_id(0) == 0) {
        int y = labels[y_off + row];
        float loss = (y >= 0 && y < C) ? (m - x[y]) + log(s) : NAN;
        out[out_off + row] = scale * loss;
    }
}

/* dx[row, c] = (softmax(x)[c] - (c == label)) * scale * gout[row]. gout is read at
 * g_off + row * g_stride (g_stride 0: one value broadcast), or is the constant g_const when
 * use_const (a scalar node has no buffer). */
__kernel void cross_entropy_grad(__global float *dx, int dx_off, __global const float *logits,
                                 int l_off, __global const int *labels, int y_off,
                                 __global const float *gout, int g_off, int g_stride,
                                 int use_const, float g_const, int C, float scale,
                                 __local float *sh) {
    int row = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    __global const float *x = logits + l_off + row * C;
    float m, s;
    clg_ce_row_stats(x, C, sh, &m, &s);
    int y = labels[y_off + row];
    float gr = scale * (use_const ? g_const : gout[g_off + row * g_stride]);
    bool ok = y >= 0 && y < C;
    float inv = 1.0f / s;
    __global float *d = dx + dx_off + row * C;
    for (int c = lid; c < C; c += L) {
        float p = exp(x[c] - m) * inv;
        d[c] = ok ? (p - (c == y ? 1.0f : 0.0f)) * gr : NAN;
    }
}

/* ---- one work-item per row (CPU devices) ---- */

void clg_ce_row_stats_item(__global const float *x, int C, float *m, float *s) {
    float mx = -INFINITY;
    for (int c = 0; c < C; ++c) mx = fmax(mx, x[c]);
    float acc = 0.0f;
    for (int c = 0; c < C; ++c) acc += exp(x[c] - mx);
    *m = mx;
    *s = acc;
}

__kernel void cross_entropy_rows_item(__global const float *logits, int l_off,
                                      __global const int *labels, int y_off, __global float *out,
                                      int out_off, int C, float scale, int rows) {
    int row = get_global_id(0);
    if (row >= rows) return;
    __global const float *x = logits + l_off + row * C;
    float m, s;
    clg_ce_row_stats_item(x, C, &m, &s);
    int y = labels[y_off + row];
    float loss = (y >= 0 && y < C) ? (m - x[y]) + log(s) : NAN;
    out[out_off + row] = scale * loss;
}

__kernel void cross_entropy_grad_item(__global float *dx, int dx_off, __global const float *logits,
                                      int l_off, __global const int *labels, int y_off,
                                      __global const float *gout, int g_off, int g_stride,
                                      int use_const, float g_const, int C, float scale,
                                      int rows) {
    int row = get_global_id(0);
    if (row >= rows) return;
    __global const float *x = logits + l_off + row * C;
    float m, s;
    clg_ce_row_stats_item(x, C, &m, &s);
    int y = labels[y_off + row];
    float gr = scale * (use_const ? g_const : gout[g_off + row * g_stride]);
    bool ok = y >= 0 && y < C;
    float inv = 1.0f / s;
    __global float *d = dx + dx_off + row * C;
    for (int c = 0; c < C; ++c) {
        float p = exp(x[c] - m) * inv;
        d[c] = ok ? (p - (c == y ? 1.0f : 0.0f)) * gr : NAN;
    }
}
