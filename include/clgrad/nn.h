/* Neural-network helpers on top of the graph engine: parameter initialisers (on the device,
 * seeded, PyTorch's torch.nn.init semantics), the linear layer, losses and metrics.
 * Ownership: layers hold parameters owned by their context; a confusion matrix is owned by
 * the caller (clg_confusion_free). Loss and metric builders follow ops.h: a user error
 * poisons the graph with a message naming the op and the shapes. */
#ifndef CLGRAD_NN_H
#define CLGRAD_NN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "graph.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Initialisers ----
 * Each fills a parameter in place with a kernel queued on the context's device (it does not
 * wait). Random ones draw from Philox keyed by seed: the same seed gives the same values on
 * every device; use different seeds for different parameters. They need an f32 parameter
 * (clg_init_zeros also takes i32). Fans follow PyTorch: for a weight [out, in, k...],
 * fan_in = in * prod(k), fan_out = out * prod(k); fewer than 2 dimensions is an error. */

typedef enum clg_fan_mode {
    CLG_FAN_MODE_IN,  /* preserve the variance of the forward pass */
    CLG_FAN_MODE_OUT, /* preserve the variance of the backward pass */
    CLG_FAN_MODE_COUNT
} clg_fan_mode;

typedef enum clg_nonlinearity {
    CLG_NONLINEARITY_LINEAR,     /* gain 1 (also for convolutions and the identity) */
    CLG_NONLINEARITY_SIGMOID,    /* gain 1 */
    CLG_NONLINEARITY_TANH,       /* gain 5/3 */
    CLG_NONLINEARITY_RELU,       /* gain sqrt(2) */
    CLG_NONLINEARITY_LEAKY_RELU, /* gain sqrt(2 / (1 + a^2)), a = negative slope */
    CLG_NONLINEARITY_COUNT
} clg_nonlinearity;

/* PyTorch's calculate_gain: the gain of nonlinearity (param: leaky ReLU's slope). */
float clg_init_gain(clg_nonlinearity nonlinearity, float param);
/* fan_in and fan_out of p (see above); CLG_ERR_SHAPE for a parameter of rank < 2. */
clg_status clg_init_fans(const clg_param *p, int64_t *fan_in, int64_t *fan_out);

clg_status clg_init_zeros(clg_param *p);
clg_status clg_init_constant(clg_param *p, float value);
/* U[lo, hi) */
clg_status clg_init_uniform(clg_param *p, float lo, float hi, uint64_t seed);
/* N(mean, std^2) */
clg_status clg_init_normal(clg_param *p, float mean, float std, uint64_t seed);
/* N(mean, std^2) restricted to [mean - 2 std, mean + 2 std] by redrawing (TensorFlow's
 * truncated_normal; the result's standard deviation is about 0.88 std). */
clg_status clg_init_truncated_normal(clg_param *p, float mean, float std, uint64_t seed);
/* Glorot: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)). */
clg_status clg_init_xavier_uniform(clg_param *p, float gain, uint64_t seed);
/* Glorot: N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out)). */
clg_status clg_init_xavier_normal(clg_param *p, float gain, uint64_t seed);
/* He: U(-b, b), b = gain * sqrt(3 / fan), gain = clg_init_gain(nonlinearity, a). PyTorch's
 * default is a = 0, CLG_FAN_MODE_IN, CLG_NONLINEARITY_LEAKY_RELU (that is, gain sqrt(2)). */
clg_status clg_init_kaiming_uniform(clg_param *p, float a, clg_fan_mode mode,
                                    clg_nonlinearity nonlinearity, uint64_t seed);
/* He: N(0, s^2), s = gain / sqrt(fan). */
clg_status clg_init_kaiming_normal(clg_param *p, float a, clg_fan_mode mode,
                                   clg_nonlinearity nonlinearity, uint64_t seed);

/* ---- Layers ---- */

/* y = x W^T + b, W [out_features, in_features], b [out_features] (NULL without bias). */
typedef struct clg_linear {
    clg_param *weight, *bias;
    int64_t in_features, out_features;
} clg_linear;

/* Create "<name>.weight" [out, in] and "<name>.bias" [out] (PyTorch's state-dict keys) in
 * ctx, initialised like torch.nn.Linear: both U(-1/sqrt(in), 1/sqrt(in)) (the weight through
 * kaiming_uniform with a = sqrt(5)), weight from seed and bias from a seed derived from it.
 * Fails (nothing created) on a duplicate name or bad sizes. */
clg_status clg_linear_init(clg_context *ctx, clg_linear *layer, const char *name,
                           int64_t in_features, int64_t out_features, bool bias, uint64_t seed);
