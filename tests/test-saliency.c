/* Saliency maps of the CNN example (examples/common/saliency.h): for a linear model the
 * saliency of image i must be exactly the weight row of its predicted class; for a small
 * untrained convolutional network on real digits the PNG must be written atomically, read back
 * with libpng at the documented size, and show non-blank maps whose strongest pixel has the
 * gradient's sign. Runs in process on untrained models: it tests the computation and the file,
 * not training, so it needs seconds rather than the minutes a cnn_mnist run would take. */
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/png_write.h"
#include "common/saliency.h"
#include "harness.h"

#define N 8 /* images, as cnn_mnist draws */
#define H 28
#define W 28
#define CLASSES 10

/* ---- a linear model: logits = flatten(x) W^T + b ---- */

static clg_tensor *linear_forward(clg_graph *g, void *model, clg_tensor *x, bool training,
                                  const train_flags *f) {
    (void)training;
    (void)f;
    return clg_linear_forward(g, model, clg_flatten(g, x, 1));
}

START_TEST(linear_model_saliency_is_the_predicted_weight_row) {
    clg_context *ctx = clg_test_context();
    clg_linear lin;
    clg_assert_ok(clg_linear_init(ctx, &lin, "lin", H * W, CLASSES, true, 3));
    static float w[CLASSES * H * W], b[CLASSES], x[N * H * W], grads[N * H * W];
    clg_test_rng r;
    clg_test_rng_seed(&r, 17);
    clg_test_fill(&r, w, CLASSES * H * W, -1.0f, 1.0f);
    clg_test_fill(&r, b, CLASSES, -1.0f, 1.0f);
    clg_test_fill(&r, x, N * H * W, 0.0f, 1.0f);
    clg_assert_ok(clg_param_write(lin.weight, w, sizeof w));
    clg_assert_ok(clg_param_write(lin.bias, b, sizeof b));

    classifier_model m = {.name = "linear",
                          .sample_ndim = 2,
                          .sample_shape = {H, W},
                          .forward = linear_forward,
                          .model = &lin};
    train_flags f = {.seed = 1};
    int32_t pred[N];
    clg_assert_ok(saliency_compute(ctx, &m, &f, x, N, grads, pred));
    for (int i = 0; i < N; ++i) {
        int best = 0;
        double best_logit = -INFINITY;
        for (int c = 0; c < CLASSES; ++c) {
            double z = b[c];
            for (int k = 0; k < H * W; ++k)
                z += (double)w[c * H * W + k] * x[i * H * W + k];
            if (z > best_logit) {
                best_logit = z;
                best = c;
            }
        }
        ck_assert_int_eq(pred[i], best);
        clg_assert_close(grads + i * H * W, w + best * H * W, H * W, 1e-6, 1e-6);
    }
}
END_TEST

/* ---- a small untrained CNN: conv 3x3 (8) -> ReLU -> max-pool 2 -> linear 10 ---- */

typedef struct small_cnn {
    clg_param *w, *b;
    clg_linear fc;
} small_cnn;

static clg_tensor *cnn_forward(clg_graph *g, void *model, clg_tensor *x, bool training,
                               const train_flags *f) {
    (void)training;
    (void)f;
    small_cnn *m = model;
    const clg_conv2d_params same = {.padding = CLG_PADDING_SAME};
    const clg_pool2d_params pool = {.kernel_h = 2, .kernel_w = 2};
    clg_tensor *h = clg_conv2d(g, clg_unsqueeze(g, x, 1), clg_param_tensor(g, m->w),
                               clg_param_tensor(g, m->b), &same);
    h = clg_max_pool2d(g, clg_relu(g, h), &pool);
    return clg_linear_forward(g, &m->fc, clg_flatten(g, h, 1));
}

