/* One step of a recurrent layer (ops/recurrent.c): the cell's gates and state update after the
 * step's GEMM (h W_hh^T), and its mirror in the backward pass. One work-item per (unit j,
 * sequence b) handles every gate of that unit, so the activated gates can overwrite the GEMM's
 * raw product in place. f is the forward node's flat buffer; every *_off is an element offset
 * into it (or into d, the backward's) at the step's slice; rows of the gates are [G H] (gate k
 * of unit j at k H + j), rows of the states [H].
 * Contraction stays off: the backward recomputes LSTM's c = f c_prev + i g and must get the
 * forward's bits. */
#pragma OPENCL FP_CONTRACT OFF

#define CELL_RNN_TANH 0
#define CELL_RNN_RELU 1
#define CELL_LSTM 2
#define CELL_GRU 3

/* exp of a non-positive argument only: no overflow for any x */
inline float sigm(float x) {
    float e = exp(-fabs(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

/* pocl's tanh is a scalar call several times the cost of exp; this one is exp and selects.
 * Below |x| 1/4 its series to x^9 (next term under 1e-8 relative), where (1 - e) / (1 + e)
 * would lose bits to cancellation. */
inline float tanh_(float x) {
    float a = fabs(x), e = exp(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    float x2 = a * a;
    float small =
        a * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835)))));
    return copysign(a < 0.25f ? small : big, x);
}

inline int gates_of(int cell) {
    return cell == CELL_LSTM ? 4 : cell == CELL_GRU ? 3 : 1;
}

/* Step t of sequence b is one of its first len[b] steps. */
inline bool step_valid(__global const int *len, int l_off, int has_len, int b, int t) {
    return !has_len || t < len[l_off + b];
}

/* Forward, one kernel per cell with these arguments: x (xproj at step t) + the raw product in
 * f at gate_off (when hidden; else the product is 0: the first step without h0) + bias give
 * the gates; the state before the step is at hp_off (c: cp_off), the state after goes to
 * hnext_off (cnext_off), h also to out_off (0 at a padded step, where the state passes
 * through). GRU keeps h W_hn^T + b_hn at hng_off. relu: RNN's activation. */
#define FWD_ARGS                                                                               \
    __global float *f, int out_off, int gate_off, int hng_off, int hp_off, int hnext_off,     \
        int cp_off, int cnext_off, __global const float *x, int x_off,                         \
        __global const float *bias, int b_off, int has_bias, __global const int *len,          \
        int l_off, int has_len, int t, int hidden, int H, int relu

/* The work-item's unit, the step's validity (a padded step passes the state through and
 * returns), and gate k's raw hidden part (product + bias) and pre-activation. */
#define FWD_BEGIN(G, LSTM)                                                                     \
    int j = get_global_id(0), b = get_global_id(1);                                            \
    if (j >= H) return;                                                                        \
    int e = b * H + j;                                                                         \
    if (!step_valid(len, l_off, has_len, b, t)) {                                              \
        f[hnext_off + e] = f[hp_off + e];                                                      \
        f[out_off + e] = 0.0f;                                                                 \
        if (LSTM) f[cnext_off + e] = f[cp_off + e];                                            \
        return;                                                                                \
    }                                                                                          \
    __global const float *xr = x + x_off + b * (G) * H + j;                                    \
    __global float *gr = f + gate_off + b * (G) * H + j;                                       \
    __global const float *br = bias + b_off + j;

#define HID(k) ((hidden ? gr[(k) * H] : 0.0f) + (has_bias ? br[(k) * H] : 0.0f))

__kernel void recurrent_fwd_lstm(FWD_ARGS) {
    FWD_BEGIN(4, true)
    float ig = sigm(xr[0] + HID(0)), fg = sigm(xr[H] + HID(1));
    float gg = tanh_(xr[2 * H] + HID(2)), og = sigm(xr[3 * H] + HID(3));
    float c = fg * f[cp_off + e] + ig * gg;
    float h = og * tanh_(c);
    gr[0] = ig;
    gr[H] = fg;
    gr[2 * H] = gg;
    gr[3 * H] = og;
    f[cnext_off + e] = c;
    f[hnext_off + e] = h;
    f[out_off + e] = h;
}

