/* Self-supervised pieces against plain-C references: clg_nt_xent's loss and gradient (a
 * double-precision reference, its gradient by differences of the reference) and central
 * finite differences on the device; clg_augment: degenerate ranges are the identity, a crop's
 * matrices (also turned and shifted) stay in their ranges and its pixels equal a C resampling
 * of the box, the same seed gives the same views, other seeds and other runs give other
 * views, erasing zeroes a box of the asked area. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h" /* the context's run counter (rng_offset) */
#include "gradcheck.h"
#include "harness.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})

static float *rand_f(int64_t n, float lo, float hi, uint64_t seed) {
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, v, (size_t)n, lo, hi);
    return v;
}

/* SimCLR's loss, straight from its definition, in double. */
static double nt_xent_ref(const double *z, int64_t m, int64_t d, double t) {
    double *u = malloc((size_t)(m * d) * sizeof *u), loss = 0.0;
    for (int64_t i = 0; i < m; ++i) {
        double s = 0.0;
        for (int64_t k = 0; k < d; ++k)
            s += z[i * d + k] * z[i * d + k];
        for (int64_t k = 0; k < d; ++k)
            u[i * d + k] = z[i * d + k] / sqrt(s);
    }
    for (int64_t i = 0; i < m; ++i) {
        int64_t pos = (i + m / 2) % m;
        double denom = 0.0, sp = 0.0;
        for (int64_t j = 0; j < m; ++j) {
            if (j == i) continue;
            double c = 0.0;
            for (int64_t k = 0; k < d; ++k)
                c += u[i * d + k] * u[j * d + k];
            denom += exp(c / t);
            if (j == pos) sp = c / t;
        }
        loss += log(denom) - sp;
    }
    free(u);
    return loss / (double)m;
}

START_TEST(nt_xent_reference) {
    const int64_t m = 10, d = 7;
    const float t = 0.5f;
    float *z = rand_f(m * d, -1, 1, 1);
    double *zd = malloc((size_t)(m * d) * sizeof *zd);
    float grad_want[70], grad[70], loss;
    for (int64_t i = 0; i < m * d; ++i)
        zd[i] = z[i];
    float want = (float)nt_xent_ref(zd, m, d, t);
    for (int64_t i = 0; i < m * d; ++i) {
        double keep = zd[i], h = 1e-5;
        zd[i] = keep + h;
        double up = nt_xent_ref(zd, m, d, t);
        zd[i] = keep - h;
        double down = nt_xent_ref(zd, m, d, t);
        zd[i] = keep;
        grad_want[i] = (float)((up - down) / (2 * h));
    }
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *zi = clg_input(g, "z", CLG_F32, 2, S(m, d));
    clg_assert_ok(clg_requires_grad(zi));
    clg_tensor *l = clg_nt_xent(g, zi, t);
    clg_assert_ok(clg_graph_output(g, l));
    clg_assert_ok(clg_backward(g, l));
    clg_tensor *gz = clg_grad(g, zi);
    clg_assert_ok(clg_graph_output(g, gz));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, zi, z, sizeof(float) * 70));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, l, &loss, sizeof loss));
    clg_assert_ok(clg_plan_read(p, gz, grad, sizeof grad));
    clg_assert_close(&loss, &want, 1, 1e-5, 1e-5);
    clg_assert_close(grad, grad_want, 70, 1e-5, 1e-3);
    clg_plan_free(p);
    clg_graph_free(g);
    free(z);
    free(zd);
}
END_TEST

START_TEST(nt_xent_gradcheck) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_gc_input in[1] = {
        {clg_input(g, "z", CLG_F32, 2, S(6, 3)), rand_f(18, -1, 1, 2), "nt_xent z"}};
    clg_gc_require(in, 1);
    clg_gradcheck(g, clg_nt_xent(g, in[0].tensor, 0.2f), in, 1, 1e-2f, 2e-3f, 2e-2f);
    free(in[0].values);
    clg_graph_free(g);
}
END_TEST

START_TEST(nt_xent_errors) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_nt_xent(g, clg_input(g, "z", CLG_F32, 2, S(5, 3)), 0.5f);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(g), "[5, 3]"));
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    clg_nt_xent(g, clg_input(g, "z", CLG_F32, 2, S(4, 3)), 0.0f);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
}
END_TEST

static const clg_augment_params identity = {
    .crop_scale_min = 1, .crop_scale_max = 1, .crop_ratio_min = 1, .crop_ratio_max = 1};

/* One view of x [n, 1, h, w] (and its matrices) from a fresh graph; runs: how many runs of
 * the plan before the one read. */
