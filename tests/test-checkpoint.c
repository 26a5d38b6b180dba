/* Checkpoints on the device: round trip of parameters, Adam state, step and random counter;
 * atomic saves; mismatch reports that leave the device untouched; exact resumption of a
 * training run with dropout; PyTorch interop both ways through committed fixtures made by
 * tools/make_checkpoint_fixtures.py.
 * `test-checkpoint --write-fixture PATH` writes the clgrad-side fixture for that script. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/context.h"
#include "fixtures/torch_mlp_expected.h"
#include "harness.h"
#include "core/atomic_file.h"
#include "io/safetensors.h"

/* ---- Contexts and scratch files ---- */

/* A context of its own: checkpoints hold every parameter of a context, so tests that build
 * different models cannot share the harness's. */
static clg_context *new_context(void) {
    clg_context *ctx = NULL;
    clg_status st = clg_context_create(NULL, &ctx);
    if (st == CLG_ERR_NO_PLATFORM) {
        fprintf(stderr, "SKIP: no OpenCL device: %s\n", clg_last_error());
        exit(77);
    }
    clg_assert_ok(st);
    return ctx;
}

static char tmpdir[256];

static void setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clgrad-test-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
    clg_atomic_file_inject_failure(CLG_ATOMIC_FAIL_NONE);
    chmod(tmpdir, 0700);
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        remove(p);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
}

static const char *tmp_path(const char *name) {
    static char bufs[4][512];
    static int next;
    char *p = bufs[next++ % 4];
    snprintf(p, sizeof bufs[0], "%s/%s", tmpdir, name);
    return p;
}

/* Entries of tmpdir other than the expected files, i.e. left-over temporaries. */
static int count_temporaries(void) {
    int n = 0;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, CLG_ATOMIC_TMP_TAG)) n++;
    if (d) closedir(d);
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- Host copies of device state ---- */

static clg_param *new_param(clg_context *ctx, const char *name, clg_dtype dtype, int ndim,
                            const int64_t *shape) {
    clg_param *p = clg_param_new(ctx, name, dtype, ndim, shape);
    ck_assert_msg(p != NULL, "clg_param_new(%s): %s", name, clg_last_error());
    return p;
}

static size_t param_bytes(const clg_param *p) {
    return (size_t)clg_param_numel(p) * clg_dtype_size(clg_param_dtype(p));
}

/* Every parameter's bytes, concatenated in creation order; free() it. */
static unsigned char *snapshot_params(clg_context *ctx, size_t *size) {
    size_t total = 0;
    for (size_t i = 0; i < clg_param_count(ctx); ++i)
        total += param_bytes(clg_param_at(ctx, i));
    unsigned char *b = malloc(total ? total : 1), *at = b;
    for (size_t i = 0; i < clg_param_count(ctx); ++i) {
        clg_param *p = clg_param_at(ctx, i);
        clg_assert_ok(clg_param_read(p, at, param_bytes(p)));
        at += param_bytes(p);
    }
    *size = total;
    return b;
}

/* Every optimizer state buffer's bytes, concatenated in parameter order (the optimizer's own
 * order is the order its state was created in: by compile or by a load); free() it. */
static unsigned char *snapshot_state(clg_context *ctx, clg_optimizer *opt, size_t *size) {
    size_t total = 0, n = clg_optimizer_state_count(opt);
    for (size_t i = 0; i < n; ++i)
        total += (size_t)clg_param_numel(clg_optimizer_state_param(opt, i)) * 4;
    unsigned char *b = malloc(total ? total : 1), *at = b;
    for (size_t p = 0; p < clg_param_count(ctx); ++p)
        for (size_t i = 0; i < n; ++i) {
            if (clg_optimizer_state_param(opt, i) != clg_param_at(ctx, p)) continue;
            size_t bytes = (size_t)clg_param_numel(clg_optimizer_state_param(opt, i)) * 4;
            clg_assert_ok(clg_optimizer_state_read(opt, i, (float *)at, bytes));
            at += bytes;
        }
    ck_assert_uint_eq((size_t)(at - b), total);
    *size = total;
    return b;
}

static void fill_param(clg_param *p, clg_test_rng *r) {
    size_t n = (size_t)clg_param_numel(p);
    if (clg_param_dtype(p) == CLG_I32) {
        int32_t *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; ++i)
            v[i] = (int32_t)(clg_test_uniform(r, -1e6f, 1e6f));
        clg_assert_ok(clg_param_write(p, v, n * sizeof *v));
        free(v);
    } else {
        float *v = malloc(n * sizeof *v);
        clg_test_fill(r, v, n, -1.0f, 1.0f);
        clg_assert_ok(clg_param_write(p, v, n * sizeof *v));
        free(v);
    }
}

static void fill_state(clg_optimizer *opt, clg_test_rng *r) {
    for (size_t i = 0; i < clg_optimizer_state_count(opt); ++i) {
        size_t n = (size_t)clg_param_numel(clg_optimizer_state_param(opt, i));
        float *v = malloc(n * sizeof *v);
        clg_test_fill(r, v, n, 0.0f, 1.0f);
        clg_assert_ok(clg_optimizer_state_write(opt, i, v, n * sizeof *v));
        free(v);
    }
}

static clg_optimizer *new_adam(clg_context *ctx, float lr) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.lr = lr;
    clg_optimizer *opt = clg_optimizer_new(ctx, &c);
    ck_assert_msg(opt != NULL, "%s", clg_last_error());
    return opt;
}

/* A small model with an integer parameter (frozen by default) besides the weights. */
static void small_model(clg_context *ctx) {
    new_param(ctx, "fc1.weight", CLG_F32, 2, (int64_t[]){7, 5});
    new_param(ctx, "fc1.bias", CLG_F32, 1, (int64_t[]){7});
    new_param(ctx, "fc2.weight", CLG_F32, 2, (int64_t[]){3, 7});
    new_param(ctx, "fc2.bias", CLG_F32, 1, (int64_t[]){3});
    new_param(ctx, "batches_seen", CLG_I32, 1, (int64_t[]){2});
}

