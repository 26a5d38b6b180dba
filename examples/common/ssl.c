/* Self-supervised models and the linear probe (ssl.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ssl.h"

#define PARAM_FAILED CLG_ERR_INVALID_ARGUMENT
#define EVAL_BATCH 500

clg_augment_params ssl_simclr_augment(void) {
    /* Digits survive crops of 40 % of the image and small turns; harder views (SimCLR's 8 %
     * crops, flips, colour) would turn one digit into another. */
    return (clg_augment_params){.crop_scale_min = 0.4f,
                                .crop_scale_max = 1.0f,
                                .crop_ratio_min = 0.75f,
                                .crop_ratio_max = 4.0f / 3.0f,
                                .rotate = 0.25f,
                                .translate = 0.05f,
                                .erase_prob = 0.3f,
                                .erase_scale_min = 0.02f,
                                .erase_scale_max = 0.12f,
                                .brightness = 0.3f,
                                .contrast = 0.3f,
                                .noise_std = 0.05f};
}

clg_augment_params ssl_dae_augment(void) {
    return (clg_augment_params){.crop_scale_min = 1.0f,
                                .crop_scale_max = 1.0f,
                                .crop_ratio_min = 1.0f,
                                .crop_ratio_max = 1.0f,
                                .erase_prob = 0.5f,
                                .erase_scale_min = 0.05f,
                                .erase_scale_max = 0.2f,
                                .noise_std = 0.3f};
}

static clg_param *new_param(clg_context *ctx, const char *prefix, const char *what, int ndim,
                            const int64_t *shape) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    return clg_param_new(ctx, name, CLG_F32, ndim, shape);
}

static clg_status bn_init(clg_context *ctx, const char *prefix, int64_t c, ssl_bn *bn) {
    bn->w = new_param(ctx, prefix, "weight", 1, &c);
    bn->b = new_param(ctx, prefix, "bias", 1, &c);
    bn->mean = new_param(ctx, prefix, "running_mean", 1, &c);
    bn->var = new_param(ctx, prefix, "running_var", 1, &c);
    if (!bn->w || !bn->b || !bn->mean || !bn->var) return PARAM_FAILED;
    clg_param_set_requires_grad(bn->mean, false);
    clg_param_set_requires_grad(bn->var, false);
    clg_status st = clg_init_constant(bn->w, 1.0f);
    if (st == CLG_OK) st = clg_init_zeros(bn->b);
    if (st == CLG_OK) st = clg_init_zeros(bn->mean);
    if (st == CLG_OK) st = clg_init_constant(bn->var, 1.0f);
    return st;
}

clg_status ssl_model_init(clg_context *ctx, ssl_model *m, const char *prefix, int64_t h, int64_t w,
                          int64_t dim, int64_t proj, ssl_method method, uint64_t seed) {
    m->h = h;
    m->w = w;
    m->dim = dim;
    m->proj = proj;
    m->method = method;
    char p[64];
    /* He initialisation before ReLUs, as in cnn_mnist.c; no conv bias before batch norm */
    snprintf(p, sizeof p, "%s.conv1", prefix);
    m->conv1 = new_param(ctx, p, "weight", 4, (int64_t[]){32, 1, 3, 3});
    snprintf(p, sizeof p, "%s.conv2", prefix);
    m->conv2 = new_param(ctx, p, "weight", 4, (int64_t[]){64, 32, 3, 3});
    if (!m->conv1 || !m->conv2) return PARAM_FAILED;
    clg_status st =
        clg_init_kaiming_normal(m->conv1, 0, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU, seed);
    if (st == CLG_OK)
        st = clg_init_kaiming_normal(m->conv2, 0, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU, seed + 1);
    const char *bn_names[3] = {"bn1", "bn2", "bn3"};
    ssl_bn *bns[3] = {&m->bn1, &m->bn2, &m->bn3};
    const int64_t bn_c[3] = {32, 64, dim};
    for (int i = 0; i < 3 && st == CLG_OK; ++i) {
        snprintf(p, sizeof p, "%s.%s", prefix, bn_names[i]);
        st = bn_init(ctx, p, bn_c[i], bns[i]);
    }
    char name[64];
    snprintf(name, sizeof name, "%s.fc", prefix);
    if (st == CLG_OK)
        st = clg_linear_init(ctx, &m->fc, name, 64 * (h / 4) * (w / 4), dim, false, seed + 2);
    if (st == CLG_OK && method == SSL_SIMCLR) {
        snprintf(name, sizeof name, "%s.head1", prefix);
        st = clg_linear_init(ctx, &m->head1, name, dim, dim, true, seed + 3);
        snprintf(name, sizeof name, "%s.head2", prefix);
        if (st == CLG_OK) st = clg_linear_init(ctx, &m->head2, name, dim, proj, true, seed + 4);
    }
    if (st == CLG_OK && method == SSL_DAE) {
        snprintf(name, sizeof name, "%s.decoder", prefix);
        st = clg_linear_init(ctx, &m->decoder, name, dim, h * w, true, seed + 5);
    }
    return st;
}

