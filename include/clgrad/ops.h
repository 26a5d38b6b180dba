/* Graph ops. Every builder takes the graph first, infers the result's shape (NumPy-style
 * broadcasting for elementwise ops), and has a backward rule used by clg_backward.
 * On a user error (NULL tensor, tensor of another graph, bad shape or dtype, bad axis) the
 * builder poisons the graph and returns its poison tensor; see graph.h.
 * Axes may be negative (counted from the end). */
#ifndef CLGRAD_OPS_H
#define CLGRAD_OPS_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Unary, elementwise (f32) ---- */
clg_tensor *clg_neg(clg_graph *g, clg_tensor *x);
clg_tensor *clg_abs(clg_graph *g, clg_tensor *x);
clg_tensor *clg_exp(clg_graph *g, clg_tensor *x);
clg_tensor *clg_log(clg_graph *g, clg_tensor *x);
clg_tensor *clg_sqrt(clg_graph *g, clg_tensor *x);
clg_tensor *clg_rsqrt(clg_graph *g, clg_tensor *x);
clg_tensor *clg_square(clg_graph *g, clg_tensor *x);
clg_tensor *clg_reciprocal(clg_graph *g, clg_tensor *x);
clg_tensor *clg_tanh(clg_graph *g, clg_tensor *x);
clg_tensor *clg_sigmoid(clg_graph *g, clg_tensor *x);
clg_tensor *clg_relu(clg_graph *g, clg_tensor *x);
clg_tensor *clg_leaky_relu(clg_graph *g, clg_tensor *x, float slope);
/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
clg_tensor *clg_gelu(clg_graph *g, clg_tensor *x);
/* GELU, exact: x Phi(x) = 0.5 x (1 + erf(x / sqrt(2))) (PyTorch's nn.GELU() default, which
 * nanoGPT uses). */
clg_tensor *clg_gelu_exact(clg_graph *g, clg_tensor *x);
clg_tensor *clg_sin(clg_graph *g, clg_tensor *x);
clg_tensor *clg_cos(clg_graph *g, clg_tensor *x);
clg_tensor *clg_clamp(clg_graph *g, clg_tensor *x, float lo, float hi);
/* Convert between f32 and i32 (f32 -> i32 truncates toward zero). No gradient. */
clg_tensor *clg_cast(clg_graph *g, clg_tensor *x, clg_dtype dtype);

