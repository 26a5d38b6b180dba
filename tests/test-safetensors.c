/* safetensors files, both directions against PyTorch (committed fixtures made by
 * tools/make_safetensors_fixtures.py), strict rejection of malformed files, the header JSON
 * parser and atomic writes. Host only.
 * `test-safetensors --write-fixture PATH` writes the clgrad-side fixture for that script. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "core/atomic_file.h"
#include "io/json.h"
#include "io/safetensors.h"

/* ---- Scratch files ---- */

static char tmpdir[256];

static void setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clgrad-test-st-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Removes tmpdir and everything under it (one level of subdirectories is enough here). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            remove(p);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void) {
    clg_atomic_file_inject_failure(CLG_ATOMIC_FAIL_NONE);
    remove_tree(tmpdir);
}

static const char *tmp_path(const char *name) {
    static char bufs[8][512];
    static int next;
    char *p = bufs[next++ % 8];
    snprintf(p, sizeof bufs[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, size, f), size);
    ck_assert_int_eq(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* Entries of tmpdir whose name carries the temporaries' tag (left-overs). */
static int count_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, CLG_ATOMIC_TMP_TAG)) n++;
    closedir(d);
    return n;
}

/* ---- The fixtures' tensors (keep in sync with tools/make_safetensors_fixtures.py) ---- */

/* What PyTorch wrote into tests/fixtures/torch_written.safetensors. */
typedef struct torch_set {
    float fc1_weight[12], fc1_bias[3], fc2_weight[6], unicode[2];
    int64_t step;
    int32_t labels[5];
    uint8_t pixels[6];
    double halves[4];
} torch_set;

static const char torch_note[] =
    "clgrad fixture: \"quotes\", \\ backslash, tab\t, newline\n, \x01, \xc3\xa9, /";

static void torch_values(torch_set *v) {
    for (int i = 0; i < 12; ++i)
        v->fc1_weight[i] = (float)(i - 5) * 0.25f;
    for (int i = 0; i < 3; ++i)
        v->fc1_bias[i] = (float)i * -0.5f;
    for (int i = 0; i < 6; ++i)
        v->fc2_weight[i] = (float)i / 3.0f;
    for (int i = 0; i < 2; ++i)
        v->unicode[i] = 1.0f;
    v->step = INT64_C(1234567890123);
    for (int i = 0; i < 5; ++i)
        v->labels[i] = i - 2;
    for (int i = 0; i < 6; ++i)
        v->pixels[i] = (uint8_t)(i * 40);
    for (int i = 0; i < 4; ++i)
        v->halves[i] = (double)i / 7.0;
}

/* "ünïcode.name" in UTF-8 (octal escapes, which cannot run into the letters after them) */
static const char unicode_name[] = "\303\274n\303\257code.name";

static const int64_t s3x4[] = {3, 4}, s3[] = {3}, s2x3[] = {2, 3}, s5[] = {5}, s4[] = {4},
                     s0x4[] = {0, 4}, s2[] = {2};

/* Listed in an order unlike the file's, so the writer's sorting is exercised. */
static size_t torch_tensors(const torch_set *v, clg_st_tensor *t) {
    const clg_st_tensor list[] = {
        {"pixels", CLG_ST_DTYPE_U8, 2, s2x3, v->pixels},
        {"fc1.weight", CLG_ST_DTYPE_F32, 2, s3x4, v->fc1_weight},
        {"halves", CLG_ST_DTYPE_F64, 1, s4, v->halves},
        {"empty", CLG_ST_DTYPE_F32, 2, s0x4, NULL},
        {"labels", CLG_ST_DTYPE_I32, 1, s5, v->labels},
        {unicode_name, CLG_ST_DTYPE_F32, 1, s2, v->unicode},
        {"step", CLG_ST_DTYPE_I64, 0, NULL, &v->step},
        {"fc2.weight", CLG_ST_DTYPE_F32, 2, s2x3, v->fc2_weight},
        {"fc1.bias", CLG_ST_DTYPE_F32, 1, s3, v->fc1_bias},
    };
    memcpy(t, list, sizeof list);
    return sizeof list / sizeof list[0];
}

