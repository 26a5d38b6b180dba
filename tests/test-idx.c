/* IDX reading: good files, plain and gzip, the bundled MNIST test split, and every kind of
 * broken one, generated here. Host only: no OpenCL device is touched. */
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
#include "scratch.h"

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
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 3, dims, payload, sizeof payload);
    check_small_u8(clg_scratch_write("small-idx3-ubyte", buf, n, false));
    /* gzip is detected from the content: the name does not end in .gz here. */
    check_small_u8(clg_scratch_write("small-gz-no-suffix", buf, n, true));
    check_small_u8(clg_scratch_write("small-idx3-ubyte.gz", buf, n, true));
    clg_idx_free(NULL);
}
END_TEST

START_TEST(idx_big_endian_types) {
    /* i16 [3]: -2, 258, 32767 */
    unsigned char buf[128];
    uint32_t d3[] = {3};
    const unsigned char i16[] = {0xFF, 0xFE, 0x01, 0x02, 0x7F, 0xFF};
    size_t n = clg_scratch_idx(buf, CLG_IDX_I16, 1, d3, i16, sizeof i16);
    clg_idx *idx;
    clg_assert_ok(clg_idx_load(clg_scratch_write("i16", buf, n, false), &idx));
    ck_assert_int_eq(((int16_t *)idx->data)[0], -2);
    ck_assert_int_eq(((int16_t *)idx->data)[1], 258);
    ck_assert_int_eq(((int16_t *)idx->data)[2], 32767);
    clg_idx_free(idx);

    /* i32 [2]: -100000, 16909060 */
    uint32_t d2[] = {2};
    const unsigned char i32[] = {0xFF, 0xFE, 0x79, 0x60, 0x01, 0x02, 0x03, 0x04};
    n = clg_scratch_idx(buf, CLG_IDX_I32, 1, d2, i32, sizeof i32);
    clg_assert_ok(clg_idx_load(clg_scratch_write("i32", buf, n, true), &idx));
    ck_assert_int_eq(((int32_t *)idx->data)[0], -100000);
    ck_assert_int_eq(((int32_t *)idx->data)[1], 16909060);
    clg_idx_free(idx);

    /* f32 [2]: 1.5 (0x3FC00000), -0.25 (0xBE800000) */
    const unsigned char f32[] = {0x3F, 0xC0, 0, 0, 0xBE, 0x80, 0, 0};
    n = clg_scratch_idx(buf, CLG_IDX_F32, 1, d2, f32, sizeof f32);
    clg_assert_ok(clg_idx_load(clg_scratch_write("f32", buf, n, false), &idx));
    ck_assert_float_eq(((float *)idx->data)[0], 1.5f);
    ck_assert_float_eq(((float *)idx->data)[1], -0.25f);
    clg_idx_free(idx);

    /* f64 [1]: 0.1 (0x3FB999999999999A); i8 [2]: -1, 5 */
    uint32_t d1[] = {1};
    const unsigned char f64[] = {0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A};
    n = clg_scratch_idx(buf, CLG_IDX_F64, 1, d1, f64, sizeof f64);
    clg_assert_ok(clg_idx_load(clg_scratch_write("f64", buf, n, false), &idx));
    ck_assert_double_eq(((double *)idx->data)[0], 0.1);
    clg_idx_free(idx);
    const unsigned char i8[] = {0xFF, 0x05};
    n = clg_scratch_idx(buf, CLG_IDX_I8, 1, d2, i8, sizeof i8);
    clg_assert_ok(clg_idx_load(clg_scratch_write("i8", buf, n, false), &idx));
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
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 3, dims, payload, sizeof payload);
    expect_error(clg_scratch_write("trunc", buf, n, false), CLG_ERR_FORMAT,
                 "truncated: header says 4x4x4 u8 = 64 bytes of data, file has 60");
    expect_error(clg_scratch_write("trunc.gz", buf, n, true), CLG_ERR_FORMAT,
                 "truncated: header says 4x4x4 u8 = 64 bytes of data, decompressed file has 60");
}
END_TEST

