/* Max pooling: the window's argmax (one scan), the values there, and the backward pass, which
 * adds each window's gradient at its argmax, row by row in a fixed order, with no atomics
 * (bit-identical run to run).
 * The image is read through (n, c, y, x) strides; outputs are dense. */

/* win: kh, kw, stride_h, stride_w, pad_h, pad_w */

/* First maximum of the window of output (oy, ox) in row-major order, NaN counting as a maximum
 * (as in PyTorch); its offset y * W + x within the plane, or -1 for an empty window. */
int window_argmax(__global const float *x, int base, int4 x_st, int H, int W, int oy, int ox,
                  int8 win, float *best) {
    int y0 = oy * win.s2 - win.s4, x0 = ox * win.s3 - win.s5;
    int arg = -1;
    float m = -INFINITY;
    for (int i = 0; i < win.s0; ++i) {
        int y = y0 + i;
        if (y < 0 || y >= H) continue;
        for (int j = 0; j < win.s1; ++j) {
            int xx = x0 + j;
            if (xx < 0 || xx >= W) continue;
            float v = x[base + y * x_st.s2 + xx * x_st.s3];
            if (arg < 0 || v > m || (isnan(v) && !isnan(m))) {
                m = v;
                arg = y * W + xx;
            }
        }
    }
    *best = m;
    return arg;
}

/* Work-items: (oy, c, n), each one output row: the values at the argmax positions (-INFINITY
 * for an empty window). */
__kernel void max_pool2d_gather(__global float *out, int out_off, __global const float *x,
                                int x_off, int4 x_st, __global const int *arg, int arg_off,
                                int W, int OW) {
    int oy = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int OH = get_global_size(0), C = get_global_size(1);
    int plane = (n * C + c) * OH + oy;
    __global const float *src = x + x_off + n * x_st.s0 + c * x_st.s1;
    __global const int *a = arg + arg_off + plane * OW;
    __global float *row = out + out_off + plane * OW;
    for (int ox = 0; ox < OW; ++ox) {
        int p = a[ox];
        int y = p / W;
        row[ox] = p < 0 ? -INFINITY : src[y * x_st.s2 + (p - y * W) * x_st.s3];
    }
}

/* a takes the lead from m as window_argmax decides: larger, or NaN over a number */
#define CLG_TAKES(a, m) ((a) > (m) || (isnan(a) && !isnan(m)))

__kernel void max_pool2d_argmax(__global int *out, int out_off, __global const float *x,
                                int x_off, int4 x_st, int H, int W, int OW, int8 win) {
    int oy = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int OH = get_global_size(0), C = get_global_size(1);
    int base = x_off + n * x_st.s0 + c * x_st.s1;
    __global int *row = out + out_off + ((n * C + c) * OH + oy) * OW;
    if (win.s0 == 2 && win.s1 == 2 && win.s2 == 2 && win.s3 == 2 && win.s4 == 0 && win.s5 == 0 &&
        x_st.s3 == 1) {
        /* the classic 2 x 2, stride 2 pooling: every window lies inside the image */
        __global const float *r0 = x + base + 2 * oy * x_st.s2, *r1 = r0 + x_st.s2;
        int y0 = 2 * oy * W;
        for (int ox = 0; ox < OW; ++ox) {
            float a = r0[2 * ox], b = r0[2 * ox + 1], cc = r1[2 * ox], d = r1[2 * ox + 1];
            int arg = 0;
            float m = a;
            if (CLG_TAKES(b, m)) { m = b; arg = 1; }
            if (CLG_TAKES(cc, m)) { m = cc; arg = 2; }
            if (CLG_TAKES(d, m)) arg = 3;
            row[ox] = y0 + (arg >> 1) * W + 2 * ox + (arg & 1);
        }
        return;
    }
    for (int ox = 0; ox < OW; ++ox) {
        float m;
        row[ox] = window_argmax(x, base, x_st, H, W, oy, ox, win, &m);
    }
}

/* Work-items: (y, c, n), each one row of dx. gout is read through (n, c, oy, ox) strides, arg
 * is a dense [N, C, OH, OW]. The row is zeroed; then each window row oy that can reach y adds
 * its gradients at the argmax positions that fall in this row, in a fixed order (ascending
 * oy, then ox), so sums are bit-identical run to run. */
__kernel void max_pool2d_backward(__global float *dx, int dx_off, __global const float *gout,
                                  int g_off, int4 g_st, __global const int *arg, int arg_off,
                                  int W, int OH, int OW, int8 win) {
    int y = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int H = get_global_size(0), C = get_global_size(1);
    int kh = win.s0, sh = win.s2;
    /* windows oy with oy * sh - pad_h <= y < oy * sh - pad_h + kh */
    int ty = y + win.s4;
    int oy0 = ty - kh + 1 > 0 ? (ty - kh + sh) / sh : 0, oy1 = min(ty / sh, OH - 1);
    __global float *row = dx + dx_off + ((n * C + c) * H + y) * W;
    __global const int *abase = arg + arg_off + (n * C + c) * OH * OW;
    __global const float *gbase = gout + g_off + n * g_st.s0 + c * g_st.s1;
    for (int xx = 0; xx < W; ++xx) row[xx] = 0.0f;
    int lo = y * W, hi = lo + W;
    for (int oy = oy0; oy <= oy1; ++oy)
        for (int ox = 0; ox < OW; ++ox) {
            int a = abase[oy * OW + ox];
            if (a >= lo && a < hi) row[a - lo] += gbase[oy * g_st.s2 + ox * g_st.s3];
        }
}
