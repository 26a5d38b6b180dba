/* Row kernels over the last axis (ops/rows.c): softmax with a scale and a causal or additive
 * mask, log_softmax, logsumexp, layer norm, and their backward passes; one kernel per op, each
 * row read from global memory once (the passes after the first re-read what is cached).
 * Two forms of each: one work-item per row (CPU devices: a serial loop that stays in the
 * core's cache, no barriers, eight partial results in a float8) and one work-group per row
 * (GPUs: the lanes stride the row and combine through a tree in local memory; local size a
 * power of two).
 *
 * Addressing: rows are the flat index over the leading dims. lead: their sizes in s0..s6
 * (after merging, padded in front with 1), their count in s7. An operand's st: its strides
 * over those dims in s0..s6 (0 where it broadcasts), its column stride in s7. Outputs are
 * dense: row * C + c.
 * mk: s0 bit 0 causal (row i of each s1-row matrix keeps the columns j <= i + s2), bit 1 an
 * additive mask operand. */

#define MASK_CAUSAL 1
#define MASK_ADDITIVE 2

int row_base(int row, int8 lead, int8 st) {
    if (lead.s7 <= 1) return row * st.s6;
    int sh[8], s[8];
    vstore8(lead, 0, sh);
    vstore8(st, 0, s);
    int off = 0;
    for (int d = 6; d > 6 - lead.s7; --d) {
        int q = row / sh[d];
        off += (row - q * sh[d]) * s[d];
        row = q;
    }
    return off;
}

/* The columns [0, kept) a row keeps: all, or the causal prefix (none when it is empty). */
int kept_columns(int row, int C, int4 mk) {
    if (!(mk.s0 & MASK_CAUSAL)) return C;
    int keep = row % mk.s1 + mk.s2 + 1;
    return clamp(keep, 0, C);
}

/* scale * x + mask at column c of a row, and the eight from c on (contiguous operands) */
float zval(__global const float *xr, int xs, __global const float *mr, int ms, int additive,
           float scale, int c) {
    float z = scale * xr[c * xs];
    return additive ? z + mr[c * ms] : z;
}

float8 zval8(__global const float *xr, __global const float *mr, int additive, float scale,
             int c) {
    float8 z = scale * vload8(0, xr + c);
    return additive ? z + vload8(0, mr + c) : z;
}

float max8(float8 v) {
    float4 h = fmax(v.lo, v.hi);
    return fmax(fmax(h.s0, h.s1), fmax(h.s2, h.s3));
}

float sum8(float8 v) {
    float4 h = v.lo + v.hi;
    return (h.s0 + h.s1) + (h.s2 + h.s3);
}

/* what: 0 softmax, 1 log_softmax, 2 logsumexp (out holds one value per row). A row whose
 * maximum is -INFINITY (every column masked) gives softmax zeros, log_softmax and logsumexp
 * -INFINITY. log_softmax is (z - m) - log(s), not z - (m + log(s)): z - m is exact where the
 * row's values are large and close. */
#define WHAT_SOFTMAX 0
#define WHAT_LOG_SOFTMAX 1
#define WHAT_LOGSUMEXP 2

/* The work-item form: the row in steps of eight (float8 partial maxima and sums, which pocl
 * keeps in vector registers) where x and the mask are contiguous along it, then the rest one
 * by one. Three passes over the row, the last two from cache: the max; exp(z - m) summed
 * (and stored, for softmax); the output (softmax: the stored values times 1 / sum). */
