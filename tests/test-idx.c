/* IDX reading (good files, plain and gzip, and every kind of broken one, generated here), the
 * bundled MNIST test split, datasets (subset, normalize, stats) and the seeded batch loader.
 * Host only: no OpenCL device is touched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "harness.h"

/* ---- Scratch files ---- */

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clgrad-test-idx-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Names created under tmpdir, removed at teardown. */
static char created[32][320];
static int n_created;

static const char *tmp_path(const char *name) {
    ck_assert_int_lt(n_created, 32);
    snprintf(created[n_created], sizeof created[0], "%s/%s", tmpdir, name);
    return created[n_created++];
}

static void remove_tmpdir(void) {
    for (int i = 0; i < n_created; ++i)
        remove(created[i]);
    n_created = 0;
    rmdir(tmpdir);
}

static const char *write_file(const char *name, const void *data, size_t size, bool gz) {
    const char *path = tmp_path(name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, data, (unsigned)size), (int)size);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, size, f), size);
        ck_assert_int_eq(fclose(f), 0);
    }
    return path;
}

static unsigned char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* An IDX image: header (type, dims) then payload bytes. Returns the total size. */
static size_t idx_bytes(unsigned char *out, int type, int ndim, const uint32_t *dims,
                        const void *payload, size_t payload_size) {
    out[0] = 0;
    out[1] = 0;
    out[2] = (unsigned char)type;
    out[3] = (unsigned char)ndim;
    for (int d = 0; d < ndim; ++d) {
        out[4 + 4 * d] = (unsigned char)(dims[d] >> 24);
        out[5 + 4 * d] = (unsigned char)(dims[d] >> 16);
        out[6 + 4 * d] = (unsigned char)(dims[d] >> 8);
        out[7 + 4 * d] = (unsigned char)dims[d];
    }
    if (payload_size) memcpy(out + 4 + 4 * ndim, payload, payload_size);
    return 4 + 4 * (size_t)ndim + payload_size;
}

