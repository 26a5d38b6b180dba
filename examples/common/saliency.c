/* Saliency maps (saliency.h): one evaluation-mode graph with the input's gradient, and the
 * drawing of images and gradients side by side. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "png_write.h"
#include "saliency.h"

void saliency_image_size(int n, int h, int w, int *width, int *height) {
    int cols = n < SALIENCY_PAIRS_PER_ROW ? n : SALIENCY_PAIRS_PER_ROW;
    int rows = (n + SALIENCY_PAIRS_PER_ROW - 1) / SALIENCY_PAIRS_PER_ROW;
    *width = cols * 2 * SALIENCY_SCALE * w + (cols + 1) * SALIENCY_GAP;
    *height = rows * SALIENCY_SCALE * h + (rows + 1) * SALIENCY_GAP;
}

clg_status saliency_compute(clg_context *ctx, const classifier_model *m, const train_flags *f,
                            const float *images, int n, float *grads, int32_t *pred) {
    int64_t shape[4] = {n};
    int64_t numel = 1;
    for (int d = 0; d < m->sample_ndim; ++d) {
        shape[1 + d] = m->sample_shape[d];
        numel *= m->sample_shape[d];
    }
    clg_graph *g = clg_graph_new(ctx);
    if (!g) return CLG_ERR_OUT_OF_MEMORY;
    clg_tensor *x = clg_input(g, "x", CLG_F32, m->sample_ndim + 1, shape);
    clg_status st = clg_requires_grad(x);
    clg_tensor *logits = m->forward(g, m->model, x, false, f); /* [n, classes] */
    clg_tensor *p = clg_argmax(g, logits, 1, false);           /* [n] i32, no gradient */
    /* Row i's only path to the sum is its own logit logits[i, p[i]], so the sum's gradient
     * holds every image's saliency at once. */
    clg_tensor *score = clg_sum(g, clg_mul(g, logits, clg_one_hot(g, p, clg_tensor_dim(logits, 1))),
                                0, NULL, false);
    if (st == CLG_OK) st = clg_graph_output(g, p);
    if (st == CLG_OK) st = clg_backward(g, score);
    clg_tensor *gx = st == CLG_OK ? clg_grad(g, x) : NULL;
    if (st == CLG_OK && !gx) st = CLG_ERR_GRAPH; /* a model that ignores its input */
    if (st == CLG_OK) st = clg_graph_output(g, gx);
    clg_plan *plan = NULL;
    if (st == CLG_OK) st = clg_graph_compile(g, NULL, &plan);
    size_t bytes = (size_t)n * (size_t)numel * sizeof(float);
    if (st == CLG_OK) st = clg_plan_write(plan, x, images, bytes);
    if (st == CLG_OK) st = clg_plan_run(plan);
    if (st == CLG_OK) st = clg_plan_read(plan, p, pred, (size_t)n * sizeof *pred);
    if (st == CLG_OK) st = clg_plan_read(plan, gx, grads, bytes);
    clg_graph_free(g); /* and the plan */
    return st;
}

static void put(uint8_t *rgb, int width, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    uint8_t *px = rgb + 3 * ((size_t)y * (size_t)width + (size_t)x);
    px[0] = r;
    px[1] = g;
    px[2] = b;
}

static uint8_t byte_of(float v) { /* v in [0, 1] */
    return (uint8_t)lrintf(255.0f * (v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v));
}

