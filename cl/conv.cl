/* Convolution lowering: im2col (image patches to GEMM columns) and its adjoint col2im.
 * Images are read through (n, c, y, x) strides, so views are read in place; columns are
 * indexed (n, g, k, l) with k = (cc * KH + ki) * KW + kj (cc the channel within group g) and
 * l = oy * OW + ox, through four strides, so one kernel serves every column layout.
 * col2im sums each pixel's taps in a fixed order with no atomics, so results are
 * bit-identical run to run. */

/* geometry: kh, kw, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w */

/* Work-items: (k, n * G + g, b), each writing rb output rows (from b * rb) of one row of
 * columns: on a CPU device a work-item costs more than a short row's copy, so runs are long
 * (a whole image per work-item beat one output row on pocl), but bounded for drivers that
 * cap a work-item's loop iterations. Per output row the in-image x range is found once, so
 * the inner loop is a plain copy; taps outside the image read `pad` (0 for convolution). */
__kernel void im2col(__global float *col, int col_off, int4 col_st, __global const float *x,
                     int x_off, int4 x_st, int C_g, int G, int H, int W, int OH, int OW, int8 geo,
                     float pad, int rb) {
    int k = get_global_id(0), ng = get_global_id(1), oy0 = get_global_id(2) * rb;
    int n = ng / G, g = ng - n * G;
    int kh = geo.s0, kw = geo.s1;
    int kj = k % kw, t = k / kw;
    int ki = t % kh, cc = t / kh;
    __global float *dst = col + col_off + n * col_st.s0 + g * col_st.s1 + k * col_st.s2;
    __global const float *src = x + x_off + n * x_st.s0 + (g * C_g + cc) * x_st.s1;
    int cs = col_st.s3, sw = geo.s3, xs = x_st.s3;
    int x0 = kj * geo.s7 - geo.s5;
    /* the ox range whose taps fall inside the row: x0 + ox * sw in [0, W) */
    int lo = x0 >= 0 ? 0 : (-x0 + sw - 1) / sw;
    int hi = x0 >= W ? 0 : min(OW, (W - 1 - x0) / sw + 1);
    if (hi < lo) hi = lo;
    for (int oy = oy0; oy < min(OH, oy0 + rb); ++oy) {
        int y = oy * geo.s2 - geo.s4 + ki * geo.s6;
        __global float *d = dst + oy * OW * cs;
        if (y < 0 || y >= H) {
            for (int ox = 0; ox < OW; ++ox) d[ox * cs] = pad;
            continue;
        }
        __global const float *s = src + y * x_st.s2 + x0 * xs;
        for (int ox = 0; ox < lo; ++ox) d[ox * cs] = pad;
        if (cs == 1 && sw == 1 && xs == 1) {
            for (int ox = lo; ox < hi; ++ox) d[ox] = s[ox];
        } else {
            for (int ox = lo; ox < hi; ++ox) d[ox * cs] = s[ox * sw * xs];
        }
        for (int ox = hi; ox < OW; ++ox) d[ox * cs] = pad;
    }
}

/* Work-items: (c, n, b), each summing rows [b * rb, b * rb + rb) of one plane of the dense
 * image [N, C, H, W]: the band is zeroed, then every tap (ki, kj) adds the part of its column
 * row that lands in the band, taps in ascending order, so each pixel's sum has a fixed order and
 * results are bit-identical run to run. The band stays in L1 while the taps stream through. */
__kernel void col2im(__global float *out, int out_off, __global const float *col, int col_off,
                     int4 col_st, int C_g, int H, int W, int OH, int OW, int8 geo, int rb) {
    int c = get_global_id(0), n = get_global_id(1);
    int C = get_global_size(0);
    int y0 = get_global_id(2) * rb, y1 = min(H, y0 + rb);
    int g = c / C_g, cc = c - g * C_g;
    int kh = geo.s0, kw = geo.s1, sh = geo.s2, sw = geo.s3, dh = geo.s6, dw = geo.s7;
    __global float *plane = out + out_off + (n * C + c) * H * W;
    __global const float *base = col + col_off + n * col_st.s0 + g * col_st.s1;
    int cs = col_st.s3;
    for (int i = y0 * W; i < y1 * W; ++i) plane[i] = 0.0f;
    for (int ki = 0; ki < kh; ++ki) {
        /* output rows oy whose tap ki lands in the band: oy * sh in [t0, t1) */
        int t0 = y0 + geo.s4 - ki * dh, t1 = y1 + geo.s4 - ki * dh;
        int oy_lo = t0 <= 0 ? 0 : (t0 + sh - 1) / sh;
        int oy_hi = t1 <= 0 ? 0 : min(OH, (t1 + sh - 1) / sh);
        for (int kj = 0; kj < kw; ++kj) {
            int k = (cc * kh + ki) * kw + kj;
            __global const float *src = base + k * col_st.s2;
            int x0 = kj * dw - geo.s5;
            int lo = x0 >= 0 ? 0 : (-x0 + sw - 1) / sw;
            int hi = x0 >= W ? 0 : min(OW, (W - 1 - x0) / sw + 1);
            for (int oy = oy_lo; oy < oy_hi; ++oy) {
                int y = oy * sh - geo.s4 + ki * dh;
                __global float *row = plane + y * W + x0;
                __global const float *s = src + oy * OW * cs;
                if (sw == 1 && cs == 1) {
                    for (int ox = lo; ox < hi; ++ox) row[ox] += s[ox];
                } else {
                    for (int ox = lo; ox < hi; ++ox) row[ox * sw] += s[ox * cs];
                }
            }
        }
    }
}