/* What clgrad writes into tests/fixtures/clgrad_written.safetensors (checked by PyTorch). */
typedef struct clgrad_set {
    float fc1_weight[12], fc1_bias[4], fc2_weight[8], exp_avg[12], sz[1];
    int64_t step;
    int32_t labels[6];
    uint8_t mask[3];
    double scale[2];
} clgrad_set;

static void clgrad_values(clgrad_set *v) {
    for (int i = 0; i < 12; ++i)
        v->fc1_weight[i] = (float)(i - 5) * 0.0625f;
    for (int i = 0; i < 4; ++i)
        v->fc1_bias[i] = (float)i * 1.5f - 2.0f;
    for (int i = 0; i < 8; ++i)
        v->fc2_weight[i] = (float)i / 7.0f;
    for (int i = 0; i < 12; ++i)
        v->exp_avg[i] = (float)i * -0.001f;
    v->sz[0] = 42.0f;
    v->step = INT64_C(3000000000);
    for (int i = 0; i < 6; ++i)
        v->labels[i] = (i * 7) % 10 - 3;
    v->mask[0] = 0;
    v->mask[1] = 128;
    v->mask[2] = 255;
    for (int i = 0; i < 2; ++i)
        v->scale[i] = (double)i / 3.0;
}

static const int64_t s4x3[] = {4, 3}, s2x4[] = {2, 4}, s6[] = {6}, s1[] = {1}, s0[] = {0};

static size_t clgrad_tensors(const clgrad_set *v, clg_st_tensor *t) {
    const clg_st_tensor list[] = {
        {"fc1.weight", CLG_ST_DTYPE_F32, 2, s4x3, v->fc1_weight},
        {"fc1.bias", CLG_ST_DTYPE_F32, 1, s4, v->fc1_bias},
        {"fc2.weight", CLG_ST_DTYPE_F32, 2, s2x4, v->fc2_weight},
        {"optimizer.step", CLG_ST_DTYPE_I64, 0, NULL, &v->step},
        {"optimizer.fc1.weight.exp_avg", CLG_ST_DTYPE_F32, 2, s4x3, v->exp_avg},
        {"labels", CLG_ST_DTYPE_I32, 1, s6, v->labels},
        {"mask", CLG_ST_DTYPE_U8, 1, s3, v->mask},
        {"scale", CLG_ST_DTYPE_F64, 1, s2, v->scale},
        {"\xc3\x9f.unicode", CLG_ST_DTYPE_F32, 1, s1, v->sz},
        {"empty", CLG_ST_DTYPE_F32, 1, s0, NULL},
    };
    memcpy(t, list, sizeof list);
    return sizeof list / sizeof list[0];
}

static const clg_st_meta clgrad_meta[] = {{"format", "pt"}};

/* ---- Round trip and fixtures ---- */

static void check_view(const clg_safetensors *st, const char *name, clg_st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, size_t nbytes) {
    const clg_st_view *v = clg_safetensors_find(st, name);
    ck_assert_msg(v != NULL, "tensor %s missing", name);
    ck_assert_str_eq(v->name, name);
    ck_assert_msg(v->dtype == dtype, "%s: dtype %s, want %s", name, clg_st_dtype_name(v->dtype),
                  clg_st_dtype_name(dtype));
    ck_assert_int_eq(v->ndim, ndim);
    for (int d = 0; d < ndim; ++d)
        ck_assert_int_eq(v->shape[d], shape[d]);
    ck_assert_uint_eq(v->nbytes, nbytes);
    ck_assert_uint_eq((uintptr_t)v->data % clg_st_dtype_size(dtype), 0);
    if (nbytes) ck_assert_msg(memcmp(v->data, data, nbytes) == 0, "%s: values differ", name);
}