static void randomize(clg_context *ctx, clg_optimizer *opt, uint64_t seed) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    for (size_t i = 0; i < clg_param_count(ctx); ++i)
        fill_param(clg_param_at(ctx, i), &r);
    if (opt) {
        clg_assert_ok(clg_optimizer_init_state(opt));
        fill_state(opt, &r);
    }
}

/* ---- Round trip ---- */

START_TEST(test_round_trip) {
    clg_context *ctx = new_context();
    small_model(ctx);
    clg_optimizer *opt = new_adam(ctx, 1e-3f);
    randomize(ctx, opt, 1);
    clg_assert_ok(clg_optimizer_set_steps(opt, 17));
    ctx->rng_offset = 0x123456789abull;
    size_t np, ns;
    unsigned char *params = snapshot_params(ctx, &np), *state = snapshot_state(ctx, opt, &ns);
    ck_assert_uint_eq(clg_optimizer_state_count(opt), 8); /* exp_avg, exp_avg_sq x 4 */
    const char *path = tmp_path("ckpt.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, path, opt));

    // The file: PyTorch names, dtypes, shapes and the metadata.
    clg_safetensors *st = NULL;
    clg_assert_ok(clg_safetensors_load(path, &st));
    ck_assert_uint_eq(clg_safetensors_count(st), 5 + 8);
    const clg_st_view *v = clg_safetensors_find(st, "fc1.weight.exp_avg_sq");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->dtype, CLG_ST_DTYPE_F32);
    ck_assert_int_eq(v->ndim, 2);
    ck_assert_int_eq(v->shape[0], 7);
    ck_assert_int_eq(v->shape[1], 5);
    v = clg_safetensors_find(st, "batches_seen");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->dtype, CLG_ST_DTYPE_I32);
    ck_assert_str_eq(clg_safetensors_meta_get(st, "clgrad.format"), "clgrad checkpoint v1");
    ck_assert_str_eq(clg_safetensors_meta_get(st, "clgrad.optimizer"), "adam");
    ck_assert_str_eq(clg_safetensors_meta_get(st, "clgrad.optimizer_steps"), "17");
    ck_assert_str_eq(clg_safetensors_meta_get(st, "clgrad.rng_offset"), "1250999896491");
    clg_safetensors_free(st);

    // Into the same context after scrambling everything.
    randomize(ctx, opt, 2);
    clg_assert_ok(clg_optimizer_set_steps(opt, 3));
    ctx->rng_offset = 5;
    clg_assert_ok(clg_checkpoint_load(ctx, path, opt));
    size_t np2, ns2;
    unsigned char *params2 = snapshot_params(ctx, &np2), *state2 = snapshot_state(ctx, opt, &ns2);
    ck_assert_uint_eq(np, np2);
    ck_assert_uint_eq(ns, ns2);
    ck_assert(memcmp(params, params2, np) == 0);
    ck_assert(memcmp(state, state2, ns) == 0);
    ck_assert_int_eq(clg_optimizer_steps(opt), 17);
    ck_assert_uint_eq(ctx->rng_offset, 0x123456789abull);
    free(params2);
    free(state2);

    // Into a fresh context whose optimizer has no state yet; and without an optimizer, where
    // the state tensors are skipped.
    clg_context *ctx2 = new_context();
    small_model(ctx2);
    clg_optimizer *opt2 = new_adam(ctx2, 1e-3f);
    clg_assert_ok(clg_checkpoint_load(ctx2, path, opt2));
    params2 = snapshot_params(ctx2, &np2);
    state2 = snapshot_state(ctx2, opt2, &ns2);
    ck_assert(np == np2 && memcmp(params, params2, np) == 0);
    ck_assert(ns == ns2 && memcmp(state, state2, ns) == 0);
    ck_assert_int_eq(clg_optimizer_steps(opt2), 17);
    ck_assert_uint_eq(ctx2->rng_offset, 0x123456789abull);
    free(params2);
    free(state2);
    clg_context_free(ctx2);

    ctx2 = new_context();
    small_model(ctx2);
    ck_assert_int_eq(clg_checkpoint_load(ctx2, path, opt), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clg_last_error(), "another context"), "%s", clg_last_error());
    clg_assert_ok(clg_checkpoint_load(ctx2, path, NULL));
    params2 = snapshot_params(ctx2, &np2);
    ck_assert(np == np2 && memcmp(params, params2, np) == 0);
    free(params2);
    clg_context_free(ctx2);

    // Without an optimizer nothing of one is written; the random counter still is.
    const char *plain = tmp_path("plain.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, plain, NULL));
    clg_assert_ok(clg_safetensors_load(plain, &st));
    ck_assert_uint_eq(clg_safetensors_count(st), 5);
    ck_assert_ptr_null(clg_safetensors_meta_get(st, "clgrad.optimizer"));
    ck_assert_str_eq(clg_safetensors_meta_get(st, "clgrad.rng_offset"), "1250999896491");
    clg_safetensors_free(st);

    free(params);
    free(state);
    clg_context_free(ctx);
}
END_TEST

/* ---- Atomic saves ---- */