/* Loading path fails with want, and the message names the file and contains what. */
static void expect_error(const char *path, clg_status want, const char *what) {
    clg_idx *idx = (clg_idx *)1;
    clg_status st = clg_idx_load(path, &idx);
    const char *msg = clg_last_error();
    ck_assert_msg(st == want, "%s: got %s (%s), want %s", path, clg_status_name(st), msg,
                  clg_status_name(want));
    ck_assert_ptr_null(idx);
    ck_assert_msg(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    ck_assert_msg(strstr(msg, what) != NULL, "message lacks \"%s\": %s", what, msg);
}

static void setup(void) {
    make_tmpdir();
}

static void teardown(void) {
    remove_tmpdir();
}

/* ---- IDX: good files ---- */

static void check_small_u8(const char *path) {
    clg_idx *idx = NULL;
    clg_assert_ok(clg_idx_load(path, &idx));
    ck_assert_int_eq(idx->type, CLG_IDX_U8);
    ck_assert_int_eq(idx->ndim, 3);
    ck_assert_int_eq(idx->dims[0], 2);
    ck_assert_int_eq(idx->dims[1], 3);
    ck_assert_int_eq(idx->dims[2], 5);
    ck_assert_int_eq(idx->count, 30);
    const uint8_t *v = idx->data;
    for (int i = 0; i < 30; ++i)
        ck_assert_int_eq(v[i], (i * 37) % 256);
    clg_idx_free(idx);
}

START_TEST(idx_good_plain_and_gzip) {
    uint8_t payload[30];
    for (int i = 0; i < 30; ++i)
        payload[i] = (uint8_t)((i * 37) % 256);
    unsigned char buf[128];
    uint32_t dims[] = {2, 3, 5};
    size_t n = idx_bytes(buf, CLG_IDX_U8, 3, dims, payload, sizeof payload);
    check_small_u8(write_file("small-idx3-ubyte", buf, n, false));
    /* gzip is detected from the content: the name does not end in .gz here. */
    check_small_u8(write_file("small-gz-no-suffix", buf, n, true));
    check_small_u8(write_file("small-idx3-ubyte.gz", buf, n, true));
    clg_idx_free(NULL);
}
END_TEST

START_TEST(idx_big_endian_types) {
    /* i16 [3]: -2, 258, 32767 */
    unsigned char buf[128];
    uint32_t d3[] = {3};
    const unsigned char i16[] = {0xFF, 0xFE, 0x01, 0x02, 0x7F, 0xFF};
    size_t n = idx_bytes(buf, CLG_IDX_I16, 1, d3, i16, sizeof i16);
    clg_idx *idx;
    clg_assert_ok(clg_idx_load(write_file("i16", buf, n, false), &idx));
    ck_assert_int_eq(((int16_t *)idx->data)[0], -2);
    ck_assert_int_eq(((int16_t *)idx->data)[1], 258);
    ck_assert_int_eq(((int16_t *)idx->data)[2], 32767);
    clg_idx_free(idx);

    /* i32 [2]: -100000, 16909060 */
    uint32_t d2[] = {2};
    const unsigned char i32[] = {0xFF, 0xFE, 0x79, 0x60, 0x01, 0x02, 0x03, 0x04};
    n = idx_bytes(buf, CLG_IDX_I32, 1, d2, i32, sizeof i32);
    clg_assert_ok(clg_idx_load(write_file("i32", buf, n, true), &idx));
    ck_assert_int_eq(((int32_t *)idx->data)[0], -100000);
    ck_assert_int_eq(((int32_t *)idx->data)[1], 16909060);
    clg_idx_free(idx);

    /* f32 [2]: 1.5 (0x3FC00000), -0.25 (0xBE800000) */
    const unsigned char f32[] = {0x3F, 0xC0, 0, 0, 0xBE, 0x80, 0, 0};
    n = idx_bytes(buf, CLG_IDX_F32, 1, d2, f32, sizeof f32);
    clg_assert_ok(clg_idx_load(write_file("f32", buf, n, false), &idx));
    ck_assert_float_eq(((float *)idx->data)[0], 1.5f);
    ck_assert_float_eq(((float *)idx->data)[1], -0.25f);
    clg_idx_free(idx);

    /* f64 [1]: 0.1 (0x3FB999999999999A); i8 [2]: -1, 5 */
    uint32_t d1[] = {1};
    const unsigned char f64[] = {0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A};
    n = idx_bytes(buf, CLG_IDX_F64, 1, d1, f64, sizeof f64);
    clg_assert_ok(clg_idx_load(write_file("f64", buf, n, false), &idx));
    ck_assert_double_eq(((double *)idx->data)[0], 0.1);
    clg_idx_free(idx);
    const unsigned char i8[] = {0xFF, 0x05};
    n = idx_bytes(buf, CLG_IDX_I8, 1, d2, i8, sizeof i8);
    clg_assert_ok(clg_idx_load(write_file("i8", buf, n, false), &idx));
    ck_assert_int_eq(((int8_t *)idx->data)[0], -1);
    ck_assert_int_eq(((int8_t *)idx->data)[1], 5);
    clg_idx_free(idx);
}
END_TEST

START_TEST(idx_bundled_t10k) {
    clg_idx *images, *labels;
    clg_assert_ok(
        clg_idx_load(clg_test_path("../examples/data/mnist/t10k-images-idx3-ubyte.gz"), &images));
    ck_assert_int_eq(images->type, CLG_IDX_U8);
    ck_assert_int_eq(images->ndim, 3);
    ck_assert_int_eq(images->dims[0], 10000);
    ck_assert_int_eq(images->dims[1], 28);
    ck_assert_int_eq(images->dims[2], 28);
    clg_assert_ok(
        clg_idx_load(clg_test_path("../examples/data/mnist/t10k-labels-idx1-ubyte.gz"), &labels));
    ck_assert_int_eq(labels->ndim, 1);
    ck_assert_int_eq(labels->count, 10000);
    const uint8_t want[] = {7, 2, 1, 0, 4, 1, 4, 9, 5, 9};
    for (int i = 0; i < 10; ++i)
        ck_assert_int_eq(((uint8_t *)labels->data)[i], want[i]);
    clg_idx_free(images);
    clg_idx_free(labels);
}
END_TEST

/* ---- IDX: broken files ---- */

START_TEST(idx_truncated_payload) {
    uint8_t payload[60] = {0};
    unsigned char buf[128];
    uint32_t dims[] = {4, 4, 4}; /* 64 bytes claimed, 60 present */
    size_t n = idx_bytes(buf, CLG_IDX_U8, 3, dims, payload, sizeof payload);
    expect_error(write_file("trunc", buf, n, false), CLG_ERR_FORMAT,
                 "truncated: header says 4x4x4 u8 = 64 bytes of data, file has 60");
    expect_error(write_file("trunc.gz", buf, n, true), CLG_ERR_FORMAT,
                 "truncated: header says 4x4x4 u8 = 64 bytes of data, decompressed file has 60");
}
END_TEST

START_TEST(idx_truncated_header) {
    unsigned char buf[128];
    uint32_t dims[] = {10, 28, 28};
    idx_bytes(buf, CLG_IDX_U8, 3, dims, NULL, 0);
    /* magic complete, dimensions cut */
    expect_error(write_file("hdr", buf, 9, false), CLG_ERR_FORMAT, "truncated header");
    /* magic cut, and an empty file */
    expect_error(write_file("hdr2", buf, 3, false), CLG_ERR_FORMAT, "truncated header");
    expect_error(write_file("empty", buf, 0, false), CLG_ERR_FORMAT, "file has 0 bytes");
    expect_error(write_file("empty.gz", buf, 0, true), CLG_ERR_FORMAT, "has 0 bytes");
}
END_TEST

START_TEST(idx_wrong_magic) {
    const char png[] = "\x89PNG\r\n\x1a\n and more bytes";
    expect_error(write_file("png", png, sizeof png, false), CLG_ERR_FORMAT, "not an IDX file");
    unsigned char buf[64];
    uint32_t dims[] = {1};
    size_t n = idx_bytes(buf, CLG_IDX_U8, 1, dims, "x", 1);
    buf[1] = 8; /* 00 08 08 01 */
    expect_error(write_file("magic", buf, n, false), CLG_ERR_FORMAT, "magic bytes 00 08 08 01");
    /* A gzip file whose content is not IDX says the same about the decompressed content. */
    expect_error(write_file("png.gz", png, sizeof png, true), CLG_ERR_FORMAT, "not an IDX file");
}
END_TEST

START_TEST(idx_bad_type_and_ndim) {
    unsigned char buf[64];
    uint32_t dims[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    size_t n = idx_bytes(buf, 0x07, 1, dims, "x", 1);
    expect_error(write_file("type", buf, n, false), CLG_ERR_FORMAT,
                 "unknown IDX element type 0x07");
    n = idx_bytes(buf, 0x0A, 1, dims, "x", 1);
    expect_error(write_file("type2", buf, n, false), CLG_ERR_FORMAT, "type 0x0a");
    n = idx_bytes(buf, CLG_IDX_U8, 0, dims, "x", 1);
    expect_error(write_file("ndim0", buf, n, false), CLG_ERR_FORMAT, "0 dimensions");
    n = idx_bytes(buf, CLG_IDX_U8, 9, dims, "x", 1);
    expect_error(write_file("ndim9", buf, n, false), CLG_ERR_FORMAT, "9 dimensions");
}
END_TEST

START_TEST(idx_count_disagrees_with_size) {
    uint8_t labels[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2};
    unsigned char buf[64];
    uint32_t ten[] = {10};
    /* more data than the header says */
    size_t n = idx_bytes(buf, CLG_IDX_U8, 1, ten, labels, 12);
    expect_error(write_file("over", buf, n, false), CLG_ERR_FORMAT,
                 "oversized: header says 10 u8 = 10 bytes of data, file has 12 (2 extra bytes)");
    expect_error(write_file("over.gz", buf, n, true), CLG_ERR_FORMAT, "2 extra bytes");
    /* less */
    n = idx_bytes(buf, CLG_IDX_U8, 1, ten, labels, 8);
    expect_error(write_file("under", buf, n, false), CLG_ERR_FORMAT,
                 "header says 10 u8 = 10 bytes of data, file has 8");
    /* element size counts: 3 i32 need 12 bytes */
    uint32_t three[] = {3};
    n = idx_bytes(buf, CLG_IDX_I32, 1, three, labels, 10);
    expect_error(write_file("i32short", buf, n, false), CLG_ERR_FORMAT,
                 "3 i32 = 12 bytes of data, file has 10");
}
END_TEST

START_TEST(idx_zero_and_huge_dims) {
    unsigned char buf[64];
    uint32_t zero[] = {5, 0, 3};
    size_t n = idx_bytes(buf, CLG_IDX_U8, 3, zero, NULL, 0);
    expect_error(write_file("zero", buf, n, false), CLG_ERR_FORMAT, "dimension 1 is 0");
    /* 4e9^3 f64 claims ~5e29 bytes: refused from the header, before any allocation. */
    uint32_t huge[] = {4000000000u, 4000000000u, 4000000000u};
    n = idx_bytes(buf, CLG_IDX_F64, 3, huge, "abc", 3);
    expect_error(write_file("huge", buf, n, false), CLG_ERR_FORMAT, "more than the 8 GiB");
    uint32_t big[] = {60000, 200, 1000}; /* 12 GB of u8 */
    n = idx_bytes(buf, CLG_IDX_U8, 3, big, NULL, 0);
    expect_error(write_file("big", buf, n, false), CLG_ERR_FORMAT, "60000x200x1000 u8");
}
END_TEST

/* AddressSanitizer reserves terabytes of address space up front: RLIMIT_AS cannot be used. */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_BUILD 1
#endif
#endif

#ifndef ASAN_BUILD
/* clg_idx_load's status in a child whose address space may grow by only 512 MiB more than it
 * has now: a loader that allocates what a header claims fails there with OUT_OF_MEMORY. */
static clg_status load_in_small_address_space(const char *path) {
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld", &pages) != 1) pages = 0;
        fclose(f);
    }
    rlim_t now = pages > 0 ? (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) : (rlim_t)256 << 20;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit rl = {now + ((rlim_t)512 << 20), now + ((rlim_t)512 << 20)};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(100);
        clg_idx *idx = NULL;
        clg_status st = clg_idx_load(path, &idx);
        clg_idx_free(idx);
        _exit((int)st);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 100,
                  "the child under RLIMIT_AS did not report a status (%d)", status);
    return (clg_status)WEXITSTATUS(status);
}
#endif

