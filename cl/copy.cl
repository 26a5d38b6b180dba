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

/* dst, dense [rows, A, inner] seen as rows of A * inner, from up to four pieces along A: piece
 * k's element j lies at a = st_k + sp_k j (j < n_k), read at src_k[off_k + row so_k + j sa_k +
 * i si_k]; where no piece lies, value. A work-item's run is cut into blocks of consecutive a
 * that one piece (of step 1) or one gap covers, each copied or filled by plain loops. */
#define CLG_PIECE_PARAMS(k)                                                                   \
    , __global const uint *src##k, int off##k, int so##k, int sa##k, int si##k, int st##k,    \
        int sp##k, int n##k
/* Piece k at a: its source row (s), strides and how many a from here it covers (len); for a
 * gap, len stops at the next piece's start. */
#define CLG_PIECE_FIND(k)                                                                     \
    if (!s && n##k > 0) {                                                                     \
        const int q = a - st##k, j = sp##k == 1 ? q : q / sp##k;                              \
        if (q >= 0 && j < n##k && j * sp##k == q) {                                           \
            s = src##k + off##k + row * so##k + j * sa##k;                                    \
            si = si##k;                                                                       \
            sa = sa##k;                                                                       \
            len = sp##k == 1 ? n##k - j : 1;                                                  \
        } else if (q < 0) {                                                                   \
            len = min(len, -q);                                                               \
        } else if (j < n##k) {                                                                \
            len = 1;                                                                          \
        }                                                                                     \
    }

__kernel void embed_pieces(__global uint *dst, int dst_off, int A, int inner, int rows, int ch,
                           int rp, uint value CLG_PIECE_PARAMS(0) CLG_PIECE_PARAMS(1)
                               CLG_PIECE_PARAMS(2) CLG_PIECE_PARAMS(3)) {
    const int width = A * inner;
    const int in0 = get_global_id(0) * ch, in1 = min(width, in0 + ch);
    const int row0 = get_global_id(1) * rp, row1 = min(rows, row0 + rp);
    for (int row = row0; row < row1; ++row) {
        __global uint *d = dst + dst_off + row * width;
        for (int e = in0; e < in1;) {
            const int a = e / inner;
            __global const uint *s = 0;
            int si = 0, sa = 0, len = A - a;
            CLG_PIECE_FIND(0) CLG_PIECE_FIND(1) CLG_PIECE_FIND(2) CLG_PIECE_FIND(3)
            const int end = min(in1, (a + len) * inner);
            if (!s) {
                for (int x = e; x < end; ++x) d[x] = value;
            } else if (inner == 1) {
                for (int x = e; x < end; ++x) d[x] = s[(x - a) * sa];
            } else {
                for (int aa = a, x = e; x < end; ++aa) {
                    const int x1 = min(end, (aa + 1) * inner), b = aa * inner;
                    __global const uint *sr = s + (aa - a) * sa;
                    for (; x < x1; ++x) d[x] = sr[(x - b) * si];
                }
            }
            e = end;
        }
    }
}
