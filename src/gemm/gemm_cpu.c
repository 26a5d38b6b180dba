/* The register-blocked GEMM backend for CPU-like OpenCL devices (cl/gemm_cpu.cl): maps a
 * clg_gemm_call onto the kernel's scalar operand S and vector operand V, decides what to pack
 * into panels and how many tiles each work-item takes, and creates the (up to three) kernels
 * of the call with every argument fixed, so a run only enqueues them.
 * The measurements behind the choices are in tools/gemm-cpu-notes.md. */
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/error.h"
#include "core/program.h"
#include "gemm/gemm_internal.h"

#define MR 6  /* rows of C per tile (the kernel's -DMR default) */
#define NR 16 /* columns of C per tile (-DNR) */
#define PACK_K 64

static size_t ceil_div(size_t x, size_t m) {
    return (x + m - 1) / m;
}

/* Scratch for packed panels: runs are serial on the context's queue, so every call shares it.
 * A call prepared earlier keeps the buffer it was given; buffers that grew out of use stay
 * alive until the context goes (they are few and small). */
static clg_status scratch(clg_context *ctx, size_t floats, cl_mem *out) {
    clg_gemm_state *s = ctx->gemm;
    if (floats * sizeof(float) > s->cpu_scratch_bytes) {
        cl_mem m;
        clg_status st = clg_buffer_create(ctx, floats * sizeof(float), "packed GEMM panels", &m);
        if (st != CLG_OK) return st;
        cl_mem *old = realloc(s->old_scratch, (s->n_old_scratch + 1) * sizeof *old);
        if (!old) {
            clg_buffer_release(ctx, m);
            return clg_fail(CLG_ERR_OUT_OF_MEMORY, "GEMM scratch: out of host memory");
        }
        s->old_scratch = old;
        if (s->cpu_scratch) s->old_scratch[s->n_old_scratch++] = s->cpu_scratch;
        s->cpu_scratch = m;
        s->cpu_scratch_bytes = floats * sizeof(float);
    }
    *out = s->cpu_scratch;
    return CLG_OK;
}

/* k steps a work-item may run on a device with a loop limit (0: none): each step of the K
 * loop counts about 8 iterations there (the MR-row loop inside it too, measured on rusticl:
 * one 6 x 16 tile fails from k = 8192 on), with a factor 2 to spare. */
static size_t k_budget(uint32_t loop_limit) {
    return loop_limit ? loop_limit / 16 : SIZE_MAX;
}

bool clg_gemm_cpu_fits(const clg_context *ctx, const clg_gemm_call *c) {
    return c->k <= k_budget(ctx->info.loop_limit);
}

/* Pack an operand when enough tiles reuse it to pay for the copy; otherwise let each
 * work-item take up to 8 x 4 tiles (K blocking reuses V from L1 and S from L2), keeping at
 * least 4 work-items per compute unit. m, n: of the product as computed (swapped or not). */
static clg_gemm_cpu_plan choose_tiles(size_t m, size_t n, size_t k, size_t batch,
                                      size_t v_stride, unsigned units) {
    size_t tiles_m = ceil_div(m, MR), tiles_n = ceil_div(n, NR);
    double flop = 2.0 * (double)m * (double)n * (double)k * (double)batch;
    clg_gemm_cpu_plan p = {.mb = 1, .nb = 1};
    /* A V of its own per batch entry that stays in cache (attention's 64 x 64) is read in place;
     * one shared by the batch is packed once and pays. */
    p.pack_v = tiles_m >= 8 && flop >= 8e6 && (batch == 1 || v_stride == 0 || k * n >= 65536);
    /* A short, very wide product (a folded convolution: 64 x 288 times 288 x N OH OW) has
     * work-items take all of M (below), so each V row segment is read once and packing V
     * would be a whole extra pass over it (faster without packing for the MNIST CNN's conv2
     * forward on pocl, bench-conv). */
    const bool wide = tiles_m <= 16 && n >= 2048;
    if (wide) p.pack_v = false;
    p.pack_s = tiles_n >= 16 && m >= 256 && k >= 256;
    if (p.pack_s && p.pack_v) return p;
    p.mb = wide ? (int)tiles_m : tiles_m < 8 ? (int)tiles_m : 8; /* wide: V read once */
    p.nb = tiles_n < 4 ? (int)tiles_n : 4;
    while (p.mb * p.nb > 1 &&
           ceil_div(tiles_m, (size_t)p.mb) * ceil_div(tiles_n, (size_t)p.nb) * batch <
               4 * (size_t)units) {
        if (p.mb >= p.nb)
            p.mb = (p.mb + 1) / 2;
        else
            p.nb = (p.nb + 1) / 2;
    }
    return p;
}

