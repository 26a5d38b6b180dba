/* Self-supervised pre-training on MNIST's training images without their labels, judged by a
 * linear probe: SimCLR (two augmented views of each image, drawn on the device, the classic
 * CNN's convolutional trunk with batch norm, a 2-layer projection head, NT-Xent) or, with
 * --arch dae, a denoising autoencoder with the same encoder. Then the encoder is frozen, the
 * features of every training image computed once, a linear classifier trained on them and
 * tested; the same probe on raw pixels and on the randomly initialised encoder gives the
 * baselines. --embed-png FILE draws a PCA of the test representations coloured by digit.
 * Any IDX image set in MNIST's file layout works through --data DIR. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/png_write.h"
#include "common/ssl.h"
#include "common/train_cli.h"

#define REPR_DIM 256
#define PROJ_DIM 64
#define TEMPERATURE 0.2f
#define PROBE_EPOCHS 10
#define PROBE_BATCH 256
#define PROBE_LR 2e-3f
#define PNG_SIZE 640

typedef struct run {
    train_flags f;
    const char *embed_png;
    clg_context *ctx;
    clg_dataset *train, *test;
    ssl_model m;
    clg_optimizer *opt;
} run;

static int fail(const char *what) {
    fprintf(stderr, "simclr_mnist: %s: %s\n", what, clg_last_error());
    return 1;
}

/* Train a probe on features of both splits; NULL m: raw pixels. */
static clg_status probe(run *r, bool raw, const char *name, double *acc) {
    float *ftr = NULL, *fte = NULL;
    int64_t d = 0;
    clg_status st = ssl_features(r->ctx, &r->m, r->train, raw, &ftr, &d);
    if (st == CLG_OK) st = ssl_features(r->ctx, &r->m, r->test, raw, &fte, &d);
    ssl_probe_options po = {.epochs = PROBE_EPOCHS,
                            .batch = PROBE_BATCH,
                            .lr = PROBE_LR,
                            .seed = r->f.seed + 77,
                            .name = name};
    if (st == CLG_OK)
        st = ssl_probe(r->ctx, ftr, clg_dataset_labels(r->train), clg_dataset_size(r->train), fte,
                       clg_dataset_labels(r->test), clg_dataset_size(r->test), d, 10, &po, acc);
    free(ftr);
    free(fte);
    return st;
}

/* The two leading principal axes of x [n, d] (centred), by power iteration with deflation,
 * and the projection of every row on them into xy [n, 2]. */
static void pca2(const float *x, int64_t n, int64_t d, float *xy) {
    double *mu = calloc((size_t)d, sizeof *mu), *cov = calloc((size_t)(d * d), sizeof *cov);
    double *v = malloc((size_t)(2 * d) * sizeof *v), *t = malloc((size_t)d * sizeof *t);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < d; ++j)
            mu[j] += x[i * d + j] / (double)n;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < d; ++j) {
            double a = x[i * d + j] - mu[j];
            for (int64_t k = 0; k <= j; ++k)
                cov[j * d + k] += a * (x[i * d + k] - mu[k]);
        }
    for (int64_t j = 0; j < d; ++j)
        for (int64_t k = 0; k < j; ++k)
            cov[k * d + j] = cov[j * d + k];
    for (int c = 0; c < 2; ++c) {
        double *e = v + c * d;
        for (int64_t j = 0; j < d; ++j)
            e[j] = 1.0 + 0.01 * (double)(j % 7);
        for (int it = 0; it < 300; ++it) {
            for (int64_t j = 0; j < d; ++j) {
                double s = 0.0;
                for (int64_t k = 0; k < d; ++k)
                    s += cov[j * d + k] * e[k];
                t[j] = s;
            }
            if (c == 1) { /* stay orthogonal to the first axis */
                double p = 0.0;
                for (int64_t j = 0; j < d; ++j)
                    p += t[j] * v[j];
                for (int64_t j = 0; j < d; ++j)
                    t[j] -= p * v[j];
            }
            double norm = 0.0;
            for (int64_t j = 0; j < d; ++j)
                norm += t[j] * t[j];
            norm = sqrt(norm) + 1e-300;
            for (int64_t j = 0; j < d; ++j)
                e[j] = t[j] / norm;
        }
    }
    for (int64_t i = 0; i < n; ++i)
        for (int c = 0; c < 2; ++c) {
            double s = 0.0;
            for (int64_t j = 0; j < d; ++j)
                s += (x[i * d + j] - mu[j]) * v[c * d + j];
            xy[i * 2 + c] = (float)s;
        }
    free(mu);
    free(cov);
    free(v);
    free(t);
}

