/* Computation graphs, parameters, autograd and compiled plans.
 *
 * Flow: build a clg_graph from inputs, parameters and ops (ops.h); call clg_backward() to
 * add gradient nodes; clg_graph_compile() turns the graph into a clg_plan (schedule, fused
 * kernels, memory plan); then write inputs, run and read outputs as many times as needed.
 *
 * Ownership: graphs and plans belong to the context they were made in, parameters too.
 * A tensor handle belongs to its graph and is valid until the graph is freed; a plan must be
 * freed before (or with) its graph. Host memory passed in is only borrowed for the call.
 *
 * Errors: builders never crash on a user's mistake. A failing builder records the first error
 * in the graph (sticky), returns the graph's poison tensor, and every later builder on that
 * graph is a no-op returning the poison tensor. clg_graph_status() and clg_graph_compile()
 * report that first error, naming the op and the shapes involved. */
#ifndef CLGRAD_GRAPH_H
#define CLGRAD_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CLG_MAX_DIMS 8

typedef enum clg_dtype {
    CLG_F32, /* 32-bit float: activations, parameters, gradients */
    CLG_I32, /* 32-bit signed integer: indices and labels */
    CLG_DTYPE_COUNT
} clg_dtype;

typedef struct clg_graph clg_graph;
typedef struct clg_tensor clg_tensor;
typedef struct clg_param clg_param;
typedef struct clg_plan clg_plan;
typedef struct clg_optimizer clg_optimizer;

/* Size in bytes of one element of dtype. */
size_t clg_dtype_size(clg_dtype dtype);
const char *clg_dtype_name(clg_dtype dtype);

/* ---- Parameters: named device tensors that live in the context, shared by graphs ---- */

/* Create a zero-filled parameter. Names are unique in a context (PyTorch state-dict keys such
 * as "fc1.weight" are the convention). NULL on failure (duplicate name, bad shape, device
 * memory or the context's memory cap, see context.h), with the last error set. Trainable by
 * default. */
clg_param *clg_param_new(clg_context *ctx, const char *name, clg_dtype dtype, int ndim,
                         const int64_t *shape);
/* The parameter called name, or NULL. */
clg_param *clg_param_find(clg_context *ctx, const char *name);
/* Parameters in creation order: index 0 .. clg_param_count()-1. */
size_t clg_param_count(const clg_context *ctx);
clg_param *clg_param_at(clg_context *ctx, size_t index);

const char *clg_param_name(const clg_param *p);
clg_dtype clg_param_dtype(const clg_param *p);
int clg_param_ndim(const clg_param *p);
const int64_t *clg_param_shape(const clg_param *p);
int64_t clg_param_numel(const clg_param *p);
/* torch's requires_grad: on by default for f32 parameters (i32 ones never have gradients).
 * A frozen parameter (false) gets no gradient from clg_backward, so no optimizer updates it;
 * the switch takes effect for graphs differentiated after it. */
void clg_param_set_requires_grad(clg_param *p, bool requires_grad);
bool clg_param_requires_grad(const clg_param *p);

/* A second state-dict key for p, for a tied weight (nanoGPT's lm_head.weight is its
 * transformer.wte.weight): checkpoints save p under both names, and a load reads p from its
 * name (from the alias when only that is in the file) and accepts the other. The alias must
 * not name a parameter or another alias of ctx; a new alias replaces the old, NULL removes it. */
clg_status clg_param_set_alias(clg_param *p, const char *alias);
const char *clg_param_alias(const clg_param *p); /* NULL when none */
/* PyTorch's persistent=False buffers: a non-persistent parameter (a KV cache) is neither
 * saved by checkpoints nor expected by loads. Parameters are persistent by default. */
void clg_param_set_persistent(clg_param *p, bool persistent);
bool clg_param_persistent(const clg_param *p);

/* Copy host data (bytes must equal numel * dtype size) to and from the device. Waits for
 * queued work that uses the parameter. */
clg_status clg_param_write(clg_param *p, const void *host, size_t bytes);
clg_status clg_param_read(clg_param *p, void *host, size_t bytes);
/* Device-side copy between parameters of equal dtype and shape (a DQN's hard target update).
 * Queued after the work already queued, like a plan run; does not wait. */
clg_status clg_param_copy(clg_param *dst, const clg_param *src);
/* dst = (1 - tau) dst + tau src on the device (Polyak averaging of a target network), computed
 * as torch.lerp(dst, src, tau) does, from the nearer end (tau 0 and 1 give dst and src
 * exactly); f32 parameters of equal shape, tau in [0, 1]. Queued, no wait. */
clg_status clg_param_lerp(clg_param *dst, const clg_param *src, float tau);

/* ---- Graphs ---- */

/* New empty graph on ctx; NULL only when host memory is exhausted. */
clg_graph *clg_graph_new(clg_context *ctx);
/* Free the graph, its tensors and every plan compiled from it. NULL is a no-op. */
void clg_graph_free(clg_graph *g);
/* CLG_OK, or the first error any builder on g recorded (message in clg_graph_error()). */
clg_status clg_graph_status(const clg_graph *g);
const char *clg_graph_error(const clg_graph *g);
clg_context *clg_graph_context(const clg_graph *g);
/* Nodes in g so far (every builder call adds one or a few; clg_backward adds the gradients'). */
size_t clg_graph_node_count(const clg_graph *g);

/* Leaves. shape has ndim entries (0 <= ndim <= CLG_MAX_DIMS, every entry >= 1). */
clg_tensor *clg_input(clg_graph *g, const char *name, clg_dtype dtype, int ndim,
                      const int64_t *shape);
