/* Self-supervised pre-training shared by simclr_mnist.c and its test: an encoder (the classic
 * CNN's convolutional trunk with batch norm, then a linear layer to the representation), a
 * SimCLR projection head or a denoising decoder, the pre-training graph, features of a
 * dataset through the frozen encoder, and the linear probe that judges them. */
#ifndef CLG_EXAMPLES_SSL_H
#define CLG_EXAMPLES_SSL_H

#include <stdbool.h>

#include <clgrad/clgrad.h>

typedef enum ssl_method {
    SSL_SIMCLR, /* NT-Xent between two augmented views */
    SSL_DAE,    /* reconstruct the clean image from a noisy, erased view */
    SSL_METHOD_COUNT
} ssl_method;

typedef struct ssl_bn {
    clg_param *w, *b, *mean, *var;
} ssl_bn;

typedef struct ssl_model {
    int64_t h, w;    /* image size */
    int64_t dim;     /* representation */
    int64_t proj;    /* projection head's output */
    float mean, std; /* pixel normalisation (after augmentation, which wants [0, 1]) */
    ssl_method method;
    clg_param *conv1, *conv2;
    ssl_bn bn1, bn2, bn3;
    clg_linear fc;           /* 64 (H/4) (W/4) -> dim */
    clg_linear head1, head2; /* SimCLR: dim -> dim -> proj */
    clg_linear decoder;      /* DAE: dim -> H W logits */
} ssl_model;

/* Create the model's parameters in ctx ("enc.", "head." and "dec." names), seeded. */
clg_status ssl_model_init(clg_context *ctx, ssl_model *m, const char *prefix, int64_t h, int64_t w,
                          int64_t dim, int64_t proj, ssl_method method, uint64_t seed);
/* Freeze or unfreeze the encoder (running statistics stay frozen). */
void ssl_encoder_set_trainable(ssl_model *m, bool trainable);
/* Representation [N, dim] of raw images x [N, H, W] in [0, 1]. */
clg_tensor *ssl_encode(clg_graph *g, const ssl_model *m, clg_tensor *x4, bool training);

/* Pre-training loss of a batch x [B, H, W] of raw images: SimCLR builds two views with aug
 * (seeds seed and seed + 1) and their NT-Xent at temperature; shift_partners > 0 is the
 * control with wrong positive pairs (view 2 of item i paired with view 1 of item i + shift).
 * DAE reconstructs x from a view. */
clg_tensor *ssl_pretrain_loss(clg_graph *g, const ssl_model *m, clg_tensor *x,
                              const clg_augment_params *aug, float temperature, uint64_t seed,
                              int shift_partners);

/* Features [n, dim] (malloc'ed into *out) of every sample of ds through the encoder in
 * evaluation mode; raw: the pixels themselves (dim H W). */
clg_status ssl_features(clg_context *ctx, const ssl_model *m, const clg_dataset *ds, bool raw,
                        float **out, int64_t *dim);

typedef struct ssl_probe_options {
    int epochs, batch;
    float lr;
    uint64_t seed;
    const char *name; /* parameter prefix, unique per probe in ctx */
} ssl_probe_options;

/* Train a linear classifier on train features [n, d] (standardised with their per-feature
 * mean and std) and return its test accuracy in *accuracy. The layer is frozen afterwards. */
clg_status ssl_probe(clg_context *ctx, const float *train, const int32_t *train_labels, int64_t n,
                     const float *test, const int32_t *test_labels, int64_t n_test, int64_t d,
                     int classes, const ssl_probe_options *o, double *accuracy);

/* The augmentations the example uses by default for SimCLR and for the DAE. */
clg_augment_params ssl_simclr_augment(void);
clg_augment_params ssl_dae_augment(void);

#endif
