/* Strided copies and fills: the kernels behind contiguous, concat, pad and the gradients of
 * slices. Up to 8 dimensions passed as int8 vectors (unused leading dims have size 1, the host
 * merges what it can); elements move as 32-bit words, so f32 and i32 share the kernels.
 * Work-item (x, y) takes rows [y rp, y rp + rp) of the leading seven dims and inner positions
 * [x ch, x ch + ch) of the last: on a CPU device a run of up to a thousand elements (a loop the
 * compiler vectorises, as in generated elementwise kernels), elsewhere ch = rp = 1. */

/* The coordinate of dim k of row index r (consumed from the innermost row dim out) added to
 * the offsets; size-1 dims cost no division. */
#define CLG_ROW_DIM(k, also)                                                                  \
    if (shape.s##k != 1) {                                                                    \
        const int c = r % shape.s##k;                                                         \
        r /= shape.s##k;                                                                      \
        d += c * dst_st.s##k;                                                                 \
        also(k)                                                                               \
    }
#define CLG_ROW_DIMS(also)                                                                    \
    CLG_ROW_DIM(6, also) CLG_ROW_DIM(5, also) CLG_ROW_DIM(4, also) CLG_ROW_DIM(3, also)       \
    CLG_ROW_DIM(2, also) CLG_ROW_DIM(1, also) CLG_ROW_DIM(0, also)
#define CLG_SRC_OFFSET(k) s += c * src_st.s##k;
#define CLG_NO_MORE(k)

#define CLG_RUN_BOUNDS                                                                        \
    const int in0 = get_global_id(0) * ch, in1 = min(shape.s7, in0 + ch);                     \
    const int row0 = get_global_id(1) * rp, row1 = min(rows, row0 + rp);

__kernel void copy_strided(__global uint *dst, int dst_off, int8 dst_st,
                           __global const uint *src, int src_off, int8 src_st, int8 shape,
                           int rows, int ch, int rp) {
    CLG_RUN_BOUNDS
    for (int row = row0; row < row1; ++row) {
        int r = row, d = dst_off, s = src_off;
        CLG_ROW_DIMS(CLG_SRC_OFFSET)
        for (int i = in0; i < in1; ++i) dst[d + i * dst_st.s7] = src[s + i * src_st.s7];
    }
}

__kernel void fill_strided(__global uint *dst, int dst_off, int8 dst_st, int8 shape, int rows,
                           int ch, int rp, uint value) {
    CLG_RUN_BOUNDS
    for (int row = row0; row < row1; ++row) {
        int r = row, d = dst_off;
        CLG_ROW_DIMS(CLG_NO_MORE)
        for (int i = in0; i < in1; ++i) dst[d + i * dst_st.s7] = value;
    }
}
