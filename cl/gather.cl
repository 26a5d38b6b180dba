/* Gathers along an axis and their adjoints: index_select / scatter_add (contiguous tensors
 * viewed as [outer, dim, inner]) and take_along_axis (strided, up to 8 dims); indices are i32.
 * The adjoints loop over indices instead of using atomics, so sums are deterministic
 * (bit-identical run to run). */

/* out[o, c, j] = x[o, idx[c], j], 0 when idx[c] is out of range */
__kernel void index_select(__global uint *out, int out_off, __global const uint *x, int x_off,
                           __global const int *idx, int idx_off, int dim, int count, int inner,
                           int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    int j = i % inner, t = i / inner;
    int c = t % count, o = t / count;
    int k = idx[idx_off + c];
    out[out_off + i] = (k >= 0 && k < dim) ? x[x_off + (o * dim + k) * inner + j] : 0u;
}

/* scatter_add's first pass, one work-item per row k of the output: the positions c with
 * idx[c] == k in ascending order, at perm[range[2k] .. range[2k + 1]) (counting sort: row k's
 * positions start after those of every smaller valid index). O(dim * count) index reads, where
 * walking the indices for every output element cost O(dim * inner * count). */
__kernel void scatter_add_rows(__global const int *idx, int idx_off, int dim, int count,
                               __global int *perm, __global int *range) {
    int k = get_global_id(0);
    if (k >= dim) return;
    int at = 0;
    for (int c = 0; c < count; ++c) {
        int v = idx[idx_off + c];
        at += v >= 0 && v < k;
    }
    range[2 * k] = at;
    for (int c = 0; c < count; ++c)
        if (idx[idx_off + c] == k) perm[at++] = c;
    range[2 * k + 1] = at;
}

/* out[o, k, j] = sum over c with idx[c] == k of src[o, c, j], in ascending c */
__kernel void scatter_add(__global float *out, int out_off, __global const float *src,
                          int src_off, __global const int *perm, __global const int *range,
                          int dim, int count, int inner, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    int j = i % inner, t = i / inner;
    int k = t % dim, o = t / dim;
    float acc = 0.0f;
    for (int p = range[2 * k]; p < range[2 * k + 1]; ++p)
        acc += src[src_off + (o * count + perm[p]) * inner + j];
    out[out_off + i] = acc;
}

/* take_along_axis and its adjoint over up to 8 dims passed as int8 vectors (unused leading
 * dims have size 1). The host zeroes the strides of the gathered axis in the int8 strides and
 * passes them apart (*_sa), so unravelling a coordinate gives the offset of the line. */
#define CLG_TA_UNRAVEL(k)                                                                      \
    c = r % shape.s##k;                                                                        \
    r /= shape.s##k;                                                                           \
    xo += c * x_st.s##k;                                                                       \
    io += c * idx_st.s##k;                                                                     \
    if (k == axis) ca = c;
#define CLG_TA_UNRAVEL_ALL                                                                     \
    CLG_TA_UNRAVEL(7) CLG_TA_UNRAVEL(6) CLG_TA_UNRAVEL(5) CLG_TA_UNRAVEL(4)                    \
    CLG_TA_UNRAVEL(3) CLG_TA_UNRAVEL(2) CLG_TA_UNRAVEL(1) CLG_TA_UNRAVEL(0)

/* out (dense over shape) = x at the index the same coordinate of idx holds along axis; 0 when
 * out of range. 32-bit words: f32 and i32 share it. */
__kernel void take_along_axis(__global uint *out, int out_off, int n, int8 shape, int axis,
                              __global const uint *x, int x_off, int8 x_st, int x_sa, int dim,
                              __global const int *idx, int idx_off, int8 idx_st) {
    int i = get_global_id(0);
    if (i >= n) return;
    int r = i, c, ca = 0, xo = x_off, io = idx_off;
    CLG_TA_UNRAVEL_ALL
    (void)ca;
    int k = idx[io];
    out[out_off + i] = (k >= 0 && k < dim) ? x[xo + k * x_sa] : 0u;
}

/* The adjoint, one work-item per element of dx (dense over shape, axis extent dim):
 * dx[.., j, ..] = sum over t of g[.., t, ..] where idx[.., t, ..] == j, added in order of t.
 * For few indices per line (count small), as Q(s, a) = take_along_axis(q, a) has one. Here x_*
 * describe g. */
__kernel void take_along_axis_backward(__global float *out, int out_off, int n, int8 shape,
                                       int axis,
                                       __global const float *x, int x_off, int8 x_st, int x_sa,
                                       int count, __global const int *idx, int idx_off,
                                       int8 idx_st, int idx_sa) {
    int i = get_global_id(0);
    if (i >= n) return;
    int r = i, c, ca = 0, xo = x_off, io = idx_off;
    CLG_TA_UNRAVEL_ALL
    float acc = 0.0f;
    for (int t = 0; t < count; ++t)
        if (idx[io + t * idx_sa] == ca) acc += x[xo + t * x_sa];
    out[out_off + i] = acc;
}

/* The adjoint for many indices per line: one work-item per line (shape has extent 1 along
 * axis), dx zeroed before; it walks the line's indices in order and adds g into dx, so the
 * sums are the per-element kernel's, bit for bit, in count rather than dim * count steps.
 * out_st: dx's dense strides (the axis's zeroed), out_sa its stride along axis. */
__kernel void take_along_axis_backward_lines(__global float *out, int out_off, int lines,
                                             int8 shape, int axis, int8 out_st, int out_sa, int dim,
                                             __global const float *x, int x_off, int8 x_st,
                                             int x_sa, int count, __global const int *idx,
                                             int idx_off, int8 idx_st, int idx_sa) {
    int i = get_global_id(0);
    if (i >= lines) return;
    int r = i, c, ca = 0, xo = x_off, io = idx_off, oo = out_off;
    CLG_TA_UNRAVEL(7) oo += c * out_st.s7;
    CLG_TA_UNRAVEL(6) oo += c * out_st.s6;
    CLG_TA_UNRAVEL(5) oo += c * out_st.s5;
    CLG_TA_UNRAVEL(4) oo += c * out_st.s4;
    CLG_TA_UNRAVEL(3) oo += c * out_st.s3;
    CLG_TA_UNRAVEL(2) oo += c * out_st.s2;
    CLG_TA_UNRAVEL(1) oo += c * out_st.s1;
    CLG_TA_UNRAVEL(0) oo += c * out_st.s0;
    (void)ca;
    for (int t = 0; t < count; ++t) {
        int k = idx[io + t * idx_sa];
        if (k >= 0 && k < dim) out[oo + k * out_sa] += x[xo + t * x_sa];
    }
}
