/* Fused attention, forward and backward (ops/attention.c), never storing the T x S scores.
 * q [B, T, D], k [B, S, D], v [B, S, Dv] with the batch B seen as up to three dims n0 x n1 x n2
 * with per-operand strides (x, y, z; 0 where broadcast) and a row stride (w); the last dim is
 * dense. The mask is read at (row i, column j) with its row stride w and column stride m_col.
 * "rows" kernels (CPU devices) give a work-item one row and read the other side from global
 * memory (the cache does the staging); "tiles" kernels (GPUs) stage the other side in local
 * memory, bk rows at a time, and loop over ATT_DMAX with zero padding so the private arrays
 * live in registers. Causal: query i sees the keys j <= i + (S - T). */

#ifndef ATT_DMAX
#define ATT_DMAX 128 /* private arrays: D and Dv are at most this */
#endif
#define ATT_BK 16    /* rows kernels: keys per online-softmax step */
#define ATT_BKMAX 32 /* tiles kernels: most rows in one local tile */

/* element offset of batch b in an operand with batch strides st.xyz */
inline int batch_off(int b, int n1, int n2, int4 st) {
    int r = b / n2;
    return (r / n1) * st.x + (r % n1) * st.y + (b % n2) * st.z;
}

inline int key_end(int i, int T, int S, int causal) {
    return causal ? min(S, i + S - T + 1) : S;
}

/* Dense rows of n floats: a . b, and y += p x. In float4 steps (CPU devices turn them into
 * SIMD instructions; a row has no alignment guarantee, so vload/vstore), then the tail. */
inline float dot_row(const float *a, __global const float *b, int n) {
    float4 s4 = (float4)(0.0f);
    int d = 0;
    for (; d + 4 <= n; d += 4) s4 = fma(vload4(0, a + d), vload4(0, b + d), s4);
    float s = (s4.x + s4.y) + (s4.z + s4.w);
    for (; d < n; ++d) s = fma(a[d], b[d], s);
    return s;
}

/* Two rows at once (the backward's steps in pairs): a . b0, a . b1 and y += p0 x0 + p1 x1,
 * reading a, and y, once for both. */
inline float2 dot2_row(const float *a, __global const float *b0, __global const float *b1,
                       int n) {
    float4 s0 = (float4)(0.0f), s1 = (float4)(0.0f);
    int d = 0;
    for (; d + 4 <= n; d += 4) {
        float4 a4 = vload4(0, a + d);
        s0 = fma(a4, vload4(0, b0 + d), s0);
        s1 = fma(a4, vload4(0, b1 + d), s1);
    }
    float2 s = (float2)((s0.x + s0.y) + (s0.z + s0.w), (s1.x + s1.y) + (s1.z + s1.w));
    for (; d < n; ++d) s = fma((float2)(a[d]), (float2)(b0[d], b1[d]), s);
    return s;
}

inline void axpy2_row(float *y, float p0, __global const float *x0, float p1,
                      __global const float *x1, int n) {
    int d = 0;
    for (; d + 4 <= n; d += 4) {
        float4 y4 = fma((float4)(p0), vload4(0, x0 + d), vload4(0, y + d));
        vstore4(fma((float4)(p1), vload4(0, x1 + d), y4), 0, y + d);
    }
    for (; d < n; ++d) y[d] = fma(p1, x1[d], fma(p0, x0[d], y[d]));
}

inline void axpy_row(float *y, float p, __global const float *x, int n) {
    int d = 0;
    for (; d + 4 <= n; d += 4)
        vstore4(fma((float4)(p), vload4(0, x + d), vload4(0, y + d)), 0, y + d);
    for (; d < n; ++d) y[d] = fma(p, x[d], y[d]);
}

/* ---- forward: out holds O [B, T, Dv] at o_off and L [B, T] (the rows' logsumexp, +inf for
 * a row with every key masked, whose O is 0) at l_off ---- */

