/* Strided copies and fills: the kernels behind concat, pad and other movement lowered to
 * copies. Up to 8 dimensions passed as int8 vectors (unused leading dims have size 1);
 * elements are moved as 32-bit words, so f32 and i32 share the kernels. */

#define CLG_UNRAVEL(k)                                                                        \
    c = r % shape.s##k;                                                                       \
    r /= shape.s##k;                                                                          \
    d += c * dst_st.s##k;                                                                     \
    s += c * src_st.s##k;

__kernel void copy_strided(__global uint *dst, int dst_off, int8 dst_st,
                           __global const uint *src, int src_off, int8 src_st, int8 shape,
                           int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    int r = i, c, d = dst_off, s = src_off;
    CLG_UNRAVEL(7) CLG_UNRAVEL(6) CLG_UNRAVEL(5) CLG_UNRAVEL(4)
    CLG_UNRAVEL(3) CLG_UNRAVEL(2) CLG_UNRAVEL(1) CLG_UNRAVEL(0)
    dst[d] = src[s];
}

__kernel void fill_strided(__global uint *dst, int dst_off, int8 dst_st, int8 shape, int n,
                           uint value) {
    int i = get_global_id(0);
    if (i >= n) return;
    int8 src_st = (int8)(0);
    int r = i, c, d = dst_off, s = 0;
    CLG_UNRAVEL(7) CLG_UNRAVEL(6) CLG_UNRAVEL(5) CLG_UNRAVEL(4)
    CLG_UNRAVEL(3) CLG_UNRAVEL(2) CLG_UNRAVEL(1) CLG_UNRAVEL(0)
    (void)s;
    dst[d] = value;
}