/* The test representations' PCA as a scatter plot, one colour per class (ten, then cycling). */
static int embed_png(run *r) {
    float *f = NULL;
    int64_t d = 0, n = clg_dataset_size(r->test);
    if (ssl_features(r->ctx, &r->m, r->test, false, &f, &d) != CLG_OK)
        return fail("features for --embed-png");
    float *xy = malloc((size_t)(2 * n) * sizeof *xy);
    uint8_t *rgb = malloc((size_t)(3 * PNG_SIZE * PNG_SIZE));
    pca2(f, n, d, xy);
    static const uint8_t colours[10][3] = {
        {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
        {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int64_t i = 0; i < n; ++i)
        for (int c = 0; c < 2; ++c) {
            lo[c] = fminf(lo[c], xy[i * 2 + c]);
            hi[c] = fmaxf(hi[c], xy[i * 2 + c]);
        }
    memset(rgb, 255, (size_t)(3 * PNG_SIZE * PNG_SIZE));
    const int margin = 12, span = PNG_SIZE - 2 * margin;
    const int32_t *labels = clg_dataset_labels(r->test);
    for (int64_t i = 0; i < n; ++i) {
        int px = margin + (int)((xy[i * 2] - lo[0]) / fmaxf(hi[0] - lo[0], 1e-12f) * (float)span);
        int py =
            margin + (int)((hi[1] - xy[i * 2 + 1]) / fmaxf(hi[1] - lo[1], 1e-12f) * (float)span);
        const uint8_t *col = colours[labels[i] % 10];
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
                int yy = py + dy, xx = px + dx;
                if (yy < 0 || yy >= PNG_SIZE || xx < 0 || xx >= PNG_SIZE) continue;
                memcpy(rgb + 3 * ((size_t)yy * PNG_SIZE + (size_t)xx), col, 3);
            }
    }
    char err[256];
    bool ok = png_write_rgb(r->embed_png, rgb, PNG_SIZE, PNG_SIZE, err, sizeof err);
    free(f);
    free(xy);
    free(rgb);
    if (!ok) {
        fprintf(stderr, "simclr_mnist: %s\n", err);
        return 1;
    }
    printf("PCA of the %lld test representations written to %s (class 0 blue, 1 orange, "
           "2 green, 3 red, 4 purple, 5 brown, 6 pink, 7 grey, 8 olive, 9 cyan)\n",
           (long long)n, r->embed_png);
    return 0;
}

/* CPU seconds this process has used (all threads, pocl's included): on a shared machine the
 * wall time says more about the neighbours than about the work. */
static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec * 1e-6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec * 1e-6;
}

