/* Datasets: the bundled MNIST test split, IDX pairs, arrays, subsets, normalisation, the label
 * check against a model's classes (naming the file and item), and the seeded batch loader with
 * the position a resumed run seeks back to. Host only: no OpenCL device is touched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "scratch.h"

/* ---- Datasets ---- */

static const char *mnist_dir(void) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", clg_test_path("../examples/data/mnist"));
    return dir;
}

START_TEST(dataset_mnist_t10k) {
    clg_dataset *ds;
    clg_assert_ok(clg_dataset_load_mnist(mnist_dir(), false, &ds));
    ck_assert_int_eq(clg_dataset_size(ds), 10000);
    ck_assert_int_eq(clg_dataset_sample_ndim(ds), 2);
    ck_assert_int_eq(clg_dataset_sample_shape(ds)[0], 28);
    ck_assert_int_eq(clg_dataset_sample_shape(ds)[1], 28);
    ck_assert_int_eq(clg_dataset_sample_numel(ds), 784);
    ck_assert_int_eq(clg_dataset_num_classes(ds), 10);
    const int32_t *y = clg_dataset_labels(ds);
    ck_assert_int_eq(y[0], 7);
    ck_assert_int_eq(y[1], 2);
    ck_assert_int_eq(y[2], 1);
    ck_assert_int_eq(y[3], 0);
    ck_assert_int_eq(y[4], 4);
    int counts[10] = {0};
    for (int i = 0; i < 10000; ++i)
        counts[y[i]]++;
    ck_assert_int_eq(counts[0], 980); /* the test split's class counts are well known */
    ck_assert_int_eq(counts[1], 1135);
    const float *x = clg_dataset_features(ds);
    float lo = 1, hi = 0;
    for (int i = 0; i < 10000 * 784; ++i) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    ck_assert_float_eq(lo, 0.0f);
    ck_assert_float_eq(hi, 1.0f);
    /* the first image (a 7) has ink in its middle rows and none in its corner */
    ck_assert_float_eq(x[0], 0.0f);
    float row_ink = 0;
    for (int c = 0; c < 28; ++c)
        row_ink += x[14 * 28 + c];
    ck_assert_float_gt(row_ink, 1.0f);
    clg_dataset_free(ds);
}
END_TEST

START_TEST(dataset_mnist_missing) {
    clg_dataset *ds = (clg_dataset *)1;
    const char *nodir = clg_scratch_path("no-such-dir");
    ck_assert_int_eq(clg_dataset_load_mnist(nodir, true, &ds), CLG_ERR_IO);
    ck_assert_ptr_null(ds);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), nodir));
    /* an existing directory without the files names the paths it tried */
    ck_assert_int_eq(clg_dataset_load_mnist(clg_scratch_dir(), true, &ds), CLG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "train-images-idx3-ubyte.gz"));
    ck_assert_ptr_nonnull(strstr(clg_last_error(), clg_scratch_dir()));
}
END_TEST

START_TEST(dataset_idx_pairing) {
    unsigned char buf[256];
    uint8_t px[4 * 2 * 3];
    for (int i = 0; i < 24; ++i)
        px[i] = (uint8_t)(i * 10);
    uint32_t idims[] = {4, 2, 3};
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 3, idims, px, sizeof px);
    const char *images = clg_scratch_write("img", buf, n, false);
    /* i32 labels are accepted */
    const unsigned char lab32[] = {0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2};
    uint32_t ldims[] = {4};
    n = clg_scratch_idx(buf, CLG_IDX_I32, 1, ldims, lab32, sizeof lab32);
    const char *labels = clg_scratch_write("lab32", buf, n, true);
    clg_dataset *ds;
    clg_assert_ok(clg_dataset_load_idx(images, labels, &ds));
    ck_assert_int_eq(clg_dataset_size(ds), 4);
    ck_assert_int_eq(clg_dataset_sample_numel(ds), 6);
    for (int i = 0; i < 24; ++i)
        ck_assert_float_eq(clg_dataset_features(ds)[i], (float)(i * 10) / 255.0f);
    ck_assert_int_eq(clg_dataset_labels(ds)[0], 3);
    ck_assert_int_eq(clg_dataset_labels(ds)[3], 2);
    ck_assert_int_eq(clg_dataset_num_classes(ds), 4);
    clg_dataset_free(ds);

    /* counts that disagree name both files */
    uint32_t five[] = {5};
    uint8_t lab8[5] = {0};
    n = clg_scratch_idx(buf, CLG_IDX_U8, 1, five, lab8, 5);
    const char *five_labels = clg_scratch_write("lab5", buf, n, false);
    ds = (clg_dataset *)1;
    ck_assert_int_eq(clg_dataset_load_idx(images, five_labels, &ds), CLG_ERR_FORMAT);
    ck_assert_ptr_null(ds);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), images));
    ck_assert_ptr_nonnull(strstr(clg_last_error(), five_labels));

    /* swapped files: labels that are not 1-D, images that are */
    ck_assert_int_eq(clg_dataset_load_idx(images, images, &ds), CLG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "labels must be 1-D"));
    ck_assert_int_eq(clg_dataset_load_idx(five_labels, five_labels, &ds), CLG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "is it a label file"));

    /* a broken file keeps its own message */
    ck_assert_int_eq(clg_dataset_load_idx(images, clg_scratch_path("missing"), &ds), CLG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "missing"));

    /* negative labels are refused */
    const unsigned char neg[] = {0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0, 0, 2};
    n = clg_scratch_idx(buf, CLG_IDX_I32, 1, ldims, neg, sizeof neg);
    ck_assert_int_eq(clg_dataset_load_idx(images, clg_scratch_write("neg", buf, n, false), &ds),
                     CLG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "label 1 is negative"));
}
END_TEST

