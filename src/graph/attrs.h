/* Op attributes: the settings a node carries besides its inputs and shape, one struct per op
 * family held in the node as a tagged union (clg_attrs), with a schema per kind (field names,
 * types, offsets) from which one printer describes any node's attributes for logs and
 * messages. */
#ifndef CLG_GRAPH_ATTRS_H
#define CLG_GRAPH_ATTRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/graph.h"

/* Window geometry of im2col / col2im over an [N, C, H, W] image. */
typedef struct clg_conv_geo {
    int64_t kh, kw, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w;
    int64_t groups;
    int64_t n, c, h, w; /* the image */
    int64_t oh, ow;     /* output positions */
} clg_conv_geo;

/* How the columns are laid out, and so how the GEMM is shaped (K = C / G * KH * KW,
 * L = OH * OW):
 *   BATCHED: columns [N, G, K, L]; y[n] = W x cols[n], one strided-batched GEMM whose weight
 *            has batch stride 0 (materialised per image when G > 1);
 *   FOLDED:  columns [G, K, N, L]; Y = W x cols with the batch folded into the GEMM's
 *            columns: one plain GEMM (G = 1) or one batched over groups; the result is
 *            [O, N, OH, OW], returned as a permuted view (the bias add makes it dense);
 *   CONVGEMM: no columns of clgrad's: CLBlast's convgemm where it can do the shape, else
 *            AUTO's im2col lowering (for tests and benchmarks; AUTO measures which is faster). */
typedef enum clg_conv_layout {
    CLG_CONV_LAYOUT_AUTO,
    CLG_CONV_LAYOUT_BATCHED,
    CLG_CONV_LAYOUT_FOLDED,
    CLG_CONV_LAYOUT_CONVGEMM,
    CLG_CONV_LAYOUT_COUNT
} clg_conv_layout;

/* ---- one struct per op family ---- */

/* clg_scalar: the 0-d value passed as a kernel argument. */
typedef struct clg_attr_scalar {
    float value;
} clg_attr_scalar;

/* Elementwise ops with parameters, read as #0 and #1 in their expressions: leaky_relu
 * (a: the slope), clamp (a, b: the bounds). */
typedef struct clg_attr_scalars {
    float a, b;
} clg_attr_scalars;

/* Reductions (sum, mean, max, min, argmax): the reduced axes (bit i: axis i of the input) and
 * the scale applied to a sum (1/N for a mean, else 1). */
typedef struct clg_attr_reduce {
    uint32_t axes_mask;
    float scale;
} clg_attr_reduce;

/* Random generators: (a, b) = (lo, hi) for uniform, (mean, std) for the normals; seed: the
 * key (the node's id picks the stream). */
typedef struct clg_attr_random {
    float a, b;
    uint64_t seed;
} clg_attr_random;

/* matmul (and the conv product, a matmul): operands read transposed. */
typedef struct clg_attr_matmul {
    bool trans_a, trans_b;
} clg_attr_matmul;

/* One axis (non-negative): concat, index_select, scatter_add. */
typedef struct clg_attr_axis {
    int axis;
} clg_attr_axis;

/* permute: output axis i is input axis perm[i] (ndim entries). */
typedef struct clg_attr_permute {
    int ndim;
    int64_t perm[CLG_MAX_DIMS];
} clg_attr_permute;

/* slice: axis, first index and step (the stop is in the shape). */
typedef struct clg_attr_slice {
    int axis;
    int64_t start, step;
} clg_attr_slice;

/* pad (embed: x placed inside a tensor filled with value; also slice's backward): per axis,
 * where x starts and the step between its elements. */
typedef struct clg_attr_embed {
    int ndim;
    int64_t start[CLG_MAX_DIMS], step[CLG_MAX_DIMS];
    float value;
} clg_attr_embed;

/* im2col, col2im, convgemm: the geometry, the columns' layout (BATCHED or FOLDED) and the
 * value of taps outside the image (im2col). */
typedef struct clg_attr_conv {
    clg_conv_geo geo;
    clg_conv_layout layout;
    float pad_value;
} clg_attr_conv;

/* max_pool2d and its backward: window size, stride and padding, (h, w). */
typedef struct clg_attr_pool {
    int64_t kernel[2], stride[2], pad[2];
} clg_attr_pool;

/* cross_entropy's row kernels: the scale of each row's loss (1/N for a mean). */
typedef struct clg_attr_loss {
    float scale;
} clg_attr_loss;

/* Row kernels over the last axis (ops/rows.c: fused softmax, log_softmax, logsumexp, layer
 * norm and their backward passes). x is read as scale * x; mask (a clg_row_mask, a bit set)
 * is causal (in each [rows, cols] matrix of the leading dims, row i keeps columns
 * j <= i + diagonal), an additive tensor operand, or both; eps, weight and bias are layer
 * norm's (whether its weight and bias operands are there). */
typedef enum clg_row_mask {
    CLG_ROW_MASK_NONE = 0,
    CLG_ROW_MASK_CAUSAL = 1,
    CLG_ROW_MASK_ADDITIVE = 2,
    CLG_ROW_MASK_CAUSAL_ADDITIVE = 3,
    CLG_ROW_MASK_COUNT
} clg_row_mask;
typedef struct clg_attr_rows {
    float scale, eps;
    int mask;
    int64_t rows;     /* CAUSAL: rows per matrix (the second-to-last dim) */
    int64_t diagonal; /* CAUSAL: the offset of the last kept column */
    bool weight, bias;
} clg_attr_rows;