START_TEST(round_trip) {
    clgrad_set v;
    clgrad_values(&v);
    clg_st_tensor t[16];
    size_t n = clgrad_tensors(&v, t);
    const clg_st_meta meta[] = {{"format", "pt"}, {"step", "17"}, {"k\"ey", "v\nal"}};
    const char *path = tmp_path("model.safetensors");
    clg_assert_ok(clg_safetensors_save(path, t, n, meta, 3));
    ck_assert_int_eq(count_temporaries(tmpdir), 0);

    clg_safetensors *st;
    clg_assert_ok(clg_safetensors_load(path, &st));
    ck_assert_uint_eq(clg_safetensors_count(st), n);
    for (size_t i = 0; i < n; ++i) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; ++d)
            numel *= (size_t)t[i].shape[d];
        check_view(st, t[i].name, t[i].dtype, t[i].ndim, t[i].shape, t[i].data,
                   numel * clg_st_dtype_size(t[i].dtype));
    }
    ck_assert_ptr_null(clg_safetensors_find(st, "nope"));
    ck_assert_ptr_null(clg_safetensors_find(st, "__metadata__"));
    ck_assert_int_eq(clg_safetensors_find(st, "optimizer.step")->numel, 1);
    ck_assert_int_eq(clg_safetensors_find(st, "empty")->numel, 0);
    /* file order: by offset, with the widest dtypes first */
    ck_assert_str_eq(clg_safetensors_at(st, 0)->name, "optimizer.step");
    ck_assert_str_eq(clg_safetensors_at(st, 1)->name, "scale");
    ck_assert_ptr_null(clg_safetensors_at(st, n));
    for (size_t i = 1; i < n; ++i)
        ck_assert_uint_eq(clg_safetensors_at(st, i)->begin, clg_safetensors_at(st, i - 1)->end);

    ck_assert_uint_eq(clg_safetensors_meta_count(st), 3);
    ck_assert_str_eq(clg_safetensors_meta_get(st, "step"), "17");
    ck_assert_str_eq(clg_safetensors_meta_get(st, "k\"ey"), "v\nal");
    ck_assert_ptr_null(clg_safetensors_meta_get(st, "missing"));
    ck_assert_str_eq(clg_safetensors_meta_at(st, 0)->key, "format");
    clg_safetensors_free(st);

    /* the in-memory form is the file, byte for byte */
    size_t fsize, msize;
    unsigned char *file = read_bytes(path, &fsize);
    void *mem;
    clg_assert_ok(clg_safetensors_serialize(t, n, meta, 3, &mem, &msize));
    ck_assert_uint_eq(fsize, msize);
    ck_assert_mem_eq(file, mem, fsize);
    clg_assert_ok(clg_safetensors_parse(mem, msize, "memory", &st));
    ck_assert_uint_eq(clg_safetensors_count(st), n);
    clg_safetensors_free(st);
    free(mem);
    free(file);

    /* no tensors at all is a valid file */
    clg_assert_ok(clg_safetensors_serialize(NULL, 0, NULL, 0, &mem, &msize));
    ck_assert_uint_eq(msize, 16);
    ck_assert_mem_eq((const char *)mem + 8, "{}      ", 8);
    clg_assert_ok(clg_safetensors_parse(mem, msize, "memory", &st));
    ck_assert_uint_eq(clg_safetensors_count(st), 0);
    clg_safetensors_free(st);
    clg_safetensors_free(NULL);
    free(mem);
}
END_TEST

START_TEST(writer_rejects_bad_input) {
    float x[2] = {1, 2};
    const int64_t shape[] = {2}, neg[] = {-1};
    void *mem;
    size_t size;
    clg_st_tensor dup[] = {{"a", CLG_ST_DTYPE_F32, 1, shape, x},
                           {"a", CLG_ST_DTYPE_I32, 1, shape, x}};
    ck_assert_int_eq(clg_safetensors_serialize(dup, 2, NULL, 0, &mem, &size),
                     CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "'a' appears twice"));
    clg_st_tensor reserved[] = {{"__metadata__", CLG_ST_DTYPE_F32, 1, shape, x}};
    ck_assert_int_eq(clg_safetensors_serialize(reserved, 1, NULL, 0, &mem, &size),
                     CLG_ERR_INVALID_ARGUMENT);
    clg_st_tensor negative[] = {{"n", CLG_ST_DTYPE_F32, 1, neg, x}};
    ck_assert_int_eq(clg_safetensors_serialize(negative, 1, NULL, 0, &mem, &size),
                     CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "'n'"));
    clg_st_tensor nodata[] = {{"d", CLG_ST_DTYPE_F32, 1, shape, NULL}};
    ck_assert_int_eq(clg_safetensors_serialize(nodata, 1, NULL, 0, &mem, &size),
                     CLG_ERR_INVALID_ARGUMENT);
    clg_st_tensor badutf[] = {{"\xff", CLG_ST_DTYPE_F32, 1, shape, x}};
    ck_assert_int_eq(clg_safetensors_serialize(badutf, 1, NULL, 0, &mem, &size),
                     CLG_ERR_INVALID_ARGUMENT);
    const clg_st_meta dupmeta[] = {{"k", "1"}, {"k", "2"}};
    ck_assert_int_eq(clg_safetensors_serialize(NULL, 0, dupmeta, 2, &mem, &size),
                     CLG_ERR_INVALID_ARGUMENT);
    /* a save that fails on its arguments names the path and writes nothing */
    const char *path = tmp_path("never.safetensors");
    ck_assert_int_eq(clg_safetensors_save(path, dup, 2, NULL, 0), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), path));
    ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