__kernel void softmax_rows(__global float *out, int out_off, __global const float *x, int x_off,
                           int8 x_st, __global const float *mask, int m_off, int8 m_st,
                           int8 lead, int R, int C, float scale, int4 mk, int what) {
    int row = get_global_id(0);
    if (row >= R) return;
    __global const float *xr = x + x_off + row_base(row, lead, x_st);
    int add = mk.s0 & MASK_ADDITIVE;
    __global const float *mr = mask + m_off + (add ? row_base(row, lead, m_st) : 0);
    int xs = x_st.s7, ms = m_st.s7, lim = kept_columns(row, C, mk);
    int vl = (xs == 1 && (!add || ms == 1)) ? lim & ~7 : 0;
    float8 m8 = -INFINITY;
    for (int c = 0; c < vl; c += 8) m8 = fmax(m8, zval8(xr, mr, add, scale, c));
    float m = max8(m8);
    for (int c = vl; c < lim; ++c) m = fmax(m, zval(xr, xs, mr, ms, add, scale, c));
    __global float *yr = out + out_off + row * C;
    int keep = what == WHAT_SOFTMAX;
    float s = 0.0f;
    if (m != -INFINITY) {
        float8 s8 = 0.0f;
        for (int c = 0; c < vl; c += 8) {
            float8 e = exp(zval8(xr, mr, add, scale, c) - m);
            if (keep) vstore8(e, 0, yr + c);
            s8 += e;
        }
        s = sum8(s8);
        for (int c = vl; c < lim; ++c) {
            float e = exp(zval(xr, xs, mr, ms, add, scale, c) - m);
            if (keep) yr[c] = e;
            s += e;
        }
    }
    if (what == WHAT_LOGSUMEXP) {
        out[out_off + row] = m == -INFINITY ? -INFINITY : m + log(s);
        return;
    }
    if (m == -INFINITY) lim = vl = 0;
    if (keep) {
        float inv = 1.0f / s;
        for (int c = 0; c < vl; c += 8) vstore8(vload8(0, yr + c) * inv, 0, yr + c);
        for (int c = vl; c < lim; ++c) yr[c] *= inv;
    } else {
        float ls = log(s);
        for (int c = 0; c < vl; c += 8)
            vstore8((zval8(xr, mr, add, scale, c) - m) - ls, 0, yr + c);
        for (int c = vl; c < lim; ++c) yr[c] = (zval(xr, xs, mr, ms, add, scale, c) - m) - ls;
    }
    float dropped = keep ? 0.0f : -INFINITY;
    for (int c = lim; c < C; ++c) yr[c] = dropped;
}

