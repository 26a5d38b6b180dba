/* The one GEMM dispatch point. Every matrix product (plain, batched, convolution lowered to
 * GEMM) is a clg_gemm_call, prepared once at compile time (backend chosen, scratch sized) and
 * enqueued at every run. Row-major: C = alpha op(A) op(B) + beta C, batch via strides. */
#ifndef CLG_GEMM_GEMM_H
#define CLG_GEMM_GEMM_H

#include <stdbool.h>
#include <stddef.h>

#include <CL/cl.h>

#include "clgrad/status.h"

typedef struct clg_context clg_context;

typedef enum clg_gemm_backend {
    CLG_GEMM_CLBLAST, /* CLBlast, tuned per device */
    CLG_GEMM_CPU,     /* clgrad's register-blocked kernels for CPU-like devices */
    CLG_GEMM_BACKEND_COUNT
} clg_gemm_backend;

/* One kernel launch of a backend, all arguments set at prepare time. */
typedef struct clg_gemm_kernel {
    cl_kernel kernel;
    size_t global[3];
} clg_gemm_kernel;

/* Activations a GEMM can apply on the way out (the epilogue). */
typedef enum clg_gemm_act {
    CLG_GEMM_ACT_NONE,
    CLG_GEMM_ACT_RELU,
    CLG_GEMM_ACT_TANH,
    CLG_GEMM_ACT_SIGMOID,
    CLG_GEMM_ACT_GELU,
    CLG_GEMM_ACT_COUNT
} clg_gemm_act;

typedef struct clg_gemm_call {
    bool trans_a, trans_b;
    size_t m, n, k;
    float alpha, beta;
    /* Element offsets, leading dimensions (row strides as stored) and batch strides. */
    cl_mem a;
    size_t a_off, lda, a_stride;
    cl_mem b;
    size_t b_off, ldb, b_stride;
    cl_mem c;
    size_t c_off, ldc, c_stride;
    size_t batch;
    /* Epilogue: C = act(C + bias(m, n)), bias(m, n) = bias[bias_off + m bias_rs + n bias_cs]
     * (a Linear layer's bias: rs 0, cs 1); bias NULL for none. The bias is the same for every
     * batch entry. */
    cl_mem bias;
    size_t bias_off, bias_rs, bias_cs;
    clg_gemm_act act;
    clg_gemm_backend backend; /* set by clg_gemm_prepare */
    cl_kernel epilogue;       /* CLBlast: the separate epilogue kernel */
    clg_gemm_kernel kernels[3]; /* CPU backend: pack A, pack B, product (as needed) */
    int n_kernels;
    cl_mem temp;              /* CLBlast scratch, owned by the context's GEMM state */
} clg_gemm_call;

/* Make the context's GEMM state on first use (its environment switches CLGRAD_GEMM and
 * CLGRAD_CONV, the cached backend choices, CLBlast's tuning): an error of a switch is reported
 * here, by the first GEMM a context prepares. Every entry point below calls it. */
clg_status clg_gemm_ready(clg_context *ctx);
/* Choose the backend for this shape (by measurement, cached per device and shape class;
 * CLGRAD_GEMM=clblast|cpu forces one) and create what the call needs. */
clg_status clg_gemm_prepare(clg_context *ctx, clg_gemm_call *call);
/* Queue the product. last (may be NULL) receives the event of the call's last kernel (the
 * product, or clgrad's epilogue after CLBlast); first (may be NULL) that of its first kernel
 * when there are several (the CPU backend's packing, CLBlast's product) and is left untouched
 * when there is one. A profile times the call from first's start (else last's) to last's end.
 * CLBlast's own helper kernels (padding, transposes of its indirect path) run inside its call
 * and are timed with its product. */
clg_status clg_gemm_enqueue(clg_context *ctx, const clg_gemm_call *call, cl_event *first,
                            cl_event *last);
const char *clg_gemm_backend_name(clg_gemm_backend backend);
/* Release what clg_gemm_prepare created for the call. */
void clg_gemm_release(clg_gemm_call *call);

/* CLBlast's convolution routine (cross-correlation through its own im2col and batched GEMM),
 * one of conv2d's two forward lowerings (ops/conv_choice.c times it against im2col + GEMM per
 * shape). Dense NCHW image [batch, channels, height, width], kernel [num_kernels, channels,
 * kernel_h, kernel_w] and result [batch, num_kernels, OH, OW] at element offsets; symmetric
 * padding, no groups. */
typedef struct clg_convgemm_call {
    size_t channels, height, width, kernel_h, kernel_w, pad_h, pad_w, stride_h, stride_w,
        dilation_h, dilation_w, num_kernels, batch;
    cl_mem im, kernel, result;
    size_t im_off, kernel_off, result_off;
} clg_convgemm_call;
clg_status clg_gemm_convgemm(clg_context *ctx, const clg_convgemm_call *call, cl_event *event);

/* Measured choices between two implementations, cached per device in the same file as the
 * GEMM backends' ("<key> <winner> <ms of the first> <ms of the second>"): the winner's name
 * for key, or NULL when key has not been measured on this device. */
const char *clg_gemm_find_choice(clg_context *ctx, const char *key);
clg_status clg_gemm_record_choice(clg_context *ctx, const char *key, const char *winner,
                                  double ms0, double ms1);
/* CLGRAD_CONV: "im2col" or "convgemm" forces conv2d's forward lowering; NULL: measured. */
const char *clg_gemm_conv_forced(clg_context *ctx);

#endif