__kernel void attention_fwd_rows(__global float *out, int o_off, int l_off,
                                 __global const float *q, int q_off, int4 qs,
                                 __global const float *k, int k_off, int4 ks,
                                 __global const float *v, int v_off, int4 vs,
                                 __global const float *mask, int m_off, int4 ms, int m_col,
                                 int has_mask, int n1, int n2, int T, int S, int D, int Dv,
                                 float scale, int causal) {
    int i = get_global_id(0), b = get_global_id(1);
    if (i >= T) return;
    __global const float *qr = q + q_off + batch_off(b, n1, n2, qs) + i * qs.w;
    __global const float *kb = k + k_off + batch_off(b, n1, n2, ks);
    __global const float *vb = v + v_off + batch_off(b, n1, n2, vs);
    __global const float *mr = mask + m_off + batch_off(b, n1, n2, ms) + i * ms.w;
    float qv[ATT_DMAX], acc[ATT_DMAX];
    for (int d = 0; d < D; ++d) qv[d] = qr[d] * scale;
    for (int d = 0; d < Dv; ++d) acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    int jend = key_end(i, T, S, causal);
    for (int j0 = 0; j0 < jend; j0 += ATT_BK) {
        int nb = min(ATT_BK, jend - j0);
        float s[ATT_BK], bm = -INFINITY;
        int jj = 0;
        for (; jj + 2 <= nb; jj += 2) {
            __global const float *k0 = kb + (j0 + jj) * ks.w;
            float2 a = dot2_row(qv, k0, k0 + ks.w, D);
            if (has_mask) a += (float2)(mr[(j0 + jj) * m_col], mr[(j0 + jj + 1) * m_col]);
            s[jj] = a.x;
            s[jj + 1] = a.y;
            /* fmax drops a NaN: keep it, so that NaN scores give NaN as the composite does */
            bm = isnan(a.x) || isnan(bm) ? a.x + bm : fmax(bm, a.x);
            bm = isnan(a.y) || isnan(bm) ? a.y + bm : fmax(bm, a.y);
        }
        for (; jj < nb; ++jj) {
            float a = dot_row(qv, kb + (j0 + jj) * ks.w, D);
            if (has_mask) a += mr[(j0 + jj) * m_col];
            s[jj] = a;
            bm = isnan(a) || isnan(bm) ? a + bm : fmax(bm, a);
        }
        if (bm == -INFINITY) continue; /* every key of the block masked */
        float mn = isnan(bm) ? bm : fmax(m, bm);
        float c = exp(m - mn); /* 0 on the first block (m = -inf) */
        l *= c;
        for (int d = 0; d < Dv; ++d) acc[d] *= c;
        for (jj = 0; jj + 2 <= nb; jj += 2) {
            __global const float *v0 = vb + (j0 + jj) * vs.w;
            float2 p = exp((float2)(s[jj], s[jj + 1]) - mn);
            l += p.x + p.y;
            axpy2_row(acc, p.x, v0, p.y, v0 + vs.w, Dv);
        }
        for (; jj < nb; ++jj) {
            float p = exp(s[jj] - mn);
            l += p;
            axpy_row(acc, p, vb + (j0 + jj) * vs.w, Dv);
        }
        m = mn;
    }
    int row = b * T + i;
    float inv = l == 0.0f ? 0.0f : 1.0f / l;
    for (int d = 0; d < Dv; ++d) out[o_off + row * Dv + d] = acc[d] * inv;
    out[l_off + row] = l == 0.0f ? INFINITY : m + log(l);
}

/* Rows [0, n) of x (row stride rs, dense rows of width w) into tile[n][ATT_DMAX], zero
 * beyond w, shared out over the work-group's lsz work-items. */
inline void stage(__local float *tile, __global const float *x, int rs, int n, int w, int lid,
                  int lsz) {
    for (int e = lid; e < n * ATT_DMAX; e += lsz) {
        int r = e / ATT_DMAX, d = e % ATT_DMAX;
        tile[e] = d < w ? x[r * rs + d] : 0.0f;
    }
}