/* n samples of shape [2, 3] whose features encode their index: x[i][k] = i * 10 + k. */
static clg_dataset *indexed_dataset(int64_t n) {
    float *x = malloc((size_t)n * 6 * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; ++i) {
        for (int k = 0; k < 6; ++k)
            x[i * 6 + k] = (float)(i * 10 + k);
        y[i] = (int32_t)(i % 7);
    }
    const int64_t shape[] = {2, 3};
    clg_dataset *ds;
    clg_assert_ok(clg_dataset_from_arrays(n, 2, shape, x, y, &ds));
    free(x);
    free(y);
    return ds;
}

START_TEST(dataset_arrays_and_subset) {
    clg_dataset *ds = indexed_dataset(20);
    ck_assert_int_eq(clg_dataset_num_classes(ds), 7);
    clg_dataset *sub;
    clg_assert_ok(clg_dataset_subset(ds, 5, 10, &sub));
    ck_assert_int_eq(clg_dataset_size(sub), 10);
    ck_assert_int_eq(clg_dataset_sample_ndim(sub), 2);
    for (int i = 0; i < 10; ++i) {
        ck_assert_float_eq(clg_dataset_features(sub)[i * 6 + 4], (float)((i + 5) * 10 + 4));
        ck_assert_int_eq(clg_dataset_labels(sub)[i], (i + 5) % 7);
    }
    clg_dataset_free(sub);
    clg_assert_ok(clg_dataset_subset(ds, 20, 0, &sub));
    ck_assert_int_eq(clg_dataset_size(sub), 0);
    clg_dataset_free(sub);
    sub = (clg_dataset *)1;
    ck_assert_int_eq(clg_dataset_subset(ds, 15, 6, &sub), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(sub);
    ck_assert_int_eq(clg_dataset_subset(ds, -1, 2, &sub), CLG_ERR_INVALID_ARGUMENT);
    clg_dataset_free(ds);

    /* labels NULL: all zero; bad arguments */
    const float f[4] = {1, 2, 3, 4};
    const int64_t one[] = {1};
    clg_assert_ok(clg_dataset_from_arrays(4, 1, one, f, NULL, &ds));
    ck_assert_int_eq(clg_dataset_labels(ds)[3], 0);
    ck_assert_int_eq(clg_dataset_num_classes(ds), 1);
    clg_dataset_free(ds);
    const int32_t bad_labels[4] = {0, 1, -3, 2};
    ck_assert_int_eq(clg_dataset_from_arrays(4, 1, one, f, bad_labels, &ds),
                     CLG_ERR_INVALID_ARGUMENT);
    const int64_t zero[] = {0};
    ck_assert_int_eq(clg_dataset_from_arrays(4, 1, zero, f, NULL, &ds), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_dataset_from_arrays(4, 1, one, NULL, NULL, &ds), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_dataset_from_arrays(4, CLG_MAX_DIMS, one, f, NULL, &ds),
                     CLG_ERR_INVALID_ARGUMENT);
    clg_dataset_free(NULL);
}
END_TEST

START_TEST(dataset_normalize_and_stats) {
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 42);
    enum { N = 300, F = 17 };
    float *x = malloc(N * F * sizeof(float));
    clg_test_fill(&rng, x, N * F, -0.5f, 2.0f);
    const int64_t shape[] = {F};
    clg_dataset *ds;
    clg_assert_ok(clg_dataset_from_arrays(N, 1, shape, x, NULL, &ds));

    double sum = 0, sq = 0;
    for (int i = 0; i < N * F; ++i)
        sum += x[i];
    double m = sum / (N * F);
    for (int i = 0; i < N * F; ++i)
        sq += (x[i] - m) * (x[i] - m);
    float mean, std;
    clg_dataset_stats(ds, &mean, &std);
    ck_assert_double_eq_tol(mean, m, 1e-6);
    ck_assert_double_eq_tol(std, sqrt(sq / (N * F)), 1e-6);

    clg_assert_ok(clg_dataset_normalize(ds, mean, std));
    float *want = malloc(N * F * sizeof(float));
    for (int i = 0; i < N * F; ++i)
        want[i] = (x[i] - mean) / std;
    clg_assert_close(clg_dataset_features(ds), want, N * F, 0.0, 0.0);
    clg_dataset_stats(ds, &mean, &std);
    ck_assert_double_eq_tol(mean, 0.0, 1e-6);
    ck_assert_double_eq_tol(std, 1.0, 1e-6);

    ck_assert_int_eq(clg_dataset_normalize(ds, 0.0f, 0.0f), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_dataset_normalize(ds, NAN, 1.0f), CLG_ERR_INVALID_ARGUMENT);
    clg_dataset_free(ds);
    free(x);
    free(want);
}
END_TEST

