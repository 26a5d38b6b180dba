/* GEMM dispatch: the only file that includes CLBlast. Maps a clg_gemm_call to CLBlast's
 * row-major SGEMM (with a scratch buffer owned here rather than allocated per call) or
 * strided-batched SGEMM, and CLBlast status codes to clgrad's. */
#include <stdlib.h>

#include <clblast_c.h>

#include "core/context.h"
#include "core/error.h"
#include "core/program.h"
#include "gemm/gemm.h"

struct clg_gemm_state {
    cl_mem temp; /* shared scratch for CLBlast's indirect path: runs are serial on one queue */
    size_t temp_bytes;
};

clg_status clg_gemm_init(clg_context *ctx) {
    ctx->gemm = calloc(1, sizeof *ctx->gemm);
    if (!ctx->gemm) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "GEMM state: out of host memory");
    return CLG_OK;
}

void clg_gemm_free(clg_context *ctx) {
    if (!ctx->gemm) return;
    if (ctx->gemm->temp) clReleaseMemObject(ctx->gemm->temp);
    free(ctx->gemm);
    ctx->gemm = NULL;
}

const char *clg_gemm_backend_name(clg_gemm_backend backend) {
    switch (backend) {
    case CLG_GEMM_CLBLAST:
        return "clblast";
    default:
        return "?";
    }
}

static clg_status clblast_fail(CLBlastStatusCode code, const char *what, const clg_gemm_call *c) {
    clg_status st = code == CLBlastTempBufferAllocFailure || code == CLBlastOpenCLOutOfResources
                        ? CLG_ERR_OUT_OF_MEMORY
                        : CLG_ERR_OPENCL;
    if (code == CLBlastOpenCLBuildProgramFailure) st = CLG_ERR_BUILD;
    return clg_fail(st, "%s (m=%zu n=%zu k=%zu batch=%zu, trans %d/%d): CLBlast status %d", what,
                    c->m, c->n, c->k, c->batch, c->trans_a, c->trans_b, (int)code);
}

static CLBlastTranspose tr(bool t) {
    return t ? CLBlastTransposeYes : CLBlastTransposeNo;
}

/* CLBlast has no epilogue: a small kernel applies bias and activation after the product. */
static clg_status prepare_epilogue(clg_context *ctx, clg_gemm_call *c) {
    c->epilogue = NULL;
    if (!c->bias && c->act == CLG_GEMM_ACT_NONE) return CLG_OK;
    cl_kernel k;
    clg_status st = clg_kernel_new(ctx, "gemm_epilogue", "gemm_epilogue", &k);
    if (st != CLG_OK) return st;
    cl_int has_bias = c->bias != NULL, act = (cl_int)c->act;
    cl_int ints[] = {(cl_int)c->c_off, (cl_int)c->ldc, (cl_int)c->c_stride, (cl_int)c->m,
                     (cl_int)c->n};
    cl_int bints[] = {(cl_int)c->bias_off, (cl_int)c->bias_rs, (cl_int)c->bias_cs};
    cl_mem bias = c->bias ? c->bias : c->c;
    cl_int err = clSetKernelArg(k, 0, sizeof c->c, &c->c);
    for (int i = 0; i < 5 && err == CL_SUCCESS; ++i)
        err = clSetKernelArg(k, (cl_uint)(1 + i), sizeof ints[i], &ints[i]);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 6, sizeof bias, &bias);
    for (int i = 0; i < 3 && err == CL_SUCCESS; ++i)
        err = clSetKernelArg(k, (cl_uint)(7 + i), sizeof bints[i], &bints[i]);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 10, sizeof has_bias, &has_bias);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 11, sizeof act, &act);
    if (err != CL_SUCCESS) {
        clReleaseKernel(k);
        return clg_fail_cl(err, "setting up the GEMM epilogue");
    }
    c->epilogue = k;
    return CLG_OK;
}

