/* Convolution lowering: im2col (image patches to GEMM columns) and its adjoint col2im.
 * Images are read through (n, c, y, x) strides, so views are read in place; columns are
 * indexed (n, g, k, l) with k = (cc * KH + ki) * KW + kj (cc the channel within group g) and
 * l = oy * OW + ox, through four strides, so one kernel serves every column layout.
 * col2im gathers: each image pixel sums the taps that read it, in a fixed order, with no
 * atomics, so results are bit-identical run to run. */

/* geometry: kh, kw, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w */

/* Work-items: (oy, k, n * G + g), each writing one output row of columns (OW values, l from
 * oy * OW): the index arithmetic is per row, the inner loop only steps along x. Taps outside the
 * image read `pad` (0 for convolution). */
__kernel void im2col(__global float *col, int col_off, int4 col_st, __global const float *x,
                     int x_off, int4 x_st, int C_g, int G, int H, int W, int OW, int8 geo,
                     float pad) {
    int oy = get_global_id(0), k = get_global_id(1), ng = get_global_id(2);
    int n = ng / G, g = ng - n * G;
    int kh = geo.s0, kw = geo.s1;
    int kj = k % kw, t = k / kw;
    int ki = t % kh, cc = t / kh;
    int y = oy * geo.s2 - geo.s4 + ki * geo.s6;
    __global float *dst =
        col + col_off + n * col_st.s0 + g * col_st.s1 + k * col_st.s2 + oy * OW * col_st.s3;
    int cs = col_st.s3;
    if (y < 0 || y >= H) {
        for (int ox = 0; ox < OW; ++ox) dst[ox * cs] = pad;
        return;
    }
    __global const float *src = x + x_off + n * x_st.s0 + (g * C_g + cc) * x_st.s1 + y * x_st.s2;
    int x0 = kj * geo.s7 - geo.s5, sw = geo.s3, xs = x_st.s3;
    for (int ox = 0; ox < OW; ++ox) {
        int xx = x0 + ox * sw;
        dst[ox * cs] = (xx >= 0 && xx < W) ? src[xx * xs] : pad;
    }
}

/* Work-items: (y, c, n), each summing one row of the dense image [N, C, H, W]: the row is
 * zeroed, then every tap (ki, kj) that reads it adds its column values, in a fixed order, so
 * sums are bit-identical run to run. With stride 1 the inner loop is a plain vector add. */
__kernel void col2im(__global float *out, int out_off, __global const float *col, int col_off,
                     int4 col_st, int C_g, int H, int W, int OH, int OW, int8 geo) {
    int y = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int C = get_global_size(1);
    int g = c / C_g, cc = c - g * C_g;
    int kh = geo.s0, kw = geo.s1, sh = geo.s2, sw = geo.s3, dh = geo.s6, dw = geo.s7;
    __global float *row = out + out_off + ((n * C + c) * H + y) * W;
    __global const float *base = col + col_off + n * col_st.s0 + g * col_st.s1;
    int cs = col_st.s3;
    for (int xx = 0; xx < W; ++xx) row[xx] = 0.0f;
    for (int ki = 0; ki < kh; ++ki) {
        int ty = y + geo.s4 - ki * dh; /* = oy * sh */
        if (ty < 0) break;
        int oy = ty / sh;
        if (oy * sh != ty || oy >= OH) continue;
        for (int kj = 0; kj < kw; ++kj) {
            int k = (cc * kh + ki) * kw + kj;
            __global const float *src = base + k * col_st.s2 + oy * OW * cs;
            int shift = geo.s5 - kj * dw; /* ox * sw = xx + shift */
            if (sw == 1) {
                int lo = max(0, -shift), hi = min(W, OW - shift);
                for (int xx = lo; xx < hi; ++xx) row[xx] += src[(xx + shift) * cs];
            } else {
                for (int xx = 0; xx < W; ++xx) {
                    int tx = xx + shift;
                    if (tx < 0) continue;
                    int ox = tx / sw;
                    if (ox * sw == tx && ox < OW) row[xx] += src[ox * cs];
                }
            }
        }
    }
}