static void view(const clg_augment_params *ap, uint64_t seed, const float *x, int64_t n, int64_t h,
                 int64_t w, int runs, float *y, float *theta) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *xi = clg_constant(g, CLG_F32, 4, S(n, 1, h, w), x), *t;
    clg_tensor *v = clg_augment(g, xi, ap, seed, &t);
    clg_assert_ok(clg_graph_output(g, v));
    clg_assert_ok(clg_graph_output(g, t));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_test_context()->rng_offset = 0; /* the draws depend on the run counter too */
    for (int r = 0; r <= runs; ++r)
        clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, v, y, (size_t)(n * h * w) * sizeof *y));
    if (theta) clg_assert_ok(clg_plan_read(p, t, theta, (size_t)(n * 6) * sizeof *theta));
    clg_plan_free(p);
    clg_graph_free(g);
}

START_TEST(augment_identity) {
    /* scale 1, aspect 1, rotation by 0, no shift, no jitter: every view is x */
    const int64_t n = 4, h = 11, w = 9;
    float *x = rand_f(n * h * w, 0, 1, 3), y[4 * 11 * 9];
    view(&identity, 5, x, n, h, w, 0, y, NULL);
    clg_assert_close(y, x, (size_t)(n * h * w), 1e-6, 0);
    free(x);
}
END_TEST

static double tap(const float *p, int64_t y, int64_t x, int64_t h, int64_t w) {
    return y >= 0 && y < h && x >= 0 && x < w ? p[y * w + x] : 0.0;
}

/* The C resampling of image p [h, w] through the matrix t (row-major 2x3) into out. */
static void resample_ref(const float *t, const float *p, int64_t h, int64_t w, float *out) {
    for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
            double xn = (2.0 * j + 1) / w - 1, yn = (2.0 * i + 1) / h - 1;
            double gx = t[0] * xn + t[1] * yn + t[2], gy = t[3] * xn + t[4] * yn + t[5];
            double ix = ((gx + 1) * w - 1) / 2, iy = ((gy + 1) * h - 1) / 2;
            double fx = floor(ix), fy = floor(iy), ax = ix - fx, ay = iy - fy;
            int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
            out[i * w + j] = (float)((1 - ay) * ((1 - ax) * tap(p, y0, x0, h, w) +
                                                 ax * tap(p, y0, x0 + 1, h, w)) +
                                     ay * ((1 - ax) * tap(p, y0 + 1, x0, h, w) +
                                           ax * tap(p, y0 + 1, x0 + 1, h, w)));
        }
}

/* Crops (then turned and shifted when rotate > 0): each image's matrix is a box of an area and
 * aspect in range, turned by at most rotate, inside the image unless shifted, and the view is
 * the C resampling of that box. */
static void crop_case(float rotate, float translate) {
    const int64_t n = 16, h = 12, w = 12;
    clg_augment_params ap = identity;
    ap.crop_scale_min = 0.3f;
    ap.crop_scale_max = 0.6f;
    ap.crop_ratio_min = 0.75f;
    ap.crop_ratio_max = 4.0f / 3.0f;
    ap.rotate = rotate;
    ap.translate = translate;
    float *x = rand_f(n * h * w, 0, 1, 4), y[16 * 12 * 12], want[16 * 12 * 12], th[16 * 6];
    view(&ap, 9, x, n, h, w, 0, y, th);
    bool turned = false;
    for (int64_t b = 0; b < n; ++b) {
        const float *t = th + 6 * b;
        /* t = [[bw cos a, -bw sin a, cx], [bh sin a, bh cos a, cy]] */
        double bw = hypot(t[0], t[1]), bh = hypot(t[3], t[4]), a = atan2(t[3], t[4]);
        ck_assert_msg(fabs(a) <= rotate + 1e-6, "angle %g", a);
        ck_assert(fabs(atan2(-t[1], t[0]) - a) < 1e-5);
        turned |= fabs(a) > 0.05;
        ck_assert_msg(bw * bh > 0.3 - 1e-5 && bw * bh < 0.6 + 1e-5, "area %g", bw * bh);
        ck_assert_msg(bw / bh > 0.75 - 1e-5 && bw / bh < 4.0 / 3.0 + 1e-5, "ratio %g", bw / bh);
        ck_assert(fabs(t[2]) <= 1.0 - bw + 2 * translate + 1e-6);
        ck_assert(fabs(t[5]) <= 1.0 - bh + 2 * translate + 1e-6);
        resample_ref(t, x + b * h * w, h, w, want + b * h * w);
    }
    ck_assert(turned == (rotate > 0.0f));
    clg_assert_close(y, want, (size_t)(n * h * w), 1e-5, 1e-5);
    free(x);
}

