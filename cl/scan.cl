/* Scans along an axis (cumsum). One work-item per independent line, walking it in order: a
 * scan is sequential within a line, lines are independent, and the families that need it
 * (returns over T steps for B environments, positions from masks, CDFs of many rows) have
 * many lines; so each element is read once in one launch and each sum is the plain left-to-
 * right float sum of a C loop. (A work-group scan would pay off only for a few very long
 * lines.) Shapes and strides: int8 vectors (unused leading dims of size 1); shape has extent
 * 1 along the axis, whose strides come apart (*_sa). */

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
