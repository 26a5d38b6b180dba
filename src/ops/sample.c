/* Sampling along the last axis on the device: multinomial (one draw per row from the softmax
 * of its top k logits, on the random ops' per-run counter) and topk (the k largest, sorted;
 * the values are a take_along_axis of the indices, so their gradient is that op's). Kernels
 * in cl/sample.cl, built after cl/random.cl for Philox. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/lowering.h"
#include "core/context.h"
#include "core/kernel_source.h"
#include "core/program.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

/* Work-items per row (a power of two; cl/sample.cl's CLG_SAMPLE_MAX_LOCAL). */
#define SAMPLE_MAX_LOCAL 256

static clg_status lower_multinomial(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                    const clg_operand *out);
static clg_status lower_topk(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                             const clg_operand *out);
static size_t topk_bytes(const clg_tensor *node, char *what, size_t what_size);

/* attrs.sample; the node's id is the random stream */
static const clg_op_info op_multinomial = {.name = "multinomial", .kind = CLG_KIND_KERNEL,
                                           .lower = lower_multinomial};
/* attrs.sample (k); the indices only: values gather them */
static const clg_op_info op_topk = {.name = "topk", .kind = CLG_KIND_KERNEL,
                                    .lower = lower_topk, .device_bytes = topk_bytes};

static bool check_rows(clg_graph *g, const char *op, clg_tensor *x) {
    char b[200];
    if (x->dtype != CLG_F32) {
        clg_graph_fail(g, CLG_ERR_DTYPE, "%s: x %s must be f32, got %s", op,
                       clg_shape_str(x->ndim, x->shape, b, sizeof b), clg_dtype_name(x->dtype));
        return false;
    }
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1 || clg_tensor_numel(x) > INT32_MAX) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "%s: x %s needs a non-empty last axis (and under 2^31 "
                       "elements)", op, clg_shape_str(x->ndim, x->shape, b, sizeof b));
        return false;
    }
    return true;
}

clg_tensor *clg_multinomial(clg_graph *g, clg_tensor *logits, float temperature, int64_t top_k,
                            uint64_t seed) {
    CLG_GUARD(g, "multinomial", 1, logits);
    if (!check_rows(g, "multinomial", logits)) return g->poison;
    int64_t v = logits->shape[logits->ndim - 1];
    if (!(temperature > 0.0f) || temperature > 3.4e38f)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "multinomial: temperature %g must be finite and above 0 (greedy "
                              "choice: clg_argmax)", (double)temperature);
    if (top_k < 0 || top_k > v)
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "multinomial: top_k %lld outside [0, %lld]", (long long)top_k,
                              (long long)v);
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, logits->shape, sizeof shape);
    shape[logits->ndim - 1] = 1;
    clg_tensor *t = clg_kernel_node(g, &op_multinomial, CLG_I32, logits->ndim, shape, 1, &logits);
    if (t != g->poison)
        t->attrs = (clg_attrs){
            .kind = CLG_ATTRS_SAMPLE,
            .sample = {.k = top_k ? top_k : v, .temperature = temperature, .seed = seed}};
    return t;
}

clg_status clg_topk(clg_graph *g, clg_tensor *x, int64_t k, clg_tensor **values,
                    clg_tensor **indices) {
    if (values) *values = g ? g->poison : NULL;
    if (indices) *indices = g ? g->poison : NULL;
    if (!g) return CLG_ERR_INVALID_ARGUMENT;
    if (!values || !indices) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "topk: values and indices must not be NULL");
        return g->error;
    }
    clg_tensor *xs[1] = {x};
    if (!clg_check_inputs(g, "topk", 1, xs) || !check_rows(g, "topk", x)) return g->error;
    int64_t v = x->shape[x->ndim - 1];
    if (k < 1 || k > v) {
        char b[200];
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "topk: k %lld outside [1, %lld] for x %s",
                       (long long)k, (long long)v, clg_shape_str(x->ndim, x->shape, b, sizeof b));
        return g->error;
    }
    int64_t shape[CLG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = k;
    clg_tensor *idx = clg_kernel_node(g, &op_topk, CLG_I32, x->ndim, shape, 1, &x);
    if (idx == g->poison) return g->error;
    idx->attrs = (clg_attrs){.kind = CLG_ATTRS_SAMPLE, .sample = {.k = k, .temperature = 1.0f}};
    clg_tensor *val = clg_take_along_axis(g, x, idx, -1);
    if (g->error) return g->error;
    *values = val;
    *indices = idx;
    return CLG_OK;
}

/* The pack of each row's kept indices (rows x k i32). */
static size_t topk_bytes(const clg_tensor *node, char *what, size_t what_size) {
    snprintf(what, what_size, "topk scratch");
    return (size_t)clg_shape_numel(node->ndim, node->shape) * sizeof(cl_int);
}