START_TEST(test_atomic_save) {
    clg_context *ctx = new_context();
    small_model(ctx);
    clg_optimizer *opt = new_adam(ctx, 1e-3f);
    randomize(ctx, opt, 3);
    clg_assert_ok(clg_optimizer_set_steps(opt, 40));
    const char *path = tmp_path("ckpt.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, path, opt));
    size_t np, ns;
    unsigned char *params = snapshot_params(ctx, &np), *state = snapshot_state(ctx, opt, &ns);

    // Each step of the atomic write failing in turn (disk full, fsync error, rename refused):
    // the error names the path, no temporary is left, the old checkpoint loads unchanged.
    static const clg_atomic_fail fails[] = {CLG_ATOMIC_FAIL_WRITE, CLG_ATOMIC_FAIL_SYNC,
                                            CLG_ATOMIC_FAIL_RENAME};
    for (size_t f = 0; f < sizeof fails / sizeof *fails; ++f) {
        randomize(ctx, opt, 100 + f);
        clg_assert_ok(clg_optimizer_set_steps(opt, 41));
        clg_atomic_file_inject_failure(fails[f]);
        clg_status st = clg_checkpoint_save(ctx, path, opt);
        clg_atomic_file_inject_failure(CLG_ATOMIC_FAIL_NONE);
        ck_assert_msg(st == CLG_ERR_IO, "failure %d: %s", (int)fails[f], clg_status_name(st));
        ck_assert_msg(strstr(clg_last_error(), path), "%s", clg_last_error());
        ck_assert_int_eq(count_temporaries(), 0);
        clg_assert_ok(clg_checkpoint_load(ctx, path, opt));
        size_t np2, ns2;
        unsigned char *p2 = snapshot_params(ctx, &np2), *s2 = snapshot_state(ctx, opt, &ns2);
        ck_assert(np == np2 && memcmp(params, p2, np) == 0);
        ck_assert(ns == ns2 && memcmp(state, s2, ns) == 0);
        ck_assert_int_eq(clg_optimizer_steps(opt), 40);
        free(p2);
        free(s2);
    }

    // A directory that became read-only (root ignores permissions: only the hook above can
    // make the write fail there).
    if (geteuid() != 0) {
        randomize(ctx, opt, 200);
        ck_assert_int_eq(chmod(tmpdir, 0500), 0);
        clg_status st = clg_checkpoint_save(ctx, path, opt);
        ck_assert_int_eq(chmod(tmpdir, 0700), 0);
        ck_assert_int_eq(st, CLG_ERR_IO);
        ck_assert_int_eq(count_temporaries(), 0);
        clg_assert_ok(clg_checkpoint_load(ctx, path, opt));
        size_t np2;
        unsigned char *p2 = snapshot_params(ctx, &np2);
        ck_assert(np == np2 && memcmp(params, p2, np) == 0);
        free(p2);
    }
    free(params);
    free(state);
    clg_context_free(ctx);
}
END_TEST

/* ---- Mismatches ---- */

static void assert_has_line(const char *msg, const char *line) {
    const char *at = msg;
    size_t n = strlen(line);
    while ((at = strstr(at, line))) {
        if ((at[n] == '\n' || at[n] == '\0') && (at == msg || at[-1] == ' ')) return;
        at += n;
    }
    ck_assert_msg(0, "no line \"%s\" in:\n%s", line, msg);
}

/* The device is unchanged: parameters, optimizer state and step, random counter. */
static void assert_unchanged(clg_context *ctx, clg_optimizer *opt, const unsigned char *params,
                             size_t np, uint64_t rng, int64_t steps) {
    size_t np2;
    unsigned char *p2 = snapshot_params(ctx, &np2);
    ck_assert(np == np2 && memcmp(params, p2, np) == 0);
    free(p2);
    ck_assert_uint_eq(ctx->rng_offset, rng);
    if (opt) ck_assert_int_eq(clg_optimizer_steps(opt), steps);
}

START_TEST(test_mismatch) {
    clg_context *ctx = new_context();
    new_param(ctx, "fc1.weight", CLG_F32, 2, (int64_t[]){128, 784});
    new_param(ctx, "fc1.bias", CLG_F32, 1, (int64_t[]){128});
    new_param(ctx, "fc2.weight", CLG_F32, 2, (int64_t[]){10, 128});
    new_param(ctx, "fc3.bias", CLG_F32, 1, (int64_t[]){10});
    new_param(ctx, "labels", CLG_I32, 1, (int64_t[]){4});
    randomize(ctx, NULL, 4);
    ctx->rng_offset = 99;
    size_t np;
    unsigned char *params = snapshot_params(ctx, &np);

    // A file written directly: wrong shape, I32 for F32, F32 for I32, a missing and an extra
    // tensor; fc2.weight fits but must not be written either.
    static float zeros[64 * 784];
    const clg_st_tensor bad[] = {
        {"fc1.weight", CLG_ST_DTYPE_F32, 2, (int64_t[]){64, 784}, zeros},
        {"fc1.bias", CLG_ST_DTYPE_I32, 1, (int64_t[]){128}, zeros},
        {"fc2.weight", CLG_ST_DTYPE_F32, 2, (int64_t[]){10, 128}, zeros},
        {"labels", CLG_ST_DTYPE_F32, 1, (int64_t[]){3}, zeros},
        {"extra.weight", CLG_ST_DTYPE_F32, 2, (int64_t[]){2, 2}, zeros},
    };
    const char *path = tmp_path("bad.safetensors");
    clg_assert_ok(clg_safetensors_save(path, bad, 5, NULL, 0));
    clg_status st = clg_checkpoint_load(ctx, path, NULL);
    ck_assert_str_eq(clg_status_name(st), "CLG_ERR_MISMATCH");
    const char *msg = clg_last_error();
    ck_assert_msg(strstr(msg, path) && strstr(msg, "5 mismatches"), "%s", msg);
    assert_has_line(msg, "fc1.weight: shape [128, 784] in model, [64, 784] in file");
    assert_has_line(msg, "fc1.bias: dtype F32 in model, I32 in file");
    assert_has_line(msg,
                    "labels: dtype I32 in model, F32 in file; shape [4] in model, [3] in file");
    assert_has_line(msg, "fc3.bias: missing from file");
    assert_has_line(msg, "extra.weight: not in model");
    ck_assert_ptr_null(strstr(msg, "fc2.weight"));
    assert_unchanged(ctx, NULL, params, np, 99, 0);

    // A good checkpoint of this model, then the same file loaded with an optimizer: it has no
    // optimizer state, which is a mismatch that names every missing state tensor.
    randomize(ctx, NULL, 5);
    ctx->rng_offset = 7;
    const char *good = tmp_path("good.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, good, NULL));
    clg_context *ctx2 = new_context();
    for (size_t i = 0; i < clg_param_count(ctx); ++i) {
        clg_param *p = clg_param_at(ctx, i);
        new_param(ctx2, clg_param_name(p), clg_param_dtype(p), clg_param_ndim(p),
                  clg_param_shape(p));
    }
    clg_optimizer *adam = new_adam(ctx2, 1e-3f);
    clg_assert_ok(clg_optimizer_set_steps(adam, 12));
    randomize(ctx2, adam, 6);
    ctx2->rng_offset = 1;
    size_t np2, ns2;
    unsigned char *params2 = snapshot_params(ctx2, &np2),
                  *state2 = snapshot_state(ctx2, adam, &ns2);
    st = clg_checkpoint_load(ctx2, good, adam);
    ck_assert_str_eq(clg_status_name(st), "CLG_ERR_MISMATCH");
    msg = clg_last_error();
    assert_has_line(msg, "optimizer state: missing from file (it was saved without an "
                         "optimizer; load it without one to start the optimizer afresh)");
    assert_has_line(msg, "fc1.weight.exp_avg: missing from file");
    assert_has_line(msg, "fc3.bias.exp_avg_sq: missing from file");
    ck_assert_ptr_null(strstr(msg, "labels.exp_avg")); /* frozen: no state */
    assert_unchanged(ctx2, adam, params2, np2, 1, 12);
    size_t ns3;
    unsigned char *state3 = snapshot_state(ctx2, adam, &ns3);
    ck_assert(ns2 == ns3 && memcmp(state2, state3, ns2) == 0);
    free(state3);

    // An SGD checkpoint into Adam: the kinds differ, and so do the state names.
    clg_optimizer_config sc = clg_optimizer_defaults(CLG_OPT_SGD);
    sc.momentum = 0.9f;
    clg_optimizer *sgd = clg_optimizer_new(ctx, &sc);
    const char *sgd_path = tmp_path("sgd.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, sgd_path, sgd));
    st = clg_checkpoint_load(ctx2, sgd_path, adam);
    ck_assert_str_eq(clg_status_name(st), "CLG_ERR_MISMATCH");
    msg = clg_last_error();
    assert_has_line(msg, "optimizer: adam in model, sgd in file");
    assert_has_line(msg, "fc1.weight.exp_avg: missing from file");
    assert_has_line(msg, "fc1.weight.momentum_buffer: not in model");
    assert_unchanged(ctx2, adam, params2, np2, 1, 12);
    // Without an optimizer the SGD state is skipped and the parameters load.
    clg_assert_ok(clg_checkpoint_load(ctx2, sgd_path, NULL));
    free(params);
    params = snapshot_params(ctx, &np);
    assert_unchanged(ctx2, adam, params, np, 7, 12);

    // Malformed files: the reader's format error naming the path; nothing written.
    size_t n;
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(n);
    ck_assert_uint_eq(fread(bytes, 1, n, f), n);
    fclose(f);
    const char *cut = tmp_path("truncated.safetensors");
    f = fopen(cut, "wb");
    fwrite(bytes, 1, n - 10, f);
    fclose(f);
    free(bytes);
    randomize(ctx2, NULL, 8);
    free(params2);
    params2 = snapshot_params(ctx2, &np2);
    st = clg_checkpoint_load(ctx2, cut, NULL);
    ck_assert_str_eq(clg_status_name(st), "CLG_ERR_FORMAT");
    ck_assert_msg(strstr(clg_last_error(), cut), "%s", clg_last_error());
    st = clg_checkpoint_load(ctx2, tmp_path("absent.safetensors"), NULL);
    ck_assert_str_eq(clg_status_name(st), "CLG_ERR_IO");
    assert_unchanged(ctx2, adam, params2, np2, 7, 12);

    // A newer format version is refused before anything is compared.
    const clg_st_meta v2 = {"clgrad.format", "clgrad checkpoint v2"};
    const char *newer = tmp_path("v2.safetensors");
    clg_assert_ok(clg_safetensors_save(newer, bad, 1, &v2, 1));
    st = clg_checkpoint_load(ctx2, newer, NULL);
    ck_assert_str_eq(clg_status_name(st), "CLG_ERR_FORMAT");
    ck_assert_msg(strstr(clg_last_error(), "clgrad checkpoint v2"), "%s", clg_last_error());

    free(params);
    free(params2);
    free(state2);
    clg_context_free(ctx2);
    clg_context_free(ctx);
}
END_TEST

/* ---- Resuming ---- */

#define R_BATCH 32
#define R_IN 20
#define R_HIDDEN 48
#define R_OUT 4
#define R_HALF 20 /* N: the run is 2N steps */

typedef struct trainer {
    clg_context *ctx;
    clg_optimizer *opt;
    clg_graph *g;
    clg_plan *plan;
    clg_tensor *x, *y;
} trainer;

/* x -> Linear -> ReLU -> dropout(0.3) -> Linear -> ReLU -> dropout(0.3) -> Linear, MSE
 * against y, Adam. Parameters start from seed init_seed; a checkpoint given as load is loaded
 * before the graph is built. */
static void trainer_build(trainer *t, uint64_t init_seed, const char *load) {
    t->ctx = new_context();
    clg_context *ctx = t->ctx;
    const int64_t dims[4] = {R_IN, R_HIDDEN, R_HIDDEN, R_OUT};
    clg_param *w[3], *b[3];
    for (int l = 0; l < 3; ++l) {
        char name[32];
        snprintf(name, sizeof name, "fc%d.weight", l + 1);
        w[l] = new_param(ctx, name, CLG_F32, 2, (int64_t[]){dims[l + 1], dims[l]});
        snprintf(name, sizeof name, "fc%d.bias", l + 1);
        b[l] = new_param(ctx, name, CLG_F32, 1, (int64_t[]){dims[l + 1]});
    }
    randomize(ctx, NULL, init_seed);
    t->opt = new_adam(ctx, 1e-2f);
    if (load) clg_assert_ok(clg_checkpoint_load(ctx, load, t->opt));
    clg_graph *g = t->g = clg_graph_new(ctx);
    t->x = clg_input(g, "x", CLG_F32, 2, (int64_t[]){R_BATCH, R_IN});
    t->y = clg_input(g, "y", CLG_F32, 2, (int64_t[]){R_BATCH, R_OUT});
    clg_tensor *h = t->x;
    for (int l = 0; l < 3; ++l) {
        h = clg_add(g, clg_matmul(g, h, clg_param_tensor(g, w[l]), false, true),
                    clg_param_tensor(g, b[l]));
        if (l < 2) h = clg_dropout(g, clg_relu(g, h), 0.3f, true, 1000 + (uint64_t)l);
    }
    clg_tensor *loss = clg_mean(g, clg_square(g, clg_sub(g, h, t->y)), 0, NULL, false);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_optimizer_apply(t->opt, g, NULL));
    clg_assert_ok(clg_graph_compile(g, NULL, &t->plan));
}

/* Training steps first .. first+count-1; step k's batch depends on k alone. */
static void trainer_steps(trainer *t, int first, int count) {
    float x[R_BATCH * R_IN], y[R_BATCH * R_OUT];
    for (int k = first; k < first + count; ++k) {
        clg_test_rng r;
        clg_test_rng_seed(&r, 5000 + (uint64_t)k);
        clg_test_fill(&r, x, R_BATCH * R_IN, -1.0f, 1.0f);
        clg_test_fill(&r, y, R_BATCH * R_OUT, -0.5f, 0.5f);
        clg_assert_ok(clg_plan_write(t->plan, t->x, x, sizeof x));
        clg_assert_ok(clg_plan_write(t->plan, t->y, y, sizeof y));
        clg_assert_ok(clg_plan_run(t->plan));
    }
    clg_assert_ok(clg_plan_finish(t->plan));
}

/* Index of the first differing float, or -1. */
static long first_diff(const unsigned char *a, const unsigned char *b, size_t bytes) {
    for (size_t i = 0; i < bytes / 4; ++i)
        if (memcmp(a + 4 * i, b + 4 * i, 4)) return (long)i;
    return -1;
}

START_TEST(test_resume_exact) {
    double t0 = now_s();
    // Reference: 2N steps in one go.
    trainer a;
    trainer_build(&a, 11, NULL);
    trainer_steps(&a, 0, 2 * R_HALF);
    size_t np_a, ns_a;
    unsigned char *params_a = snapshot_params(a.ctx, &np_a),
                  *state_a = snapshot_state(a.ctx, a.opt, &ns_a);
    uint64_t rng_a = a.ctx->rng_offset;
    ck_assert_uint_eq(clg_optimizer_steps(a.opt), 2 * R_HALF);
    ck_assert_uint_eq(rng_a, 2 * R_HALF);
    clg_context_free(a.ctx);

    // N steps, save, free the context entirely.
    const char *path = tmp_path("half.safetensors");
    trainer b;
    trainer_build(&b, 11, NULL);
    trainer_steps(&b, 0, R_HALF);
    clg_assert_ok(clg_checkpoint_save(b.ctx, path, b.opt));
    clg_context_free(b.ctx);

    // A new context, the model rebuilt from other initial values, the checkpoint loaded
    // (before building the graph, then after compiling it), N more steps.
    unsigned char *params_c = NULL, *state_c = NULL;
    for (int after = 0; after < 2; ++after) {
        trainer c;
        trainer_build(&c, 12, after ? NULL : path);
        if (after) clg_assert_ok(clg_checkpoint_load(c.ctx, path, c.opt));
        ck_assert_int_eq(clg_optimizer_steps(c.opt), R_HALF);
        ck_assert_uint_eq(c.ctx->rng_offset, R_HALF);
        trainer_steps(&c, R_HALF, R_HALF);
        size_t np_c, ns_c;
        free(params_c);
        free(state_c);
        params_c = snapshot_params(c.ctx, &np_c);
        state_c = snapshot_state(c.ctx, c.opt, &ns_c);
        ck_assert_uint_eq(np_a, np_c);
        ck_assert_uint_eq(ns_a, ns_c);
        ck_assert_msg(memcmp(params_a, params_c, np_a) == 0,
                      "resumed parameters (loaded %s) differ from the uninterrupted run at "
                      "float %ld",
                      after ? "after compiling" : "before building",
                      first_diff(params_a, params_c, np_a));
        ck_assert_msg(memcmp(state_a, state_c, ns_a) == 0,
                      "resumed Adam state differs from the uninterrupted run at float %ld",
                      first_diff(state_a, state_c, ns_a));
        ck_assert_int_eq(clg_optimizer_steps(c.opt), 2 * R_HALF);
        ck_assert_uint_eq(c.ctx->rng_offset, rng_a);
        clg_context_free(c.ctx);
    }

    // The controls: resuming without the random counter, or without the step count (Adam's
    // bias correction), does not reproduce the run, so the two restorations above matter.
    trainer d;
    trainer_build(&d, 12, NULL);
    clg_assert_ok(clg_checkpoint_load(d.ctx, path, d.opt));
    d.ctx->rng_offset = 0;
    trainer_steps(&d, R_HALF, R_HALF);
    size_t np_d;
    unsigned char *params_d = snapshot_params(d.ctx, &np_d);
    ck_assert_msg(memcmp(params_a, params_d, np_a) != 0, "dropout ignored the random counter");
    free(params_d);
    clg_context_free(d.ctx);

    trainer e;
    trainer_build(&e, 12, NULL);
    clg_assert_ok(clg_checkpoint_load(e.ctx, path, e.opt));
    clg_assert_ok(clg_optimizer_set_steps(e.opt, 0));
    trainer_steps(&e, R_HALF, R_HALF);
    params_d = snapshot_params(e.ctx, &np_d);
    ck_assert_msg(memcmp(params_a, params_d, np_a) != 0, "Adam ignored the step count");
    free(params_d);
    clg_context_free(e.ctx);

    free(params_a);
    free(state_a);
    free(params_c);
    free(state_c);
    fprintf(stderr, "resume: 2x%d steps, 6 contexts: %.2f s\n", R_HALF, now_s() - t0);
}
END_TEST

/* ---- PyTorch interop (tests/fixtures, tools/make_checkpoint_fixtures.py) ---- */

/* The MLP 6 -> 5 -> 3 (Linear, ReLU, Linear) as a forward plan on ctx's parameters. */
typedef struct mlp {
    clg_graph *g;
    clg_plan *plan;
    clg_tensor *x, *out;
} mlp;

static void mlp_params(clg_context *ctx) {
    new_param(ctx, "fc1.weight", CLG_F32, 2, (int64_t[]){MLP_HIDDEN, MLP_IN});
    new_param(ctx, "fc1.bias", CLG_F32, 1, (int64_t[]){MLP_HIDDEN});
    new_param(ctx, "fc2.weight", CLG_F32, 2, (int64_t[]){MLP_OUT, MLP_HIDDEN});
    new_param(ctx, "fc2.bias", CLG_F32, 1, (int64_t[]){MLP_OUT});
}

static void mlp_build(clg_context *ctx, mlp *m) {
    clg_graph *g = m->g = clg_graph_new(ctx);
    m->x = clg_input(g, "x", CLG_F32, 2, (int64_t[]){MLP_BATCH, MLP_IN});
    // x W1^T + b1 (B, 5) -> ReLU -> h W2^T + b2 (B, 3)
    clg_tensor *h = clg_add(
        g, clg_matmul(g, m->x, clg_param_tensor(g, clg_param_find(ctx, "fc1.weight")), false, true),
        clg_param_tensor(g, clg_param_find(ctx, "fc1.bias")));
    h = clg_relu(g, h);
    m->out = clg_add(
        g, clg_matmul(g, h, clg_param_tensor(g, clg_param_find(ctx, "fc2.weight")), false, true),
        clg_param_tensor(g, clg_param_find(ctx, "fc2.bias")));
    clg_assert_ok(clg_graph_output(g, m->out));
    clg_assert_ok(clg_graph_compile(g, NULL, &m->plan));
}

static void mlp_forward(mlp *m, float *out) {
    clg_assert_ok(clg_plan_write(m->plan, m->x, mlp_inputs, sizeof mlp_inputs));
    clg_assert_ok(clg_plan_run(m->plan));
    clg_assert_ok(clg_plan_read(m->plan, m->out, out, MLP_BATCH * MLP_OUT * sizeof *out));
}

START_TEST(test_torch_fixture) {
    clg_context *ctx = new_context();
    mlp_params(ctx);
    const char *path = clg_test_path("fixtures/torch_mlp.safetensors");
    // A state_dict from PyTorch has no optimizer state: with one it is a mismatch.
    clg_optimizer *adam = new_adam(ctx, 1e-3f);
    ck_assert_int_eq(clg_checkpoint_load(ctx, path, adam), CLG_ERR_MISMATCH);
    assert_has_line(clg_last_error(), "fc2.bias.exp_avg: missing from file");
    clg_assert_ok(clg_checkpoint_load(ctx, path, NULL));
    ck_assert_uint_eq(ctx->rng_offset, 0); /* no metadata: the counter is left alone */
    mlp m;
    mlp_build(ctx, &m);
    float out[MLP_BATCH * MLP_OUT];
    mlp_forward(&m, out);
    clg_assert_close(out, torch_mlp_outputs, MLP_BATCH * MLP_OUT, 1e-6, 1e-5);
    clg_context_free(ctx);
}
END_TEST

/* The clgrad-side fixture: values by formula (exact in binary, so numpy computes the same),
 * Adam state likewise, step 7, random counter 3. Also used to write the fixture. */
static float formula(const char *name, size_t k) {
    size_t h = strlen(name);
    if (strstr(name, "exp_avg_sq")) return (float)(int)((k * 5 + h) % 9) * 0.03125f;
    if (strstr(name, "exp_avg")) return (float)((int)((k * 3 + h) % 11) - 5) * 0.0078125f;
    return (float)((int)((k * 7 + h) % 13) - 6) * 0.0625f;
}

/* No check assertions here: the fixture writer runs it outside any test. */
static clg_status formula_model(clg_context *ctx, clg_optimizer **opt) {
    const int64_t dims[2][2] = {{MLP_HIDDEN, MLP_IN}, {MLP_OUT, MLP_HIDDEN}};
    for (int l = 0; l < 2; ++l) {
        char w[32], b[32];
        snprintf(w, sizeof w, "fc%d.weight", l + 1);
        snprintf(b, sizeof b, "fc%d.bias", l + 1);
        if (!clg_param_new(ctx, w, CLG_F32, 2, dims[l]) ||
            !clg_param_new(ctx, b, CLG_F32, 1, dims[l]))
            return CLG_ERR_INVALID_ARGUMENT;
    }
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
    *opt = clg_optimizer_new(ctx, &c);
    if (!*opt) return CLG_ERR_INVALID_ARGUMENT;
    clg_status st = clg_optimizer_init_state(*opt);
    size_t n_params = clg_param_count(ctx), n = n_params + clg_optimizer_state_count(*opt);
    for (size_t i = 0; st == CLG_OK && i < n; ++i) {
        const clg_param *p =
            i < n_params ? clg_param_at(ctx, i) : clg_optimizer_state_param(*opt, i - n_params);
        const char *name =
            i < n_params ? clg_param_name(p) : clg_optimizer_state_name(*opt, i - n_params);
        size_t count = (size_t)clg_param_numel(p);
        float *v = malloc(count * sizeof *v);
        if (!v) return CLG_ERR_OUT_OF_MEMORY;
        for (size_t k = 0; k < count; ++k)
            v[k] = formula(name, k);
        st = i < n_params ? clg_param_write(clg_param_at(ctx, i), v, count * sizeof *v)
                          : clg_optimizer_state_write(*opt, i - n_params, v, count * sizeof *v);
        free(v);
    }
    if (st == CLG_OK) st = clg_optimizer_set_steps(*opt, 7);
    ctx->rng_offset = 3;
    return st;
}

START_TEST(test_clgrad_fixture) {
    // clgrad still writes exactly the tensors (names, dtypes, shapes, bytes) that the script
    // verified with safetensors.torch.load_file.
    clg_context *ctx = new_context();
    clg_optimizer *opt;
    clg_assert_ok(formula_model(ctx, &opt));
    const char *path = tmp_path("clgrad_mlp.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, path, opt));
    clg_context_free(ctx);
    clg_safetensors *now = NULL, *fixture = NULL;
    clg_assert_ok(clg_safetensors_load(path, &now));
    clg_assert_ok(clg_safetensors_load(clg_test_path("fixtures/clgrad_mlp.safetensors"), &fixture));
    ck_assert_uint_eq(clg_safetensors_count(now), clg_safetensors_count(fixture));
    ck_assert_uint_eq(clg_safetensors_count(now), 4 + 8);
    for (size_t i = 0; i < clg_safetensors_count(fixture); ++i) {
        const clg_st_view *f = clg_safetensors_at(fixture, i);
        const clg_st_view *v = clg_safetensors_find(now, f->name);
        ck_assert_msg(v != NULL, "%s is no longer written", f->name);
        ck_assert_int_eq(v->dtype, f->dtype);
        ck_assert_int_eq(v->ndim, f->ndim);
        for (int d = 0; d < f->ndim; ++d)
            ck_assert_int_eq(v->shape[d], f->shape[d]);
        ck_assert_uint_eq(v->nbytes, f->nbytes);
        ck_assert_msg(memcmp(v->data, f->data, f->nbytes) == 0, "%s: values differ", f->name);
    }
    static const char *const keys[] = {"clgrad.format", "clgrad.optimizer",
                                       "clgrad.optimizer_steps", "clgrad.rng_offset"};
    for (size_t k = 0; k < 4; ++k)
        ck_assert_str_eq(clg_safetensors_meta_get(now, keys[k]),
                         clg_safetensors_meta_get(fixture, keys[k]));
    clg_safetensors_free(now);
    clg_safetensors_free(fixture);

    // The committed file, loaded back: the outputs PyTorch computed from it.
    ctx = new_context();
    mlp_params(ctx);
    clg_optimizer *adam = new_adam(ctx, 1e-3f);
    clg_assert_ok(clg_checkpoint_load(ctx, clg_test_path("fixtures/clgrad_mlp.safetensors"), adam));
    ck_assert_int_eq(clg_optimizer_steps(adam), 7);
    ck_assert_uint_eq(ctx->rng_offset, 3);
    mlp m;
    mlp_build(ctx, &m);
    float out[MLP_BATCH * MLP_OUT];
    mlp_forward(&m, out);
    clg_assert_close(out, clgrad_mlp_outputs, MLP_BATCH * MLP_OUT, 1e-6, 1e-5);
    clg_context_free(ctx);
}
END_TEST

/* ---- Metadata: the optimizer's whole configuration and the caller's entries ---- */

START_TEST(test_meta_and_config) {
    clg_context *ctx = new_context();
    small_model(ctx);
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAMW);
    c.lr = 3e-3f;
    c.schedule = CLG_LR_COSINE;
    c.warmup_steps = 117;
    c.total_steps = 4680;
    c.min_lr = 1.0f / 3.0f * 1e-4f; /* a float that decimal text must carry exactly */
    c.clip_norm = 1.0f;
    clg_optimizer *opt = clg_optimizer_new(ctx, &c);
    ck_assert_ptr_nonnull(opt);
    clg_assert_ok(clg_optimizer_set_steps(opt, 500));
    randomize(ctx, opt, 3);
    const char *path = tmp_path("meta.safetensors");
    const clg_checkpoint_entry mine[] = {{"run.epoch", "3"}, {"run.note", "bit for bit"}};
    clg_assert_ok(clg_checkpoint_save_meta(ctx, path, opt, mine, 2));

    clg_checkpoint_info *info = NULL;
    clg_assert_ok(clg_checkpoint_info_read(path, &info));
    ck_assert_str_eq(clg_checkpoint_info_get(info, "run.epoch"), "3");
    ck_assert_str_eq(clg_checkpoint_info_get(info, "run.note"), "bit for bit");
    ck_assert_str_eq(clg_checkpoint_info_get(info, "clgrad.optimizer"), "adamw");
    ck_assert_ptr_null(clg_checkpoint_info_get(info, "run.missing"));
    clg_optimizer_config got;
    int64_t steps = 0;
    clg_assert_ok(clg_checkpoint_info_optimizer(info, &got, &steps));
    ck_assert_int_eq(steps, 500);
    ck_assert_int_eq(got.kind, CLG_OPT_ADAMW);
    ck_assert_int_eq(got.schedule, CLG_LR_COSINE);
    ck_assert_int_eq(got.warmup_steps, 117);
    ck_assert_int_eq(got.total_steps, 4680);
    ck_assert(got.lr == c.lr && got.min_lr == c.min_lr && got.beta2 == c.beta2 &&
              got.eps == c.eps && got.weight_decay == c.weight_decay && got.clip_norm == 1.0f);
    clg_checkpoint_info_free(info);

    /* The same model with another schedule's totals and lr: a mismatch naming each field,
     * and nothing loaded. */
    clg_context *ctx2 = new_context();
    small_model(ctx2);
    clg_optimizer_config c2 = c;
    c2.total_steps = 2340;
    c2.lr = 1e-3f;
    clg_optimizer *opt2 = clg_optimizer_new(ctx2, &c2);
    randomize(ctx2, opt2, 4);
    size_t np2;
    unsigned char *before = snapshot_params(ctx2, &np2);
    ck_assert_int_eq(clg_checkpoint_load(ctx2, path, opt2), CLG_ERR_MISMATCH);
    const char *msg = clg_last_error();
    assert_has_line(msg, "optimizer lr: 0.00100000005 in model, 0.00300000003 in file");
    assert_has_line(msg, "optimizer total_steps: 2340 in model, 4680 in file");
    ck_assert_ptr_null(strstr(msg, "warmup_steps"));
    assert_unchanged(ctx2, NULL, before, np2, 0, 0);
    free(before);
    /* another kind: the kind is the mismatch, not its hyper-parameters */
    clg_optimizer_config sgd = clg_optimizer_defaults(CLG_OPT_SGD);
    clg_optimizer *opt3 = clg_optimizer_new(ctx2, &sgd);
    ck_assert_int_eq(clg_checkpoint_load(ctx2, path, opt3), CLG_ERR_MISMATCH);
    assert_has_line(clg_last_error(), "optimizer: sgd in model, adamw in file");
    ck_assert_ptr_null(strstr(clg_last_error(), "optimizer lr"));
    /* with the recorded configuration it loads, step count included */
    clg_optimizer *opt4 = clg_optimizer_new(ctx2, &got);
    clg_assert_ok(clg_checkpoint_load(ctx2, path, opt4));
    ck_assert_int_eq(clg_optimizer_steps(opt4), 500);
    clg_context_free(ctx2);

    /* Reserved and malformed entries are refused before anything is written. */
    const clg_checkpoint_entry reserved[] = {{"clgrad.epoch", "1"}};
    ck_assert_int_eq(clg_checkpoint_save_meta(ctx, tmp_path("r.safetensors"), opt, reserved, 1),
                     CLG_ERR_INVALID_ARGUMENT);
    const clg_checkpoint_entry fmt[] = {{"format", "np"}};
    ck_assert_int_eq(clg_checkpoint_save_meta(ctx, tmp_path("r.safetensors"), opt, fmt, 1),
                     CLG_ERR_INVALID_ARGUMENT);
    const clg_checkpoint_entry twice[] = {{"a", "1"}, {"a", "2"}};
    ck_assert_int_eq(clg_checkpoint_save_meta(ctx, tmp_path("r.safetensors"), opt, twice, 2),
                     CLG_ERR_INVALID_ARGUMENT);
    struct stat sb;
    ck_assert_int_ne(stat(tmp_path("r.safetensors"), &sb), 0);
    clg_context_free(ctx);
}
END_TEST

/* Hyper-parameters travel as text that reads back to the same float, subnormal ones too
 * (strtof reports ERANGE for them, which once made a saved eps = 1e-40 unloadable). */
START_TEST(test_meta_subnormal_round_trip) {
    clg_context *ctx = new_context();
    small_model(ctx);
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.eps = 1e-40f;
    c.weight_decay = 1.4e-45f; /* the smallest subnormal */
    clg_optimizer *opt = clg_optimizer_new(ctx, &c);
    ck_assert_ptr_nonnull(opt);
    const char *path = tmp_path("subnormal.safetensors");
    clg_assert_ok(clg_checkpoint_save(ctx, path, opt));
    clg_checkpoint_info *info = NULL;
    clg_assert_ok(clg_checkpoint_info_read(path, &info));
    clg_optimizer_config got;
    clg_assert_ok(clg_checkpoint_info_optimizer(info, &got, NULL));
    ck_assert(got.eps == c.eps && got.weight_decay == c.weight_decay);
    clg_checkpoint_info_free(info);
    clg_assert_ok(clg_checkpoint_load(ctx, path, opt));
    clg_context_free(ctx);
}
END_TEST

/* Files whose clgrad entries are wrong are format errors naming the entry. */
START_TEST(test_meta_malformed) {
    static const float w[2] = {1, 2};
    const clg_st_tensor t = {"w", CLG_ST_DTYPE_F32, 1, (int64_t[]){2}, w};
    const struct {
        clg_st_meta meta[3];
        size_t n;
        const char *expect;
    } cases[] = {
        {{{"clgrad.format", "clgrad checkpoint v9"}}, 1, "unsupported checkpoint format"},
        {{{"clgrad.rng_offset", "-3"}}, 1, "clgrad.rng_offset = \"-3\" is not a counter"},
        {{{"clgrad.optimizer", "lamb"}}, 1, "\"lamb\" is not an optimizer"},
        {{{"clgrad.optimizer", "adam"}, {"clgrad.optimizer.lr", "fast"}},
         2,
         "clgrad.optimizer.lr = \"fast\" is not a valid finite number"},
        {{{"clgrad.optimizer", "adam"}, {"clgrad.optimizer.lr", "0.001"}},
         2,
         "holds 1 of the 15 hyper-parameters of optimizer group 0"},
        {{{"clgrad.optimizer_steps", "4"}}, 1, "optimizer entries but no clgrad.optimizer"},
        {{{"clgrad.epoch", "4"}}, 1, "unknown metadata entry \"clgrad.epoch\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        const char *path = tmp_path("malformed.safetensors");
        clg_assert_ok(clg_safetensors_save(path, &t, 1, cases[i].meta, cases[i].n));
        clg_checkpoint_info *info = (clg_checkpoint_info *)1;
        ck_assert_int_eq(clg_checkpoint_info_read(path, &info), CLG_ERR_FORMAT);
        ck_assert_ptr_null(info);
        ck_assert_msg(strstr(clg_last_error(), cases[i].expect) && strstr(clg_last_error(), path),
                      "case %zu: %s", i, clg_last_error());
    }
}
END_TEST

static int write_fixture(const char *path) {
    clg_context *ctx = NULL;
    clg_optimizer *opt;
    clg_status st = clg_context_create(NULL, &ctx);
    if (st == CLG_OK) st = formula_model(ctx, &opt);
    if (st == CLG_OK) st = clg_checkpoint_save(ctx, path, opt);
    if (st != CLG_OK) fprintf(stderr, "%s: %s\n", clg_status_name(st), clg_last_error());
    clg_context_free(ctx);
    return st == CLG_OK ? 0 : 1;
}

static Suite *checkpoint_suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("device");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_atomic_save);
    tcase_add_test(tc, test_mismatch);
    tcase_add_test(tc, test_resume_exact);
    tcase_add_test(tc, test_torch_fixture);
    tcase_add_test(tc, test_clgrad_fixture);
    tcase_add_test(tc, test_meta_and_config);
    tcase_add_test(tc, test_meta_malformed);
    tcase_add_test(tc, test_meta_subnormal_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-fixture") == 0) return write_fixture(argv[2]);
    return clg_test_run(checkpoint_suite());
}