void ssl_encoder_set_trainable(ssl_model *m, bool trainable) {
    clg_param *ps[] = {m->conv1, m->conv2, m->bn1.w, m->bn1.b,    m->bn2.w,
                       m->bn2.b, m->bn3.w, m->bn3.b, m->fc.weight};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; ++i)
        clg_param_set_requires_grad(ps[i], trainable);
}

static clg_tensor *bn(clg_graph *g, clg_tensor *x, const ssl_bn *b, bool training) {
    clg_tensor *w = clg_param_tensor(g, b->w), *bias = clg_param_tensor(g, b->b);
    if (clg_tensor_ndim(x) == 4)
        return clg_batch_norm2d(g, x, w, bias, b->mean, b->var, 0.1f, 1e-5f, training);
    return clg_batch_norm1d(g, x, w, bias, b->mean, b->var, 0.1f, 1e-5f, training);
}

clg_tensor *ssl_encode(clg_graph *g, const ssl_model *m, clg_tensor *x4, bool training) {
    const clg_conv2d_params same = {.padding = CLG_PADDING_SAME};
    const clg_pool2d_params pool = {.kernel_h = 2, .kernel_w = 2};
    clg_tensor *h = clg_mul_scalar(g, clg_add_scalar(g, x4, -m->mean), 1.0f / m->std);
    /* [N, 1, H, W] -> [N, 32, H/2, W/2] -> [N, 64, H/4, W/4] */
    h = clg_conv2d(g, h, clg_param_tensor(g, m->conv1), NULL, &same);
    h = clg_max_pool2d(g, clg_relu(g, bn(g, h, &m->bn1, training)), &pool);
    h = clg_conv2d(g, h, clg_param_tensor(g, m->conv2), NULL, &same);
    h = clg_max_pool2d(g, clg_relu(g, bn(g, h, &m->bn2, training)), &pool);
    /* -> [N, dim] */
    h = clg_linear_forward(g, &m->fc, clg_flatten(g, h, 1));
    return clg_relu(g, bn(g, h, &m->bn3, training));
}

clg_tensor *ssl_pretrain_loss(clg_graph *g, const ssl_model *m, clg_tensor *x,
                              const clg_augment_params *aug, float temperature, uint64_t seed,
                              int shift_partners) {
    int64_t b = clg_tensor_dim(x, 0);
    clg_tensor *x4 = clg_unsqueeze(g, x, 1);
    if (m->method == SSL_DAE) {
        clg_tensor *v = clg_augment(g, x4, aug, seed, NULL);
        clg_tensor *logits = clg_linear_forward(g, &m->decoder, ssl_encode(g, m, v, true));
        return clg_bce_with_logits(g, logits, clg_flatten(g, x, 1), CLG_REDUCTION_MEAN);
    }
    /* both views through the encoder as one batch of 2B: batch norm sees them together */
    clg_tensor *views[2] = {clg_augment(g, x4, aug, seed, NULL),
                            clg_augment(g, x4, aug, seed + 1, NULL)};
    if (shift_partners > 0) {
        /* the control: the second views rolled by shift_partners items, so each row's
         * "partner" is a view of another image */
        int64_t s = shift_partners % b;
        clg_tensor *parts[2] = {clg_slice(g, views[1], 0, s, b, 1),
                                clg_slice(g, views[1], 0, 0, s, 1)};
        views[1] = clg_concat(g, 2, parts, 0);
    }
    clg_tensor *h = ssl_encode(g, m, clg_concat(g, 2, views, 0), true);
    clg_tensor *z =
        clg_linear_forward(g, &m->head2, clg_relu(g, clg_linear_forward(g, &m->head1, h)));
    return clg_nt_xent(g, z, temperature);
}