clg_gemm_cpu_plan clg_gemm_cpu_choose(const clg_gemm_call *c, unsigned compute_units,
                                      uint32_t loop_limit) {
    const size_t batch = c->batch ? c->batch : 1;
    /* NT must pack one operand along k (neither has contiguous rows along n). Packing B
     * costs n k, packing A (C^T = B A^T: S = B in place, V = A^T packed) m k: with a long k and
     * a wide B, as in a convolution's weight gradient (64 x 288 over k = N OH OW), pack A
     * (faster for the MNIST CNN's conv2 weight gradient on pocl, bench-conv). */
    const bool swap_nt = c->trans_b && !c->trans_a && c->k >= 2048 && 2 * c->m <= c->n;
    clg_gemm_cpu_plan plan =
        swap_nt ? choose_tiles(c->n, c->m, c->k, batch, c->a_stride, compute_units)
                : choose_tiles(c->m, c->n, c->k, batch, c->b_stride, compute_units);
    /* Both transposed: compute C^T = B A (S = B, V = A in place) unless B gets packed. */
    plan.swap = swap_nt || (c->trans_a && c->trans_b && !plan.pack_v);
    if (plan.swap && !swap_nt) plan.pack_s = false;
    const size_t n = plan.swap ? c->m : c->n, k = c->k;
    /* V is read in place as rows along n at least one tile wide (op(B) = B^T has none: NT
     * packs); K = 0 reads nothing. */
    bool v_t = plan.swap ? !c->trans_a : c->trans_b; /* V stored n-major */
    size_t v_ld = plan.swap ? c->lda : c->ldb;
    if ((v_t && v_ld != 1) || n < NR) plan.pack_v = true;
    if (k == 0) plan.pack_s = plan.pack_v = false;
    /* Under a loop limit, fewer tiles per work-item (each runs all of k). */
    while (plan.mb * plan.nb > 1 && (size_t)(plan.mb * plan.nb) * k > k_budget(loop_limit)) {
        if (plan.mb >= plan.nb)
            plan.mb = (plan.mb + 1) / 2;
        else
            plan.nb = (plan.nb + 1) / 2;
    }
    return plan;
}

static clg_status pack_kernel(clg_context *ctx, int rows, int k, int w, cl_mem x, size_t off,
                              int rs, int cs, size_t bs, size_t batches, cl_mem xp, size_t xp_off,
                              clg_gemm_kernel *out) {
    cl_kernel kn;
    clg_status st = clg_kernel_new(ctx, "gemm_cpu", "clg_gemm_cpu_pack", &kn);
    if (st != CLG_OK) return st;
    cl_int v[] = {rows, k, w};
    cl_int o[] = {(cl_int)off, rs, cs, (cl_int)bs};
    cl_int xo = (cl_int)xp_off;
    cl_int err = CL_SUCCESS;
    for (int i = 0; i < 3 && !err; ++i) err = clSetKernelArg(kn, (cl_uint)i, sizeof v[i], &v[i]);
    if (!err) err = clSetKernelArg(kn, 3, sizeof x, &x);
    for (int i = 0; i < 4 && !err; ++i) err = clSetKernelArg(kn, (cl_uint)(4 + i), sizeof o[i], &o[i]);
    if (!err) err = clSetKernelArg(kn, 8, sizeof xp, &xp);
    if (!err) err = clSetKernelArg(kn, 9, sizeof xo, &xo);
    if (err) {
        clReleaseKernel(kn);
        return clg_fail_cl(err, "setting up a GEMM pack kernel");
    }
    *out = (clg_gemm_kernel){kn, {ceil_div((size_t)rows, (size_t)w), ceil_div((size_t)k, PACK_K), batches}};
    return CLG_OK;
}

