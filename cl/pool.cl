/* Max pooling: the forward pass writes each window's maximum; the backward pass scans the
 * windows again and adds each window's gradient at its first maximum (row-major order, NaN
 * counting as a maximum, as in PyTorch), in a fixed order with no atomics, so sums are
 * bit-identical run to run. Rescanning costs a read of x, which the backward pass of the
 * activation before the pooling keeps alive anyway; storing the argmax would cost a forward
 * kernel and an index tensor per pooling.
 * The image is read through (n, c, y, x) strides; outputs are dense. */

/* win: kh, kw, stride_h, stride_w, pad_h, pad_w */

/* a takes the lead from m: larger, or NaN over a number */
#define CLG_TAKES(a, m) ((a) > (m) || (isnan(a) && !isnan(m)))

/* First maximum of the window of output (oy, ox); its offset y * W + x within the plane, or -1
 * for an empty window (whose value is -INFINITY). */
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
            if (arg < 0 || CLG_TAKES(v, m)) {
                m = v;
                arg = y * W + xx;
            }
        }
    }
    *best = m;
    return arg;
}

/* The classic 2 x 2, stride 2, unpadded window over a row pair with unit x stride: which of
 * a (y, x), b (y, x + 1), c (y + 1, x), d (y + 1, x + 1) is the first maximum, 0-3. */
int quad_argmax(float a, float b, float c, float d, float *best) {
    int arg = 0;
    float m = a;
    if (CLG_TAKES(b, m)) { m = b; arg = 1; }
    if (CLG_TAKES(c, m)) { m = c; arg = 2; }
    if (CLG_TAKES(d, m)) { m = d; arg = 3; }
    *best = m;
    return arg;
}

bool is_quad(int8 win, int4 x_st) {
    return win.s0 == 2 && win.s1 == 2 && win.s2 == 2 && win.s3 == 2 && win.s4 == 0 &&
           win.s5 == 0 && x_st.s3 == 1;
}

/* Work-items: (e, c, n), one output element each, e = oy * OW + ox; or, with rows set (the
 * 2 x 2 pooling on unit-stride rows of at least 8 windows), (oy, c, n), one output row each,
 * four windows at a time in explicit vectors. On a CPU device the host makes a whole output
 * plane one work-group for the element form (pocl then runs it as a vectorised loop).
 * On pocl the row form wins for rows of 14 windows and loses for rows of 7 (the MNIST CNN's
 * two poolings), hence the threshold of 8. */
__kernel void max_pool2d(__global float *out, int out_off, __global const float *x, int x_off,
                         int4 x_st, int H, int W, int OW, int8 win, int rows) {
    int e = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int C = get_global_size(1);
    int base = x_off + n * x_st.s0 + c * x_st.s1;
    if (rows) {
        int oy = e, OH = get_global_size(0);
        __global const float *r0 = x + base + 2 * oy * x_st.s2, *r1 = r0 + x_st.s2;
        __global float *row = out + out_off + ((n * C + c) * OH + oy) * OW;
        int ox = 0;
        for (; ox + 4 <= OW; ox += 4) {
            float8 p = vload8(0, r0 + 2 * ox), q = vload8(0, r1 + 2 * ox);
            float4 m = p.even, b = p.odd, cc = q.even, d = q.odd;
            m = select(m, b, CLG_TAKES(b, m));
            m = select(m, cc, CLG_TAKES(cc, m));
            m = select(m, d, CLG_TAKES(d, m));
            vstore4(m, 0, row + ox);
        }
        for (; ox < OW; ++ox) {
            float m;
            quad_argmax(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], &m);
            row[ox] = m;
        }
        return;
    }
    int L = get_global_size(0);
    int oy = e / OW, ox = e - oy * OW;
    float m;
    if (is_quad(win, x_st)) {
        __global const float *r0 = x + base + 2 * oy * x_st.s2, *r1 = r0 + x_st.s2;
        quad_argmax(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], &m);
    } else {
        window_argmax(x, base, x_st, H, W, oy, ox, win, &m);
    }
    out[out_off + (n * C + c) * L + e] = m;
}

/* relu's backward gate on its output v, as the elementwise kernel computes it */
#define RELU_GATE(v) ((v) > 0.0f ? 1.0f : 0.0f)

/* gout is read through (n, c, oy, ox) strides, dx is a dense [N, C, H, W]. relu_mask: x is a
 * relu's output and dx is multiplied by relu's gate (x > 0), as relu's backward would do to
 * this kernel's result.
 * Windows that do not overlap (stride >= kernel, no padding): work-items (oy, c, n), each
 * writing every dx element of the rows from window row oy's first up to the next one's (the
 * last window row's up to the image's edge) once: the window's gradient at its maximum, zero
 * elsewhere. */