clg_status ssl_features(clg_context *ctx, const ssl_model *m, const clg_dataset *ds, bool raw,
                        float **out, int64_t *dim) {
    *out = NULL;
    const int64_t n = clg_dataset_size(ds), hw = clg_dataset_sample_numel(ds);
    const int64_t d = raw ? hw : m->dim;
    if (raw) {
        /* the probe standardises each feature: raw pixels need nothing more */
        *out = malloc((size_t)(n * d) * sizeof **out);
        if (!*out) return CLG_ERR_OUT_OF_MEMORY;
        memcpy(*out, clg_dataset_features(ds), (size_t)(n * d) * sizeof **out);
        *dim = d;
        return CLG_OK;
    }
    clg_loader *ld = NULL;
    clg_loader_options lo = {.batch_size = EVAL_BATCH};
    clg_status st = clg_loader_new(ds, &lo, &ld);
    if (st != CLG_OK) return st;
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, (int64_t[]){EVAL_BATCH, m->h, m->w});
    clg_tensor *h = ssl_encode(g, m, clg_unsqueeze(g, x, 1), false);
    clg_plan *p = NULL;
    st = clg_graph_output(g, h);
    if (st == CLG_OK) st = clg_graph_compile(g, NULL, &p);
    float *f = st == CLG_OK ? malloc((size_t)(n * d) * sizeof *f) : NULL;
    float *buf = f ? malloc((size_t)(EVAL_BATCH * d) * sizeof *buf) : NULL;
    if (st == CLG_OK && !buf) st = CLG_ERR_OUT_OF_MEMORY;
    clg_batch batch;
    int64_t row = 0;
    clg_loader_start_epoch(ld, 0);
    while (st == CLG_OK && clg_loader_next(ld, &batch)) {
        st = clg_batch_upload(&batch, ld, p, x, NULL);
        if (st == CLG_OK) st = clg_plan_run(p);
        if (st == CLG_OK) st = clg_plan_read(p, h, buf, (size_t)(EVAL_BATCH * d) * sizeof *buf);
        if (st == CLG_OK) memcpy(f + row * d, buf, (size_t)(batch.rows * d) * sizeof *buf);
        row += batch.rows;
    }
    free(buf);
    clg_plan_free(p);
    clg_graph_free(g);
    clg_loader_free(ld);
    if (st != CLG_OK) {
        free(f);
        return st;
    }
    *out = f;
    *dim = d;
    return CLG_OK;
}

/* x <- (x - mean) / std per column, with the training columns' statistics. */
static void standardise(float *train, int64_t n, float *test, int64_t n_test, int64_t d) {
    for (int64_t j = 0; j < d; ++j) {
        double s = 0.0, s2 = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            double v = train[i * d + j];
            s += v;
            s2 += v * v;
        }
        double mu = s / (double)n, var = s2 / (double)n - mu * mu;
        /* constant columns (dead units, border pixels) stay 0 instead of dividing by 0 */
        double inv = var > 1e-12 ? 1.0 / sqrt(var) : 0.0;
        for (int64_t i = 0; i < n; ++i)
            train[i * d + j] = (float)((train[i * d + j] - mu) * inv);
        for (int64_t i = 0; i < n_test; ++i)
            test[i * d + j] = (float)((test[i * d + j] - mu) * inv);
    }
}