clg_status clg_gemm_cpu_prepare(clg_context *ctx, clg_gemm_call *c) {
    const size_t batch = c->batch ? c->batch : 1;
    if (!clg_gemm_cpu_fits(ctx, c))
        return clg_fail(CLG_ERR_UNSUPPORTED,
                        "the CPU GEMM kernel cannot run k = %zu on %s: one work-item would loop "
                        "past the driver's limit of %u iterations (CLGRAD_GEMM=clblast runs it)",
                        c->k, ctx->info.name, (unsigned)ctx->info.loop_limit);
    clg_gemm_cpu_plan plan =
        clg_gemm_cpu_choose(c, ctx->info.compute_units, ctx->info.loop_limit);
    const bool swap = plan.swap;
    const size_t m = swap ? c->n : c->m, n = swap ? c->m : c->n, k = c->k;

    /* Swapped, S(m', k) = op(B)(k, m') and V(k, n') = op(A)(n', k). */
    cl_mem s_buf = swap ? c->b : c->a, v_buf = swap ? c->a : c->b;
    size_t s_off = swap ? c->b_off : c->a_off, s_bs = swap ? c->b_stride : c->a_stride;
    bool s_t = swap ? !c->trans_b : c->trans_a; /* S stored k-major */
    int s_ld = (int)(swap ? c->ldb : c->lda);
    int s_rs = s_t ? 1 : s_ld, s_cs = s_t ? s_ld : 1;
    size_t v_off = swap ? c->a_off : c->b_off, v_bs = swap ? c->a_stride : c->b_stride;
    /* V(k, n) = v[k v_ks + n v_ns]; only v_ns == 1 is readable in place */
    bool v_t = swap ? !c->trans_a : c->trans_b; /* V stored n-major */
    int v_ld = (int)(swap ? c->lda : c->ldb);
    int v_ks = v_t ? 1 : v_ld, v_ns = v_t ? v_ld : 1;

    size_t mp = ceil_div(m, MR) * MR, np = ceil_div(n, NR) * NR;
    size_t s_batches = s_bs ? batch : 1, v_batches = v_bs ? batch : 1;
    size_t s_size = plan.pack_s ? mp * k * s_batches : 0;
    size_t v_size = plan.pack_v ? np * k * v_batches : 0;
    cl_mem sc = NULL;
    clg_status st = CLG_OK;
    if (s_size + v_size) st = scratch(ctx, s_size + v_size, &sc);
    int s_packed = 0, v_packed = 0;
    c->n_kernels = 0;
    if (st == CLG_OK && plan.pack_s) {
        st = pack_kernel(ctx, (int)m, (int)k, MR, s_buf, s_off, s_rs, s_cs, s_bs, s_batches, sc, 0,
                         &c->kernels[c->n_kernels]);
        if (st == CLG_OK) c->n_kernels++;
        s_buf = sc;
        s_off = 0;
        s_bs = s_bs ? mp * k : 0;
        s_packed = 1;
    }
    if (st == CLG_OK && plan.pack_v) {
        st = pack_kernel(ctx, (int)n, (int)k, NR, v_buf, v_off, v_ns, v_ks, v_bs, v_batches, sc,
                         s_size, &c->kernels[c->n_kernels]);
        if (st == CLG_OK) c->n_kernels++;
        v_buf = sc;
        v_off = s_size;
        v_bs = v_bs ? np * k : 0;
        v_packed = 1;
    }
    if (k == 0) s_packed = v_packed = 1; /* nothing is read */
    cl_kernel kn = NULL;
    if (st == CLG_OK) st = clg_kernel_new(ctx, "gemm_cpu", "clg_gemm_cpu", &kn);
    if (st != CLG_OK) {
        clg_gemm_release(c);
        return st;
    }
    int c_rs = swap ? 1 : (int)c->ldc, c_cs = swap ? (int)c->ldc : 1;
    int bias_rs = (int)(swap ? c->bias_cs : c->bias_rs), bias_cs = (int)(swap ? c->bias_rs : c->bias_cs);
    int mb = plan.mb > 0 ? plan.mb : 1, nb = plan.nb > 0 ? plan.nb : 1;
    int args_i[] = {(int)m, (int)n, (int)k};
    float args_f[] = {c->alpha, c->beta};
    cl_int err = CL_SUCCESS;
    cl_uint i = 0;
#define ARG(v) (err = err ? err : clSetKernelArg(kn, i++, sizeof(v), &(v)))
    int s_off_i = (int)s_off, s_bs_i = (int)s_bs, v_off_i = (int)v_off, v_bs_i = (int)v_bs;
    int c_off_i = (int)c->c_off, c_bs_i = (int)c->c_stride, bias_off_i = (int)c->bias_off;
    int act = (int)c->act;
    ARG(args_i[0]);
    ARG(args_i[1]);
    ARG(args_i[2]);
    ARG(args_f[0]);
    ARG(args_f[1]);
    ARG(s_buf);
    ARG(s_off_i);
    ARG(s_rs);
    ARG(s_cs);
    ARG(s_bs_i);
    ARG(s_packed);
    ARG(v_buf);
    ARG(v_off_i);
    ARG(v_ks);
    ARG(v_bs_i);
    ARG(v_packed);
    ARG(c->c);
    ARG(c_off_i);
    ARG(c_rs);
    ARG(c_cs);
    ARG(c_bs_i);
    if (!err) err = clSetKernelArg(kn, i++, sizeof(cl_mem), c->bias ? &c->bias : NULL);
    ARG(bias_off_i);
    ARG(bias_rs);
    ARG(bias_cs);
    ARG(act);
    ARG(mb);
    ARG(nb);
#undef ARG
    if (err) {
        clReleaseKernel(kn);
        clg_gemm_release(c);
        return clg_fail_cl(err, "setting up the CPU GEMM kernel");
    }
    c->kernels[c->n_kernels++] =
        (clg_gemm_kernel){kn, {ceil_div(mp / MR, (size_t)mb), ceil_div(np / NR, (size_t)nb), batch}};
    return CLG_OK;
}

clg_status clg_gemm_cpu_enqueue(clg_context *ctx, const clg_gemm_call *c, cl_event *first,
                                cl_event *last) {
    /* Local size 1: one work-item per work-group, so pocl's implicit work-item vectoriser has
     * nothing to fight the kernel's explicit vectors over. */
    static const size_t one[3] = {1, 1, 1};
    for (int i = 0; i < c->n_kernels; ++i) {
        bool is_last = i == c->n_kernels - 1;
        cl_event *ev = is_last ? last : i == 0 ? first : NULL;
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, c->kernels[i].kernel, 3, NULL,
                                            c->kernels[i].global, one, 0, NULL, ev);
        if (err != CL_SUCCESS) return clg_fail_cl(err, "queueing a CPU GEMM kernel");
    }
    return CLG_OK;
}