/* ---- Loader ---- */

/* The sample index of every real row of an epoch, in order. */
static void epoch_order(clg_loader *l, int64_t epoch, int64_t *order, int64_t n) {
    clg_loader_start_epoch(l, epoch);
    clg_batch b;
    int64_t at = 0, expect_index = 0;
    while (clg_loader_next(l, &b)) {
        ck_assert_int_eq(b.index, expect_index++);
        for (int64_t r = 0; r < b.rows; ++r) {
            ck_assert_int_lt(at, n);
            int64_t s = (int64_t)b.features[r * 6] / 10;
            /* the whole row and its label travel together */
            for (int k = 0; k < 6; ++k)
                ck_assert_float_eq(b.features[r * 6 + k], s * 10 + k);
            ck_assert_int_eq(b.labels[r], s % 7);
            order[at++] = s;
        }
    }
    ck_assert_int_eq(expect_index, clg_loader_batches(l));
    ck_assert_int_eq(at, n);
}

START_TEST(loader_permutation) {
    enum { N = 103 };
    clg_dataset *ds = indexed_dataset(N);
    clg_loader_options o = {.batch_size = 10, .shuffle = true, .drop_last = false, .seed = 1234};
    clg_loader *a, *b;
    clg_assert_ok(clg_loader_new(ds, &o, &a));
    clg_assert_ok(clg_loader_new(ds, &o, &b));
    ck_assert_int_eq(clg_loader_batches(a), 11);

    int64_t e0[N], e0b[N], e1[N], again[N];
    epoch_order(a, 0, e0, N);
    /* every index exactly once */
    int seen[N] = {0};
    for (int i = 0; i < N; ++i)
        seen[e0[i]]++;
    for (int i = 0; i < N; ++i)
        ck_assert_int_eq(seen[i], 1);
    bool identity = true;
    for (int i = 0; i < N; ++i)
        identity = identity && e0[i] == i;
    ck_assert_msg(!identity, "shuffle left the order unchanged");

    /* same seed, same epoch: same order, whatever came before */
    epoch_order(b, 0, e0b, N);
    ck_assert_mem_eq(e0, e0b, sizeof e0);
    epoch_order(a, 1, e1, N);
    ck_assert_msg(memcmp(e0, e1, sizeof e0) != 0, "epochs 0 and 1 have the same order");
    for (int i = 0; i < N; ++i)
        seen[i] = 0;
    for (int i = 0; i < N; ++i)
        seen[e1[i]]++;
    for (int i = 0; i < N; ++i)
        ck_assert_int_eq(seen[i], 1);
    epoch_order(a, 5, again, N);
    epoch_order(b, 5, e0b, N); /* b jumps from epoch 0 to 5: a resumed run */
    ck_assert_mem_eq(again, e0b, sizeof again);
    epoch_order(a, 1, again, N);
    ck_assert_mem_eq(again, e1, sizeof again);
    clg_loader_free(b);

    /* another seed, another order */
    o.seed = 1235;
    clg_assert_ok(clg_loader_new(ds, &o, &b));
    epoch_order(b, 0, e0b, N);
    ck_assert_msg(memcmp(e0, e0b, sizeof e0) != 0, "seeds 1234 and 1235 give the same order");
    clg_loader_free(b);

    /* no shuffle: dataset order */
    o.shuffle = false;
    clg_assert_ok(clg_loader_new(ds, &o, &b));
    epoch_order(b, 3, e0b, N);
    for (int i = 0; i < N; ++i)
        ck_assert_int_eq(e0b[i], i);
    clg_loader_free(b);
    clg_loader_free(a);
    clg_loader_free(NULL);
    clg_dataset_free(ds);
}
END_TEST

