/* Graph nodes as the compiler sees them. A clg_tensor is a node; its op_info (defined next to
 * the op's builder in src/ops/<family>.c) says how the node is differentiated, how it is
 * emitted inside a fused kernel, or how it is lowered to its own kernels. */
#ifndef CLG_GRAPH_INTERNAL_H
#define CLG_GRAPH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "clgrad/graph.h"
#include "core/error.h"
#include "core/owners.h"
#include "graph/attrs.h"

typedef struct clg_codegen clg_codegen;
typedef struct clg_lowering clg_lowering;
typedef struct clg_operand clg_operand;

typedef enum clg_kind {
    CLG_KIND_LEAF,        /* input, parameter, constant: storage exists before the run */
    CLG_KIND_SCALAR,      /* 0-d value passed as a kernel argument */
    CLG_KIND_ELEMENTWISE, /* fusable: value at an index depends only on operands there */
    CLG_KIND_REDUCE,      /* generated reduction kernel with a fused elementwise prologue */
    CLG_KIND_VIEW,        /* (base, offset, strides) over another node's storage */
    CLG_KIND_KERNEL,      /* lowered by its family to GEMM calls or hand-written kernels */
    CLG_KIND_POISON,      /* the graph's error placeholder */
} clg_kind;

/* What a reduction node combines (CLG_KIND_REDUCE). */
typedef enum clg_reduce_kind {
    CLG_REDUCE_SUM,
    CLG_REDUCE_MAX,
    CLG_REDUCE_MIN,
    CLG_REDUCE_ARGMAX,
} clg_reduce_kind;

/* Elementwise work a kernel op can do at the end of its own kernels (compile's epilogue
 * fusion): the op info of an elementwise op says what it is, the producer's absorb callback
 * whether it can take it. */
typedef enum clg_epilogue_kind {
    CLG_EPILOGUE_NONE,
    CLG_EPILOGUE_BIAS,       /* add(x, bias): a bias broadcast over x */
    CLG_EPILOGUE_ACTIVATION, /* relu, tanh, sigmoid or gelu of x */
    CLG_EPILOGUE_RELU_GATE,  /* relu_grad(x, y): x where y > 0, else 0 (relu's backward) */
} clg_epilogue_kind;

/* What a producer absorbed: filled by its absorb callback, read by its lower_epilogue. */
typedef struct clg_epilogue {
    const clg_tensor *bias; /* CLG_EPILOGUE_BIAS: read over bias_shape with bias_strides */
    int bias_ndim;
    int64_t bias_shape[CLG_MAX_DIMS];
    int64_t bias_strides[CLG_MAX_DIMS];
    int activation; /* a CLG_GEMM_ACT_* code, 0 for none */
    bool relu_gate;
} clg_epilogue;