static int pretrain(run *r) {
    const train_flags *f = &r->f;
    clg_loader *ld = NULL;
    clg_loader_options lo = {
        .batch_size = f->batch, .shuffle = true, .drop_last = true, .seed = f->seed};
    if (clg_loader_new(r->train, &lo, &ld) != CLG_OK) return fail("batching");
    int64_t steps = clg_loader_batches(ld);
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.lr = f->lr;
    c.schedule = CLG_LR_COSINE;
    c.total_steps = steps * f->schedule_epochs;
    c.warmup_steps = steps / 4;
    r->opt = clg_optimizer_new(r->ctx, &c);
    clg_graph *g = clg_graph_new(r->ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, (int64_t[]){f->batch, r->m.h, r->m.w});
    clg_augment_params aug = r->m.method == SSL_DAE ? ssl_dae_augment() : ssl_simclr_augment();
    clg_tensor *loss = ssl_pretrain_loss(g, &r->m, x, &aug, TEMPERATURE, f->seed + 1000, 0);
    clg_plan *p = NULL;
    clg_status st = r->opt ? clg_graph_output(g, loss) : CLG_ERR_INVALID_ARGUMENT;
    if (st == CLG_OK) st = clg_backward(g, loss);
    if (st == CLG_OK) st = clg_optimizer_apply(r->opt, g, NULL);
    if (st == CLG_OK) st = clg_graph_compile(g, NULL, &p);
    if (st != CLG_OK) {
        clg_graph_free(g);
        clg_loader_free(ld);
        return fail("building the pre-training step");
    }
    printf("pre-training: %zu kernels per step, %.1f MiB of intermediates\n",
           clg_plan_kernel_count(p), (double)clg_plan_peak_bytes(p) / 1048576.0);
    const char *save = f->save ? f->save : "simclr_mnist.safetensors";
    const char *log_path = f->log ? f->log : "simclr_mnist_log.csv";
    epoch_log log;
    int rc = epoch_log_open(&log, log_path, false) ? 0 : 1;
    double t0 = now_seconds(), c0 = cpu_seconds(), busy = 0.0;
    int64_t step = 0, samples = 0;
    for (int e = 1; rc == 0 && e <= f->epochs; ++e) {
        progress pr;
        progress_start(&pr, e, f->epochs, steps);
        clg_loader_start_epoch(ld, e - 1);
        double sum = 0.0, te = now_seconds();
        int64_t done = 0;
        clg_batch b;
        while (rc == 0 && clg_loader_next(ld, &b)) {
            double ts = now_seconds();
            float l = 0.0f;
            st = clg_batch_upload(&b, ld, p, x, NULL);
            if (st == CLG_OK) st = clg_plan_run(p);
            if (st == CLG_OK) st = clg_plan_read(p, loss, &l, sizeof l);
            if (st != CLG_OK || !isfinite(l)) {
                fprintf(stderr, "simclr_mnist: step %lld: %s\n", (long long)step + 1,
                        st != CLG_OK ? clg_last_error() : "the loss is not finite");
                rc = 1;
                break;
            }
            if (step > 0) { /* the first step compiles kernels */
                busy += now_seconds() - ts;
                samples += b.rows;
            }
            step++;
            done++;
            sum += l;
            if (done % 8 == 0 || done == steps)
                progress_update(&pr, done, sum / (double)done, -1.0,
                                busy > 0 ? (double)samples / busy : 0.0);
        }
        progress_end(&pr);
        if (rc) break;
        if (clg_checkpoint_save(r->ctx, save, r->opt) != CLG_OK) {
            rc = fail("saving the checkpoint");
            break;
        }
        printf("epoch %d/%d: loss %.4f (%.1f s), saved %s\n", e, f->epochs, sum / (double)done,
               now_seconds() - te, save);
        epoch_log_write(&log, e, step, sum / (double)done, 0.0, 0.0,
                        busy > 0 ? (double)samples / busy : 0.0, clg_optimizer_lr(r->opt),
                        now_seconds() - t0);
    }
    epoch_log_close(&log);
    if (rc == 0)
        printf("pre-training took %.1f s wall, %.1f s of CPU (%.0f images/s after the first "
               "step), log in %s\n",
               now_seconds() - t0, cpu_seconds() - c0, busy > 0 ? (double)samples / busy : 0.0,
               log_path);
    clg_plan_free(p);
    clg_graph_free(g);
    clg_loader_free(ld);
    return rc;
}

/* --embed-png FILE is this example's own: take it out before the shared parser. */
static int take_embed_png(int *argc, char **argv, const char **path) {
    int j = 1;
    for (int i = 1; i < *argc; ++i) {
        if (strcmp(argv[i], "--embed-png") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "simclr_mnist: --embed-png needs a file name\n");
                return 2;
            }
            *path = argv[++i];
            continue;
        }
        argv[j++] = argv[i];
    }
    *argc = j;
    return 0;
}