/* x [..., in_features] -> [..., out_features]; one GEMM reading W transposed in place.
 * (C forbids a function named like the clg_linear type, hence _forward.) */
clg_tensor *clg_linear_forward(clg_graph *g, const clg_linear *layer, clg_tensor *x);

/* ---- Recurrent layers (nn/rnn.c): torch.nn.RNN, LSTM and GRU ----
 * Parameters "<name>.weight_ih_l{k}" [G H, I_k], "<name>.weight_hh_l{k}" [G H, H],
 * "<name>.bias_ih_l{k}", "<name>.bias_hh_l{k}" [G H], with "_reverse" for the second
 * direction (I_0 = input_size, I_k = dirs H above), PyTorch's layouts and gate orders, so a
 * state dict saved from torch.nn.LSTM loads into clgrad and back (an empty name gives the bare
 * keys "weight_ih_l0", ... of a module saved on its own). Initialised as PyTorch does: every
 * tensor U(-1/sqrt(H), 1/sqrt(H)). */
#define CLG_RNN_MAX_LAYERS 16

typedef struct clg_rnn_config {
    clg_cell_kind cell;
    int64_t input_size, hidden_size;
    int num_layers;     /* 0 means 1; at most CLG_RNN_MAX_LAYERS */
    bool no_bias;       /* PyTorch's bias=False */
    bool bidirectional; /* outputs [..., 2 H]: forward direction first */
    bool batch_first;   /* x and the output [B, T, ...] instead of [T, B, ...] */
    float dropout;      /* between layers (not after the last), in training only */
} clg_rnn_config;

typedef struct clg_rnn {
    clg_rnn_config config;
    /* [layer][direction]; bias NULL with no_bias */
    clg_param *weight_ih[CLG_RNN_MAX_LAYERS][2], *weight_hh[CLG_RNN_MAX_LAYERS][2];
    clg_param *bias_ih[CLG_RNN_MAX_LAYERS][2], *bias_hh[CLG_RNN_MAX_LAYERS][2];
} clg_rnn;

/* Create the layer's parameters in ctx (seeded; nothing is created on failure: a duplicate
 * name or bad sizes). */
clg_status clg_rnn_init(clg_context *ctx, clg_rnn *layer, const char *name,
                        const clg_rnn_config *config, uint64_t seed);

/* States as PyTorch's h_n and c_n: [layers * dirs, B, H], index layer * dirs + direction. */
typedef struct clg_rnn_state {
    clg_tensor *h;
    clg_tensor *c; /* LSTM only */
} clg_rnn_state;

/* x [T, B, input_size] ([B, T, input_size] batch_first) -> [T, B, dirs H] (batch_first
 * [B, T, dirs H]). initial: NULL, or states (either member NULL: zeros). lengths: NULL or i32
 * [B] (see clg_recurrent: padded steps keep the state and output 0). training turns dropout
 * on, drawn from seed. final (may be NULL) receives h_n and c_n. On error the graph is poisoned
 * and the poison tensor returned (and put in final). */
clg_tensor *clg_rnn_forward(clg_graph *g, const clg_rnn *layer, clg_tensor *x,
                            const clg_rnn_state *initial, clg_tensor *lengths, bool training,
                            uint64_t seed, clg_rnn_state *final);

/* ---- Losses ---- */

typedef enum clg_reduction {
    CLG_REDUCTION_MEAN, /* a 0-d mean over every element (every row for cross-entropy) */
    CLG_REDUCTION_SUM,  /* a 0-d sum */
    CLG_REDUCTION_NONE, /* the per-element (per-row) losses */
    CLG_REDUCTION_COUNT
} clg_reduction;

/* Softmax cross-entropy with integer labels: per row, logsumexp(logits) - logits[label].
 * logits [..., C] f32, labels [...] i32 (the same leading shape; [N, C] and [N] usually).
 * One fused, numerically stable kernel for the rows and one for their gradient
 * (softmax - onehot). A label outside [0, C) makes its row's loss and gradient NaN, so the
 * mistake cannot go unnoticed. */
clg_tensor *clg_cross_entropy(clg_graph *g, clg_tensor *logits, clg_tensor *labels,
                              clg_reduction reduction);
/* Binary cross-entropy on logits, targets in [0, 1] of the same shape:
 * max(x, 0) - x t + log(1 + exp(-|x|)), stable for any x. */
clg_tensor *clg_bce_with_logits(clg_graph *g, clg_tensor *logits, clg_tensor *targets,
                                clg_reduction reduction);