typedef struct clg_op_info {
    const char *name; /* "add", "sum", ... used in messages and profiles */
    clg_kind kind;
    clg_reduce_kind reduce; /* CLG_KIND_REDUCE: how the reduced values combine */
    /* Add d(loss)/d(input) contributions with clg_grad_accumulate, given gout = d(loss)/d(node).
     * NULL: the op has no gradient (comparisons, argmax, ...). */
    void (*backward)(clg_graph *g, clg_tensor *node, clg_tensor *gout);
    /* Elementwise: write the OpenCL C expression of node given its operands' expressions. */
    void (*emit)(clg_codegen *cg, const clg_tensor *node, const char *const *operands,
                 char *out, size_t size);
    /* Kernel kind: append the node's kernels to the plan. */
    clg_status (*lower)(clg_lowering *lw, clg_tensor *node, const clg_operand *inputs,
                        const clg_operand *output);
    /* Kernel kind: lower() reads scalar operands itself (else they are materialised first). */
    bool scalar_operands;
    /* Elementwise kind: what a producer's kernels may compute this op as (activation: the
     * GEMM activation code), or CLG_EPILOGUE_NONE. */
    clg_epilogue_kind epilogue;
    int activation;
    /* Kernel kind: can node's kernels also compute consumer, an elementwise op (its epilogue
     * kind set) that reads prev (node itself, a reshape view of it, or the last consumer
     * absorbed so far)? On true it records how in *epi. NULL: the op absorbs nothing. */
    bool (*absorb)(const clg_tensor *node, const clg_tensor *prev, const clg_tensor *consumer,
                   clg_epilogue *epi);
    /* Kernel kind: a lowering chosen when a plan is compiled (measured on the device and
     * cached, or forced by an environment switch), so the graph never depends on timing.
     * Returns the variant (0: lower's default) and sets a bit in *unread for each input that
     * variant does not read (those need not be computed). A node lowered by another variant
     * than 0 absorbs no epilogue. NULL: one lowering. */
    int (*choose)(clg_context *ctx, const clg_tensor *node, uint32_t *unread);
    /* With absorb: lower node writing the last absorbed consumer's result into out; bias is
     * epi->bias as an operand read over epi->bias_shape (NULL without a bias). */
    clg_status (*lower_epilogue)(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                 const clg_operand *out, const clg_epilogue *epi,
                                 const clg_operand *bias);
    /* Device bytes lower() will allocate besides the plan's arenas (state it creates, scratch
     * it keeps), for the compile's memory check before anything is allocated; what (may stay
     * "") names the first of them for the message. NULL: none. */
    size_t (*device_bytes)(const clg_tensor *node, char *what, size_t what_size);
    /* Release what node->attrs.opaque.ptr points at (called when the graph is freed). NULL:
     * nothing. */
    void (*free_attrs)(clg_tensor *node);
} clg_op_info;

#define CLG_NODE_INLINE_INPUTS 3

struct clg_tensor {
    int id; /* creation order: inputs always have smaller ids (topological) */
    clg_graph *graph;
    const clg_op_info *info;
    clg_dtype dtype;
    int ndim;
    int64_t shape[CLG_MAX_DIMS];

    int n_in;
    clg_tensor **in; /* points at in_small or a malloc'ed array */
    clg_tensor *in_small[CLG_NODE_INLINE_INPUTS];

    clg_attrs attrs; /* the op's settings (graph/attrs.h); kind NONE for most ops */

    /* Storage: every node reads as base's buffer at offset + sum(coord[i] * strides[i]).
     * Non-view nodes are their own contiguous base. */
    clg_tensor *base;
    int64_t offset;
    int64_t strides[CLG_MAX_DIMS];

    clg_param *param; /* CLG_KIND_LEAF parameter */
    void *data;       /* constant's host copy */
    char *name;       /* input's name */
    bool no_grad;     /* detached: gradients stop here */
    bool requires_grad;
    bool needs_grad; /* set by clg_backward: a gradient flows through this node */
    bool is_output;
    bool is_effect; /* a side effect (clg_assign, an optimizer's update): computed by every
                       plan of the graph; its first n_targets inputs are the parameters it
                       writes */
    int n_targets;
    clg_tensor *grad;
};

struct clg_graph {
    clg_context *ctx;
    clg_tensor **nodes;
    size_t n_nodes, cap_nodes;
    struct clg_node_slab *slabs; /* where the nodes live (graph.c), newest first */
    clg_status error;
    char error_msg[2048];
    clg_tensor *poison;
    bool backward_done;
    clg_owner_list dependents; /* its plans: freed with the graph */
    /* each parameter's node: open addressing on the parameter's address, at most half full */
    clg_tensor **param_nodes;
    size_t n_param_slots, n_param_nodes;
};

struct clg_param {
    clg_context *ctx;
    char *name;
    clg_dtype dtype;
    int ndim;
    int64_t shape[CLG_MAX_DIMS];
    int64_t numel;
    bool trainable;
    bool transient; /* not persistent: checkpoints skip it (clg_param_set_persistent) */
    char *alias;    /* a second state-dict key (clg_param_set_alias), or NULL */
    cl_mem buffer;
};

