/* Sampling along the last axis (multinomial, top-k), one work-group per row; built after
 * cl/random.cl (Philox). The k largest of a row come from a radix select over order-preserving
 * keys: four passes of 8 bits count the keys that share the prefix found so far, which leaves
 * the k-th largest key and how many of its ties to keep (the lower indices). Counts are
 * integers and sums have a fixed order, so results do not depend on scheduling. Rows are read
 * at a row offset (the leading dims' shape and strides as int8) with a stride along the row. */

#define CLG_SAMPLE_MAX_LOCAL 256

/* Larger float, larger key; -0 ties +0; NaN above +inf. */
uint clg_sample_key(float v) {
    if (v == 0.0f) v = 0.0f;
    uint u = as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

#define CLG_SAMPLE_UNRAVEL(k)                                                                  \
    c = r % shape.s##k;                                                                        \
    r /= shape.s##k;                                                                           \
    o += c * st.s##k;

int clg_sample_row(int row, int8 shape, int8 st) {
    int r = row, c, o = 0;
    CLG_SAMPLE_UNRAVEL(7) CLG_SAMPLE_UNRAVEL(6) CLG_SAMPLE_UNRAVEL(5) CLG_SAMPLE_UNRAVEL(4)
    CLG_SAMPLE_UNRAVEL(3) CLG_SAMPLE_UNRAVEL(2) CLG_SAMPLE_UNRAVEL(1) CLG_SAMPLE_UNRAVEL(0)
    return o;
}

/* Work-item lid's contiguous share [*lo, *hi) of n elements. */
void clg_sample_chunk(int n, int *lo, int *hi) {
    int lid = get_local_id(0), chunk = (n + (int)get_local_size(0) - 1) / (int)get_local_size(0);
    *lo = min(n, lid * chunk);
    *hi = min(n, *lo + chunk);
}

/* Called by the whole group: afterwards element i (key q) is among the k largest of the row
 * exactly when q > sh[0] or (q == sh[0] and i <= sh[1]); 1 <= k <= n (k = n selects the
 * smallest and its last tie). No barrier sits in a branch, even a uniform one: pocl 5 ran
 * such a kernel's work-items one after another, past the barriers. */
void clg_topk_cut(__global const float *x, int xo, int xs, int n, int k, __local int *hist,
                  __local int *cnt, __local uint *sh) {
    const int lid = get_local_id(0), L = get_local_size(0);
    uint prefix = 0u, mask = 0u;
    int need = k; /* how many of the keys matching prefix are still to keep */
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = lid; b < 256; b += L)
            hist[b] = 0;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i = lid; i < n; i += L) {
            uint q = clg_sample_key(x[xo + i * xs]);
            if ((q & mask) == prefix) atomic_inc(&hist[(q >> shift) & 255u]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0) {
            int above = 0, b = 255;
            while (above + hist[b] < need)
                above += hist[b--];
            sh[2] = prefix | ((uint)b << shift);
            sh[3] = (uint)(need - above);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        prefix = sh[2];
        need = (int)sh[3];
        mask |= 255u << shift;
    }
    /* the need-th tie of prefix in index order: count ties per contiguous share */
    int lo, hi, ties = 0;
    clg_sample_chunk(n, &lo, &hi);
    for (int i = lo; i < hi; ++i)
        ties += clg_sample_key(x[xo + i * xs]) == prefix;
    cnt[lid] = ties;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        int before = 0, l = 0;
        while (before + cnt[l] < need)
            before += cnt[l++];
        sh[2] = (uint)l;
        sh[3] = (uint)(need - before);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == (int)sh[2]) {
        int left = (int)sh[3];
        for (int i = lo; i < hi; ++i)
            if (clg_sample_key(x[xo + i * xs]) == prefix && --left == 0) {
                sh[1] = (uint)i;
                break;
            }
        sh[0] = prefix;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* The unnormalised probability of element i: 0 outside the top k, exp((v - max) / T) inside;
 * an element equal to the maximum weighs 1 (so rows of -INFINITY draw uniformly). */
float clg_sample_weight(float v, int i, float m, float inv_t, uint tkey, int cut) {
    uint q = clg_sample_key(v);
    if (!(q > tkey || (q == tkey && i <= cut))) return 0.0f;
    return v == m ? 1.0f : exp((v - m) * inv_t);
}

/* out[row] = an index drawn from softmax(x[row] / T) over the elements the cut (tkey, cut)
 * keeps. The shares' sums are scanned in order by one work-item, the draw u * total picks the
 * share whose interval holds it, and that share's work-item finds the element, adding in the
 * order it summed. Called by the whole group, after the row's xo is known. */
void clg_multinomial_row(__global int *out, int out_off, __global const float *x, int xo,
                         int xs, int n, uint tkey, int cut, float inv_t, uint stream,
                         uint key_lo, uint key_hi, uint run_lo, uint run_hi, __local float *part,
                         __local float *fsh) {
    const int row = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    float m = -INFINITY;
    for (int i = lid; i < n; i += L)
        m = fmax(m, x[xo + i * xs]);
    part[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = L / 2; s > 0; s >>= 1) {
        if (lid < s) part[lid] = fmax(part[lid], part[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = part[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    int lo, hi;
    clg_sample_chunk(n, &lo, &hi);
    float sum = 0.0f;
    for (int i = lo; i < hi; ++i)
        sum += clg_sample_weight(x[xo + i * xs], i, m, inv_t, tkey, cut);
    part[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        float acc = 0.0f;
        for (int l = 0; l < L; ++l) {
            float c = part[l];
            part[l] = acc;
            acc += c;
        }
        /* the maximum weighs 1, so acc >= 1; the draw stays below acc */
        uint4 r = clg_philox((uint4)((uint)row, stream, run_lo, run_hi), (uint2)(key_lo, key_hi));
        fsh[0] = acc;
        fsh[1] = fmin(clg_u01(r.x) * acc, nextafter(acc, 0.0f));
        out[out_off + row] = -1; /* stays when a NaN makes every comparison below false */
    }
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    const float off = part[lid], target = fsh[1];
    const float next = lid + 1 < L ? part[lid + 1] : fsh[0];
    if (off <= target && target < next) {
        float p = 0.0f;
        for (int i = lo; i < hi; ++i) {
            float w = clg_sample_weight(x[xo + i * xs], i, m, inv_t, tkey, cut);
            p += w;
            if (w > 0.0f && off + p > target) {
                out[out_off + row] = i;
                break;
            }
        }
    }
}


/* multinomial over the row's top k (1 <= k < n). */
__kernel void multinomial(__global int *out, int out_off, __global const float *x, int x_off,
                          int8 shape, int8 st, int xs, int n, int k, float inv_t, uint stream,
                          uint key_lo, uint key_hi, uint run_lo, uint run_hi) {
    __local int hist[256];
    __local int cnt[CLG_SAMPLE_MAX_LOCAL];
    __local float part[CLG_SAMPLE_MAX_LOCAL];
    __local uint sh[4];
    __local float fsh[2];
    const int xo = x_off + clg_sample_row(get_group_id(0), shape, st);
    clg_topk_cut(x, xo, xs, n, k, hist, cnt, sh);
    clg_multinomial_row(out, out_off, x, xo, xs, n, sh[0], (int)sh[1], inv_t, stream, key_lo,
                        key_hi, run_lo, run_hi, part, fsh);
}

/* multinomial over the whole row: no select (every key is >= 0). k is unused. */
__kernel void multinomial_all(__global int *out, int out_off, __global const float *x,
                              int x_off, int8 shape, int8 st, int xs, int n, int k, float inv_t,
                              uint stream, uint key_lo, uint key_hi, uint run_lo, uint run_hi) {
    __local float part[CLG_SAMPLE_MAX_LOCAL];
    __local float fsh[2];
    (void)k;
    const int xo = x_off + clg_sample_row(get_group_id(0), shape, st);
    clg_multinomial_row(out, out_off, x, xo, xs, n, 0u, n - 1, inv_t, stream, key_lo, key_hi,
                        run_lo, run_hi, part, fsh);
}

/* out[row, :] = the indices of the row's k largest, by value descending then index. The kept
 * indices are packed into scratch[row, :] in index order; each one's place is the number of
 * kept elements that come before it. */
__kernel void topk(__global int *out, int out_off, __global int *scratch,
                   __global const float *x, int x_off, int8 shape, int8 st, int xs, int n,
                   int k) {
    __local int hist[256];
    __local int cnt[CLG_SAMPLE_MAX_LOCAL];
    __local uint sh[4];
    const int row = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    const int xo = x_off + clg_sample_row(row, shape, st);
    clg_topk_cut(x, xo, xs, n, k, hist, cnt, sh);
    const uint tkey = sh[0];
    const int cut = (int)sh[1];

    int lo, hi, kept = 0;
    clg_sample_chunk(n, &lo, &hi);
    for (int i = lo; i < hi; ++i) {
        uint q = clg_sample_key(x[xo + i * xs]);
        kept += q > tkey || (q == tkey && i <= cut);
    }
    cnt[lid] = kept;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        int acc = 0;
        for (int l = 0; l < L; ++l) {
            int c = cnt[l];
            cnt[l] = acc;
            acc += c;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    __global int *pack = scratch + (size_t)row * (size_t)k;
    int pos = cnt[lid];
    for (int i = lo; i < hi; ++i) {
        uint q = clg_sample_key(x[xo + i * xs]);
        if (q > tkey || (q == tkey && i <= cut)) pack[pos++] = i;
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (int c = lid; c < k; c += L) {
        uint qc = clg_sample_key(x[xo + pack[c] * xs]);
        int rank = 0;
        for (int d = 0; d < k; ++d) {
            uint qd = clg_sample_key(x[xo + pack[d] * xs]);
            rank += qd > qc || (qd == qc && d < c);
        }
        out[out_off + row * k + rank] = pack[c];
    }
}
