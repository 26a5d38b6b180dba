/* Scans along an axis (cumsum). Lines are independent and a scan is sequential within one:
 * with many lines (returns over T steps for B environments, positions from masks, CDFs of
 * many rows) one work-item walks each line in order (cumsum); with few long lines one
 * work-group takes each line in contiguous shares (cumsum_group). Each element is read once
 * or twice in one launch, and the order of the additions is fixed by the sizes alone.
 * Shapes and strides: int8 vectors (unused leading dims of size 1); shape has extent 1 along
 * the axis, whose strides come apart (*_sa). */

#define CLG_SCAN_MAX_LOCAL 256

#define CLG_SCAN_UNRAVEL(k)                                                                    \
    c = r % shape.s##k;                                                                        \
    r /= shape.s##k;                                                                           \
    oo += c * out_st.s##k;                                                                     \
    xo += c * x_st.s##k;

/* out = running sums of x along the axis (len elements): inclusive or exclusive (starting
 * at 0), from the front or, with reverse, from the back. */
__kernel void cumsum(__global float *out, int out_off, int lines, int8 shape, int8 out_st,
                     int out_sa, __global const float *x, int x_off, int8 x_st, int x_sa,
                     int len, int exclusive, int reverse) {
    int i = get_global_id(0);
    if (i >= lines) return;
    int r = i, c, oo = out_off, xo = x_off;
    CLG_SCAN_UNRAVEL(7) CLG_SCAN_UNRAVEL(6) CLG_SCAN_UNRAVEL(5) CLG_SCAN_UNRAVEL(4)
    CLG_SCAN_UNRAVEL(3) CLG_SCAN_UNRAVEL(2) CLG_SCAN_UNRAVEL(1) CLG_SCAN_UNRAVEL(0)
    if (reverse) {
        oo += (len - 1) * out_sa;
        xo += (len - 1) * x_sa;
        out_sa = -out_sa;
        x_sa = -x_sa;
    }
    float acc = 0.0f;
    for (int t = 0; t < len; ++t) {
        float v = x[xo + t * x_sa];
        if (exclusive) {
            out[oo + t * out_sa] = acc;
            acc += v;
        } else {
            acc += v;
            out[oo + t * out_sa] = acc;
        }
    }
}

/* The same for one line per work-group (a power of two of at most CLG_SCAN_MAX_LOCAL
 * work-items): each work-item sums its share, one scans the shares' sums in order, and each
 * rescans its share from its offset. */
__kernel void cumsum_group(__global float *out, int out_off, int8 shape, int8 out_st,
                           int out_sa, __global const float *x, int x_off, int8 x_st, int x_sa,
                           int len, int exclusive, int reverse) {
    __local float part[CLG_SCAN_MAX_LOCAL];
    const int lid = get_local_id(0), L = get_local_size(0);
    int r = get_group_id(0), c, oo = out_off, xo = x_off;
    CLG_SCAN_UNRAVEL(7) CLG_SCAN_UNRAVEL(6) CLG_SCAN_UNRAVEL(5) CLG_SCAN_UNRAVEL(4)
    CLG_SCAN_UNRAVEL(3) CLG_SCAN_UNRAVEL(2) CLG_SCAN_UNRAVEL(1) CLG_SCAN_UNRAVEL(0)
    if (reverse) {
        oo += (len - 1) * out_sa;
        xo += (len - 1) * x_sa;
        out_sa = -out_sa;
        x_sa = -x_sa;
    }
    const int chunk = (len + L - 1) / L, lo = min(len, lid * chunk), hi = min(len, lo + chunk);
    float sum = 0.0f;
    for (int t = lo; t < hi; ++t)
        sum += x[xo + t * x_sa];
    part[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        float acc = 0.0f;
        for (int l = 0; l < L; ++l) {
            float v = part[l];
            part[l] = acc;
            acc += v;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float acc = part[lid];
    for (int t = lo; t < hi; ++t) {
        float v = x[xo + t * x_sa];
        if (exclusive) {
            out[oo + t * out_sa] = acc;
            acc += v;
        } else {
            acc += v;
            out[oo + t * out_sa] = acc;
        }
    }
}
