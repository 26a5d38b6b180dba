/* Gather along an axis and its adjoint. Tensors are contiguous and viewed as
 * [outer, dim, inner]; indices are i32. The scatter loops over indices per output element
 * instead of using atomics, so sums are deterministic (bit-identical run to run). */

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

/* out[o, k, j] = sum over c with idx[c] == k of src[o, c, j] */
__kernel void scatter_add(__global float *out, int out_off, __global const float *src,
                          int src_off, __global const int *idx, int idx_off, int dim, int count,
                          int inner, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    int j = i % inner, t = i / inner;
    int k = t % dim, o = t / dim;
    float acc = 0.0f;
    for (int c = 0; c < count; ++c)
        if (idx[idx_off + c] == k) acc += src[src_off + (o * count + c) * inner + j];
    out[out_off + i] = acc;
}