__kernel void max_pool2d_backward_disjoint(__global float *dx, int dx_off,
                                           __global const float *gout, int g_off, int4 g_st,
                                           __global const float *x, int x_off, int4 x_st, int H,
                                           int W, int OH, int OW, int8 win, int relu_mask) {
    int oy = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int C = get_global_size(1);
    int sh = win.s2, sw = win.s3;
    int base = x_off + n * x_st.s0 + c * x_st.s1;
    __global float *plane = dx + dx_off + (n * C + c) * H * W;
    __global const float *grow = gout + g_off + n * g_st.s0 + c * g_st.s1 + oy * g_st.s2;
    int y0 = oy * sh, y1 = oy == OH - 1 ? H : y0 + sh;
    if (is_quad(win, x_st)) {
        __global const float *r0 = x + base + y0 * x_st.s2, *r1 = r0 + x_st.s2;
        __global float *d0 = plane + y0 * W, *d1 = d0 + W;
        int ox = 0;
        /* Four windows at a time in explicit vectors: pocl does not vectorise the scalar loop
         * below (stride-2 reads and writes); this is several times faster there. Same choices as quad_argmax, lane by lane. */
        for (; g_st.s3 == 1 && ox + 4 <= OW; ox += 4) {
            float8 p = vload8(0, r0 + 2 * ox), q = vload8(0, r1 + 2 * ox);
            float4 m = p.even, b = p.odd, cc = q.even, d = q.odd;
            int4 arg = (int4)(0), t;
            t = CLG_TAKES(b, m);
            m = select(m, b, t);
            arg = select(arg, (int4)(1), t);
            t = CLG_TAKES(cc, m);
            m = select(m, cc, t);
            arg = select(arg, (int4)(2), t);
            t = CLG_TAKES(d, m);
            m = select(m, d, t);
            arg = select(arg, (int4)(3), t);
            float4 g = vload4(0, grow + ox), z = (float4)(0.0f);
            if (relu_mask) g *= select(z, (float4)(1.0f), m > 0.0f);
            float4 e0 = select(z, g, arg == 0), e1 = select(z, g, arg == 1);
            float4 e2 = select(z, g, arg == 2), e3 = select(z, g, arg == 3);
            vstore8((float8)(e0.s0, e1.s0, e0.s1, e1.s1, e0.s2, e1.s2, e0.s3, e1.s3), 0, d0 + 2 * ox);
            vstore8((float8)(e2.s0, e3.s0, e2.s1, e3.s1, e2.s2, e3.s2, e2.s3, e3.s3), 0, d1 + 2 * ox);
        }
        for (; ox < OW; ++ox) {
            float m;
            int q = quad_argmax(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], &m);
            float g = grow[ox * g_st.s3];
            if (relu_mask) g *= RELU_GATE(m);
            d0[2 * ox] = q == 0 ? g : 0.0f;
            d0[2 * ox + 1] = q == 1 ? g : 0.0f;
            d1[2 * ox] = q == 2 ? g : 0.0f;
            d1[2 * ox + 1] = q == 3 ? g : 0.0f;
        }
        /* an odd width's last column; an odd height's last row */
        for (int y = y0; y < y0 + 2 && 2 * OW < W; ++y) plane[y * W + W - 1] = 0.0f;
        for (int i = (y0 + 2) * W; i < y1 * W; ++i) plane[i] = 0.0f;
        return;
    }
    for (int i = y0 * W; i < y1 * W; ++i) plane[i] = 0.0f;
    for (int ox = 0; ox < OW; ++ox) {
        float m;
        int a = window_argmax(x, base, x_st, H, W, oy, ox, win, &m);
        float g = grow[ox * g_st.s3];
        if (relu_mask) g *= RELU_GATE(m);
        if (a >= 0) plane[a] = g;
    }
}

/* Overlapping or padded windows: work-items (e, c, n), one dx element each, e = y * W + x,
 * summing the gradients of the windows whose maximum it is, in ascending (oy, ox); on a CPU
 * device the host makes a whole plane one work-group. */
__kernel void max_pool2d_backward(__global float *dx, int dx_off, __global const float *gout,
                                  int g_off, int4 g_st, __global const float *x, int x_off,
                                  int4 x_st, int H, int W, int OH, int OW, int8 win,
                                  int relu_mask) {
    int e = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int C = get_global_size(1);
    int y = e / W, xx = e - y * W;
    int kh = win.s0, kw = win.s1, sh = win.s2, sw = win.s3;
    int base = x_off + n * x_st.s0 + c * x_st.s1;
    __global const float *gbase = gout + g_off + n * g_st.s0 + c * g_st.s1;
    /* windows oy with oy * sh - pad_h <= y < oy * sh - pad_h + kh, and likewise along x */
    int ty = y + win.s4, tx = xx + win.s5;
    int oy0 = ty - kh + 1 > 0 ? (ty - kh + sh) / sh : 0, oy1 = min(ty / sh, OH - 1);
    int ox0 = tx - kw + 1 > 0 ? (tx - kw + sw) / sw : 0, ox1 = min(tx / sw, OW - 1);
    float acc = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy)
        for (int ox = ox0; ox <= ox1; ++ox) {
            float m;
            if (window_argmax(x, base, x_st, H, W, oy, ox, win, &m) == e)
                acc += gbase[oy * g_st.s2 + ox * g_st.s3];
        }
    if (relu_mask) acc *= RELU_GATE(x[base + y * x_st.s2 + xx * x_st.s3]);
    dx[dx_off + (n * C + c) * H * W + e] = acc;
}
