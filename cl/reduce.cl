/* The second stage of a split reduction: each output combines the partial results its parts
 * wrote (in part order, so sums are the same run to run). op: 0 sum (then times scale),
 * 1 max, 2 min, NaN winning as in the first stage. */
__kernel void reduce_parts(__global float *out, int out_off, __global const float *parts,
                           int nparts, int n_out, int op, float scale) {
    int o = get_global_id(0);
    if (o >= n_out) return;
    __global const float *p = parts + o * nparts;
    float acc = p[0];
    for (int i = 1; i < nparts; ++i) {
        float v = p[i];
        if (op == 0)
            acc += v;
        else if (op == 1)
            acc = (isnan(v) || v > acc) ? v : acc;
        else
            acc = (isnan(v) || v < acc) ? v : acc;
    }
    out[out_off + o] = op == 0 ? acc * scale : acc;
}
