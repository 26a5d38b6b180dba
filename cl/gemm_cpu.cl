// SGEMM for CPU OpenCL devices (pocl), row-major, strided-batched, with a fused epilogue:
//   C = act(alpha * op(A) op(B) + beta * C + bias)
// Each work-item holds an MR x NR block of C in vector registers and streams K through it; no
// local memory, no barriers: pocl runs a work-group as a plain loop, so this is the CPU's view.

// Tile of C per work-item: MR rows, NR (8 or 16) columns held as one floatNR each.
#ifndef MR
#define MR 6
#endif
#ifndef NR
#define NR 16
#endif
// Longest k block of clg_gemm_cpu when a work-item computes more than one tile: KC x NR floats
// of V should stay in L1 (256 x 16 x 4 bytes = 16 KiB).
#ifndef KC
#define KC 256
#endif
// k values packed per work-item by clg_gemm_cpu_pack.
#ifndef PACK_K
#define PACK_K 64
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define vecn CAT(float, NR)
#define vloadn CAT(vload, NR)
#define vstoren CAT(vstore, NR)

// Activation codes (argument `act`).
#define GEMM_ACT_NONE 0
#define GEMM_ACT_RELU 1
#define GEMM_ACT_TANH 2
#define GEMM_ACT_SIGMOID 3
#define GEMM_ACT_GELU_TANH 4

static inline vecn gemm_act(vecn x, int act) {
    switch (act) {
    case GEMM_ACT_RELU:
        return fmax(x, 0.0f);
    case GEMM_ACT_TANH:
        return tanh(x);
    case GEMM_ACT_SIGMOID:
        return 1.0f / (1.0f + exp(-x));
    case GEMM_ACT_GELU_TANH:
        // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return 0.5f * x * (1.0f + tanh(0.7978845608f * fma(0.044715f * x * x, x, x)));
    default:
        return x;
    }
}

// Writes rows [m0, min(m0 + MR, M)) and columns [n0, min(n0 + NR, N)) of C through the epilogue.
// The tile in acc starts at row ms <= m0 and column ns <= n0 (edge tiles over in-place operands
// are shifted inward; see clg_gemm_cpu). beta == 0 never reads C, so C may hold NaN on entry, as
// BLAS allows; bias may be NULL. The activation code is large and pocl compiles every copy of it at
// first launch, so there is exactly one call site and the row loop is not unrolled.
static inline void gemm_store_tile(const vecn *acc, int m0, int n0, int ms, int ns, int M, int N,
                                   float alpha, float beta, __global float *C, int c_rs, int c_cs,
                                   __global const float *bias, int bias_off, int bias_rs,
                                   int bias_cs, int act) {
    const int rows = min(MR - (m0 - ms), M - m0);
    const int cols = min(NR - (n0 - ns), N - n0);
    // Whole vectors need a full row of the tile, unit column stride and a bias that is either
    // a row (stride 1) or one value per row (stride 0); otherwise go element by element.
    const int whole =
        ns == n0 && cols == NR && c_cs == 1 && (!bias || bias_cs == 0 || bias_cs == 1);
#pragma clang loop unroll(disable) vectorize(disable)
    for (int i = 0; i < rows; ++i) {
        const int m = m0 + i;
        __global float *c = C + m * c_rs + n0 * c_cs;
        __global const float *b = bias ? bias + bias_off + m * bias_rs + n0 * bias_cs : 0;
        vecn v = alpha * acc[m - ms];
        if (whole) {
            if (beta != 0.0f) v = fma(beta, vloadn(0, c), v);
            if (bias) v += bias_cs ? vloadn(0, b) : (vecn)(*b);
        } else {
            // Shift the wanted columns to the front of the vector, then finish them one by one.
            float t[NR];
            vstoren(v, 0, t);
#pragma clang loop unroll(disable) vectorize(disable)
            for (int j = 0; j < cols; ++j) {
                float x = t[j + n0 - ns];
                if (beta != 0.0f) x = fma(beta, c[j * c_cs], x);
                if (bias) x += b[j * bias_cs];
                t[j] = x;
            }
            v = vloadn(0, t);
        }
        v = gemm_act(v, act);
        if (whole) {
            vstoren(v, 0, c);
        } else {
            float t[NR];
            vstoren(v, 0, t);
#pragma clang loop unroll(disable) vectorize(disable)
            for (int j = 0; j < cols; ++j)
                c[j * c_cs] = t[j];
        }
    }
}