START_TEST(idx_truncated_header) {
    unsigned char buf[128];
    uint32_t dims[] = {10, 28, 28};
    clg_scratch_idx(buf, CLG_IDX_U8, 3, dims, NULL, 0);
    /* magic complete, dimensions cut */
    expect_error(clg_scratch_write("hdr", buf, 9, false), CLG_ERR_FORMAT, "truncated header");
    /* magic cut, and an empty file */
    expect_error(clg_scratch_write("hdr2", buf, 3, false), CLG_ERR_FORMAT, "truncated header");
    expect_error(clg_scratch_write("empty", buf, 0, false), CLG_ERR_FORMAT, "file has 0 bytes");
    expect_error(clg_scratch_write("empty.gz", buf, 0, true), CLG_ERR_FORMAT, "has 0 bytes");
}
END_TEST

START_TEST(idx_wrong_magic) {
    const char png[] = "\x89PNG\r\n\x1a\n and more bytes";
    expect_error(clg_scratch_write("png", png, sizeof png, false), CLG_ERR_FORMAT, "not an IDX file");
    unsigned char buf[64];
    uint32_t dims[] = {1};
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 1, dims, "x", 1);
    buf[1] = 8; /* 00 08 08 01 */
    expect_error(clg_scratch_write("magic", buf, n, false), CLG_ERR_FORMAT, "magic bytes 00 08 08 01");
    /* A gzip file whose content is not IDX says the same about the decompressed content. */
    expect_error(clg_scratch_write("png.gz", png, sizeof png, true), CLG_ERR_FORMAT, "not an IDX file");
}
END_TEST

START_TEST(idx_bad_type_and_ndim) {
    unsigned char buf[64];
    uint32_t dims[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    size_t n = clg_scratch_idx(buf, 0x07, 1, dims, "x", 1);
    expect_error(clg_scratch_write("type", buf, n, false), CLG_ERR_FORMAT,
                 "unknown IDX element type 0x07");
    n = clg_scratch_idx(buf, 0x0A, 1, dims, "x", 1);
    expect_error(clg_scratch_write("type2", buf, n, false), CLG_ERR_FORMAT, "type 0x0a");
    n = clg_scratch_idx(buf, CLG_IDX_U8, 0, dims, "x", 1);
    expect_error(clg_scratch_write("ndim0", buf, n, false), CLG_ERR_FORMAT, "0 dimensions");
    n = clg_scratch_idx(buf, CLG_IDX_U8, 9, dims, "x", 1);
    expect_error(clg_scratch_write("ndim9", buf, n, false), CLG_ERR_FORMAT, "9 dimensions");
}
END_TEST

START_TEST(idx_count_disagrees_with_size) {
    uint8_t labels[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2};
    unsigned char buf[64];
    uint32_t ten[] = {10};
    /* more data than the header says */
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 1, ten, labels, 12);
    expect_error(clg_scratch_write("over", buf, n, false), CLG_ERR_FORMAT,
                 "oversized: header says 10 u8 = 10 bytes of data, file has 12 (2 extra bytes)");
    expect_error(clg_scratch_write("over.gz", buf, n, true), CLG_ERR_FORMAT, "2 extra bytes");
    /* less */
    n = clg_scratch_idx(buf, CLG_IDX_U8, 1, ten, labels, 8);
    expect_error(clg_scratch_write("under", buf, n, false), CLG_ERR_FORMAT,
                 "header says 10 u8 = 10 bytes of data, file has 8");
    /* element size counts: 3 i32 need 12 bytes */
    uint32_t three[] = {3};
    n = clg_scratch_idx(buf, CLG_IDX_I32, 1, three, labels, 10);
    expect_error(clg_scratch_write("i32short", buf, n, false), CLG_ERR_FORMAT,
                 "3 i32 = 12 bytes of data, file has 10");
}
END_TEST