__kernel void recurrent_fwd_gru(FWD_ARGS) {
    FWD_BEGIN(3, false)
    float r = sigm(xr[0] + HID(0)), z = sigm(xr[H] + HID(1));
    float hn = HID(2);
    float n = tanh_(xr[2 * H] + r * hn);
    float h = (1.0f - z) * n + z * f[hp_off + e];
    gr[0] = r;
    gr[H] = z;
    gr[2 * H] = n;
    f[hng_off + e] = hn;
    f[hnext_off + e] = h;
    f[out_off + e] = h;
}

__kernel void recurrent_fwd_rnn(FWD_ARGS) {
    FWD_BEGIN(1, false)
    float p = xr[0] + HID(0);
    float h = relu ? fmax(p, 0.0f) : tanh_(p);
    gr[0] = h;
    f[hnext_off + e] = h;
    f[out_off + e] = h;
}

/* Backward of step t: dh (d at dh_off) holds the gradient of the state after the step, dc (at
 * dc_off) that of LSTM's cell state; gy (at gy_off, when has_gy) the gradient of the step's
 * output. Writes the gradients of the gates' pre-activations to dx_off (the input's part) and,
 * GRU only, dhid_off (the hidden product's: r scales n's), and leaves in dh the part of the
 * previous state's gradient that does not go through W_hh (the GEMM after adds that), in dc
 * the previous cell state's. A padded step passes dh and dc through, its gates get 0. */
__kernel void recurrent_bwd(__global float *d, int dx_off, int dhid_off, int dh_off,
                            int dc_off, __global const float *f, int gate_off, int hng_off,
                            int hp_off, int cp_off, __global const float *gy, int gy_off,
                            int has_gy, __global const int *len, int l_off, int has_len, int t,
                            int H, int cell) {
    int j = get_global_id(0), b = get_global_id(1);
    if (j >= H) return;
    int G = gates_of(cell), GH = G * H;
    int e = b * H + j;
    __global float *dxr = d + dx_off + b * GH + j;
    if (!step_valid(len, l_off, has_len, b, t)) {
        for (int k = 0; k < G; ++k) dxr[k * H] = 0.0f;
        if (cell == CELL_GRU)
            for (int k = 0; k < G; ++k) d[dhid_off + b * GH + k * H + j] = 0.0f;
        return;
    }
    __global const float *gr = f + gate_off + b * GH + j;
    float dh = d[dh_off + e] + (has_gy ? gy[gy_off + e] : 0.0f);
    if (cell == CELL_LSTM) {
        float ig = gr[0], fg = gr[H], gg = gr[2 * H], og = gr[3 * H];
        float cp = f[cp_off + e];
        float c = fg * cp + ig * gg;
        float tc = tanh_(c);
        float dc = d[dc_off + e] + dh * og * (1.0f - tc * tc);
        dxr[0] = dc * gg * ig * (1.0f - ig);
        dxr[H] = dc * cp * fg * (1.0f - fg);
        dxr[2 * H] = dc * ig * (1.0f - gg * gg);
        dxr[3 * H] = dh * tc * og * (1.0f - og);
        d[dc_off + e] = dc * fg;
        d[dh_off + e] = 0.0f;
    } else if (cell == CELL_GRU) {
        float r = gr[0], z = gr[H], n = gr[2 * H];
        float hp = f[hp_off + e];
        float dn = dh * (1.0f - z) * (1.0f - n * n);
        float dr = dn * f[hng_off + e] * r * (1.0f - r);
        float dz = dh * (hp - n) * z * (1.0f - z);
        __global float *dhr = d + dhid_off + b * GH + j;
        dxr[0] = dhr[0] = dr;
        dxr[H] = dhr[H] = dz;
        dxr[2 * H] = dn;
        dhr[2 * H] = dn * r;
        d[dh_off + e] = dh * z;
    } else {
        float h = gr[0];
        dxr[0] = cell == CELL_RNN_TANH ? dh * (1.0f - h * h) : (h > 0.0f ? dh : 0.0f);
        d[dh_off + e] = 0.0f;
    }
}