// The register block: acc[i] += S(row i, k) * V(k, 0..NR-1) for k in [0, K). Row i of S is
// srow[i][k * s_ks] (a broadcast scalar), V's row k is the NR floats at v + k * v_ks.
static inline void gemm_micro(vecn *acc, __global const float *const *srow, int s_ks,
                              __global const float *v, int v_ks, int K) {
    for (int k = 0; k < K; ++k) {
        const vecn b = vloadn(0, v + k * v_ks);
#pragma unroll
        for (int i = 0; i < MR; ++i)
            acc[i] = fma((vecn)(srow[i][k * s_ks]), b, acc[i]);
    }
}

// --------------------------------------------------------------------------------------------
// clg_gemm_cpu_pack: copies op(X) into panels of W rows, the layout clg_gemm_cpu reads.
//   Xp[b][p][k][w] = X(p * W + w, k), zero for rows p * W + w >= R,
// where X(r, k) = X[x_off + b * x_bs + r * x_rs + k * x_cs] (either layout, by the strides) and
// the packed batch stride is ceil(R / W) * W * K. Pack op(A) with R = M, W = MR, X(m, k);
// pack op(B) with R = N, W = NR, X(n, k) (so B = K x N row-major has x_rs = 1, x_cs = ldb).
// Global size (ceil(R / W), ceil(K / PACK_K), batch): neighbouring work-items take neighbouring
// panels of the same k range, so a source cache line is used up while it is hot whichever
// layout X has.
__kernel void clg_gemm_cpu_pack(const int R, const int K, const int W,
                                __global const float *restrict X, const int x_off, const int x_rs,
                                const int x_cs, const int x_bs, __global float *restrict Xp,
                                const int xp_off) {
    const int r0 = get_global_id(0) * W;
    const int k0 = get_global_id(1) * PACK_K;
    const int bt = get_global_id(2);
    if (k0 >= K || r0 >= R) return;
    const int kn = min(PACK_K, K - k0);
    const int rn = min(W, R - r0);
    X += x_off + (long)bt * x_bs + r0 * x_rs + k0 * x_cs;
    Xp += xp_off + (long)bt * ((R + W - 1) / W) * W * K + r0 * K + k0 * W;
    if (x_rs == 1) {
        // The panel's rows are contiguous in X (op(B) stored K x N, op(A) stored K x M): copy
        // row segments; reads and writes both run forward.
        if (W == NR && rn == NR) {
            for (int k = 0; k < kn; ++k)
                vstoren(vloadn(0, X + k * x_cs), 0, Xp + k * NR);
        } else {
            for (int k = 0; k < kn; ++k)
                for (int w = 0; w < W; ++w)
                    Xp[k * W + w] = w < rn ? X[k * x_cs + w] : 0.0f;
        }
        return;
    }
    // Otherwise walk along k, contiguous when x_cs == 1 (op(A) stored M x K); the writes stride
    // by W inside a PACK_K x W block that stays in L1.
    for (int w = 0; w < rn; ++w)
        for (int k = 0; k < kn; ++k)
            Xp[k * W + w] = X[w * x_rs + k * x_cs];
    for (int w = rn; w < W; ++w)
        for (int k = 0; k < kn; ++k)
            Xp[k * W + w] = 0.0f;
}