/* cl/random.cl then cl/sample.cl, one program (cached by its text). */
static clg_status sample_kernel(clg_context *ctx, const char *name, cl_kernel *out) {
    char *rnd = NULL, *smp = NULL;
    size_t nr = 0, ns = 0;
    clg_status st = clg_kernel_source("random", &rnd, &nr);
    if (st == CLG_OK) st = clg_kernel_source("sample", &smp, &ns);
    char *text = st == CLG_OK ? malloc(nr + ns + 2) : NULL;
    if (st == CLG_OK && !text) st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "sample: out of host memory");
    cl_program p = NULL;
    if (st == CLG_OK) {
        memcpy(text, rnd, nr);
        text[nr] = '\n';
        memcpy(text + nr + 1, smp, ns);
        text[nr + ns + 1] = '\0';
        st = clg_program_get(ctx, "sample", text, nr + ns + 1, NULL, &p);
    }
    free(rnd);
    free(smp);
    free(text);
    if (st != CLG_OK) return st;
    cl_int err;
    *out = clCreateKernel(p, name, &err);
    if (!*out) return clg_fail_cl(err, "creating kernel %s from cl/sample.cl", name);
    return CLG_OK;
}

/* x's leading dims (all but the last) as int8 shape and strides, padded at the front. */
static void pack_rows(const clg_operand *x, cl_int8 *shape, cl_int8 *st) {
    int lead = x->ndim - 1, pad = 8 - lead;
    for (int p = 0; p < 8; ++p) {
        int d = p - pad;
        shape->s[p] = d < 0 ? 1 : (cl_int)x->shape[d];
        st->s[p] = d < 0 ? 0 : (cl_int)x->strides[d];
    }
}

/* Arguments shared by both kernels after their own: x, its rows, the row length, k. */
static void rows_args(clg_args *a, const clg_operand *x, int64_t k) {
    cl_int8 shape, st;
    pack_rows(x, &shape, &st);
    clg_arg_mem(a, x->mem);
    clg_arg_int(a, x->offset);
    clg_arg_raw(a, sizeof shape, &shape);
    clg_arg_raw(a, sizeof st, &st);
    clg_arg_int(a, x->strides[x->ndim - 1]);
    clg_arg_int(a, x->shape[x->ndim - 1]);
    clg_arg_int(a, k);
}

static clg_status lower_multinomial(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                    const clg_operand *out) {
    clg_context *ctx = clg_lowering_context(lw);
    const clg_attr_sample *s = &node->attrs.sample;
    int64_t n = in[0].shape[in[0].ndim - 1];
    const char *name = s->k < n ? "multinomial" : "multinomial_all";
    cl_kernel k;
    clg_status st = sample_kernel(ctx, name, &k);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(k);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    rows_args(&a, &in[0], s->k);
    clg_arg_float(&a, 1.0f / s->temperature);
    clg_arg_uint(&a, (uint32_t)node->id);
    clg_arg_uint(&a, (uint32_t)s->seed);
    clg_arg_uint(&a, (uint32_t)(s->seed >> 32));
    int counter = (int)a.next;
    clg_arg_uint(&a, 0); /* the run counter, set before each run */
    clg_arg_uint(&a, 0);
    st = clg_args_done(&a, name);
    if (st != CLG_OK) {
        clReleaseKernel(k);
        return st;
    }
    size_t local = clg_kernel_group_pow2(ctx, k, SAMPLE_MAX_LOCAL);
    size_t global = (size_t)clg_shape_numel(out->ndim, out->shape) * local;
    return clg_lower_kernel_random(lw, k, 1, &global, &local, name, counter);
}

static clg_status lower_topk(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                             const clg_operand *out) {
    clg_context *ctx = clg_lowering_context(lw);
    int64_t n = clg_shape_numel(out->ndim, out->shape), k = node->attrs.sample.k;
    cl_mem scratch;
    clg_status st = clg_lower_buffer(lw, (size_t)n * sizeof(cl_int), "topk scratch", &scratch);
    if (st != CLG_OK) return st;
    cl_kernel kern;
    st = sample_kernel(ctx, "topk", &kern);
    if (st != CLG_OK) return st;
    clg_args a = clg_args_begin(kern);
    clg_arg_mem(&a, out->mem);
    clg_arg_int(&a, out->offset);
    clg_arg_mem(&a, scratch);
    rows_args(&a, &in[0], k);
    size_t local = clg_kernel_group_pow2(ctx, kern, SAMPLE_MAX_LOCAL);
    size_t global = (size_t)(n / k) * local;
    return clg_lower_args(lw, &a, 1, &global, &local, "topk");
}