static char tmpdir[64];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clgrad-saliency-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* No file in tmpdir but those named in keep (NULL-terminated): no temporary file left over. */
static void assert_only(const char *const *keep) {
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        bool kept = false;
        for (const char *const *k = keep; *k; ++k)
            kept = kept || strcmp(e->d_name, *k) == 0;
        ck_assert_msg(kept, "unexpected file %s/%s (a temporary file left behind?)", tmpdir,
                      e->d_name);
    }
    closedir(d);
}

static void remove_tmpdir(const char *const *files) {
    char p[128];
    for (const char *const *f = files; *f; ++f) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, *f);
        remove(p);
    }
    rmdir(tmpdir);
}

START_TEST(cnn_saliency_png) {
    clg_context *ctx = clg_test_context();
    small_cnn m;
    m.w = clg_param_new(ctx, "conv.weight", CLG_F32, 4, (int64_t[]){8, 1, 3, 3});
    m.b = clg_param_new(ctx, "conv.bias", CLG_F32, 1, (int64_t[]){8});
    ck_assert(m.w && m.b);
    clg_assert_ok(clg_init_kaiming_normal(m.w, 0.0f, CLG_FAN_MODE_IN, CLG_NONLINEARITY_RELU, 5));
    clg_assert_ok(clg_linear_init(ctx, &m.fc, "conv_fc", 8 * 14 * 14, CLASSES, true, 6));

    clg_dataset *all = NULL, *digits = NULL;
    clg_assert_ok(clg_dataset_load_mnist(clg_test_path("../examples/data/mnist"), false, &all));
    clg_assert_ok(clg_dataset_subset(all, 0, N, &digits));
    clg_dataset_free(all);
    const float *x = clg_dataset_features(digits);

    classifier_model cm = {.name = "small_cnn",
                           .sample_ndim = 2,
                           .sample_shape = {H, W},
                           .forward = cnn_forward,
                           .model = &m};
    train_flags f = {.seed = 1};
    static float grads[N * H * W];
    int32_t pred[N];
    clg_assert_ok(saliency_compute(ctx, &cm, &f, x, N, grads, pred));
    for (int i = 0; i < N * H * W; ++i)
        ck_assert(isfinite(grads[i]));

    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/saliency.png", tmpdir);
    char err[512];
    ck_assert_msg(saliency_write_png(path, x, grads, N, H, W, err, sizeof err), "%s", err);
    assert_only((const char *const[]){"saliency.png", NULL});

    /* read it back; the documented layout: 4 pairs per row, tiles scaled 4x, 8-pixel gaps */
    const int want_w = 4 * 2 * 4 * W + 5 * 8, want_h = 2 * 4 * H + 3 * 8; /* 936 x 248 */
    int lw, lh;
    saliency_image_size(N, H, W, &lw, &lh);
    ck_assert_int_eq(lw, want_w);
    ck_assert_int_eq(lh, want_h);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "libpng: %s", img.message);
    ck_assert_int_eq((int)img.width, want_w);
    ck_assert_int_eq((int)img.height, want_h);
    img.format = PNG_FORMAT_RGB;
    png_bytep rgb = malloc(PNG_IMAGE_SIZE(img));
    ck_assert_ptr_nonnull(rgb);
    ck_assert_msg(png_image_finish_read(&img, NULL, rgb, 0, NULL), "libpng: %s", img.message);

    for (int i = 0; i < N; ++i) {
        int x0 = 8 + (i % 4) * (2 * 4 * W + 8), y0 = 8 + (i / 4) * (4 * H + 8);
        /* the digit tile spans black to white (each image is scaled to its own range) */
        int dlo = 255, dhi = 0;
        /* the saliency tile: not one flat colour */
        int slo[3] = {255, 255, 255}, shi[3] = {0, 0, 0};
        for (int y = 0; y < 4 * H; ++y) {
            for (int xx = 0; xx < 4 * W; ++xx) {
                const png_byte *d =
                    rgb + 3 * ((size_t)(y0 + y) * (size_t)want_w + (size_t)(x0 + xx));
                const png_byte *s = d + 3 * 4 * W;
                dlo = d[0] < dlo ? d[0] : dlo;
                dhi = d[0] > dhi ? d[0] : dhi;
                for (int c = 0; c < 3; ++c) {
                    slo[c] = s[c] < slo[c] ? s[c] : slo[c];
                    shi[c] = s[c] > shi[c] ? s[c] : shi[c];
                }
            }
        }
        ck_assert_msg(dlo == 0 && dhi == 255, "digit %d: tile spans %d..%d", i, dlo, dhi);
        ck_assert_msg(shi[0] - slo[0] > 64 || shi[1] - slo[1] > 64 || shi[2] - slo[2] > 64,
                      "saliency %d is blank: channels %d..%d, %d..%d, %d..%d", i, slo[0], shi[0],
                      slo[1], shi[1], slo[2], shi[2]);
        /* the strongest gradient is drawn at full colour: red if positive, blue if negative */
        int kmax = 0;
        for (int k = 1; k < H * W; ++k)
            if (fabsf(grads[i * H * W + k]) > fabsf(grads[i * H * W + kmax])) kmax = k;
        const png_byte *s = rgb + 3 * ((size_t)(y0 + 4 * (kmax / W)) * (size_t)want_w +
                                       (size_t)(x0 + 4 * W + 4 * (kmax % W)));
        bool positive = grads[i * H * W + kmax] > 0;
        ck_assert_msg(s[0] == (positive ? 255 : 0) && s[1] == 0 && s[2] == (positive ? 0 : 255),
                      "saliency %d: strongest pixel drawn (%d, %d, %d) for gradient %g", i, s[0],
                      s[1], s[2], (double)grads[i * H * W + kmax]);
    }
    free(rgb);
    clg_dataset_free(digits);
    remove_tmpdir((const char *const[]){"saliency.png", NULL});
}
END_TEST