START_TEST(idx_header_claims_more_than_the_file_holds) {
    /* 12 bytes claiming 2^29 i32 = 2 GiB (4 of them present), the same gzipped, and dims that
     * claim the 8 GiB cap with no payload at all. */
    unsigned char buf[64];
    uint32_t dims[] = {1u << 29};
    size_t n = idx_bytes(buf, CLG_IDX_I32, 1, dims, "abcd", 4);
    ck_assert_uint_eq(n, 12);
    const char *plain = write_file("claims-2g-idx1", buf, n, false);
    const char *gz = write_file("claims-2g-idx1.gz", buf, n, true);
    uint32_t cap_dims[] = {1u << 31, 4};
    size_t n8 = idx_bytes(buf, CLG_IDX_U8, 2, cap_dims, NULL, 0);
    const char *cap = write_file("claims-8g-idx2", buf, n8, false);
    const char *cap_gz = write_file("claims-8g-idx2.gz", buf, n8, true);

    const char *claim = "the header claims more data than the file holds";
    expect_error(plain, CLG_ERR_FORMAT, "header says 536870912 i32 = 2147483648 bytes of data, "
                                        "file has 4: the header claims more data than the file "
                                        "holds");
    expect_error(gz, CLG_ERR_FORMAT, "header says 536870912 i32 = 2147483648 bytes of data, "
                                     "decompressed file has 4: the header claims more data than "
                                     "the file holds");
    expect_error(cap, CLG_ERR_FORMAT, "2147483648x4 u8 = 8589934592 bytes of data, file has 0");
    expect_error(cap_gz, CLG_ERR_FORMAT, claim);

#ifdef ASAN_BUILD
    printf("idx_header_claims_more_than_the_file_holds: AddressSanitizer build, RLIMIT_AS "
           "cannot be used; the no-allocation check is skipped\n");
#else
    const char *files[] = {plain, gz, cap, cap_gz};
    for (int i = 0; i < 4; ++i) {
        clg_status st = load_in_small_address_space(files[i]);
        ck_assert_msg(st == CLG_ERR_FORMAT,
                      "%s under a 512 MiB address-space allowance: %s, want CLG_ERR_FORMAT (the "
                      "claimed size was allocated before reading)",
                      files[i], clg_status_name(st));
    }
#endif
}
END_TEST