int main(int argc, char **argv) {
    static const char *const methods[] = {"simclr", "dae", NULL};
    run r = {.f = {.data = CLG_EXAMPLES_DATA_DIR "/mnist",
                   .epochs = 5,
                   .batch = 128,
                   .lr = 2e-3f,
                   .optimizer = "adam",
                   .loss = "ce",
                   .seed = 1,
                   .arch = "simclr"}};
    train_cli cli = {.program = "simclr_mnist",
                     .extra_usage = "[--arch simclr|dae] [--embed-png FILE.png]\n       ",
                     .has_arch = true,
                     .archs = methods,
                     .default_epochs = 5};
    int rc = take_embed_png(&argc, argv, &r.embed_png);
    if (rc) return rc;
    rc = train_flags_parse(&cli, &r.f, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (r.f.resume) {
        fprintf(stderr, "simclr_mnist: --resume is not supported; --load FILE starts from its "
                        "weights\n");
        return 2;
    }
    if (r.embed_png && !png_write_supported()) {
        fprintf(stderr, "simclr_mnist: --embed-png needs libpng, which this build lacks\n");
        return 2;
    }
    double t_start = now_seconds();
    if (clg_dataset_load_mnist(r.f.data, true, &r.train) != CLG_OK ||
        clg_dataset_load_mnist(r.f.data, false, &r.test) != CLG_OK ||
        clg_dataset_check_labels(r.train, 10) != CLG_OK ||
        clg_dataset_check_labels(r.test, 10) != CLG_OK)
        return fail("loading data");
    if (r.f.train_limit && r.f.train_limit < clg_dataset_size(r.train)) {
        clg_dataset *sub = NULL;
        if (clg_dataset_subset(r.train, 0, r.f.train_limit, &sub) != CLG_OK)
            return fail("--train-limit");
        clg_dataset_free(r.train);
        r.train = sub;
    }
    const int64_t *shape = clg_dataset_sample_shape(r.train);
    if (clg_dataset_sample_ndim(r.train) != 2 || shape[0] < 4 || shape[1] < 4) {
        fprintf(stderr, "simclr_mnist: the images must be 2-D, at least 4x4\n");
        return 1;
    }
    if (clg_context_create(r.f.device, &r.ctx) != CLG_OK) return fail("opening the device");
    const clg_device_info *dev = clg_context_device(r.ctx);
    printf("device: %s (%s)\n", dev->name, dev->platform_name);
    printf("data: %lld training images (labels unused until the probe), %lld test images, "
           "%lldx%lld, from %s\n",
           (long long)clg_dataset_size(r.train), (long long)clg_dataset_size(r.test),
           (long long)shape[0], (long long)shape[1], r.f.data);
    ssl_method method = strcmp(r.f.arch, "dae") == 0 ? SSL_DAE : SSL_SIMCLR;
    if (ssl_model_init(r.ctx, &r.m, "enc", shape[0], shape[1], REPR_DIM, PROJ_DIM, method,
                       r.f.seed) != CLG_OK) {
        rc = fail("creating the model");
        goto done;
    }
    clg_dataset_stats(r.train, &r.m.mean, &r.m.std);
    printf("method: %s; encoder conv3x3(32)-BN-ReLU-maxpool2, conv3x3(64)-BN-ReLU-maxpool2, "
           "linear(%lld, %d)-BN-ReLU; %s; Adam lr %g (cosine), batch %d, %d epochs, seed %llu\n",
           method == SSL_DAE ? "denoising autoencoder" : "SimCLR",
           (long long)(64 * (shape[0] / 4) * (shape[1] / 4)), REPR_DIM,
           method == SSL_DAE ? "decoder linear to the pixels, BCE against the clean image"
                             : "head linear-ReLU-linear to 64, NT-Xent at temperature 0.2",
           (double)r.f.lr, r.f.batch, r.f.epochs, (unsigned long long)r.f.seed);

    double acc_raw, acc_random, acc;
    if (probe(&r, true, "probe_raw", &acc_raw) != CLG_OK) {
        rc = fail("the raw-pixel probe");
        goto done;
    }
    printf("baseline: linear probe on raw pixels %.2f%%\n", 100.0 * acc_raw);
    if (probe(&r, false, "probe_random", &acc_random) != CLG_OK) {
        rc = fail("the random-encoder probe");
        goto done;
    }
    printf("baseline: linear probe on the random encoder %.2f%%\n", 100.0 * acc_random);
    fflush(stdout);

    if (r.f.load) {
        if (clg_checkpoint_load(r.ctx, r.f.load, NULL) != CLG_OK) {
            rc = fail("--load");
            goto done;
        }
        printf("loaded the weights of %s\n", r.f.load);
    }
    rc = pretrain(&r);
    if (rc) goto done;
    ssl_encoder_set_trainable(&r.m, false); /* the probe must not move the encoder */
    if (probe(&r, false, "probe", &acc) != CLG_OK) {
        rc = fail("the probe");
        goto done;
    }
    if (r.embed_png) rc = embed_png(&r);
    printf("wall time %.1f s\n", now_seconds() - t_start);
    printf("baselines: raw pixels %.2f%%, random encoder %.2f%%\n", 100.0 * acc_raw,
           100.0 * acc_random);
    printf("linear probe accuracy %.2f%%\n", 100.0 * acc);
done:
    clg_context_free(r.ctx);
    clg_dataset_free(r.train);
    clg_dataset_free(r.test);
    return rc;
}