/* ---- Binary, elementwise with broadcasting ---- */
clg_tensor *clg_add(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_sub(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_mul(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_div(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_pow(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_maximum(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_minimum(clg_graph *g, clg_tensor *a, clg_tensor *b);
/* Scalar shorthands: x + s, x * s, x ^ s. */
clg_tensor *clg_add_scalar(clg_graph *g, clg_tensor *x, float s);
clg_tensor *clg_mul_scalar(clg_graph *g, clg_tensor *x, float s);
clg_tensor *clg_pow_scalar(clg_graph *g, clg_tensor *x, float s);

/* Comparisons give an f32 mask of 0 and 1 (no gradient). */
clg_tensor *clg_eq(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_ne(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_lt(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_le(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_gt(clg_graph *g, clg_tensor *a, clg_tensor *b);
clg_tensor *clg_ge(clg_graph *g, clg_tensor *a, clg_tensor *b);
/* cond != 0 ? a : b, all three broadcast together. */
clg_tensor *clg_where(clg_graph *g, clg_tensor *cond, clg_tensor *a, clg_tensor *b);

/* ---- Reductions over a set of axes (naxes = 0 or axes = NULL: all axes) ---- */
clg_tensor *clg_sum(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims);
clg_tensor *clg_mean(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims);
clg_tensor *clg_max(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims);
clg_tensor *clg_min(clg_graph *g, clg_tensor *x, int naxes, const int *axes, bool keepdims);
/* Population variance (divides by N - correction). */
clg_tensor *clg_variance(clg_graph *g, clg_tensor *x, int naxes, const int *axes,
                         bool keepdims, int correction);
/* Index (i32) of the first maximum along one axis. No gradient. */
clg_tensor *clg_argmax(clg_graph *g, clg_tensor *x, int axis, bool keepdims);

/* ---- Softmax family, numerically stable ---- */
clg_tensor *clg_softmax(clg_graph *g, clg_tensor *x, int axis);
clg_tensor *clg_log_softmax(clg_graph *g, clg_tensor *x, int axis);
clg_tensor *clg_logsumexp(clg_graph *g, clg_tensor *x, int axis, bool keepdims);

/* ---- Row kernels over the last axis (ops/rows.c): one pass per row, forward and backward.
 * clg_softmax, clg_log_softmax and clg_logsumexp over the last axis use them too. */
/* softmax(scale x + mask) over the last axis in one kernel. mask: NULL, or f32 additive,
 * broadcastable to x (0 keeps a column, -INFINITY drops it); causal: in each [T, S] matrix of
 * x's last two dims, row i keeps the columns j <= i + (S - T). A row with every column
 * dropped gives zeros (and a zero gradient). */
clg_tensor *clg_softmax_masked(clg_graph *g, clg_tensor *x, float scale, clg_tensor *mask,
                               bool causal);
/* Layer normalisation over the last normalized_ndim axes (PyTorch's LayerNorm):
 * y = (x - mean) / sqrt(var + eps) * weight + bias with the biased variance; weight and bias
 * have the normalised shape, NULL for none. Forward one kernel, backward at most two. */
clg_tensor *clg_layer_norm(clg_graph *g, clg_tensor *x, int normalized_ndim, clg_tensor *weight,
                           clg_tensor *bias, float eps);

/* ---- Attention (ops/attention.c) ----
 * softmax(scale q k^T + mask) v for q [..., T, D], k [..., S, D], v [..., S, Dv] (leading
 * dims broadcast as in clg_matmul) -> [..., T, Dv]. mask: NULL or f32 additive broadcastable
 * to [..., T, S]; causal: query i sees the keys j <= i + (S - T); scale 0 means 1/sqrt(D).
 * Where the device allows, fused kernels with an online softmax that never store the T x S
 * scores (forward and backward); else, or with CLGRAD_ATTENTION=composite, the composite of
 * two matmuls around clg_softmax. On a CPU device the composite also while all the scores
 * take at most 8 MiB, where its GEMMs are faster than the fused kernels. CLGRAD_ATTENTION=fused
 * refuses shapes the kernels cannot take instead of falling back. */
clg_tensor *clg_attention(clg_graph *g, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                          clg_tensor *mask, float scale, bool causal);

/* ---- Matrix products ----
 * a: [..., M, K] (or [..., K, M] with trans_a), b: [..., K, N] (or [..., N, K] with trans_b);
 * leading batch dimensions broadcast. 1-D operands are not promoted: use reshape. All GEMMs
 * go through one dispatch point (CLBlast strided-batched, or clgrad's kernels where measured
 * faster). */
clg_tensor *clg_matmul(clg_graph *g, clg_tensor *a, clg_tensor *b, bool trans_a, bool trans_b);

/* ---- Movement ---- */
/* One entry of shape may be -1 (inferred). Free when the layout allows, else a copy. */
clg_tensor *clg_reshape(clg_graph *g, clg_tensor *x, int ndim, const int64_t *shape);
clg_tensor *clg_flatten(clg_graph *g, clg_tensor *x, int start_axis); /* [a,b,c,d] -> [a,b*c*d] */
clg_tensor *clg_permute(clg_graph *g, clg_tensor *x, const int *perm);
clg_tensor *clg_transpose(clg_graph *g, clg_tensor *x, int axis0, int axis1);
clg_tensor *clg_unsqueeze(clg_graph *g, clg_tensor *x, int axis);
clg_tensor *clg_squeeze(clg_graph *g, clg_tensor *x, int axis);
/* Elements start, start+step, ... < stop along axis (step >= 1; start/stop clamp like Python,
 * negative values count from the end). */
clg_tensor *clg_slice(clg_graph *g, clg_tensor *x, int axis, int64_t start, int64_t stop,
                      int64_t step);
/* Views of x along axis, n pieces of sizes[0..n-1] (which must sum to x's extent), into
 * out[0..n-1]. On error the graph is poisoned and out[] holds its poison. */
clg_status clg_split(clg_graph *g, clg_tensor *x, int axis, int n, const int64_t *sizes,
                     clg_tensor **out);
/* clg_split into chunks pieces of equal size (the extent must divide evenly). */
clg_status clg_chunk(clg_graph *g, clg_tensor *x, int chunks, int axis, clg_tensor **out);
clg_tensor *clg_concat(clg_graph *g, int n, clg_tensor *const *xs, int axis);
clg_tensor *clg_stack(clg_graph *g, int n, clg_tensor *const *xs, int axis);
/* before[i], after[i]: elements added on each side of axis i, filled with value. */
clg_tensor *clg_pad(clg_graph *g, clg_tensor *x, const int64_t *before, const int64_t *after,
                    float value);
clg_tensor *clg_broadcast_to(clg_graph *g, clg_tensor *x, int ndim, const int64_t *shape);
/* A contiguous copy (rarely needed: ops copy when they must). */
clg_tensor *clg_contiguous(clg_graph *g, clg_tensor *x);
/* x's values with the gradient stopped (torch's detach, jax's stop_gradient): nothing flows
 * back through the result. Costs nothing at run time. */
clg_tensor *clg_detach(clg_graph *g, clg_tensor *x);

/* Gather along axis: out[..., i, ...] = x[..., index[i], ...]; index is a 1-D i32 tensor.
 * Out-of-range indices read 0. */
clg_tensor *clg_index_select(clg_graph *g, clg_tensor *x, int axis, clg_tensor *index);
/* Embedding lookup: table [V, D], index i32 of any shape S -> [S..., D]. */
clg_tensor *clg_embedding(clg_graph *g, clg_tensor *table, clg_tensor *index);
/* Gather's adjoint: out has size dim_size along axis, zeros elsewhere, and
 * out[..., index[i], ...] += src[..., i, ...]. Deterministic (no atomics). */
clg_tensor *clg_scatter_add(clg_graph *g, clg_tensor *src, int axis, clg_tensor *index,
                            int64_t dim_size);
/* f32 one-hot of an i32 tensor: shape [S..., classes]. */
clg_tensor *clg_one_hot(clg_graph *g, clg_tensor *index, int64_t classes);
/* 0, 1, ..., n-1 as an f32 or i32 vector. */
clg_tensor *clg_arange(clg_graph *g, int64_t n, clg_dtype dtype);

/* ---- Random (Philox-4x32-10, counter based): the same uniform numbers on every device.
 * Each plan run draws fresh numbers: the counter advances per run; seed fixes the stream. */
clg_tensor *clg_rand_uniform(clg_graph *g, int ndim, const int64_t *shape, float lo, float hi,
                             uint64_t seed);
clg_tensor *clg_rand_normal(clg_graph *g, int ndim, const int64_t *shape, float mean,
                            float std, uint64_t seed);
/* Normal restricted to [mean - 2 std, mean + 2 std] (by redrawing, as TensorFlow does). */
clg_tensor *clg_rand_truncated_normal(clg_graph *g, int ndim, const int64_t *shape,
                                      float mean, float std, uint64_t seed);
/* Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
 * With training false (or p == 0) it returns x unchanged. */
clg_tensor *clg_dropout(clg_graph *g, clg_tensor *x, float p, bool training, uint64_t seed);

/* ---- Sequences: gathers along an axis, masks, scans, sampling ---- */
/* out[..., j, ...] = x[..., index[..., j, ...], ...] along axis (numpy's take_along_axis,
 * torch.gather): index is i32 of x's rank, its extent along axis free, the other dims equal
 * to x's or 1 (broadcast). Out-of-range indices read 0. The gradient scatter-adds into x's
 * shape, duplicates accumulating, deterministically (no atomics). */
clg_tensor *clg_take_along_axis(clg_graph *g, clg_tensor *x, clg_tensor *index, int axis);
/* x[..., i, j] where j <= i + diagonal, else 0, over the last two dims. */
clg_tensor *clg_tril(clg_graph *g, clg_tensor *x, int64_t diagonal);
/* The f32 [T, S] additive causal mask: 0 where j <= i + (S - T), -INFINITY elsewhere
 * (computed on the device where it is used; no gradient). */
clg_tensor *clg_causal_mask(clg_graph *g, int64_t T, int64_t S);
/* Running sums of f32 x along axis: inclusive (out[i] = x[0] + ... + x[i]) or exclusive
 * (from 0, up to x[i - 1]); reverse sums from the end. */
clg_tensor *clg_cumsum(clg_graph *g, clg_tensor *x, int axis, bool exclusive, bool reverse);
/* One index (i32) per row of f32 logits [..., V], shape [..., 1] (ready for
 * clg_take_along_axis), drawn on the device from softmax(logits / temperature) restricted to
 * the top_k largest logits (0: all V; ties at the cut: the lower index). temperature > 0.
 * Each run draws afresh (the run counter of the random ops); seed fixes the stream. A row
 * whose kept logits include NaN gives -1. No gradient. */
clg_tensor *clg_multinomial(clg_graph *g, clg_tensor *logits, float temperature, int64_t top_k,
                            uint64_t seed);
/* The k largest values of f32 x along the last axis in descending order (ties: the lower
 * index first; NaN counts as the largest) and their indices (i32), both [..., k]. values
 * carries a gradient to the chosen elements. Ordering the k chosen costs k^2 comparisons per
 * row: meant for k well below the row's length. On error the graph is poisoned and both hold
 * its poison. */
clg_status clg_topk(clg_graph *g, clg_tensor *x, int64_t k, clg_tensor **values,
                    clg_tensor **indices);

/* ---- Recurrent sequences (ops/recurrent.c) ---- */
typedef enum clg_cell_kind {
    CLG_CELL_RNN_TANH, /* h' = tanh(x_t + h W_hh^T + b_hh)                      1 gate  */
    CLG_CELL_RNN_RELU, /* h' = relu(x_t + h W_hh^T + b_hh)                      1 gate  */
    CLG_CELL_LSTM,     /* gates i, f, g, o (PyTorch's order); c' = f c + i g,
                          h' = o tanh(c')                                        4 gates */
    CLG_CELL_GRU,      /* gates r, z, n (PyTorch's): r, z = sigmoid(x + h W^T + b),
                          n = tanh(x_n + r (h W_hn^T + b_hn)), h' = (1 - z) n + z h  3 gates */
    CLG_CELL_KIND_COUNT
} clg_cell_kind;

/* Gates per hidden unit of a cell: 1, 1, 4, 3 (-1 for a bad kind). */
int clg_cell_gates(clg_cell_kind cell);

/* One direction of one recurrent layer over a whole time-first sequence, in cuDNN's form:
 * xproj [T, B, G H] is the input's part of every step's gates (x W_ih^T + b_ih: one GEMM the
 * caller builds, e.g. clg_linear_forward over the whole sequence); each step then runs one GEMM
 * (h W_hh^T) and one fused kernel for the gates and the state update, the backward pass its
 * mirror, and the gradient of w_hh is one GEMM over all steps. G = clg_cell_gates(cell).
 * w_hh [G H, H]; b_hh [G H] or NULL; h0 [B, H] or NULL (zeros); c0 [B, H] or NULL (zeros),
 * LSTM only. lengths: NULL (every sequence has T steps) or i32 [B]: sequence b has
 * lengths[b] in [0, T] valid steps; at its later steps the state passes through unchanged and
 * its output is 0 (PyTorch's packed sequences). reverse: run from step T - 1 down to 0 (the
 * backward direction of a bidirectional layer; with lengths, each sequence starts at its own
 * last valid step). Results: *out [T, B, H] (every step's h), *h_n [B, H] (each sequence's
 * state after its last valid step), *c_n [B, H] for LSTM (NULL otherwise; c_n may be NULL
 * for a caller that does not want it). Gradients flow to xproj, w_hh, b_hh, h0 and c0.
 * On error the graph is poisoned and the results hold its poison. */
clg_status clg_recurrent(clg_graph *g, clg_cell_kind cell, clg_tensor *xproj, clg_tensor *w_hh,
                         clg_tensor *b_hh, clg_tensor *h0, clg_tensor *c0, clg_tensor *lengths,
                         bool reverse, clg_tensor **out, clg_tensor **h_n, clg_tensor **c_n);

/* ---- Side effects ---- */
/* Every run of every plan of g writes value into target (same shape and dtype), e.g.
 * batch norm's running statistics or a target network's soft update. The write happens at
 * this op's place in the graph's order: ops built before it read the old value, ops built
 * after it the new one. */
clg_status clg_assign(clg_graph *g, clg_param *target, clg_tensor *value);

/* ---- Environments on the device (ops/cartpole.c) ----
 * A batch of N CartPole-v1 environments (as rl.h's clg_cartpole, in double precision where
 * the device has cl_khr_fp64, else in float) held in parameters: state i32 [N, 8] (the four
 * state doubles' bits), counters i32 [N, 2] (steps in the episode, episodes begun), obs f32
 * [N, 4] (the observation, ready as a Q-network's input), info f32 [N, 8] (after a step: the
 * observation it reached, reward, terminated, truncated, the ended episode's length or 0).
 * Both are side effects of every run, like clg_assign; a reset of environment i's episode e
 * draws from Philox keyed by seed at counter (i, e), so each environment has its own stream. */
/* Start a new episode in every environment. */
clg_status clg_cartpole_batch_reset(clg_graph *g, clg_param *state, clg_param *counters,
                                    clg_param *obs, uint64_t seed);
/* One step of every environment with action (i32, N elements; 1 pushes right, any other
 * value left); an episode that ends is reset at once, obs then holding its successor's first
 * observation and info the step that ended it. */
clg_status clg_cartpole_batch_step(clg_graph *g, clg_param *state, clg_param *counters,
                                   clg_param *obs, clg_param *info, clg_tensor *action,
                                   uint64_t seed);

/* ---- Convolution, pooling, normalisation (NCHW: [batch, channels, height, width]) ---- */

typedef enum clg_padding {
    CLG_PADDING_EXPLICIT, /* pad_top, pad_bottom, pad_left, pad_right as given */
    CLG_PADDING_SAME,     /* output size ceil(in / stride); the total padding is split with the
                             odd element at the bottom/right (TensorFlow; PyTorch at stride 1) */
    CLG_PADDING_VALID,    /* no padding */
    CLG_PADDING_COUNT
} clg_padding;

/* Zero-initialised it means stride 1, no padding, dilation 1, one group. */
typedef struct clg_conv2d_params {
    int stride_h, stride_w; /* 0 means 1 */
    clg_padding padding;
    int pad_top, pad_bottom, pad_left, pad_right; /* CLG_PADDING_EXPLICIT only, >= 0 */
    int dilation_h, dilation_w; /* 0 means 1 */
    int groups;                 /* 0 means 1; channels and filters must divide by it */
} clg_conv2d_params;

/* 2-D cross-correlation (PyTorch's conv2d): x [N, C, H, W], w [O, C / groups, KH, KW],
 * bias [O] or NULL -> [N, O, OH, OW], OH = (H + pad_top + pad_bottom - dilation_h (KH - 1)
 * - 1) / stride_h + 1 (likewise OW). Padded taps read zero. p may be NULL (defaults). Lowered
 * to im2col and one GEMM; gradients for x, w and bias. */
clg_tensor *clg_conv2d(clg_graph *g, clg_tensor *x, clg_tensor *w, clg_tensor *bias,
                       const clg_conv2d_params *p);

/* Pooling windows: symmetric padding of at most half the kernel (as PyTorch requires). */
typedef struct clg_pool2d_params {
    int kernel_h, kernel_w; /* >= 1 */
    int stride_h, stride_w; /* 0 means the kernel size (PyTorch's default) */
    int pad_h, pad_w;       /* >= 0, pad_h <= kernel_h / 2, pad_w <= kernel_w / 2 */
} clg_pool2d_params;

/* x [N, C, H, W] -> [N, C, OH, OW], OH = (H + 2 pad_h - kernel_h) / stride_h + 1. Padding
 * never wins the max. The gradient goes to the first maximum of each window (row-major), as in
 * PyTorch; NaN counts as a maximum. */
clg_tensor *clg_max_pool2d(clg_graph *g, clg_tensor *x, const clg_pool2d_params *p);
/* Window means that count padded taps as zeros and always divide by kernel_h * kernel_w
 * (PyTorch's default, count_include_pad=True). */
clg_tensor *clg_avg_pool2d(clg_graph *g, clg_tensor *x, const clg_pool2d_params *p);
/* The mean over H and W: [N, C, H, W] -> [N, C, 1, 1] (PyTorch's AdaptiveAvgPool2d(1)). */
clg_tensor *clg_global_avg_pool2d(clg_graph *g, clg_tensor *x);

/* Affine resampling (PyTorch's affine_grid + grid_sample, bilinear, zero padding,
 * align_corners=False): theta [N, 2, 3] maps each output pixel's centre, in [-1, 1]
 * coordinates (x along W first), to a point of image n of x [N, C, H, W], read bilinearly
 * with taps outside the image 0 -> [N, C, out_h, out_w]. Gradients for x and theta. */
clg_tensor *clg_affine_grid_sample(clg_graph *g, clg_tensor *theta, clg_tensor *x, int64_t out_h,
                                   int64_t out_w);

/* Batch normalisation over every axis but the channel axis 1, for x [N, C, H, W]:
 * y = (x - mean) / sqrt(var + eps) * weight + bias, weight and bias [C] tensors (NULL: 1 and
 * 0). Training uses the batch's mean and biased variance and, when running_mean and
 * running_var (f32 parameters of shape [C]) are given, adds clg_assign effects that update
 * them on every run as PyTorch does: r = (1 - momentum) r + momentum s, with the unbiased
 * batch variance for running_var (PyTorch's momentum is 0.1, eps 1e-5). Evaluation
 * (training false) normalises with the running statistics (with the batch's when they are
 * NULL). Training needs more than one value per channel. */
clg_tensor *clg_batch_norm2d(clg_graph *g, clg_tensor *x, clg_tensor *weight, clg_tensor *bias,
                             clg_param *running_mean, clg_param *running_var, float momentum,
                             float eps, bool training);
/* The same for x [N, C] or [N, C, L] (PyTorch's BatchNorm1d). */
clg_tensor *clg_batch_norm1d(clg_graph *g, clg_tensor *x, clg_tensor *weight, clg_tensor *bias,
                             clg_param *running_mean, clg_param *running_var, float momentum,
                             float eps, bool training);

#ifdef __cplusplus
}
#endif

#endif