START_TEST(idx_corrupt_gzip) {
    uint8_t payload[4096];
    for (size_t i = 0; i < sizeof payload; ++i)
        payload[i] = (uint8_t)(i * 7919u >> 3);
    unsigned char buf[4200];
    uint32_t dims[] = {64, 64};
    size_t n = idx_bytes(buf, CLG_IDX_U8, 2, dims, payload, sizeof payload);
    const char *good = write_file("good.gz", buf, n, true);
    size_t gz_size;
    unsigned char *gz = read_all(good, &gz_size);
    ck_assert_uint_gt(gz_size, 40);

    /* damage the deflate data in the middle */
    unsigned char *bad = malloc(gz_size);
    memcpy(bad, gz, gz_size);
    for (size_t i = gz_size / 2; i < gz_size / 2 + 8; ++i)
        bad[i] ^= 0xA5;
    expect_error(write_file("bad.gz", bad, gz_size, false), CLG_ERR_FORMAT, "corrupt gzip");

    /* cut the stream in half */
    expect_error(write_file("cut.gz", gz, gz_size / 2, false), CLG_ERR_FORMAT, "corrupt gzip");

    /* intact data, wrong CRC in the trailer */
    memcpy(bad, gz, gz_size);
    bad[gz_size - 8] ^= 0xFF;
    expect_error(write_file("crc.gz", bad, gz_size, false), CLG_ERR_FORMAT, "corrupt gzip");
    free(bad);
    free(gz);
}
END_TEST

