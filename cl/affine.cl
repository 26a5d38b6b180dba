/* Affine resampling of image batches (PyTorch's affine_grid + grid_sample, bilinear, zero
 * padding, align_corners=False): each output pixel's centre, in [-1, 1] coordinates, is mapped
 * by its image's 2x3 matrix into the input, which is read bilinearly with taps outside it 0.
 * The backward kernels own their outputs outright (one work-item per input plane for dx, one
 * per image for dtheta) and add in a fixed order, so results never depend on scheduling. */

/* The input position (ix, iy), in pixels, that output pixel (oy, ox) samples. */
float2 clg_affine_src(__global const float *t, int oy, int ox, int oh, int ow, int h, int w) {
    float xn = (2.0f * ox + 1.0f) / ow - 1.0f, yn = (2.0f * oy + 1.0f) / oh - 1.0f;
    float gx = t[0] * xn + t[1] * yn + t[2], gy = t[3] * xn + t[4] * yn + t[5];
    return (float2)(((gx + 1.0f) * w - 1.0f) * 0.5f, ((gy + 1.0f) * h - 1.0f) * 0.5f);
}

float clg_affine_tap(__global const float *p, int y, int x, int h, int w) {
    return y >= 0 && y < h && x >= 0 && x < w ? p[y * w + x] : 0.0f;
}

/* out [N, C, OH, OW] from theta [N, 2, 3] and x [N, C, H, W], all dense. */
__kernel void affine_sample(__global float *out, int out_off, __global const float *theta,
                            int theta_off, __global const float *x, int x_off, int C, int h,
                            int w, int oh, int ow) {
    const int i = get_global_id(0);
    const int ox = i % ow, oy = i / ow % oh, nc = i / (ow * oh), n = nc / C;
    float2 s = clg_affine_src(theta + theta_off + n * 6, oy, ox, oh, ow, h, w);
    float fx = floor(s.x), fy = floor(s.y);
    int x0 = (int)fx, y0 = (int)fy;
    float ax = s.x - fx, ay = s.y - fy;
    __global const float *p = x + x_off + (size_t)nc * h * w;
    float v = (1.0f - ay) * ((1.0f - ax) * clg_affine_tap(p, y0, x0, h, w) +
                             ax * clg_affine_tap(p, y0, x0 + 1, h, w)) +
              ay * ((1.0f - ax) * clg_affine_tap(p, y0 + 1, x0, h, w) +
                    ax * clg_affine_tap(p, y0 + 1, x0 + 1, h, w));
    out[out_off + i] = v;
}

void clg_affine_add(__global float *p, int y, int x, int h, int w, float v) {
    if (y >= 0 && y < h && x >= 0 && x < w) p[y * w + x] += v;
}

/* dx [N, C, H, W]: one work-item per (n, c) plane scatters every output pixel's gradient into
 * its four taps, in pixel order. */
__kernel void affine_sample_dx(__global float *dx, int dx_off, __global const float *theta,
                               int theta_off, __global const float *gout, int g_off, int C,
                               int h, int w, int oh, int ow) {
    const int nc = get_global_id(0), n = nc / C;
    __global float *p = dx + dx_off + (size_t)nc * h * w;
    __global const float *gp = gout + g_off + (size_t)nc * oh * ow;
    __global const float *t = theta + theta_off + n * 6;
    for (int k = 0; k < h * w; ++k)
        p[k] = 0.0f;
    for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox) {
            float gv = gp[oy * ow + ox];
            float2 s = clg_affine_src(t, oy, ox, oh, ow, h, w);
            float fx = floor(s.x), fy = floor(s.y);
            int x0 = (int)fx, y0 = (int)fy;
            float ax = s.x - fx, ay = s.y - fy;
            clg_affine_add(p, y0, x0, h, w, gv * (1.0f - ay) * (1.0f - ax));
            clg_affine_add(p, y0, x0 + 1, h, w, gv * (1.0f - ay) * ax);
            clg_affine_add(p, y0 + 1, x0, h, w, gv * ay * (1.0f - ax));
            clg_affine_add(p, y0 + 1, x0 + 1, h, w, gv * ay * ax);
        }
}

/* dtheta [N, 2, 3]: one work-item per image. d out / d ix is the bilinear form's slope along
 * x; ix = ((gx + 1) W - 1) / 2 and gx = t0 xn + t1 yn + t2 give the chain to theta. */
__kernel void affine_sample_dtheta(__global float *dt, int dt_off, __global const float *theta,
                                   int theta_off, __global const float *x, int x_off,
                                   __global const float *gout, int g_off, int C, int h, int w,
                                   int oh, int ow) {
    const int n = get_global_id(0);
    __global const float *t = theta + theta_off + n * 6;
    float acc[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < C; ++c) {
        __global const float *p = x + x_off + (size_t)(n * C + c) * h * w;
        __global const float *gp = gout + g_off + (size_t)(n * C + c) * oh * ow;
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                float gv = gp[oy * ow + ox];
                float2 s = clg_affine_src(t, oy, ox, oh, ow, h, w);
                float fx = floor(s.x), fy = floor(s.y);
                int x0 = (int)fx, y0 = (int)fy;
                float ax = s.x - fx, ay = s.y - fy;
                float v00 = clg_affine_tap(p, y0, x0, h, w);
                float v01 = clg_affine_tap(p, y0, x0 + 1, h, w);
                float v10 = clg_affine_tap(p, y0 + 1, x0, h, w);
                float v11 = clg_affine_tap(p, y0 + 1, x0 + 1, h, w);
                float dix = ((1.0f - ay) * (v01 - v00) + ay * (v11 - v10)) * gv * 0.5f * w;
                float diy = ((1.0f - ax) * (v10 - v00) + ax * (v11 - v01)) * gv * 0.5f * h;
                float xn = (2.0f * ox + 1.0f) / ow - 1.0f, yn = (2.0f * oy + 1.0f) / oh - 1.0f;
                acc[0] += dix * xn;
                acc[1] += dix * yn;
                acc[2] += dix;
                acc[3] += diy * xn;
                acc[4] += diy * yn;
                acc[5] += diy;
            }
    }
    for (int k = 0; k < 6; ++k)
        dt[dt_off + n * 6 + k] = acc[k];
}