/* Tree reduction over the work-group: every lane gets the result. is_max: max, else sum. */
float group_reduce(__local float *sh, float v, int is_max) {
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

__kernel void softmax_rows_group(__global float *out, int out_off, __global const float *x,
                                 int x_off, int8 x_st, __global const float *mask, int m_off,
                                 int8 m_st, int8 lead, int R, int C, float scale, int4 mk,
                                 int what, __local float *sh) {
    int row = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    __global const float *xr = x + x_off + row_base(row, lead, x_st);
    int add = mk.s0 & MASK_ADDITIVE;
    __global const float *mr = mask + m_off + (add ? row_base(row, lead, m_st) : 0);
    int xs = x_st.s7, ms = m_st.s7, lim = kept_columns(row, C, mk);
    float m = -INFINITY;
    for (int c = lid; c < lim; c += L) m = fmax(m, zval(xr, xs, mr, ms, add, scale, c));
    m = group_reduce(sh, m, 1);
    float s = 0.0f;
    if (m != -INFINITY)
        for (int c = lid; c < lim; c += L) s += exp(zval(xr, xs, mr, ms, add, scale, c) - m);
    s = group_reduce(sh, s, 0);
    if (what == WHAT_LOGSUMEXP) {
        if (lid == 0) out[out_off + row] = m == -INFINITY ? -INFINITY : m + log(s);
        return;
    }
    __global float *yr = out + out_off + row * C;
    float inv = 1.0f / s, ls = log(s);
    if (m == -INFINITY) lim = 0;
    for (int c = lid; c < lim; c += L) {
        float d = zval(xr, xs, mr, ms, add, scale, c) - m;
        yr[c] = what == WHAT_SOFTMAX ? exp(d) * inv : d - ls;
    }
    float dropped = what == WHAT_SOFTMAX ? 0.0f : -INFINITY;
    for (int c = lim + lid; c < C; c += L) yr[c] = dropped;
}

/* Backward of y = softmax(z) or log_softmax(z), z = scale * x + mask, given g = dL/dy:
 * softmax dx = scale * y * (g - sum(g * y)); log_softmax dx = scale * (g - exp(y) sum(g)).
 * A dropped column has y = 0 (or exp(y) = 0), so its gradient is 0. */
float softmax_grad(int logsm, float g, float y, float d, float scale) {
    return logsm ? scale * (g - exp(y) * d) : scale * y * (g - d);
}

__kernel void softmax_rows_backward(__global float *dx, int dx_off, __global const float *gout,
                                    int g_off, int8 g_st, __global const float *y, int y_off,
                                    int8 lead, int R, int C, float scale, int logsm) {
    int row = get_global_id(0);
    if (row >= R) return;
    __global const float *gr = gout + g_off + row_base(row, lead, g_st);
    __global const float *yr = y + y_off + row * C;
    int gs = g_st.s7, vl = gs == 1 ? C & ~7 : 0;
    float8 d8 = 0.0f;
    for (int c = 0; c < vl; c += 8) {
        float8 g = vload8(0, gr + c);
        d8 += logsm ? g : g * vload8(0, yr + c);
    }
    float d = sum8(d8);
    for (int c = vl; c < C; ++c) d += logsm ? gr[c * gs] : gr[c * gs] * yr[c];
    __global float *o = dx + dx_off + row * C;
    for (int c = 0; c < vl; c += 8) {
        float8 g = vload8(0, gr + c), yv = vload8(0, yr + c);
        vstore8(logsm ? scale * (g - exp(yv) * d) : scale * yv * (g - d), 0, o + c);
    }
    for (int c = vl; c < C; ++c) o[c] = softmax_grad(logsm, gr[c * gs], yr[c], d, scale);
}

__kernel void softmax_rows_backward_group(__global float *dx, int dx_off,
                                          __global const float *gout, int g_off, int8 g_st,
                                          __global const float *y, int y_off, int8 lead, int R,
                                          int C, float scale, int logsm, __local float *sh) {
    int row = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    __global const float *gr = gout + g_off + row_base(row, lead, g_st);
    __global const float *yr = y + y_off + row * C;
    int gs = g_st.s7;
    float d = 0.0f;
    for (int c = lid; c < C; c += L) d += logsm ? gr[c * gs] : gr[c * gs] * yr[c];
    d = group_reduce(sh, d, 0);
    __global float *o = dx + dx_off + row * C;
    for (int c = lid; c < C; c += L) o[c] = softmax_grad(logsm, gr[c * gs], yr[c], d, scale);
}

/* ---- layer norm ----
 * Forward: y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps), var the biased variance
 * (computed around the mean, not as E[x^2] - mean^2, which cancels). out holds y [R, C], then
 * the R means, then the R rstds (the backward pass reads them). affine: bit 0 w, bit 1 b. */

/* The work-item form, in steps of eight where x is contiguous along the row (as softmax's). */
__kernel void layer_norm_rows(__global float *out, int out_off, __global const float *x,
                              int x_off, int8 x_st, __global const float *w, int w_off,
                              __global const float *b, int b_off, int8 lead, int R, int C,
                              float eps, int affine) {
    int row = get_global_id(0);
    if (row >= R) return;
    __global const float *xr = x + x_off + row_base(row, lead, x_st);
    int xs = x_st.s7, vl = xs == 1 ? C & ~7 : 0;
    float8 a8 = 0.0f;
    for (int c = 0; c < vl; c += 8) a8 += vload8(0, xr + c);
    float sum = sum8(a8);
    for (int c = vl; c < C; ++c) sum += xr[c * xs];
    float mean = sum / C;
    a8 = 0.0f;
    for (int c = 0; c < vl; c += 8) {
        float8 d = vload8(0, xr + c) - mean;
        a8 += d * d;
    }
    float ss = sum8(a8);
    for (int c = vl; c < C; ++c) {
        float d = xr[c * xs] - mean;
        ss += d * d;
    }
    float rstd = rsqrt(ss / C + eps);
    __global float *yr = out + out_off + row * C;
    __global const float *wr = w + w_off, *br = b + b_off;
    for (int c = 0; c < vl; c += 8) {
        float8 v = (vload8(0, xr + c) - mean) * rstd;
        if (affine & 1) v *= vload8(0, wr + c);
        if (affine & 2) v += vload8(0, br + c);
        vstore8(v, 0, yr + c);
    }
    for (int c = vl; c < C; ++c) {
        float v = (xr[c * xs] - mean) * rstd;
        if (affine & 1) v *= wr[c];
        if (affine & 2) v += br[c];
        yr[c] = v;
    }
    out[out_off + R * C + row] = mean;
    out[out_off + R * C + R + row] = rstd;
}

__kernel void layer_norm_rows_group(__global float *out, int out_off, __global const float *x,
                                    int x_off, int8 x_st, __global const float *w, int w_off,
                                    __global const float *b, int b_off, int8 lead, int R, int C,
                                    float eps, int affine, __local float *sh) {
    int row = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    __global const float *xr = x + x_off + row_base(row, lead, x_st);
    int xs = x_st.s7;
    float sum = 0.0f;
    for (int c = lid; c < C; c += L) sum += xr[c * xs];
    float mean = group_reduce(sh, sum, 0) / C, ss = 0.0f;
    for (int c = lid; c < C; c += L) {
        float d = xr[c * xs] - mean;
        ss += d * d;
    }
    float rstd = rsqrt(group_reduce(sh, ss, 0) / C + eps);
    __global float *yr = out + out_off + row * C;
    for (int c = lid; c < C; c += L) {
        float v = (xr[c * xs] - mean) * rstd;
        if (affine & 1) v *= w[w_off + c];
        if (affine & 2) v += b[b_off + c];
        yr[c] = v;
    }
    if (lid == 0) {
        out[out_off + R * C + row] = mean;
        out[out_off + R * C + R + row] = rstd;
    }
}

/* dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w (g without a weight),
 * xhat = (x - mean) * rstd; stats: the forward's R means then R rstds. */
__kernel void layer_norm_backward_rows(__global float *dx, int dx_off, __global const float *gout,
                                       int g_off, int8 g_st, __global const float *x, int x_off,
                                       int8 x_st, __global const float *stats, int s_off,
                                       __global const float *w, int w_off, int8 lead, int R,
                                       int C, int has_w) {
    int row = get_global_id(0);
    if (row >= R) return;
    __global const float *gr = gout + g_off + row_base(row, lead, g_st);
    __global const float *xr = x + x_off + row_base(row, lead, x_st);
    __global const float *wr = w + w_off;
    int gs = g_st.s7, xs = x_st.s7, vl = gs == 1 && xs == 1 ? C & ~7 : 0;
    float mean = stats[s_off + row], rstd = stats[s_off + R + row];
    float8 a8 = 0.0f, b8 = 0.0f;
    for (int c = 0; c < vl; c += 8) {
        float8 gw = vload8(0, gr + c);
        if (has_w) gw *= vload8(0, wr + c);
        a8 += gw;
        b8 += gw * (vload8(0, xr + c) - mean);
    }
    float a = sum8(a8), bsum = sum8(b8);
    for (int c = vl; c < C; ++c) {
        float gw = has_w ? gr[c * gs] * wr[c] : gr[c * gs];
        a += gw;
        bsum += gw * (xr[c * xs] - mean);
    }
    a /= C;
    bsum *= rstd / C;
    __global float *o = dx + dx_off + row * C;
    for (int c = 0; c < vl; c += 8) {
        float8 gw = vload8(0, gr + c);
        if (has_w) gw *= vload8(0, wr + c);
        vstore8(rstd * (gw - a - (vload8(0, xr + c) - mean) * rstd * bsum), 0, o + c);
    }
    for (int c = vl; c < C; ++c) {
        float gw = has_w ? gr[c * gs] * wr[c] : gr[c * gs];
        o[c] = rstd * (gw - a - (xr[c * xs] - mean) * rstd * bsum);
    }
}

__kernel void layer_norm_backward_rows_group(__global float *dx, int dx_off,
                                             __global const float *gout, int g_off, int8 g_st,
                                             __global const float *x, int x_off, int8 x_st,
                                             __global const float *stats, int s_off,
                                             __global const float *w, int w_off, int8 lead,
                                             int R, int C, int has_w, __local float *sh) {
    int row = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    __global const float *gr = gout + g_off + row_base(row, lead, g_st);
    __global const float *xr = x + x_off + row_base(row, lead, x_st);
    int gs = g_st.s7, xs = x_st.s7;
    float mean = stats[s_off + row], rstd = stats[s_off + R + row];
    float a = 0.0f, bsum = 0.0f;
    for (int c = lid; c < C; c += L) {
        float gw = has_w ? gr[c * gs] * w[w_off + c] : gr[c * gs];
        a += gw;
        bsum += gw * (xr[c * xs] - mean) * rstd;
    }
    a = group_reduce(sh, a, 0) / C;
    bsum = group_reduce(sh, bsum, 0) / C;
    __global float *o = dx + dx_off + row * C;
    for (int c = lid; c < C; c += L) {
        float gw = has_w ? gr[c * gs] * w[w_off + c] : gr[c * gs];
        o[c] = rstd * (gw - a - (xr[c * xs] - mean) * rstd * bsum);
    }
}

/* dw[c] = sum over rows of g * xhat, db[c] = sum of g: a column reduction. Work-items
 * (column, part) in a (Lc, P) work-group: the P parts take every P-th row, then combine in
 * local memory (P a power of two; 1 on a CPU device, where neighbouring columns vectorise).
 * which: bit 0 dw (row 0 of out), bit 1 db (the next row). */
__kernel void layer_norm_backward_params(__global float *out, int out_off,
                                         __global const float *gout, int g_off, int8 g_st,
                                         __global const float *x, int x_off, int8 x_st,
                                         __global const float *stats, int s_off, int8 lead,
                                         int R, int C, int which, __local float *sh) {
    int c = get_global_id(0), p = get_local_id(1), P = get_local_size(1);
    int lc = get_local_id(0), Lc = get_local_size(0);
    float aw = 0.0f, ab = 0.0f;
    if (c < C)
        for (int row = p; row < R; row += P) {
            float g = gout[g_off + row_base(row, lead, g_st) + c * g_st.s7];
            float xv = x[x_off + row_base(row, lead, x_st) + c * x_st.s7];
            aw += g * (xv - stats[s_off + row]) * stats[s_off + R + row];
            ab += g;
        }
    __local float *sw = sh, *sb = sh + Lc * P;
    sw[p * Lc + lc] = aw;
    sb[p * Lc + lc] = ab;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = P / 2; s > 0; s >>= 1) {
        if (p < s) {
            sw[p * Lc + lc] += sw[(p + s) * Lc + lc];
            sb[p * Lc + lc] += sb[(p + s) * Lc + lc];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (p != 0 || c >= C) return;
    if (which & 1) out[out_off + c] = sw[lc];
    if (which & 2) out[out_off + ((which & 1) ? C : 0) + c] = sb[lc];
}

/* The work-item form on CPU devices: eight neighbouring columns per work-item, walking every
 * row with float8 partial sums where gout and x are contiguous along the row, else one column
 * after another. */
__kernel void layer_norm_backward_params_item(__global float *out, int out_off,
                                              __global const float *gout, int g_off, int8 g_st,
                                              __global const float *x, int x_off, int8 x_st,
                                              __global const float *stats, int s_off, int8 lead,
                                              int R, int C, int which) {
    int c0 = 8 * get_global_id(0);
    if (c0 >= C) return;
    __global float *dw = out + out_off, *db = out + out_off + ((which & 1) ? C : 0);
    if (c0 + 8 <= C && g_st.s7 == 1 && x_st.s7 == 1) {
        float8 aw = 0.0f, ab = 0.0f;
        for (int row = 0; row < R; ++row) {
            float8 g = vload8(0, gout + g_off + row_base(row, lead, g_st) + c0);
            float8 xv = vload8(0, x + x_off + row_base(row, lead, x_st) + c0);
            aw += g * (xv - stats[s_off + row]) * stats[s_off + R + row];
            ab += g;
        }
        if (which & 1) vstore8(aw, 0, dw + c0);
        if (which & 2) vstore8(ab, 0, db + c0);
        return;
    }
    for (int c = c0; c < min(C, c0 + 8); ++c) {
        float aw = 0.0f, ab = 0.0f;
        for (int row = 0; row < R; ++row) {
            float g = gout[g_off + row_base(row, lead, g_st) + c * g_st.s7];
            float xv = x[x_off + row_base(row, lead, x_st) + c * x_st.s7];
            aw += g * (xv - stats[s_off + row]) * stats[s_off + R + row];
            ab += g;
        }
        if (which & 1) dw[c] = aw;
        if (which & 2) db[c] = ab;
    }
}
