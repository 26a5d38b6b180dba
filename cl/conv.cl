/* Convolution lowering: im2col (image patches to GEMM columns) and its adjoint col2im.
 * Images are read through (n, c, y, x) strides, so views are read in place; columns are
 * indexed (n, g, k, l) with k = (cc * KH + ki) * KW + kj (cc the channel within group g) and
 * l = oy * OW + ox, through four strides, so one kernel serves every column layout.
 * col2im gathers: each image pixel sums the taps that read it, in a fixed order, with no
 * atomics, so results are bit-identical run to run. */

/* geometry: kh, kw, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w */

/* Work-items: (l, k, n * G + g). Taps outside the image read `pad` (0 for convolution). */
__kernel void im2col(__global float *col, int col_off, int4 col_st, __global const float *x,
                     int x_off, int4 x_st, int C_g, int G, int H, int W, int OW, int8 geo,
                     float pad) {
    int l = get_global_id(0), k = get_global_id(1), ng = get_global_id(2);
    int n = ng / G, g = ng - n * G;
    int kh = geo.s0, kw = geo.s1;
    int kj = k % kw, t = k / kw;
    int ki = t % kh, cc = t / kh;
    int oy = l / OW, ox = l - oy * OW;
    int y = oy * geo.s2 - geo.s4 + ki * geo.s6;
    int xx = ox * geo.s3 - geo.s5 + kj * geo.s7;
    float v = pad;
    if (y >= 0 && y < H && xx >= 0 && xx < W)
        v = x[x_off + n * x_st.s0 + (g * C_g + cc) * x_st.s1 + y * x_st.s2 + xx * x_st.s3];
    col[col_off + n * col_st.s0 + g * col_st.s1 + k * col_st.s2 + l * col_st.s3] = v;
}

/* Work-items: (y * W + x, c, n); out is a dense [N, C, H, W]. */
__kernel void col2im(__global float *out, int out_off, __global const float *col, int col_off,
                     int4 col_st, int C_g, int H, int W, int OH, int OW, int8 geo) {
    int p = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    int C = get_global_size(1);
    int y = p / W, xx = p - y * W;
    int g = c / C_g, cc = c - g * C_g;
    int kh = geo.s0, kw = geo.s1, sh = geo.s2, sw = geo.s3, dh = geo.s6, dw = geo.s7;
    int base = col_off + n * col_st.s0 + g * col_st.s1;
    float acc = 0.0f;
    for (int ki = 0; ki < kh; ++ki) {
        int ty = y + geo.s4 - ki * dh; /* = oy * sh */
        if (ty < 0) break;
        int oy = ty / sh;
        if (oy * sh != ty || oy >= OH) continue;
        for (int kj = 0; kj < kw; ++kj) {
            int tx = xx + geo.s5 - kj * dw;
            if (tx < 0) break;
            int ox = tx / sw;
            if (ox * sw != tx || ox >= OW) continue;
            int k = (cc * kh + ki) * kw + kj;
            acc += col[base + k * col_st.s2 + (oy * OW + ox) * col_st.s3];
        }
    }
    out[out_off + (n * C + c) * H * W + p] = acc;
}
