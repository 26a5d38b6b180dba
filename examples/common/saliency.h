/* Saliency maps: the gradient of a classifier's predicted-class score with respect to its input
 * pixels (Simonyan et al., 2013), computed by the engine's autograd on an input marked with
 * clg_requires_grad, and drawn next to each image in a PNG.
 *
 * Layout of the PNG: pairs [image | saliency], each tile the image's h x w pixels scaled by
 * SALIENCY_SCALE, SALIENCY_PAIRS_PER_ROW pairs per row, SALIENCY_GAP pixels of grey between
 * and around the pairs. The image tile is grey scale (its own minimum black, maximum white);
 * the saliency tile is white where the gradient is 0, red where it is positive (the score rises
 * with the pixel's brightness), blue where negative, at full colour for the image's largest
 * |gradient|. */
#ifndef CLG_EXAMPLES_SALIENCY_H
#define CLG_EXAMPLES_SALIENCY_H

#include <stdbool.h>
#include <stdint.h>

#include "classifier.h"

#define SALIENCY_SCALE 4
#define SALIENCY_GAP 8
#define SALIENCY_PAIRS_PER_ROW 4

/* Pixel size of the PNG for n images of h x w. */
void saliency_image_size(int n, int h, int w, int *width, int *height);

/* For n images (n * prod(m->sample_shape) floats, as the model's training data), the model in
 * evaluation mode: pred[i] = argmax of logits[i], and grads[i] = d logits[i, pred[i]] / d x[i]
 * (same layout as images). One graph: the backward pass of sum(logits * one_hot(pred)), whose
 * rows do not mix (evaluation mode: no batch statistics). Builds and frees its own graph in
 * ctx; the parameters are read, not changed. */
clg_status saliency_compute(clg_context *ctx, const classifier_model *m, const train_flags *f,
                            const float *images, int n, float *grads, int32_t *pred);

/* Draw the pairs into rgb (width * height * 3 bytes from saliency_image_size). */
void saliency_render(const float *images, const float *grads, int n, int h, int w, uint8_t *rgb);

/* Render and write the PNG atomically (png_write.h); false with a message in err. */
bool saliency_write_png(const char *path, const float *images, const float *grads, int n, int h,
                        int w, char *err, size_t err_size);

/* What cnn_mnist --saliency does: the first n images (n <= 64), their saliency, the PNG at
 * path, and a line per image (label, prediction) on stdout. Returns 0, or 1 after printing
 * the error on stderr. */
int saliency_run(clg_context *ctx, const classifier_model *m, const train_flags *f,
                 const float *images, const int32_t *labels, int n, const char *path);

#endif