START_TEST(failed_writes_leave_nothing_behind) {
    make_tmpdir();
    static uint8_t rgb[16 * 8 * 3];
    memset(rgb, 200, sizeof rgb);
    char err[512], path[128];
    /* a folder that does not exist: fails, says where */
    snprintf(path, sizeof path, "%s/missing/out.png", tmpdir);
    ck_assert(!png_write_rgb(path, rgb, 16, 8, err, sizeof err));
    ck_assert_msg(strstr(err, path) != NULL, "message without the path: %s", err);
    /* the destination is a folder: the image is encoded into a temporary file, the rename
     * fails, and the temporary file is removed */
    snprintf(path, sizeof path, "%s/taken", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert(!png_write_rgb(path, rgb, 16, 8, err, sizeof err));
    ck_assert_msg(strstr(err, path) != NULL, "message without the path: %s", err);
    assert_only((const char *const[]){"taken", NULL});
    rmdir(path);
    /* an existing file is replaced whole */
    snprintf(path, sizeof path, "%s/out.png", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a png", f);
    fclose(f);
    ck_assert_msg(png_write_rgb(path, rgb, 16, 8, err, sizeof err), "%s", err);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "libpng: %s", img.message);
    ck_assert_int_eq((int)img.width, 16);
    ck_assert_int_eq((int)img.height, 8);
    png_image_free(&img);
    /* with the permissions a plain fopen gives, not mkstemp's private 0600 */
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    mode_t mask = umask(0);
    umask(mask);
    ck_assert_int_eq((int)(sb.st_mode & 0777), (int)(0666 & ~mask));
    assert_only((const char *const[]){"out.png", NULL});
    remove_tmpdir((const char *const[]){"out.png", NULL});
}
END_TEST

int main(void) {
    Suite *s = suite_create("saliency");
    TCase *tc = tcase_create("saliency");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, linear_model_saliency_is_the_predicted_weight_row);
    tcase_add_test(tc, cnn_saliency_png);
    tcase_add_test(tc, failed_writes_leave_nothing_behind);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