/* A constant copied from host data now (numel * dtype size bytes). */
clg_tensor *clg_constant(clg_graph *g, clg_dtype dtype, int ndim, const int64_t *shape,
                         const void *data);
/* A 0-d f32 constant; passed to kernels as an argument, so values never multiply programs. */
clg_tensor *clg_scalar(clg_graph *g, float value);
/* A tensor filled with value (a broadcast scalar; costs no memory). */
clg_tensor *clg_full(clg_graph *g, float value, int ndim, const int64_t *shape);
/* The parameter as a tensor of g (the same node if used twice). */
clg_tensor *clg_param_tensor(clg_graph *g, clg_param *p);

/* Tensor queries. A tensor's shape is fixed when it is built. */
int clg_tensor_ndim(const clg_tensor *t);
const int64_t *clg_tensor_shape(const clg_tensor *t);
int64_t clg_tensor_dim(const clg_tensor *t, int axis); /* axis may be negative */
int64_t clg_tensor_numel(const clg_tensor *t);
clg_dtype clg_tensor_dtype(const clg_tensor *t);
clg_graph *clg_tensor_graph(const clg_tensor *t);
/* Writes a shape like "[64, 784] f32" into buf; returns buf. */
const char *clg_tensor_describe(const clg_tensor *t, char *buf, size_t size);

/* ---- Autograd ---- */

/* Ask for the gradient of t (an input, say, for a saliency map) in the next clg_backward. */
clg_status clg_requires_grad(clg_tensor *t);
/* Add the nodes that compute d(loss)/d(x) for every trainable parameter used by loss and every
 * tensor marked with clg_requires_grad. loss must have one element. Once per graph. */
clg_status clg_backward(clg_graph *g, clg_tensor *loss);
/* The gradient node of t after clg_backward; NULL if t does not influence the loss. */
clg_tensor *clg_grad(clg_graph *g, const clg_tensor *t);
/* The gradient node of parameter p in g; NULL if p has none. */
clg_tensor *clg_param_grad(clg_graph *g, const clg_param *p);

/* ---- Compile and run ---- */

/* Mark t as an output: kept until the run ends so that clg_plan_read can read it. */
clg_status clg_graph_output(clg_graph *g, clg_tensor *t);

typedef struct clg_compile_options {
    bool no_fusion;           /* one kernel per op: for testing fusion against the plain path */
    size_t guard_bytes;       /* testing: pad each buffer with this many guard bytes, checked
                                 by clg_plan_check_guards; intermediate buffers start out as
                                 NaN, so an element no kernel wrote shows up in the results */
    bool check_finite;        /* debugging (also CLGRAD_CHECK_FINITE=1 for every plan): every
                                 run waits and checks its inputs, parameters and each op's
                                 result; the first NaN or Inf makes clg_plan_run fail with
                                 CLG_ERR_NOT_FINITE naming that op. Compiles unfused, with no
                                 buffer reuse: slow, for finding where a NaN comes from */
} clg_compile_options;

/* Compile g into a plan. opts may be NULL. Fails with the graph's sticky error, or with
 * CLG_ERR_OUT_OF_MEMORY before anything runs if the plan cannot fit the device or the
 * context's memory cap (checked for the plan's whole need, with the optimizer state it would
 * create, before anything is allocated; a failed compile leaves no buffer of its own). */
clg_status clg_graph_compile(clg_graph *g, const clg_compile_options *opts, clg_plan **plan);
void clg_plan_free(clg_plan *plan);

/* Copy host data to an input (bytes = numel * dtype size). The host buffer may be reused as
 * soon as this returns; the copy to the device is queued, not waited for. */
clg_status clg_plan_write(clg_plan *plan, const clg_tensor *input, const void *host,
                          size_t bytes);
/* Queue one execution of the whole plan (with the updates clg_optimizer_apply added to its
 * graph). Does not wait. */
clg_status clg_plan_run(clg_plan *plan);
/* Wait for queued work, then copy an output (or input, or parameter tensor) to host. */
clg_status clg_plan_read(clg_plan *plan, const clg_tensor *t, void *host, size_t bytes);
/* After a run, the gradient of parameter p that it computed (bytes = numel * 4): kept by plans
 * whose graph updates p (clg_optimizer_apply) or marks the gradient as an output. Waits. */
clg_status clg_plan_read_grad(clg_plan *plan, const clg_param *p, void *host, size_t bytes);
/* Wait for queued work. */
clg_status clg_plan_finish(clg_plan *plan);

/* Device bytes the plan's intermediate buffers take at their peak (arena size), and bytes of
 * the plan's own inputs and constants. Parameters are not counted. */
size_t clg_plan_peak_bytes(const clg_plan *plan);
size_t clg_plan_fixed_bytes(const clg_plan *plan);
/* Steps one clg_plan_run enqueues: generated kernels, optimizer updates, fills, and GEMM or
 * convolution calls counted as one each (a GEMM call launches one to three kernels: clgrad's
 * CPU backend packs operands first, CLBlast may pad or transpose and clgrad adds an epilogue).
 * CLGRAD_PROFILE times each call from its first kernel's start to its last one's end. */
size_t clg_plan_kernel_count(const clg_plan *plan);
/* With guard_bytes set at compile time: CLG_OK if no kernel wrote outside its buffer. */
clg_status clg_plan_check_guards(clg_plan *plan);

#ifdef __cplusplus
}
#endif

#endif