START_TEST(reads_torch_fixture) {
    const char *path = clg_test_path("fixtures/torch_written.safetensors");
    clg_safetensors *st;
    clg_assert_ok(clg_safetensors_load(path, &st));
    torch_set v;
    torch_values(&v);
    ck_assert_uint_eq(clg_safetensors_count(st), 9);
    check_view(st, "fc1.weight", CLG_ST_DTYPE_F32, 2, s3x4, v.fc1_weight, sizeof v.fc1_weight);
    check_view(st, "fc1.bias", CLG_ST_DTYPE_F32, 1, s3, v.fc1_bias, sizeof v.fc1_bias);
    check_view(st, "fc2.weight", CLG_ST_DTYPE_F32, 2, s2x3, v.fc2_weight, sizeof v.fc2_weight);
    check_view(st, "step", CLG_ST_DTYPE_I64, 0, NULL, &v.step, sizeof v.step);
    check_view(st, "labels", CLG_ST_DTYPE_I32, 1, s5, v.labels, sizeof v.labels);
    check_view(st, "pixels", CLG_ST_DTYPE_U8, 2, s2x3, v.pixels, sizeof v.pixels);
    check_view(st, "halves", CLG_ST_DTYPE_F64, 1, s4, v.halves, sizeof v.halves);
    check_view(st, "empty", CLG_ST_DTYPE_F32, 2, s0x4, NULL, 0);
    check_view(st, unicode_name, CLG_ST_DTYPE_F32, 1, s2, v.unicode, sizeof v.unicode);
    ck_assert_uint_eq(clg_safetensors_meta_count(st), 1);
    ck_assert_str_eq(clg_safetensors_meta_get(st, "note"), torch_note);
    /* spot values, independent of the formulas above */
    const float *w = clg_safetensors_find(st, "fc1.weight")->data;
    ck_assert_float_eq(w[0], -1.25f);
    ck_assert_float_eq(w[11], 1.5f);
    ck_assert_int_eq(*(const int64_t *)clg_safetensors_find(st, "step")->data, 1234567890123);
    clg_safetensors_free(st);
}
END_TEST

static void assert_same_bytes(const void *got, size_t got_size, const char *fixture) {
    size_t want_size;
    unsigned char *want = read_bytes(fixture, &want_size);
    size_t i = 0;
    while (i < got_size && i < want_size && ((const unsigned char *)got)[i] == want[i])
        i++;
    ck_assert_msg(got_size == want_size && i == got_size,
                  "clgrad's bytes differ from %s at byte %zu (sizes %zu and %zu)", fixture, i,
                  got_size, want_size);
    free(want);
}

START_TEST(writes_what_torch_writes) {
    torch_set v;
    torch_values(&v);
    clg_st_tensor t[16];
    size_t n = torch_tensors(&v, t);
    const clg_st_meta meta[] = {{"note", torch_note}};
    void *mem;
    size_t size;
    clg_assert_ok(clg_safetensors_serialize(t, n, meta, 1, &mem, &size));
    assert_same_bytes(mem, size, clg_test_path("fixtures/torch_written.safetensors"));
    free(mem);
}
END_TEST