START_TEST(loader_last_batch) {
    clg_dataset *ds = indexed_dataset(10);
    clg_loader_options o = {.batch_size = 4, .shuffle = false, .drop_last = false, .seed = 0};
    clg_loader *l;
    clg_assert_ok(clg_loader_new(ds, &o, &l));
    ck_assert_int_eq(clg_loader_batches(l), 3);
    clg_batch b;
    /* usable without clg_loader_start_epoch: epoch 0 */
    ck_assert(clg_loader_next(l, &b));
    ck_assert_int_eq(b.rows, 4);
    ck_assert(clg_loader_next(l, &b));
    ck_assert_int_eq(b.rows, 4);
    ck_assert(clg_loader_next(l, &b));
    ck_assert_int_eq(b.rows, 2);
    ck_assert_int_eq(b.index, 2);
    ck_assert_float_eq(b.features[0], 80.0f);
    ck_assert_float_eq(b.features[6 + 5], 95.0f);
    for (int k = 12; k < 24; ++k)
        ck_assert_float_eq(b.features[k], 0.0f);
    ck_assert_int_eq(b.labels[2], 0);
    ck_assert_int_eq(b.labels[3], 0);
    ck_assert(!clg_loader_next(l, &b));
    ck_assert(!clg_loader_next(l, &b));
    clg_loader_free(l);

    o.drop_last = true;
    o.shuffle = true;
    clg_assert_ok(clg_loader_new(ds, &o, &l));
    ck_assert_int_eq(clg_loader_batches(l), 2);
    int n = 0;
    while (clg_loader_next(l, &b)) {
        ck_assert_int_eq(b.rows, 4);
        n++;
    }
    ck_assert_int_eq(n, 2);
    clg_loader_free(l);

    /* exact multiple: no partial batch either way */
    o.batch_size = 5;
    o.drop_last = false;
    clg_assert_ok(clg_loader_new(ds, &o, &l));
    ck_assert_int_eq(clg_loader_batches(l), 2);
    clg_loader_free(l);

    /* a batch larger than the dataset: one partial batch, or an error with drop_last */
    o.batch_size = 16;
    clg_assert_ok(clg_loader_new(ds, &o, &l));
    ck_assert_int_eq(clg_loader_batches(l), 1);
    ck_assert(clg_loader_next(l, &b));
    ck_assert_int_eq(b.rows, 10);
    clg_loader_free(l);
    o.drop_last = true;
    l = (clg_loader *)1;
    ck_assert_int_eq(clg_loader_new(ds, &o, &l), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(l);
    o.batch_size = 0;
    ck_assert_int_eq(clg_loader_new(ds, &o, &l), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_loader_new(ds, NULL, &l), CLG_ERR_INVALID_ARGUMENT);

    /* uploading needs a plan */
    o.batch_size = 4;
    clg_assert_ok(clg_loader_new(ds, &o, &l));
    ck_assert(clg_loader_next(l, &b));
    ck_assert_int_eq(clg_batch_upload(&b, l, NULL, NULL, NULL), CLG_ERR_INVALID_ARGUMENT);
    clg_loader_free(l);
    clg_dataset_free(ds);
}
END_TEST


/* ---- Labels against a model's classes ---- */

START_TEST(dataset_labels_checked) {
    unsigned char buf[512];
    uint8_t px[6 * 4] = {0};
    uint32_t idims[] = {6, 2, 2}, ldims[] = {6};
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 3, idims, px, sizeof px);
    const char *images = clg_scratch_write("img", buf, n, false);
    const uint8_t labels[6] = {0, 9, 3, 200, 4, 10};
    n = clg_scratch_idx(buf, CLG_IDX_U8, 1, ldims, labels, sizeof labels);
    const char *lab = clg_scratch_write("labels.gz", buf, n, true);
    clg_dataset *ds;
    clg_assert_ok(clg_dataset_load_idx(images, lab, &ds));
    ck_assert_int_eq(clg_dataset_check_labels(ds, 10), CLG_ERR_FORMAT);
    const char *msg = clg_last_error();
    ck_assert_msg(strstr(msg, lab) && strstr(msg, "item 3 has label 200") &&
                      strstr(msg, "10 classes") && strstr(msg, "2 of 6 labels"),
                  "%s", msg);
    clg_assert_ok(clg_dataset_check_labels(ds, 201));
    /* a subset counts items from the file's start, not its own */
    clg_dataset *sub;
    clg_assert_ok(clg_dataset_subset(ds, 4, 2, &sub));
    ck_assert_int_eq(clg_dataset_check_labels(sub, 10), CLG_ERR_FORMAT);
    ck_assert_msg(strstr(clg_last_error(), "item 5 has label 10"), "%s", clg_last_error());
    clg_dataset_free(sub);
    clg_assert_ok(clg_dataset_subset(ds, 0, 3, &sub));
    clg_assert_ok(clg_dataset_check_labels(sub, 10));
    clg_dataset_free(sub);
    clg_dataset_free(ds);
    /* from arrays: an argument error naming the index */
    const float x[3] = {0};
    const int32_t y[3] = {1, 2, 7};
    clg_assert_ok(clg_dataset_from_arrays(3, 0, NULL, x, y, &ds));
    ck_assert_int_eq(clg_dataset_check_labels(ds, 5), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clg_last_error(), "item 2 has label 7"), "%s", clg_last_error());
    ck_assert_int_eq(clg_dataset_check_labels(ds, 0), CLG_ERR_INVALID_ARGUMENT);
    clg_dataset_free(ds);
}
END_TEST