// --------------------------------------------------------------------------------------------
// clg_gemm_cpu: C(m, n) = act(alpha * sum_k S(m, k) V(k, n) + beta * C(m, n) + bias(m, n))
// S is read one broadcast scalar at a time and V one NR-wide row segment at a time, each either
// in place in the caller's matrix or from panels written by clg_gemm_cpu_pack:
//   S(m, k) = S[s_off + b * s_bs + m * s_rs + k * s_cs]           in place (A: lda, 1; A^T: 1, lda)
//           = S[s_off + b * s_bs + (m / MR) * MR * K + k * MR + m % MR]       if s_packed
//   V(k, n) = V[v_off + b * v_bs + k * v_ks + n]                   in place (B stored K x N: ldb)
//           = V[v_off + b * v_bs + (n / NR) * NR * K + k * NR + n % NR]       if v_packed
//   C(m, n) = C[c_off + b * c_bs + m * c_rs + n * c_cs]
//   bias(m, n) = bias[bias_off + m * bias_rs + n * bias_cs]    (a Linear bias: rs 0, cs 1)
// Sizes, offsets and strides are element counts; each matrix (one batch entry) must span fewer
// than 2^31 elements. A batch stride of 0 broadcasts that operand (packed: pack it once).
// Packed operands are readable up to whole panels; V in place needs N >= NR (pack it otherwise).
// Edge tiles of an in-place operand shift inward (to M - MR, N - NR) so the inner loop always
// runs on a full tile without reading past a row, and the store skips what the neighbouring
// tile owns; when M < MR the missing rows repeat row M - 1 and are never stored.
// beta == 0 never reads C; bias may be NULL.
//
// Each work-item computes mb x nb tiles (mb * MR rows, nb * NR columns). With more than one
// tile it walks K in blocks of KC and, per block, every tile: a KC x NR block of V is reused
// from L1 by the mb tiles below it, the mb * MR x KC block of S from L2 by the nb tiles beside
// it. Partial sums wait in C (the first block applies beta, the last bias and activation).
// mb = nb = 1 is a single pass over K, best when tiles are few or K is small.
// Global size (ceil(M / (mb * MR)), ceil(N / (nb * NR)), batch); local size (1, 1, 1).
// Dimension 0 walks down M so consecutive work-items share V while it is in cache.
__kernel void clg_gemm_cpu(const int M, const int N, const int K, const float alpha,
                           const float beta, __global const float *restrict S, const int s_off,
                           const int s_rs, const int s_cs, const int s_bs, const int s_packed,
                           __global const float *restrict V, const int v_off, const int v_ks,
                           const int v_bs, const int v_packed, __global float *restrict C,
                           const int c_off, const int c_rs, const int c_cs, const int c_bs,
                           __global const float *restrict bias, const int bias_off,
                           const int bias_rs, const int bias_cs, const int act, const int mb,
                           const int nb) {
    const int mfirst = get_global_id(0) * mb * MR;
    const int nfirst = get_global_id(1) * nb * NR;
    const int bt = get_global_id(2);
    if (mfirst >= M || nfirst >= N) return;
    const int mend = min(M, mfirst + mb * MR);
    const int nend = min(N, nfirst + nb * NR);
    // K blocks of at most KC, evened out (K = 288 runs as 2 x 144, not 256 + 32). K = 0 still
    // makes one pass, so C = act(beta * C + bias) as BLAS has it.
    const int kblocks = mb * nb > 1 && K > KC ? (K + KC - 1) / KC : 1;
    const int kstep = max(1, (K + kblocks - 1) / kblocks);
    const int vk = v_packed ? NR : v_ks;
    S += s_off + (long)bt * s_bs;
    V += v_off + (long)bt * v_bs;
    C += c_off + (long)bt * c_bs;
    for (int k0 = 0; k0 == 0 || k0 < K; k0 += kstep) {
        const int kn = min(kstep, K - k0);
        const int last = k0 + kn >= K;
        for (int n0 = nfirst; n0 < nend; n0 += NR) {
            const int ns = v_packed ? n0 : min(n0, N - NR);
            __global const float *v = v_packed ? V + n0 * K + k0 * NR : V + ns + k0 * v_ks;
            for (int m0 = mfirst; m0 < mend; m0 += MR) {
                vecn acc[MR];
#pragma unroll
                for (int i = 0; i < MR; ++i)
                    acc[i] = 0.0f;
                __global const float *srow[MR];
                int ms = m0;
                if (s_packed) {
                    // Compile-time row offsets and k stride: one address register for S.
#pragma unroll
                    for (int i = 0; i < MR; ++i)
                        srow[i] = S + m0 * K + k0 * MR + i;
                    gemm_micro(acc, srow, MR, v, vk, kn);
                } else {
                    ms = M >= MR ? min(m0, M - MR) : 0;
#pragma unroll
                    for (int i = 0; i < MR; ++i)
                        srow[i] = S + min(ms + i, M - 1) * s_rs + k0 * s_cs;
                    gemm_micro(acc, srow, s_cs, v, vk, kn);
                }
                gemm_store_tile(acc, m0, n0, ms, ns, M, N, alpha, k0 ? 1.0f : beta, C, c_rs, c_cs,
                                last ? bias : 0, bias_off, bias_rs, bias_cs,
                                last ? act : GEMM_ACT_NONE);
            }
        }
    }
}