/* ---- building nodes ---- */

/* Validate a builder's inputs: g non-NULL and healthy, every tensor non-NULL, of g, not
 * poison. On failure records an error naming op and returns false. */
bool clg_check_inputs(clg_graph *g, const char *op, int n, clg_tensor *const *xs);
/* Record the first error of g (later ones are ignored) and return the poison tensor. */
clg_tensor *clg_graph_fail(clg_graph *g, clg_status status, const char *fmt, ...)
    CLG_PRINTF(3, 4);
/* Builder entry: NULL graph gives NULL, an errored graph gives its poison. */
#define CLG_GUARD(g, op, n, ...)                                                               \
    do {                                                                                       \
        if (!(g)) return NULL;                                                                 \
        clg_tensor *const guard_xs_[] = {__VA_ARGS__};                                          \
        if (!clg_check_inputs((g), (op), (n), guard_xs_)) return (g)->poison;                 \
    } while (0)

/* A new contiguous node. NULL only on host OOM (then g is poisoned: return g->poison). */
clg_tensor *clg_node_new(clg_graph *g, const clg_op_info *info, clg_dtype dtype, int ndim,
                         const int64_t *shape, int n_in, clg_tensor *const *in);
/* The node of parameter p in g, or NULL (constant time). */
clg_tensor *clg_graph_param_node(const clg_graph *g, const clg_param *p);
/* A view node of x with the given shape, offset and strides relative to x's base. */
clg_tensor *clg_view_new(clg_graph *g, const clg_op_info *info, clg_tensor *x, int ndim,
                         const int64_t *shape, int64_t offset, const int64_t *strides);

/* "max_pool2d [2, 3, 4, 4] f32 pool2d{kernel=2x2 stride=2x2 pad=0x0}": op name, shape,
 * dtype and attributes (graph/attrs.c). */
const char *clg_node_describe(const clg_tensor *t, char *buf, size_t size);
/* With CLGRAD_LOG on, one line per node g->nodes[ids[k]] as step k, described as above. */
void clg_trace_nodes(const clg_graph *g, const int *ids, int n);

/* ---- shapes ---- */
int64_t clg_shape_numel(int ndim, const int64_t *shape);
void clg_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
bool clg_is_contiguous(const clg_tensor *t); /* reads its base as a dense row-major block */
bool clg_same_shape(const clg_tensor *a, const clg_tensor *b);
/* Strides that view a layout (old shape, old strides) as shape without copying; false if no
 * such strides exist. Zero (broadcast) strides are layouts too. */
bool clg_reshape_strides(int old_nd, const int64_t *old_shape, const int64_t *old_strides, int nd,
                         const int64_t *shape, int64_t *out);
/* "[2, 3]" into buf. */
const char *clg_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);
/* Normalise a possibly negative axis; false if out of range. */
bool clg_norm_axis(int axis, int ndim, int *out);
/* Broadcast shapes (NumPy rules). false if incompatible. */
bool clg_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                         int64_t *out);

/* ---- lifetime (graph/graph.c, graph/param.c) ---- */
void clg_param_destroy(clg_param *p);
/* Remove p from its context's table and destroy it (a parameter no graph has used yet, e.g.
 * after a layer's failed initialisation). Waits for queued work. */
void clg_param_discard(clg_param *p);
/* The parameter of ctx whose alias (clg_param_set_alias) is name, or NULL. */
clg_param *clg_param_alias_owner(clg_context *ctx, const char *name);
/* What the graph owns besides its nodes (the plans compiled from it): registered when made,
 * removed when freed, freed newest first with the graph. */
clg_status clg_graph_add_dependent(clg_graph *g, void *object, clg_free_fn free_fn);
void clg_graph_remove_dependent(clg_graph *g, void *object);

/* Op infos the compiler needs to recognise. */
extern const clg_op_info clg_op_input, clg_op_param, clg_op_constant, clg_op_scalar,
    clg_op_poison;

#endif