START_TEST(writes_checked_clgrad_fixture) {
    /* tools/make_safetensors_fixtures.py loaded these bytes with safetensors.torch.load_file
     * and checked every value; clgrad must still write exactly them. */
    clgrad_set v;
    clgrad_values(&v);
    clg_st_tensor t[16];
    size_t n = clgrad_tensors(&v, t);
    const char *path = tmp_path("clgrad.safetensors");
    clg_assert_ok(clg_safetensors_save(path, t, n, clgrad_meta, 1));
    size_t size;
    unsigned char *got = read_bytes(path, &size);
    assert_same_bytes(got, size, clg_test_path("fixtures/clgrad_written.safetensors"));
    free(got);
}
END_TEST

/* ---- Malformed files ---- */

/* A file: 8-byte length (of the header as given, or override), header text, data. */
static const char *make_file(const char *name, const char *header, const void *data,
                             size_t data_size, int64_t length_override) {
    size_t hlen = strlen(header);
    unsigned char *buf = malloc(8 + hlen + data_size + 1);
    uint64_t n = length_override >= 0 ? (uint64_t)length_override : hlen;
    for (int i = 0; i < 8; ++i)
        buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (data_size) memcpy(buf + 8 + hlen, data, data_size);
    const char *path = tmp_path(name);
    write_bytes(path, buf, 8 + hlen + data_size);
    free(buf);
    return path;
}

static void expect_format(const char *path, const char *what) {
    clg_safetensors *st = (clg_safetensors *)1;
    clg_status s = clg_safetensors_load(path, &st);
    const char *msg = clg_last_error();
    ck_assert_msg(s == CLG_ERR_FORMAT, "%s: got %s (%s), want CLG_ERR_FORMAT", what,
                  clg_status_name(s), msg);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    ck_assert_msg(strstr(msg, what) != NULL, "message lacks \"%s\": %s", what, msg);
}