void saliency_render(const float *images, const float *grads, int n, int h, int w, uint8_t *rgb) {
    int width, height;
    saliency_image_size(n, h, w, &width, &height);
    memset(rgb, 160, (size_t)width * (size_t)height * 3); /* grey gutters */
    const int tw = SALIENCY_SCALE * w, th = SALIENCY_SCALE * h;
    const size_t hw = (size_t)h * (size_t)w;
    for (int i = 0; i < n; ++i) {
        const float *img = images + (size_t)i * hw, *gr = grads + (size_t)i * hw;
        float lo = img[0], hi = img[0], gmax = 0.0f;
        for (size_t k = 0; k < hw; ++k) {
            lo = fminf(lo, img[k]);
            hi = fmaxf(hi, img[k]);
            gmax = fmaxf(gmax, fabsf(gr[k]));
        }
        float irange = hi > lo ? 1.0f / (hi - lo) : 0.0f, gscale = gmax > 0 ? 1.0f / gmax : 0.0f;
        int col = i % SALIENCY_PAIRS_PER_ROW, row = i / SALIENCY_PAIRS_PER_ROW;
        int x0 = SALIENCY_GAP + col * (2 * tw + SALIENCY_GAP);
        int y0 = SALIENCY_GAP + row * (th + SALIENCY_GAP);
        for (int y = 0; y < th; ++y) {
            for (int x = 0; x < tw; ++x) {
                size_t k = (size_t)(y / SALIENCY_SCALE) * (size_t)w + (size_t)(x / SALIENCY_SCALE);
                uint8_t v = byte_of((img[k] - lo) * irange);
                put(rgb, width, x0 + x, y0 + y, v, v, v);
                /* diverging white-centred map: fade the other two channels toward the sign's */
                float s = gr[k] * gscale;
                uint8_t fade = byte_of(1.0f - fabsf(s));
                if (s >= 0)
                    put(rgb, width, x0 + tw + x, y0 + y, 255, fade, fade);
                else
                    put(rgb, width, x0 + tw + x, y0 + y, fade, fade, 255);
            }
        }
    }
}

bool saliency_write_png(const char *path, const float *images, const float *grads, int n, int h,
                        int w, char *err, size_t err_size) {
    int width, height;
    saliency_image_size(n, h, w, &width, &height);
    uint8_t *rgb = malloc((size_t)width * (size_t)height * 3);
    if (!rgb) {
        snprintf(err, err_size, "%s: out of memory", path);
        return false;
    }
    saliency_render(images, grads, n, h, w, rgb);
    bool ok = png_write_rgb(path, rgb, width, height, err, err_size);
    free(rgb);
    return ok;
}

int saliency_run(clg_context *ctx, const classifier_model *m, const train_flags *f,
                 const float *images, const int32_t *labels, int n, const char *path) {
    enum { MAX_IMAGES = 64 };
    /* the last two sample axes are the image; any before them (channels) must be 1 */
    int64_t leading = 1;
    for (int d = 0; d + 2 < m->sample_ndim; ++d)
        leading *= m->sample_shape[d];
    if (n < 1 || n > MAX_IMAGES || m->sample_ndim < 2 || leading != 1) {
        fprintf(stderr,
                "error: saliency: needs 1 to %d grey-scale images (samples [H, W] or "
                "[1, H, W]); asked for %d of rank %d\n",
                MAX_IMAGES, n, m->sample_ndim);
        return 1;
    }
    int h = (int)m->sample_shape[m->sample_ndim - 2], w = (int)m->sample_shape[m->sample_ndim - 1];
    float *grads = malloc((size_t)n * (size_t)h * (size_t)w * sizeof *grads);
    int32_t pred[MAX_IMAGES];
    if (!grads) {
        fprintf(stderr, "error: saliency: out of memory\n");
        return 1;
    }
    int rc = 0;
    char err[512];
    if (saliency_compute(ctx, m, f, images, n, grads, pred) != CLG_OK) {
        fprintf(stderr, "error: saliency: %s\n", clg_last_error());
        rc = 1;
    } else if (!saliency_write_png(path, images, grads, n, h, w, err, sizeof err)) {
        fprintf(stderr, "error: saliency: %s\n", err);
        rc = 1;
    } else {
        printf("saliency maps (d score / d pixel; red: brighter raises the predicted class's "
               "score, blue: lowers it) of the first %d test digits in %s:\n",
               n, path);
        for (int i = 0; i < n; ++i)
            printf("  digit %d: label %d, predicted %d\n", i, labels ? labels[i] : -1, pred[i]);
    }
    free(grads);
    return rc;
}