/* (pred - target)^2; pred and target of the same shape. */
clg_tensor *clg_mse_loss(clg_graph *g, clg_tensor *pred, clg_tensor *target,
                         clg_reduction reduction);
/* PyTorch's HuberLoss: d = |pred - target|; 0.5 d^2 if d < delta, else delta (d - delta/2).
 * delta > 0. */
clg_tensor *clg_huber_loss(clg_graph *g, clg_tensor *pred, clg_tensor *target, float delta,
                           clg_reduction reduction);

/* SimCLR's NT-Xent: z [2N, D], rows i and i + N the two views of item i. Rows are scaled to
 * unit length, their [2N, 2N] cosine similarities (one GEMM) divided by temperature, each
 * row's similarity with itself dropped, and the result is the mean over the 2N rows of the
 * cross-entropy against the row's other view. A composite of engine ops (gradients from the
 * parts). temperature > 0 (SimCLR: 0.5 on small batches, 0.1 on large ones). */
clg_tensor *clg_nt_xent(clg_graph *g, clg_tensor *z, float temperature);

/* ---- Augmentations (self-supervised views) ----
 * Random per-image transforms of an image batch, their parameters drawn on the device from
 * seed (Philox, fresh on every run of a plan: the run counter), turned into affine matrices
 * and masks by graph ops: part of the plan, no host work. Meant for pixels in [0, 1] (zero is
 * the background the sampler pads with; jitter clamps to [0, 1]): normalise afterwards. */
typedef struct clg_augment_params {
    float crop_scale_min, crop_scale_max; /* random resized crop: area fraction, (0, 1] */
    float crop_ratio_min, crop_ratio_max; /* its aspect ratio w / h, log-uniform (> 0) */
    float rotate;                         /* rotation uniform in [-rotate, rotate] radians */
    float translate;                      /* shift uniform in +-translate of the image size */
    float erase_prob;                     /* random erasing: chance of a zeroed box */
    float erase_scale_min, erase_scale_max; /* its area fraction (aspect 0.3 to 3.3) */
    float brightness, contrast; /* factors uniform in [1 - b, 1 + b] (contrast about the mean) */
    float noise_std;            /* added Gaussian noise */
} clg_augment_params;

/* One augmented view of x [N, C, H, W] (f32), the same shape: crop (bilinear, through
 * clg_affine_grid_sample), rotation and shift, then brightness and contrast, erasing, noise.
 * The same seed in the same place of the same graph gives the same views at the same run
 * counter (the context's, which checkpoints save). theta_out (may be
 * NULL) receives the [N, 2, 3] sampling matrices, e.g. to check them. */
clg_tensor *clg_augment(clg_graph *g, clg_tensor *x, const clg_augment_params *p, uint64_t seed,
                        clg_tensor **theta_out);

/* ---- Metrics ---- */

/* Number of rows of logits [..., C] whose first maximum is at labels [...] (i32), as a 0-d
 * f32 tensor. No gradient. */
clg_tensor *clg_accuracy_count(clg_graph *g, clg_tensor *logits, clg_tensor *labels);

/* Confusion matrix on the host: counts[label][predicted]. Feed it predicted labels read back
 * from clg_argmax. Owned by the caller. */
typedef struct clg_confusion clg_confusion;

/* A zeroed matrix for classes >= 1 classes (at most 65536). */
clg_status clg_confusion_new(int classes, clg_confusion **out);
void clg_confusion_free(clg_confusion *c); /* NULL: no-op */
/* Count n (label, predicted) pairs. A value outside [0, classes) is an error and nothing of
 * this call is counted. */
clg_status clg_confusion_add(clg_confusion *c, const int32_t *predicted, const int32_t *labels,
                             int64_t n);
/* Forget every count. */
void clg_confusion_reset(clg_confusion *c);
int clg_confusion_classes(const clg_confusion *c);
/* Pairs counted so far, and those with the given label and prediction. */
int64_t clg_confusion_total(const clg_confusion *c);
int64_t clg_confusion_count(const clg_confusion *c, int label, int predicted);
/* Fraction of pairs on the diagonal (0 when nothing was counted). */
double clg_confusion_accuracy(const clg_confusion *c);
/* Recall of one class: correct / pairs with that label (0 when it has none). */
double clg_confusion_recall(const clg_confusion *c, int label);
/* A table: one row per true label, one column per prediction, with headers and per-row
 * recall. */
clg_status clg_confusion_print(const clg_confusion *c, FILE *f);

#ifdef __cplusplus
}
#endif

#endif