/* Fused attention (ops/attention.c): softmax(scale q k^T + mask) v; causal keeps key j for
 * query i when j <= i + (S - T) (aligned to the last key, as a KV cache needs). */
typedef struct clg_attr_attention {
    float scale;
    bool causal;
    bool has_mask;
} clg_attr_attention;

/* Sampling on the device (ops/sample.c: multinomial, top-k): k (0: all), temperature, the
 * key of the random stream. */
typedef struct clg_attr_sample {
    int64_t k;
    float temperature;
    uint64_t seed;
} clg_attr_sample;

/* Scans along an axis (cumsum): inclusive or exclusive, forward or reversed. */
typedef struct clg_attr_scan {
    int axis;
    bool exclusive, reverse;
} clg_attr_scan;

/* Recurrent sequences (ops/recurrent.c): the cell (a clg_cell_kind), the direction, the
 * sizes (T steps, B sequences, H hidden units), which optional operands the node has and, on
 * the backward node, which gradients flow in (dout, dh_n, dc_n) and whether dh0 is wanted. */
typedef struct clg_attr_recurrent {
    int cell;
    bool reverse;
    int64_t T, B, H;
    bool bias, h0, c0, lengths;
    bool dout, dh_n, dc_n, dh0;
} clg_attr_recurrent;

/* Data an op owns and releases with its info's free_attrs (the optimizer's update). */
typedef struct clg_attr_opaque {
    void *ptr;
} clg_attr_opaque;

typedef enum clg_attrs_kind {
    CLG_ATTRS_NONE, /* zero-initialised nodes: no attributes */
    CLG_ATTRS_SCALAR,
    CLG_ATTRS_SCALARS,
    CLG_ATTRS_REDUCE,
    CLG_ATTRS_RANDOM,
    CLG_ATTRS_MATMUL,
    CLG_ATTRS_AXIS,
    CLG_ATTRS_PERMUTE,
    CLG_ATTRS_SLICE,
    CLG_ATTRS_EMBED,
    CLG_ATTRS_CONV,
    CLG_ATTRS_POOL,
    CLG_ATTRS_LOSS,
    CLG_ATTRS_ROWS,
    CLG_ATTRS_ATTENTION,
    CLG_ATTRS_SAMPLE,
    CLG_ATTRS_SCAN,
    CLG_ATTRS_RECURRENT,
    CLG_ATTRS_OPAQUE,
    CLG_ATTRS_COUNT
} clg_attrs_kind;

/* A node's attributes: kind says which member is set. Build with a compound literal,
 * (clg_attrs){.kind = CLG_ATTRS_AXIS, .axis = {a}}. */
typedef struct clg_attrs {
    clg_attrs_kind kind;
    union {
        clg_attr_scalar scalar;
        clg_attr_scalars scalars;
        clg_attr_reduce reduce;
        clg_attr_random random;
        clg_attr_matmul matmul;
        clg_attr_axis axis;
        clg_attr_permute permute;
        clg_attr_slice slice;
        clg_attr_embed embed;
        clg_attr_conv conv;
        clg_attr_pool pool;
        clg_attr_loss loss;
        clg_attr_rows rows;
        clg_attr_attention attention;
        clg_attr_sample sample;
        clg_attr_scan scan;
        clg_attr_recurrent recurrent;
        clg_attr_opaque opaque;
    };
} clg_attrs;

/* ---- schemas ---- */

typedef enum clg_attr_type {
    CLG_ATTR_BOOL, /* bool: true / false */
    CLG_ATTR_INT,  /* int */
    CLG_ATTR_I64,  /* int64_t */
    CLG_ATTR_F32,  /* float, %g */
    CLG_ATTR_U64,  /* uint64_t */
    CLG_ATTR_AXES, /* uint32_t bit mask of axes: [0, 2] */
    CLG_ATTR_ENUM, /* an enum, printed by its name in names[] */
    CLG_ATTR_TYPE_COUNT
} clg_attr_type;

/* One field of a kind's struct, at offset from the struct's start. INT and I64 fields may
 * hold several values: count of them, printed as 2x3, or with count CLG_ATTR_LIST as many as
 * the int at len_offset says, printed as [2, 3]. */
#define CLG_ATTR_LIST (-1)
typedef struct clg_attr_field {
    const char *name;
    clg_attr_type type;
    size_t offset;
    int count;                /* values at offset: 0 or 1 for one, or CLG_ATTR_LIST */
    size_t len_offset;        /* CLG_ATTR_LIST: the int holding the list's length */
    const char *const *names; /* ENUM: names by value (n_names of them) */
    int n_names;
} clg_attr_field;

typedef struct clg_attr_schema {
    const char *name; /* "pool2d", "reduce", ... */
    int n_fields;
    const clg_attr_field *fields;
} clg_attr_schema;

/* The schema of a kind; NULL for a kind out of range. */
const clg_attr_schema *clg_attrs_schema(clg_attrs_kind kind);
/* "pool2d{kernel=2x2 stride=2x2 pad=0x0}", "reduce{axes=[1] scale=0.5}", "" for NONE, into
 * buf (truncated to size); returns buf. */
const char *clg_attrs_describe(const clg_attrs *a, char *buf, size_t size);

#endif
