/* clg_affine_grid_sample against a plain-C bilinear reference (align_corners=False, zero
 * padding) on random matrices, odd sizes and an output of another size; a crop of a known box
 * that lands on the pixel grid equals the box itself; the identity matrix is the identity;
 * gradients for the image and the matrices against central finite differences; errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static double tap(const float *p, int64_t y, int64_t x, int64_t h, int64_t w) {
    return y >= 0 && y < h && x >= 0 && x < w ? p[y * w + x] : 0.0;
}

/* PyTorch's grid_sample of affine_grid(theta), in double. */
static void sample_ref(const float *theta, const float *x, int64_t n, int64_t c, int64_t h,
                       int64_t w, int64_t oh, int64_t ow, float *out) {
    for (int64_t b = 0; b < n; ++b)
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t i = 0; i < oh; ++i)
                for (int64_t j = 0; j < ow; ++j) {
                    const float *t = theta + b * 6;
                    double xn = (2.0 * j + 1.0) / ow - 1.0, yn = (2.0 * i + 1.0) / oh - 1.0;
                    double gx = t[0] * xn + t[1] * yn + t[2], gy = t[3] * xn + t[4] * yn + t[5];
                    double ix = ((gx + 1.0) * w - 1.0) / 2.0, iy = ((gy + 1.0) * h - 1.0) / 2.0;
                    double fx = floor(ix), fy = floor(iy), ax = ix - fx, ay = iy - fy;
                    int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
                    const float *p = x + (b * c + ch) * h * w;
                    out[((b * c + ch) * oh + i) * ow + j] =
                        (float)((1 - ay) * ((1 - ax) * tap(p, y0, x0, h, w) +
                                            ax * tap(p, y0, x0 + 1, h, w)) +
                                ay * ((1 - ax) * tap(p, y0 + 1, x0, h, w) +
                                      ax * tap(p, y0 + 1, x0 + 1, h, w)));
                }
}

/* Run theta, x through the op and read the result. */
static void run_op(const float *theta, const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                   int64_t oh, int64_t ow, float *out) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *t = clg_constant(g, CLG_F32, 3, S(n, 2, 3), theta);
    clg_tensor *xi = clg_constant(g, CLG_F32, 4, S(n, c, h, w), x);
    clg_tensor *y = clg_affine_grid_sample(g, t, xi, oh, ow);
    clg_assert_ok(clg_graph_output(g, y));
    clg_plan *p;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, y, out, (size_t)(n * c * oh * ow) * sizeof *out));
    clg_plan_free(p);
    clg_graph_free(g);
}

START_TEST(forward_random) {
    /* rotations, shears, zooms out (taps outside the image) and in */
    const int64_t n = 3, c = 2, h = 7, w = 9;
    const int64_t sizes[2][2] = {{7, 9}, {5, 12}};
    float *theta = rand_f(n * 6, -1.2f, 1.2f, 1), *x = rand_f(n * c * h * w, -1, 1, 2);
    for (int s = 0; s < 2; ++s) {
        int64_t oh = sizes[s][0], ow = sizes[s][1], m = n * c * oh * ow;
        float *got = malloc((size_t)m * sizeof *got), *want = malloc((size_t)m * sizeof *want);
        run_op(theta, x, n, c, h, w, oh, ow, got);
        sample_ref(theta, x, n, c, h, w, oh, ow, want);
        clg_assert_close(got, want, (size_t)m, 1e-5, 1e-5);
        free(got);
        free(want);
    }
    free(theta);
    free(x);
}
END_TEST

START_TEST(known_box_and_identity) {
    /* rows 4..11 and columns 8..15 of a 16x16 image into 8x8: half the size, centred at pixel
     * (12, 8), that is (0.5, 0) in [-1, 1] coordinates; output pixels land on input pixels */
    const int64_t h = 16, w = 16;
    float *x = rand_f(2 * h * w, 0, 1, 3);
    const float theta[12] = {0.5f, 0, 0.5f, 0, 0.5f, 0, 1, 0, 0, 0, 1, 0};
    float box[64], want[64], ident[2 * 16 * 16];
    run_op(theta, x, 1, 1, h, w, 8, 8, box);
    for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j)
            want[i * 8 + j] = x[(4 + i) * w + 8 + j];
    clg_assert_close(box, want, 64, 1e-6, 0);
    /* image 1's matrix is the identity */
    float theta2[12];
    memcpy(theta2, theta + 6, 6 * sizeof *theta2);
    memcpy(theta2 + 6, theta + 6, 6 * sizeof *theta2);
    run_op(theta2, x, 2, 1, h, w, h, w, ident);
    clg_assert_close(ident, x, (size_t)(2 * h * w), 1e-6, 0);
    free(x);
}
END_TEST

START_TEST(gradient_x) {
    clg_graph *g = clg_graph_new(clg_test_context());
    float *theta = rand_f(12, -1.1f, 1.1f, 5);
    clg_gc_input in[1] = {
        {clg_input(g, "x", CLG_F32, 4, S(2, 2, 5, 6)), rand_f(120, -1, 1, 6), "affine x"}};
    clg_gc_require(in, 1);
    clg_tensor *y = clg_affine_grid_sample(g, clg_constant(g, CLG_F32, 3, S(2, 2, 3), theta),
                                           in[0].tensor, 4, 7);
    /* linear in x: any step is exact */
    clg_gradcheck(g, clg_gc_weighted_sum(g, y, 1), in, 1, 0.25f, 1e-3f, 1e-3f);
    free(in[0].values);
    free(theta);
    clg_graph_free(g);
}
END_TEST

START_TEST(gradient_theta) {
    clg_graph *g = clg_graph_new(clg_test_context());
    float *x = rand_f(2 * 2 * 6 * 5, -1, 1, 7);
    clg_gc_input in[2] = {
        {clg_input(g, "theta", CLG_F32, 3, S(2, 2, 3)), rand_f(12, -0.9f, 0.9f, 8), "affine theta"},
        {clg_input(g, "x", CLG_F32, 4, S(2, 2, 6, 5)), rand_f(120, -1, 1, 9), "affine x"}};
    clg_gc_require(in, 2);
    clg_tensor *y = clg_affine_grid_sample(g, in[0].tensor, in[1].tensor, 5, 4);
    /* piecewise bilinear in theta: a small step, crossing few pixel borders */
    clg_gradcheck(g, clg_gc_weighted_sum(g, y, 2), in, 2, 2e-3f, 2e-2f, 2e-2f);
    free(in[0].values);
    free(in[1].values);
    free(x);
    clg_graph_free(g);
}
END_TEST

START_TEST(errors) {
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *x = clg_input(g, "x", CLG_F32, 4, S(2, 1, 4, 4));
    clg_affine_grid_sample(g, clg_input(g, "t", CLG_F32, 3, S(3, 2, 3)), x, 4, 4);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(g), "[3, 2, 3]"));
    clg_graph_free(g);
    g = clg_graph_new(clg_test_context());
    x = clg_input(g, "x", CLG_F32, 4, S(2, 1, 4, 4));
    clg_affine_grid_sample(g, clg_input(g, "t", CLG_F32, 3, S(2, 2, 3)), x, 0, 4);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
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
    Suite *s = suite_create("affine");
    add_case(s, "forward_random", forward_random);
    add_case(s, "known_box_and_identity", known_box_and_identity);
    add_case(s, "gradient_x", gradient_x);
    add_case(s, "gradient_theta", gradient_theta);
    add_case(s, "errors", errors);
    return clg_test_run(s);
}