START_TEST(idx_zero_and_huge_dims) {
    unsigned char buf[64];
    uint32_t zero[] = {5, 0, 3};
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 3, zero, NULL, 0);
    expect_error(clg_scratch_write("zero", buf, n, false), CLG_ERR_FORMAT, "dimension 1 is 0");
    /* 4e9^3 f64 claims ~5e29 bytes: refused from the header, before any allocation. */
    uint32_t huge[] = {4000000000u, 4000000000u, 4000000000u};
    n = clg_scratch_idx(buf, CLG_IDX_F64, 3, huge, "abc", 3);
    expect_error(clg_scratch_write("huge", buf, n, false), CLG_ERR_FORMAT, "more than the 8 GiB");
    uint32_t big[] = {60000, 200, 1000}; /* 12 GB of u8 */
    n = clg_scratch_idx(buf, CLG_IDX_U8, 3, big, NULL, 0);
    expect_error(clg_scratch_write("big", buf, n, false), CLG_ERR_FORMAT, "60000x200x1000 u8");
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
    size_t n = clg_scratch_idx(buf, CLG_IDX_I32, 1, dims, "abcd", 4);
    ck_assert_uint_eq(n, 12);
    const char *plain = clg_scratch_write("claims-2g-idx1", buf, n, false);
    const char *gz = clg_scratch_write("claims-2g-idx1.gz", buf, n, true);
    uint32_t cap_dims[] = {1u << 31, 4};
    size_t n8 = clg_scratch_idx(buf, CLG_IDX_U8, 2, cap_dims, NULL, 0);
    const char *cap = clg_scratch_write("claims-8g-idx2", buf, n8, false);
    const char *cap_gz = clg_scratch_write("claims-8g-idx2.gz", buf, n8, true);

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
    size_t n = clg_scratch_idx(buf, CLG_IDX_U8, 2, dims, payload, sizeof payload);
    const char *good = clg_scratch_write("good.gz", buf, n, true);
    size_t gz_size;
    unsigned char *gz = clg_scratch_read(good, &gz_size);
    ck_assert_uint_gt(gz_size, 40);

    /* damage the deflate data in the middle */
    unsigned char *bad = malloc(gz_size);
    memcpy(bad, gz, gz_size);
    for (size_t i = gz_size / 2; i < gz_size / 2 + 8; ++i)
        bad[i] ^= 0xA5;
    expect_error(clg_scratch_write("bad.gz", bad, gz_size, false), CLG_ERR_FORMAT, "corrupt gzip");

    /* cut the stream in half */
    expect_error(clg_scratch_write("cut.gz", gz, gz_size / 2, false), CLG_ERR_FORMAT, "corrupt gzip");

    /* intact data, wrong CRC in the trailer */
    memcpy(bad, gz, gz_size);
    bad[gz_size - 8] ^= 0xFF;
    expect_error(clg_scratch_write("crc.gz", bad, gz_size, false), CLG_ERR_FORMAT, "corrupt gzip");
    free(bad);
    free(gz);
}
END_TEST

START_TEST(idx_missing_file) {
    const char *path = clg_scratch_path("does-not-exist-idx1-ubyte");
    expect_error(path, CLG_ERR_IO, "cannot open");
    /* a directory opens but cannot be read */
    expect_error(clg_scratch_dir(), CLG_ERR_IO, "");
    clg_idx *idx;
    ck_assert_int_eq(clg_idx_load(NULL, &idx), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_idx_load(path, NULL), CLG_ERR_INVALID_ARGUMENT);
}
END_TEST

static Suite *idx_suite(void) {
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, clg_scratch_setup, clg_scratch_teardown);
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
    return s;
}

int main(void) {
    return clg_test_run(idx_suite());
}