START_TEST(idx_missing_file) {
    const char *path = tmp_path("does-not-exist-idx1-ubyte");
    expect_error(path, CLG_ERR_IO, "cannot open");
    /* a directory opens but cannot be read */
    expect_error(tmpdir, CLG_ERR_IO, "");
    clg_idx *idx;
    ck_assert_int_eq(clg_idx_load(NULL, &idx), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_idx_load(path, NULL), CLG_ERR_INVALID_ARGUMENT);
}
END_TEST

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
    const char *nodir = tmp_path("no-such-dir");
    ck_assert_int_eq(clg_dataset_load_mnist(nodir, true, &ds), CLG_ERR_IO);
    ck_assert_ptr_null(ds);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), nodir));
    /* an existing directory without the files names the paths it tried */
    ck_assert_int_eq(clg_dataset_load_mnist(tmpdir, true, &ds), CLG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "train-images-idx3-ubyte.gz"));
    ck_assert_ptr_nonnull(strstr(clg_last_error(), tmpdir));
}
END_TEST

START_TEST(dataset_idx_pairing) {
    unsigned char buf[256];
    uint8_t px[4 * 2 * 3];
    for (int i = 0; i < 24; ++i)
        px[i] = (uint8_t)(i * 10);
    uint32_t idims[] = {4, 2, 3};
    size_t n = idx_bytes(buf, CLG_IDX_U8, 3, idims, px, sizeof px);
    const char *images = write_file("img", buf, n, false);
    /* i32 labels are accepted */
    const unsigned char lab32[] = {0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2};
    uint32_t ldims[] = {4};
    n = idx_bytes(buf, CLG_IDX_I32, 1, ldims, lab32, sizeof lab32);
    const char *labels = write_file("lab32", buf, n, true);
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
    n = idx_bytes(buf, CLG_IDX_U8, 1, five, lab8, 5);
    const char *five_labels = write_file("lab5", buf, n, false);
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
    ck_assert_int_eq(clg_dataset_load_idx(images, tmp_path("missing"), &ds), CLG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "missing"));

    /* negative labels are refused */
    const unsigned char neg[] = {0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0, 0, 2};
    n = idx_bytes(buf, CLG_IDX_I32, 1, ldims, neg, sizeof neg);
    ck_assert_int_eq(clg_dataset_load_idx(images, write_file("neg", buf, n, false), &ds),
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

static Suite *idx_suite(void) {
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, idx_good_plain_and_gzip);
    tcase_add_test(tc, idx_big_endian_types);
    tcase_add_test(tc, idx_bundled_t10k);
    tcase_add_test(tc, idx_truncated_payload);
    tcase_add_test(tc, idx_truncated_header);
    tcase_add_test(tc, idx_wrong_magic);
    tcase_add_test(tc, idx_bad_type_and_ndim);
    tcase_add_test(tc, idx_count_disagrees_with_size);
    tcase_add_test(tc, idx_zero_and_huge_dims);
    tcase_add_test(tc, idx_header_claims_more_than_the_file_holds);
    tcase_add_test(tc, idx_corrupt_gzip);
    tcase_add_test(tc, idx_missing_file);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("dataset");
    tcase_add_checked_fixture(td, setup, teardown);
    tcase_set_timeout(td, 60);
    tcase_add_test(td, dataset_mnist_t10k);
    tcase_add_test(td, dataset_mnist_missing);
    tcase_add_test(td, dataset_idx_pairing);
    tcase_add_test(td, dataset_arrays_and_subset);
    tcase_add_test(td, dataset_normalize_and_stats);
    tcase_add_test(td, loader_permutation);
    tcase_add_test(td, loader_last_batch);
    suite_add_tcase(s, td);
    return s;
}

int main(void) {
    return clg_test_run(idx_suite());
}