__kernel void attention_fwd_tiles(__global float *out, int o_off, int l_off,
                                  __global const float *q, int q_off, int4 qs,
                                  __global const float *k, int k_off, int4 ks,
                                  __global const float *v, int v_off, int4 vs,
                                  __global const float *mask, int m_off, int4 ms, int m_col,
                                  int has_mask, int n1, int n2, int T, int S, int D, int Dv,
                                  float scale, int causal, int bk, __local float *kt,
                                  __local float *vt) {
    int lid = get_local_id(0), lsz = get_local_size(0);
    int i = get_global_id(0), b = get_global_id(1);
    bool live = i < T;
    int ic = min(i, T - 1);
    __global const float *qr = q + q_off + batch_off(b, n1, n2, qs) + ic * qs.w;
    __global const float *kb = k + k_off + batch_off(b, n1, n2, ks);
    __global const float *vb = v + v_off + batch_off(b, n1, n2, vs);
    __global const float *mr = mask + m_off + batch_off(b, n1, n2, ms) + ic * ms.w;
    float qv[ATT_DMAX], acc[ATT_DMAX];
    for (int d = 0; d < ATT_DMAX; ++d) {
        qv[d] = d < D ? qr[d] * scale : 0.0f;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    int jend = live ? key_end(i, T, S, causal) : 0;
    /* the group's last live row sees the most keys: every work-item runs that many tiles */
    int gend = key_end(min((int)get_group_id(0) * lsz + lsz - 1, T - 1), T, S, causal);
    for (int j0 = 0; j0 < gend; j0 += bk) {
        int nt = min(bk, gend - j0);
        barrier(CLK_LOCAL_MEM_FENCE);
        stage(kt, kb + j0 * ks.w, ks.w, nt, D, lid, lsz);
        stage(vt, vb + j0 * vs.w, vs.w, nt, Dv, lid, lsz);
        barrier(CLK_LOCAL_MEM_FENCE);
        int nb = clamp(jend - j0, 0, nt);
        float s[ATT_BKMAX], bm = -INFINITY;
        for (int jj = 0; jj < nb; ++jj) {
            float a = 0.0f;
            for (int d = 0; d < ATT_DMAX; ++d) a = fma(qv[d], kt[jj * ATT_DMAX + d], a);
            if (has_mask) a += mr[(j0 + jj) * m_col];
            s[jj] = a;
            bm = isnan(a) || isnan(bm) ? a + bm : fmax(bm, a);
        }
        if (bm == -INFINITY) continue;
        float mn = isnan(bm) ? bm : fmax(m, bm);
        float c = exp(m - mn);
        l *= c;
        for (int d = 0; d < ATT_DMAX; ++d) acc[d] *= c;
        for (int jj = 0; jj < nb; ++jj) {
            float p = exp(s[jj] - mn);
            l += p;
            for (int d = 0; d < ATT_DMAX; ++d) acc[d] = fma(p, vt[jj * ATT_DMAX + d], acc[d]);
        }
        m = mn;
    }
    if (!live) return;
    int row = b * T + i;
    float inv = l == 0.0f ? 0.0f : 1.0f / l;
    for (int d = 0; d < Dv; ++d) out[o_off + row * Dv + d] = acc[d] * inv;
    out[l_off + row] = l == 0.0f ? INFINITY : m + log(l);
}

/* ---- backward, per query row: Di = dO_i . O_i and dQ_i = scale sum_j dS_ij K_j, where
 * P_ij = exp(scale q_i . k_j + mask_ij - L_i), dP_ij = dO_i . v_j, dS_ij = P_ij (dP_ij - Di).
 * out holds dQ [B, T, D] at dq_off and Di [B, T] at di_off. O, L are dense [B, T, *]. ---- */

__kernel void attention_bwd_q_rows(__global float *out, int dq_off, int di_off,
                                   __global const float *q, int q_off, int4 qs,
                                   __global const float *k, int k_off, int4 ks,
                                   __global const float *v, int v_off, int4 vs,
                                   __global const float *mask, int m_off, int4 ms, int m_col,
                                   int has_mask, __global const float *o, int o_off,
                                   __global const float *lse, int l_off,
                                   __global const float *dout, int g_off, int4 gs, int n1,
                                   int n2, int T, int S, int D, int Dv, float scale,
                                   int causal) {
    int i = get_global_id(0), b = get_global_id(1);
    if (i >= T) return;
    int row = b * T + i;
    __global const float *qr = q + q_off + batch_off(b, n1, n2, qs) + i * qs.w;
    __global const float *kb = k + k_off + batch_off(b, n1, n2, ks);
    __global const float *vb = v + v_off + batch_off(b, n1, n2, vs);
    __global const float *mr = mask + m_off + batch_off(b, n1, n2, ms) + i * ms.w;
    __global const float *gr = dout + g_off + batch_off(b, n1, n2, gs) + i * gs.w;
    __global const float *orow = o + o_off + row * Dv;
    float qv[ATT_DMAX], gv[ATT_DMAX], dq[ATT_DMAX];
    float di = 0.0f;
    for (int d = 0; d < D; ++d) {
        qv[d] = qr[d] * scale;
        dq[d] = 0.0f;
    }
    for (int d = 0; d < Dv; ++d) {
        gv[d] = gr[d];
        di = fma(gv[d], orow[d], di);
    }
    float li = lse[l_off + row];
    int jend = key_end(i, T, S, causal);
    int j = 0;
    for (; j + 2 <= jend; j += 2) {
        __global const float *k0 = kb + j * ks.w, *k1 = k0 + ks.w;
        __global const float *v0 = vb + j * vs.w;
        float2 a = dot2_row(qv, k0, k1, D);
        if (has_mask) a += (float2)(mr[j * m_col], mr[(j + 1) * m_col]);
        float2 p = exp(a - li);
        float2 ds = p * (dot2_row(gv, v0, v0 + vs.w, Dv) - di);
        axpy2_row(dq, ds.x, k0, ds.y, k1, D);
    }
    for (; j < jend; ++j) {
        __global const float *kr = kb + j * ks.w;
        float a = dot_row(qv, kr, D);
        if (has_mask) a += mr[j * m_col];
        float p = exp(a - li);
        if (p == 0.0f) continue;
        float ds = p * (dot_row(gv, vb + j * vs.w, Dv) - di);
        axpy_row(dq, ds, kr, D);
    }
    for (int d = 0; d < D; ++d) out[dq_off + row * D + d] = dq[d] * scale;
    out[di_off + row] = di;
}

__kernel void attention_bwd_q_tiles(__global float *out, int dq_off, int di_off,
                                    __global const float *q, int q_off, int4 qs,
                                    __global const float *k, int k_off, int4 ks,
                                    __global const float *v, int v_off, int4 vs,
                                    __global const float *mask, int m_off, int4 ms, int m_col,
                                    int has_mask, __global const float *o, int o_off,
                                    __global const float *lse, int l_off,
                                    __global const float *dout, int g_off, int4 gs, int n1,
                                    int n2, int T, int S, int D, int Dv, float scale,
                                    int causal, int bk, __local float *kt, __local float *vt) {
    int lid = get_local_id(0), lsz = get_local_size(0);
    int i = get_global_id(0), b = get_global_id(1);
    bool live = i < T;
    int ic = min(i, T - 1), row = b * T + ic;
    __global const float *qr = q + q_off + batch_off(b, n1, n2, qs) + ic * qs.w;
    __global const float *kb = k + k_off + batch_off(b, n1, n2, ks);
    __global const float *vb = v + v_off + batch_off(b, n1, n2, vs);
    __global const float *mr = mask + m_off + batch_off(b, n1, n2, ms) + ic * ms.w;
    __global const float *gr = dout + g_off + batch_off(b, n1, n2, gs) + ic * gs.w;
    __global const float *orow = o + o_off + row * Dv;
    float qv[ATT_DMAX], gv[ATT_DMAX], dq[ATT_DMAX];
    float di = 0.0f;
    for (int d = 0; d < ATT_DMAX; ++d) {
        qv[d] = d < D ? qr[d] * scale : 0.0f;
        gv[d] = d < Dv ? gr[d] : 0.0f;
        di = d < Dv ? fma(gv[d], orow[d], di) : di;
        dq[d] = 0.0f;
    }
    float li = lse[l_off + row];
    int jend = live ? key_end(i, T, S, causal) : 0;
    int gend = key_end(min((int)get_group_id(0) * lsz + lsz - 1, T - 1), T, S, causal);
    for (int j0 = 0; j0 < gend; j0 += bk) {
        int nt = min(bk, gend - j0);
        barrier(CLK_LOCAL_MEM_FENCE);
        stage(kt, kb + j0 * ks.w, ks.w, nt, D, lid, lsz);
        stage(vt, vb + j0 * vs.w, vs.w, nt, Dv, lid, lsz);
        barrier(CLK_LOCAL_MEM_FENCE);
        int nb = clamp(jend - j0, 0, nt);
        for (int jj = 0; jj < nb; ++jj) {
            float a = 0.0f, dp = 0.0f;
            for (int d = 0; d < ATT_DMAX; ++d) a = fma(qv[d], kt[jj * ATT_DMAX + d], a);
            if (has_mask) a += mr[(j0 + jj) * m_col];
            float p = exp(a - li);
            for (int d = 0; d < ATT_DMAX; ++d) dp = fma(gv[d], vt[jj * ATT_DMAX + d], dp);
            float ds = p * (dp - di);
            for (int d = 0; d < ATT_DMAX; ++d) dq[d] = fma(ds, kt[jj * ATT_DMAX + d], dq[d]);
        }
    }
    if (!live) return;
    for (int d = 0; d < D; ++d) out[dq_off + row * D + d] = dq[d] * scale;
    out[di_off + row] = di;
}

/* ---- backward, per key row: dV_j = sum_i P_ij dO_i and dK_j = scale sum_i dS_ij q_i over
 * the queries that see key j (causal: i >= j - (S - T)). out holds dK [B, S, D] at dk_off and
 * dV [B, S, Dv] at dv_off; L and Di are dense [B, T]. ---- */

__kernel void attention_bwd_kv_rows(__global float *out, int dk_off, int dv_off,
                                    __global const float *q, int q_off, int4 qs,
                                    __global const float *k, int k_off, int4 ks,
                                    __global const float *v, int v_off, int4 vs,
                                    __global const float *mask, int m_off, int4 ms, int m_col,
                                    int has_mask, __global const float *lse, int l_off,
                                    __global const float *dio, int di_off,
                                    __global const float *dout, int g_off, int4 gs, int n1,
                                    int n2, int T, int S, int D, int Dv, float scale,
                                    int causal) {
    int j = get_global_id(0), b = get_global_id(1);
    if (j >= S) return;
    __global const float *qb = q + q_off + batch_off(b, n1, n2, qs);
    __global const float *kr = k + k_off + batch_off(b, n1, n2, ks) + j * ks.w;
    __global const float *vr = v + v_off + batch_off(b, n1, n2, vs) + j * vs.w;
    __global const float *mc = mask + m_off + batch_off(b, n1, n2, ms) + j * m_col;
    __global const float *gb = dout + g_off + batch_off(b, n1, n2, gs);
    __global const float *lb = lse + l_off + b * T, *db = dio + di_off + b * T;
    float kv[ATT_DMAX], vv[ATT_DMAX], dk[ATT_DMAX], dv[ATT_DMAX];
    for (int d = 0; d < D; ++d) {
        kv[d] = kr[d] * scale;
        dk[d] = 0.0f;
    }
    for (int d = 0; d < Dv; ++d) {
        vv[d] = vr[d];
        dv[d] = 0.0f;
    }
    int i0 = causal ? max(0, j - (S - T)) : 0;
    int i = i0;
    for (; i + 2 <= T; i += 2) {
        __global const float *q0 = qb + i * qs.w, *q1 = q0 + qs.w;
        __global const float *g0 = gb + i * gs.w, *g1 = g0 + gs.w;
        float2 a = dot2_row(kv, q0, q1, D);
        if (has_mask) a += (float2)(mc[i * ms.w], mc[(i + 1) * ms.w]);
        float2 p = exp(a - (float2)(lb[i], lb[i + 1]));
        axpy2_row(dv, p.x, g0, p.y, g1, Dv);
        float2 ds = p * (dot2_row(vv, g0, g1, Dv) - (float2)(db[i], db[i + 1]));
        axpy2_row(dk, ds.x, q0, ds.y, q1, D);
    }
    for (; i < T; ++i) {
        __global const float *qr = qb + i * qs.w, *gr = gb + i * gs.w;
        float a = dot_row(kv, qr, D);
        if (has_mask) a += mc[i * ms.w];
        float p = exp(a - lb[i]);
        if (p == 0.0f) continue;
        axpy_row(dv, p, gr, Dv);
        float ds = p * (dot_row(vv, gr, Dv) - db[i]);
        axpy_row(dk, ds, qr, D);
    }
    int row = b * S + j;
    for (int d = 0; d < D; ++d) out[dk_off + row * D + d] = dk[d] * scale;
    for (int d = 0; d < Dv; ++d) out[dv_off + row * Dv + d] = dv[d];
}

__kernel void attention_bwd_kv_tiles(__global float *out, int dk_off, int dv_off,
                                     __global const float *q, int q_off, int4 qs,
                                     __global const float *k, int k_off, int4 ks,
                                     __global const float *v, int v_off, int4 vs,
                                     __global const float *mask, int m_off, int4 ms,
                                     int m_col, int has_mask, __global const float *lse,
                                     int l_off, __global const float *dio, int di_off,
                                     __global const float *dout, int g_off, int4 gs, int n1,
                                     int n2, int T, int S, int D, int Dv, float scale,
                                     int causal, int bk, __local float *qt, __local float *gt,
                                     __local float *lt) {
    int lid = get_local_id(0), lsz = get_local_size(0);
    int j = get_global_id(0), b = get_global_id(1);
    bool live = j < S;
    int jc = min(j, S - 1);
    __global const float *qb = q + q_off + batch_off(b, n1, n2, qs);
    __global const float *kr = k + k_off + batch_off(b, n1, n2, ks) + jc * ks.w;
    __global const float *vr = v + v_off + batch_off(b, n1, n2, vs) + jc * vs.w;
    __global const float *mc = mask + m_off + batch_off(b, n1, n2, ms) + jc * m_col;
    __global const float *gb = dout + g_off + batch_off(b, n1, n2, gs);
    __global const float *lb = lse + l_off + b * T, *db = dio + di_off + b * T;
    float kv[ATT_DMAX], vv[ATT_DMAX], dk[ATT_DMAX], dv[ATT_DMAX];
    for (int d = 0; d < ATT_DMAX; ++d) {
        kv[d] = d < D ? kr[d] * scale : 0.0f;
        vv[d] = d < Dv ? vr[d] : 0.0f;
        dk[d] = dv[d] = 0.0f;
    }
    int i0 = live && causal ? max(0, j - (S - T)) : 0;
    if (!live) i0 = T;
    /* the group's first key is seen by the most queries */
    int g0 = causal ? max(0, (int)get_group_id(0) * lsz - (S - T)) : 0;
    for (int t0 = g0; t0 < T; t0 += bk) {
        int nt = min(bk, T - t0);
        barrier(CLK_LOCAL_MEM_FENCE);
        stage(qt, qb + t0 * qs.w, qs.w, nt, D, lid, lsz);
        stage(gt, gb + t0 * gs.w, gs.w, nt, Dv, lid, lsz);
        for (int e = lid; e < nt; e += lsz) {
            lt[e] = lb[t0 + e];
            lt[ATT_BKMAX + e] = db[t0 + e];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int ii = max(i0 - t0, 0); ii < nt; ++ii) {
            float a = 0.0f, dp = 0.0f;
            for (int d = 0; d < ATT_DMAX; ++d) a = fma(kv[d], qt[ii * ATT_DMAX + d], a);
            if (has_mask) a += mc[(t0 + ii) * ms.w];
            float p = exp(a - lt[ii]);
            for (int d = 0; d < ATT_DMAX; ++d) {
                float gd = gt[ii * ATT_DMAX + d];
                dv[d] = fma(p, gd, dv[d]);
                dp = fma(gd, vv[d], dp);
            }
            float ds = p * (dp - lt[ATT_BKMAX + ii]);
            for (int d = 0; d < ATT_DMAX; ++d) dk[d] = fma(ds, qt[ii * ATT_DMAX + d], dk[d]);
        }
    }
    if (!live) return;
    int row = b * S + j;
    for (int d = 0; d < D; ++d) out[dk_off + row * D + d] = dk[d] * scale;
    for (int d = 0; d < Dv; ++d) out[dv_off + row * Dv + d] = dv[d];
}