clg_status clg_gemm_prepare(clg_context *ctx, clg_gemm_call *call) {
    call->backend = CLG_GEMM_CLBLAST;
    call->temp = NULL;
    clg_status st = prepare_epilogue(ctx, call);
    if (st != CLG_OK) return st;
    if (call->batch != 1) return CLG_OK;
    size_t bytes = 0;
    CLBlastStatusCode code = CLBlastSGemmTempBufferSize(
        CLBlastLayoutRowMajor, tr(call->trans_a), tr(call->trans_b), call->m, call->n, call->k,
        call->a_off, call->lda, call->b_off, call->ldb, call->c_off, call->ldc, &ctx->queue,
        &bytes);
    if (code != CLBlastSuccess) return clblast_fail(code, "sizing the GEMM scratch buffer", call);
    clg_gemm_state *s = ctx->gemm;
    if (bytes < 256) bytes = 256; /* CLBlast wraps the handle even when it needs no scratch */
    if (bytes > s->temp_bytes) {
        cl_mem m;
        clg_status st = clg_buffer_create(ctx, bytes, "the GEMM scratch buffer", &m);
        if (st != CLG_OK) return st;
        if (s->temp) {
            clFinish(ctx->queue); /* steps queued earlier may still use the old scratch */
            clReleaseMemObject(s->temp);
        }
        s->temp = m;
        s->temp_bytes = bytes;
    }
    return CLG_OK;
}

clg_status clg_gemm_enqueue(clg_context *ctx, const clg_gemm_call *c, cl_event *event) {
    CLBlastStatusCode code;
    if (c->batch == 1) {
        /* Scratch is looked up now, not stored in the call: a later prepare may grow it. */
        code = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, tr(c->trans_a), tr(c->trans_b),
                                          c->m, c->n, c->k, c->alpha, c->a, c->a_off, c->lda,
                                          c->b, c->b_off, c->ldb, c->beta, c->c, c->c_off,
                                          c->ldc, &ctx->queue, event, ctx->gemm->temp);
    } else {
        code = CLBlastSgemmStridedBatched(
            CLBlastLayoutRowMajor, tr(c->trans_a), tr(c->trans_b), c->m, c->n, c->k, c->alpha,
            c->a, c->a_off, c->lda, c->a_stride, c->b, c->b_off, c->ldb, c->b_stride, c->beta,
            c->c, c->c_off, c->ldc, c->c_stride, c->batch, &ctx->queue, event);
    }
    if (code != CLBlastSuccess) return clblast_fail(code, "GEMM", c);
    if (c->epilogue) {
        size_t global[3] = {c->n, c->m, c->batch};
        /* profiles time the product (event above), not this small pass */
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, c->epilogue, 3, NULL, global, NULL, 0,
                                            NULL, NULL);
        if (err != CL_SUCCESS) return clg_fail_cl(err, "queueing the GEMM epilogue");
    }
    return CLG_OK;
}

void clg_gemm_release(clg_gemm_call *call) {
    if (call->epilogue) clReleaseKernel(call->epilogue);
    call->epilogue = NULL;
}

clg_status clg_gemm_convgemm(clg_context *ctx, const clg_convgemm_call *c, cl_event *event) {
    CLBlastStatusCode code = CLBlastSconvgemm(
        CLBlastKernelModeCrossCorrelation, c->channels, c->height, c->width, c->kernel_h,
        c->kernel_w, c->pad_h, c->pad_w, c->stride_h, c->stride_w, c->dilation_h, c->dilation_w,
        c->num_kernels, c->batch, c->im, c->im_off, c->kernel, c->kernel_off, c->result,
        c->result_off, &ctx->queue, event);
    if (code == CLBlastSuccess) return CLG_OK;
    return clg_fail(code == CLBlastOpenCLBuildProgramFailure ? CLG_ERR_BUILD : CLG_ERR_OPENCL,
                    "convgemm (batch %zu, %zu -> %zu channels, %zux%zu image, %zux%zu kernel): "
                    "CLBlast status %d",
                    c->batch, c->channels, c->num_kernels, c->height, c->width, c->kernel_h,
                    c->kernel_w, (int)code);
}