clg_status ssl_probe(clg_context *ctx, const float *train, const int32_t *train_labels, int64_t n,
                     const float *test, const int32_t *test_labels, int64_t n_test, int64_t d,
                     int classes, const ssl_probe_options *o, double *accuracy) {
    *accuracy = 0.0;
    float *tr = malloc((size_t)(n * d) * sizeof *tr),
          *te = malloc((size_t)(n_test * d) * sizeof *te);
    clg_dataset *dtr = NULL, *dte = NULL;
    clg_status st = tr && te ? CLG_OK : CLG_ERR_OUT_OF_MEMORY;
    if (st == CLG_OK) {
        memcpy(tr, train, (size_t)(n * d) * sizeof *tr);
        memcpy(te, test, (size_t)(n_test * d) * sizeof *te);
        standardise(tr, n, te, n_test, d);
        st = clg_dataset_from_arrays(n, 1, &d, tr, train_labels, &dtr);
    }
    if (st == CLG_OK) st = clg_dataset_from_arrays(n_test, 1, &d, te, test_labels, &dte);
    free(tr);
    free(te);
    clg_loader *ltr = NULL, *lte = NULL;
    clg_loader_options lo = {
        .batch_size = o->batch, .shuffle = true, .drop_last = true, .seed = o->seed};
    clg_loader_options eo = {.batch_size = EVAL_BATCH};
    if (st == CLG_OK) st = clg_loader_new(dtr, &lo, &ltr);
    if (st == CLG_OK) st = clg_loader_new(dte, &eo, &lte);
    clg_linear lin = {0};
    if (st == CLG_OK) st = clg_linear_init(ctx, &lin, o->name, d, classes, true, o->seed);
    clg_optimizer *opt = NULL;
    if (st == CLG_OK) {
        clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
        c.lr = o->lr;
        c.schedule = CLG_LR_COSINE;
        c.total_steps = clg_loader_batches(ltr) * o->epochs;
        c.warmup_steps = 0;
        clg_param *ps[2] = {lin.weight, lin.bias};
        opt = clg_optimizer_new_params(ctx, &c, ps, 2);
        if (!opt) st = CLG_ERR_INVALID_ARGUMENT;
    }
    clg_graph *tg = NULL, *eg = NULL;
    clg_plan *tp = NULL, *ep = NULL;
    clg_tensor *tx = NULL, *ty = NULL, *ex = NULL, *pred = NULL;
    if (st == CLG_OK) {
        tg = clg_graph_new(ctx);
        tx = clg_input(tg, "x", CLG_F32, 2, (int64_t[]){o->batch, d});
        ty = clg_input(tg, "y", CLG_I32, 1, (int64_t[]){o->batch});
        clg_tensor *loss =
            clg_cross_entropy(tg, clg_linear_forward(tg, &lin, tx), ty, CLG_REDUCTION_MEAN);
        st = clg_backward(tg, loss);
        if (st == CLG_OK) st = clg_optimizer_apply(opt, tg, NULL);
        if (st == CLG_OK) st = clg_graph_compile(tg, NULL, &tp);
    }
    if (st == CLG_OK) {
        eg = clg_graph_new(ctx);
        ex = clg_input(eg, "x", CLG_F32, 2, (int64_t[]){EVAL_BATCH, d});
        pred = clg_argmax(eg, clg_linear_forward(eg, &lin, ex), 1, false);
        st = clg_graph_output(eg, pred);
        if (st == CLG_OK) st = clg_graph_compile(eg, NULL, &ep);
    }
    clg_batch batch;
    for (int e = 0; st == CLG_OK && e < o->epochs; ++e) {
        clg_loader_start_epoch(ltr, e);
        while (st == CLG_OK && clg_loader_next(ltr, &batch)) {
            st = clg_batch_upload(&batch, ltr, tp, tx, ty);
            if (st == CLG_OK) st = clg_plan_run(tp);
        }
    }
    if (st == CLG_OK) st = clg_plan_finish(tp);
    int64_t right = 0;
    int32_t p[EVAL_BATCH];
    clg_loader_start_epoch(lte, 0);
    while (st == CLG_OK && clg_loader_next(lte, &batch)) {
        st = clg_batch_upload(&batch, lte, ep, ex, NULL);
        if (st == CLG_OK) st = clg_plan_run(ep);
        if (st == CLG_OK) st = clg_plan_read(ep, pred, p, sizeof p);
        for (int64_t i = 0; st == CLG_OK && i < batch.rows; ++i)
            right += p[i] == batch.labels[i];
    }
    if (st == CLG_OK) *accuracy = (double)right / (double)n_test;
    /* done: an optimizer made later for the whole context must leave this layer alone */
    if (lin.weight) clg_param_set_requires_grad(lin.weight, false);
    if (lin.bias) clg_param_set_requires_grad(lin.bias, false);
    clg_plan_free(tp);
    clg_plan_free(ep);
    clg_graph_free(tg);
    clg_graph_free(eg);
    clg_optimizer_free(opt);
    clg_loader_free(ltr);
    clg_loader_free(lte);
    clg_dataset_free(dtr);
    clg_dataset_free(dte);
    return st;
}