/* ---- Resuming a loader ---- */

/* Where an uninterrupted loader is after k batches of epoch e, a sought one is too, and both
 * deliver the same batches from there. */
START_TEST(loader_seek_matches_uninterrupted) {
    clg_dataset *ds = indexed_dataset(23);
    clg_loader_options o = {.batch_size = 4, .shuffle = true, .drop_last = false, .seed = 9};
    clg_loader *a, *b;
    clg_assert_ok(clg_loader_new(ds, &o, &a));
    clg_assert_ok(clg_loader_new(ds, &o, &b));
    clg_batch ba, bb;
    clg_loader_start_epoch(a, 2);
    for (int i = 0; i < 3; ++i) ck_assert(clg_loader_next(a, &ba));
    int64_t epoch, batch;
    clg_loader_position(a, &epoch, &batch);
    ck_assert_int_eq(epoch, 2);
    ck_assert_int_eq(batch, 3);
    clg_assert_ok(clg_loader_seek(b, epoch, batch));
    int got = 0;
    while (clg_loader_next(a, &ba)) {
        ck_assert(clg_loader_next(b, &bb));
        ck_assert_int_eq(ba.index, bb.index);
        ck_assert_int_eq(ba.rows, bb.rows);
        ck_assert(memcmp(ba.features, bb.features, (size_t)ba.rows * 6 * sizeof(float)) == 0);
        ck_assert(memcmp(ba.labels, bb.labels, (size_t)ba.rows * sizeof(int32_t)) == 0);
        got++;
    }
    ck_assert_int_eq(got, 3); /* batches 3, 4, 5 of ceil(23 / 4) = 6 */
    ck_assert(!clg_loader_next(b, &bb));
    /* the end of an epoch is a position too; past it is an error */
    clg_assert_ok(clg_loader_seek(b, 0, clg_loader_batches(b)));
    ck_assert(!clg_loader_next(b, &bb));
    ck_assert_int_eq(clg_loader_seek(b, 0, clg_loader_batches(b) + 1), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_loader_seek(b, -1, 0), CLG_ERR_INVALID_ARGUMENT);
    clg_loader_free(a);
    clg_loader_free(b);
    clg_dataset_free(ds);
}
END_TEST

static Suite *dataset_suite(void) {
    Suite *s = suite_create("dataset");
    TCase *td = tcase_create("dataset");
    tcase_add_checked_fixture(td, clg_scratch_setup, clg_scratch_teardown);
    tcase_set_timeout(td, 60);
    tcase_add_test(td, dataset_mnist_t10k);
    tcase_add_test(td, dataset_mnist_missing);
    tcase_add_test(td, dataset_idx_pairing);
    tcase_add_test(td, dataset_arrays_and_subset);
    tcase_add_test(td, dataset_normalize_and_stats);
    tcase_add_test(td, loader_permutation);
    tcase_add_test(td, loader_last_batch);
    tcase_add_test(td, dataset_labels_checked);
    tcase_add_test(td, loader_seek_matches_uninterrupted);
    suite_add_tcase(s, td);
    return s;
}

int main(void) {
    return clg_test_run(dataset_suite());
}