START_TEST(rejects_malformed) {
    const unsigned char data[64] = {0};
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    clg_safetensors *st;
    clg_assert_ok(clg_safetensors_load(make_file("ok", ok, data, 8, -1), &st));
    clg_safetensors_free(st);

    /* truncated: data shorter than the offsets say, then a file cut inside the header */
    expect_format(make_file("trunc", ok, data, 6, -1), "file truncated");
    expect_format(make_file("trail", ok, data, 12, -1), "trailing bytes");
    expect_format(make_file("short", "", NULL, 0, -1), "header does not start");
    write_bytes(tmp_path("tiny"), "\x10\x00\x00", 3);
    expect_format(tmp_path("tiny"), "too short");
    /* header length beyond the file, and absurdly large */
    expect_format(make_file("beyond", ok, data, 8, 4000), "runs past the end of the file");
    expect_format(make_file("huge", ok, data, 8, INT64_C(1) << 40), "over the");
    /* bad JSON */
    expect_format(make_file("json1", "{\"a\":{\"dtype\":\"F32\",", data, 0, -1), "JSON error at");
    expect_format(make_file("json2", "{\"a\" 1}", NULL, 0, -1), "expected ':'");
    expect_format(make_file("json3", "{\"a\":{},}", NULL, 0, -1), "at byte 8");
    expect_format(make_file("json4", "[1,2]", NULL, 0, -1), "does not start with '{'");
    expect_format(make_file("json5", "{\"a\":1.5}", NULL, 0, -1), "only integers");
    expect_format(make_file("json6", "{\"\xc3\x28\":1}", NULL, 0, -1), "invalid UTF-8");
    /* overlapping offsets, gaps, shape/offset mismatch */
    expect_format(make_file("overlap",
                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                            data, 12, -1),
                  "overlap");
    expect_format(make_file("gap",
                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                            data, 12, -1),
                  "gap in the data section");
    expect_format(make_file("mismatch",
                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                            data, 8, -1),
                  "tensor 'a': F32 with 3 elements needs 12 bytes but data_offsets [0, 8] span 8");
    expect_format(make_file("i64",
                            "{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                            data, 8, -1),
                  "needs 16 bytes");
    expect_format(make_file("backwards",
                            "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,0]}}", data,
                            8, -1),
                  "end first");
    /* entries that are not what the format says */
    expect_format(make_file("dup",
                            "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                            "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                            data, 2, -1),
                  "'a' appears twice");
    expect_format(make_file("dtype",
                            "{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                            data, 1, -1),
                  "unknown dtype \"F17\"");
    expect_format(make_file("field",
                            "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
                            "\"extra\":1}}",
                            data, 1, -1),
                  "unknown field \"extra\"");
    expect_format(make_file("missing", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", data, 0, -1),
                  "missing field \"data_offsets\"");
    expect_format(make_file("negdim",
                            "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}",
                            data, 1, -1),
                  "shape entry 0");
    expect_format(make_file("offsets3",
                            "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
                            data, 1, -1),
                  "two non-negative integers");
    expect_format(make_file("overflow",
                            "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
                            "\"data_offsets\":[0,8]}}",
                            data, 8, -1),
                  "overflows");
    expect_format(make_file("meta", "{\"__metadata__\":{\"k\":1}}", NULL, 0, -1),
                  "metadata \"k\" is a integer");
    expect_format(make_file("meta2", "{\"__metadata__\":[]}", NULL, 0, -1),
                  "\"__metadata__\" is a array");
    expect_format(make_file("entry", "{\"a\":[1]}", NULL, 0, -1), "entry is a array");

    /* not a file at all */
    st = (clg_safetensors *)1;
    ck_assert_int_eq(clg_safetensors_load(tmp_path("absent"), &st), CLG_ERR_IO);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "absent"));
    ck_assert_int_eq(clg_safetensors_load(tmpdir, &st), CLG_ERR_IO);
}
END_TEST

START_TEST(realigns_unaligned_tensors) {
    /* A foreign writer may put a wide tensor at an odd offset; the view is still aligned. */
    unsigned char data[7] = {1, 2, 3, 0, 0, 0xC0, 0x3F}; /* 1.5f little-endian at 3 */
    const char *path = make_file("odd",
                                 "{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                                 "\"f\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[3,7]}}",
                                 data, 7, -1);
    clg_safetensors *st;
    clg_assert_ok(clg_safetensors_load(path, &st));
    const clg_st_view *f = clg_safetensors_find(st, "f");
    ck_assert_uint_eq((uintptr_t)f->data % 4, 0);
    ck_assert_float_eq(*(const float *)f->data, 1.5f);
    ck_assert_int_eq(((const uint8_t *)clg_safetensors_find(st, "b")->data)[2], 3);
    clg_safetensors_free(st);
}
END_TEST

/* ---- JSON ---- */

static clg_status parse(const char *text, clg_json **out) {
    return clg_json_parse(text, strlen(text), "test", out);
}

START_TEST(json_values) {
    clg_json *j;
    clg_assert_ok(parse(" {\"a\" : [1, -2, 0, 9223372036854775807, -9223372036854775808],"
                        "\"s\":\"x\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
                        "\"t\":true,\"f\":false,\"n\":null,\"o\":{}} \n",
                        &j));
    ck_assert_int_eq(j->kind, CLG_JSON_OBJECT);
    ck_assert_uint_eq(j->length, 6);
    const clg_json *a = clg_json_get(j, "a");
    ck_assert_uint_eq(a->length, 5);
    ck_assert_int_eq(a->items[1].integer, -2);
    ck_assert_int_eq(a->items[3].integer, INT64_MAX);
    ck_assert_int_eq(a->items[4].integer, INT64_MIN);
    const clg_json *s = clg_json_get(j, "s");
    ck_assert_str_eq(s->string, "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    ck_assert_uint_eq(s->length, strlen(s->string));
    ck_assert_int_eq(clg_json_get(j, "t")->kind, CLG_JSON_BOOL);
    ck_assert_int_eq(clg_json_get(j, "t")->integer, 1);
    ck_assert_int_eq(clg_json_get(j, "n")->kind, CLG_JSON_NULL);
    ck_assert_uint_eq(clg_json_get(j, "o")->length, 0);
    ck_assert_ptr_null(clg_json_get(j, "zz"));
    clg_json_free(j);
    clg_json_free(NULL);
}
END_TEST

START_TEST(json_rejects) {
    static const struct {
        const char *text, *message;
    } bad[] = {
        {"", "byte 0: expected a value, found end of text"},
        {"{", "byte 1"},
        {"{\"a\":1,}", "byte 7: expected a string key, found '}'"},
        {"[1 2]", "expected ',' or ']'"},
        {"01", "leading zero"},
        {"-", "expected a digit"},
        {"1e5", "only integers"},
        {"9223372036854775808", "out of 64-bit range"},
        {"-9223372036854775809", "out of 64-bit range"},
        {"\"abc", "unterminated string"},
        {"\"a\tb\"", "raw control character 0x09"},
        {"\"\\x\"", "invalid escape"},
        {"\"\\u12G4\"", "bad hex digit"},
        {"\"\\ud800\"", "lone high surrogate"},
        {"\"\\udc00\"", "lone low surrogate"},
        {"\"\\ud800\\u0041\"", "not followed by a low one"},
        {"\"\\u0000\"", "\\u0000"},
        {"\"\xc0\xaf\"", "invalid UTF-8"},     /* overlong '/' */
        {"\"\xed\xa0\x80\"", "invalid UTF-8"}, /* encoded surrogate */
        {"\"\xe2\x82\"", "invalid UTF-8"},     /* cut sequence */
        {"tru", "expected a value"},
        {"{} {}", "end of text after the value"},
        {"{\"a\":1}x", "byte 7"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        clg_json *j = (clg_json *)1;
        clg_status st = parse(bad[i].text, &j);
        ck_assert_msg(st == CLG_ERR_FORMAT, "'%s' parsed", bad[i].text);
        ck_assert_ptr_null(j);
        ck_assert_msg(strstr(clg_last_error(), bad[i].message) != NULL,
                      "'%s': message \"%s\" lacks \"%s\"", bad[i].text, clg_last_error(),
                      bad[i].message);
        ck_assert_msg(strncmp(clg_last_error(), "test: JSON error at byte ", 25) == 0, "%s",
                      clg_last_error());
    }
    /* nesting is bounded */
    char deep[300];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    clg_json *j;
    ck_assert_int_eq(parse(deep, &j), CLG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "nested deeper"));
}
END_TEST

START_TEST(json_writer_escapes) {
    clg_json_buf b = {0};
    clg_json_buf_string(&b, "a\"b\\c\x01\x1f\x7f/\xc3\xa9\b\f\n\r\t");
    ck_assert(!b.oom);
    ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\u0001\\u001f\x7f/\xc3\xa9\\b\\f\\n\\r\\t\"");
    /* and it parses back */
    clg_json *j;
    clg_assert_ok(clg_json_parse(b.data, b.len, "test", &j));
    ck_assert_str_eq(j->string, "a\"b\\c\x01\x1f\x7f/\xc3\xa9\b\f\n\r\t");
    clg_json_free(j);
    free(b.data);
}
END_TEST

/* ---- Atomic writes ---- */

static void expect_old_content(const char *path) {
    size_t size;
    unsigned char *b = read_bytes(path, &size);
    ck_assert_uint_eq(size, 3);
    ck_assert_mem_eq(b, "OLD", 3);
    free(b);
}

START_TEST(atomic_injected_failures) {
    const char *path = tmp_path("ckpt.safetensors");
    write_bytes(path, "OLD", 3);
    float x[4] = {1, 2, 3, 4};
    const int64_t shape[] = {4};
    const clg_st_tensor t[] = {{"x", CLG_ST_DTYPE_F32, 1, shape, x}};
    const clg_atomic_fail steps[] = {CLG_ATOMIC_FAIL_WRITE, CLG_ATOMIC_FAIL_SYNC,
                                     CLG_ATOMIC_FAIL_RENAME};
    for (size_t i = 0; i < 3; ++i) {
        clg_atomic_file_inject_failure(steps[i]);
        ck_assert_int_eq(clg_safetensors_save(path, t, 1, NULL, 0), CLG_ERR_IO);
        ck_assert_msg(strstr(clg_last_error(), path) != NULL, "%s", clg_last_error());
        expect_old_content(path);
        ck_assert_int_eq(count_temporaries(tmpdir), 0);
    }
    clg_atomic_file_inject_failure(CLG_ATOMIC_FAIL_NONE);
    clg_assert_ok(clg_safetensors_save(path, t, 1, NULL, 0));
    clg_safetensors *st;
    clg_assert_ok(clg_safetensors_load(path, &st));
    ck_assert_float_eq(((const float *)clg_safetensors_find(st, "x")->data)[3], 4.0f);
    clg_safetensors_free(st);
    ck_assert_int_eq(count_temporaries(tmpdir), 0);

    /* the plain helper and its abort path */
    clg_assert_ok(clg_atomic_write(path, "OLD", 3));
    expect_old_content(path);
    clg_atomic_file *f;
    clg_assert_ok(clg_atomic_file_open(path, &f));
    clg_assert_ok(clg_atomic_file_write(f, "NEW!", 4));
    ck_assert_int_eq(count_temporaries(tmpdir), 1);
    clg_atomic_file_abort(f);
    clg_atomic_file_abort(NULL);
    expect_old_content(path);
    ck_assert_int_eq(count_temporaries(tmpdir), 0);
}
END_TEST

START_TEST(atomic_real_failures) {
    float x[1] = {1};
    const int64_t shape[] = {1};
    const clg_st_tensor t[] = {{"x", CLG_ST_DTYPE_F32, 1, shape, x}};
    /* the target directory does not exist: nothing can be created */
    const char *nodir = tmp_path("no/such/dir/ckpt.safetensors");
    ck_assert_int_eq(clg_safetensors_save(nodir, t, 1, NULL, 0), CLG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), nodir));
    /* the target is a directory: the rename fails after the data was written */
    const char *dir = tmp_path("a-directory");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(clg_safetensors_save(dir, t, 1, NULL, 0), CLG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "cannot rename"));
    ck_assert_int_eq(count_temporaries(tmpdir), 0);
    /* a read-only directory (meaningless as root, who may write anywhere) */
    if (geteuid() != 0) {
        const char *ro = tmp_path("ro");
        ck_assert_int_eq(mkdir(ro, 0755), 0);
        char target[600];
        snprintf(target, sizeof target, "%s/ckpt.safetensors", ro);
        write_bytes(target, "OLD", 3);
        ck_assert_int_eq(chmod(ro, 0555), 0);
        ck_assert_int_eq(clg_safetensors_save(target, t, 1, NULL, 0), CLG_ERR_IO);
        ck_assert_ptr_nonnull(strstr(clg_last_error(), target));
        chmod(ro, 0755);
        expect_old_content(target);
        ck_assert_int_eq(count_temporaries(ro), 0);
    }
}
END_TEST

static Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, writer_rejects_bad_input);
    tcase_add_test(tc, reads_torch_fixture);
    tcase_add_test(tc, writes_what_torch_writes);
    tcase_add_test(tc, writes_checked_clgrad_fixture);
    tcase_add_test(tc, rejects_malformed);
    tcase_add_test(tc, realigns_unaligned_tensors);
    tcase_add_test(tc, atomic_injected_failures);
    tcase_add_test(tc, atomic_real_failures);
    suite_add_tcase(s, tc);
    TCase *tj = tcase_create("json");
    tcase_add_test(tj, json_values);
    tcase_add_test(tj, json_rejects);
    tcase_add_test(tj, json_writer_escapes);
    suite_add_tcase(s, tj);
    return s;
}

/* Writes the clgrad-side fixture for tools/make_safetensors_fixtures.py to check. */
static int write_fixture(const char *path) {
    clgrad_set v;
    clgrad_values(&v);
    clg_st_tensor t[16];
    size_t n = clgrad_tensors(&v, t);
    clg_status st = clg_safetensors_save(path, t, n, clgrad_meta, 1);
    if (st != CLG_OK) {
        fprintf(stderr, "%s: %s\n", clg_status_name(st), clg_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-fixture") == 0) return write_fixture(argv[2]);
    return clg_test_run(safetensors_suite());
}