START_TEST(augment_crop_box) {
    crop_case(0.0f, 0.0f);
}
END_TEST

START_TEST(augment_crop_rotated) {
    crop_case(0.4f, 0.1f);
}
END_TEST

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; ++i)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

START_TEST(augment_seeds) {
    const int64_t n = 8, h = 28, w = 28;
    const size_t m = (size_t)(n * h * w);
    const clg_augment_params ap = {.crop_scale_min = 0.4f,
                                   .crop_scale_max = 1.0f,
                                   .crop_ratio_min = 0.75f,
                                   .crop_ratio_max = 1.33f,
                                   .rotate = 0.3f,
                                   .translate = 0.1f,
                                   .erase_prob = 0.5f,
                                   .erase_scale_min = 0.02f,
                                   .erase_scale_max = 0.1f,
                                   .brightness = 0.3f,
                                   .contrast = 0.3f,
                                   .noise_std = 0.05f};
    float *x = rand_f((int64_t)m, 0, 1, 5);
    float *a = malloc(m * sizeof *a), *b = malloc(m * sizeof *b), *c = malloc(m * sizeof *c);
    float *d = malloc(m * sizeof *d);
    view(&ap, 11, x, n, h, w, 0, a, NULL);
    view(&ap, 11, x, n, h, w, 0, b, NULL);
    view(&ap, 12, x, n, h, w, 0, c, NULL);
    view(&ap, 11, x, n, h, w, 1, d, NULL); /* the same plan's second run */
    ck_assert(memcmp(a, b, m * sizeof *a) == 0);
    ck_assert_msg(max_diff(a, c, m) > 0.3, "seeds 11 and 12 give views %g apart",
                  max_diff(a, c, m));
    ck_assert_msg(max_diff(a, d, m) > 0.3, "runs 1 and 2 give views %g apart", max_diff(a, d, m));
    for (size_t i = 0; i < m; ++i)
        ck_assert(isfinite(a[i]));
    free(x);
    free(a);
    free(b);
    free(c);
    free(d);
}
END_TEST

START_TEST(augment_erase) {
    const int64_t n = 32, h = 20, w = 20;
    clg_augment_params ap = identity;
    ap.erase_prob = 1.0f;
    ap.erase_scale_min = 0.1f;
    ap.erase_scale_max = 0.2f;
    float *x = malloc((size_t)(n * h * w) * sizeof *x), y[32 * 20 * 20];
    for (int64_t i = 0; i < n * h * w; ++i)
        x[i] = 1.0f;
    view(&ap, 3, x, n, h, w, 0, y, NULL);
    for (int64_t b = 0; b < n; ++b) {
        int64_t zeros = 0, y0 = h, y1 = -1, x0 = w, x1 = -1;
        for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) {
                float v = y[(b * h + i) * w + j];
                ck_assert(v == 0.0f || v == 1.0f);
                if (v != 0.0f) continue;
                zeros++;
                y0 = i < y0 ? i : y0;
                y1 = i > y1 ? i : y1;
                x0 = j < x0 ? j : x0;
                x1 = j > x1 ? j : x1;
            }
        /* a filled rectangle whose area is the asked fraction, up to a pixel along each side */
        ck_assert_int_eq(zeros, (y1 - y0 + 1) * (x1 - x0 + 1));
        double lo = 0.1 * h * w, hi = 0.2 * h * w;
        double slack = (double)(y1 - y0 + x1 - x0 + 3);
        ck_assert_msg(zeros >= lo - slack && zeros <= hi + slack, "image %lld: %lld zeros",
                      (long long)b, (long long)zeros);
    }
    free(x);
}
END_TEST

START_TEST(augment_errors) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_augment_params ap = identity;
    ap.crop_scale_max = 1.5f;
    clg_tensor *t;
    clg_augment(g, clg_input(g, "x", CLG_F32, 4, S(2, 1, 4, 4)), &ap, 1, &t);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
}
END_TEST

static void add_case(Suite *s, const char *name, const TTest *test) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

int main(void) {
    Suite *s = suite_create("contrastive");
    add_case(s, "nt_xent_reference", nt_xent_reference);
    add_case(s, "nt_xent_gradcheck", nt_xent_gradcheck);
    add_case(s, "nt_xent_errors", nt_xent_errors);
    add_case(s, "augment_identity", augment_identity);
    add_case(s, "augment_crop_box", augment_crop_box);
    add_case(s, "augment_crop_rotated", augment_crop_rotated);
    add_case(s, "augment_seeds", augment_seeds);
    add_case(s, "augment_erase", augment_erase);
    add_case(s, "augment_errors", augment_errors);
    return clg_test_run(s);
}
