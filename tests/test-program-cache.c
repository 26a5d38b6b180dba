/* The program cache: in-memory hits, disk misses and hits, corrupt and truncated entries
 * (silent misses that get rewritten), foreign entries, the "off" switch, and build failures
 * that name the program and carry the build log. Each check makes fresh contexts, since the
 * disk cache is read at context creation. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/program.h"
#include "harness.h"

static const char *SOURCE = "__kernel void twice(__global float *x) {\n"
                            "    x[get_global_id(0)] *= 2.0f;\n"
                            "}\n";

static char dir[256];

static void remove_dir(void) {
    if (!dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    dir[0] = '\0';
}

static void fresh_dir(void) {
    remove_dir();
    snprintf(dir, sizeof dir, "/tmp/clgrad-cache-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("CLGRAD_CACHE_DIR", dir, 1);
    /* exercise the binary cache on every platform, pocl included */
    setenv("CLGRAD_CACHE_BINARIES", "1", 1);
}

/* The one entry file in dir, or "" if there are none. */
static int entries(char *path, size_t size) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".bin") && !strstr(e->d_name, ".tmp")) {
            n++;
            if (path) snprintf(path, size, "%s/%s", dir, e->d_name);
        }
    closedir(d);
    return n;
}

static clg_program_stats build_once(const char *source) {
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    cl_program p;
    clg_assert_ok(clg_program_get(ctx, "cache test", source, strlen(source), NULL, &p));
    /* the program works: run it */
    cl_int err;
    cl_kernel k = clCreateKernel(p, "twice", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float v[4] = {1, 2, 3, 4};
    cl_mem m = clCreateBuffer(ctx->cl, CL_MEM_COPY_HOST_PTR, sizeof v, v, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    clSetKernelArg(k, 0, sizeof m, &m);
    size_t global = 4;
    ck_assert_int_eq(clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL),
                     CL_SUCCESS);
    ck_assert_int_eq(clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, 0, sizeof v, v, 0, NULL, NULL),
                     CL_SUCCESS);
    ck_assert(v[0] == 2 && v[3] == 8);
    clReleaseMemObject(m);
    clReleaseKernel(k);
    clg_program_stats s = clg_program_cache_stats(ctx);
    clg_context_free(ctx);
    return s;
}

START_TEST(miss_then_hit) {
    fresh_dir();
    clg_program_stats s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_misses, 1);
    ck_assert_uint_eq(s.disk_writes, 1);
    ck_assert_int_eq(entries(NULL, 0), 1);
    s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_hits, 1);
    ck_assert_uint_eq(s.disk_misses, 0);
}
END_TEST

START_TEST(memory_hit) {
    fresh_dir();
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    cl_program a, b;
    clg_assert_ok(clg_program_get(ctx, "a", SOURCE, strlen(SOURCE), NULL, &a));
    clg_assert_ok(clg_program_get(ctx, "b", SOURCE, strlen(SOURCE), NULL, &b));
    ck_assert_ptr_eq(a, b);
    ck_assert_uint_eq(clg_program_cache_stats(ctx).memory_hits, 1);
    /* other build options are another program */
    clg_assert_ok(clg_program_get(ctx, "c", SOURCE, strlen(SOURCE), "-DUNUSED=1", &b));
    ck_assert_ptr_ne(a, b);
    clg_context_free(ctx);
}
END_TEST

static void damage(const char *how) {
    char path[512];
    ck_assert_int_eq(entries(path, sizeof path), 1);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    if (strcmp(how, "truncate") == 0) {
        ck_assert_int_eq(truncate(path, st.st_size / 2), 0);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        for (long i = 0; i < st.st_size; ++i) fputc((int)(i * 7919 % 251), f);
        fclose(f);
    }
}

START_TEST(truncated_entry_is_a_silent_miss) {
    fresh_dir();
    build_once(SOURCE);
    damage("truncate");
    clg_program_stats s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_hits, 0);
    ck_assert_uint_eq(s.disk_misses, 1);
    ck_assert_uint_eq(s.disk_writes, 1); /* rewritten */
    s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_hits, 1);
}
END_TEST

START_TEST(garbage_entry_is_a_silent_miss) {
    fresh_dir();
    build_once(SOURCE);
    damage("garbage");
    clg_program_stats s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_hits, 0);
    ck_assert_uint_eq(s.disk_misses, 1);
    s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_hits, 1);
}
END_TEST

START_TEST(foreign_entry_is_a_miss) {
    /* An entry of another source copied to this source's file name: its stored key differs. */
    fresh_dir();
    const char *other = "__kernel void twice(__global float *x) { x[get_global_id(0)] += x[get_global_id(0)]; }\n";
    build_once(other);
    char other_path[512];
    ck_assert_int_eq(entries(other_path, sizeof other_path), 1);
    build_once(SOURCE);
    ck_assert_int_eq(entries(NULL, 0), 2);
    /* overwrite SOURCE's entry with other's bytes */
    DIR *d = opendir(dir);
    struct dirent *e;
    char target[512] = "";
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".bin")) {
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (strcmp(p, other_path) != 0) snprintf(target, sizeof target, "%s", p);
        }
    closedir(d);
    ck_assert(target[0]);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", other_path, target);
    ck_assert_int_eq(system(cmd), 0);
    clg_program_stats s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_hits, 0);
    ck_assert_uint_eq(s.disk_misses, 1);
}
END_TEST

START_TEST(off_switch) {
    fresh_dir();
    setenv("CLGRAD_CACHE_DIR", "off", 1);
    clg_program_stats s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_writes, 0);
    ck_assert_uint_eq(s.disk_hits, 0);
    ck_assert_int_eq(entries(NULL, 0), 0);
}
END_TEST

START_TEST(build_failure_names_program_and_log) {
    fresh_dir();
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    const char *bad = "__kernel void broken(__global float *x) { x[0] = undefined_name; }\n";
    cl_program p;
    clg_status st = clg_program_get(ctx, "deliberately broken", bad, strlen(bad), NULL, &p);
    ck_assert_int_eq(st, CLG_ERR_BUILD);
    ck_assert_msg(strstr(clg_last_error(), "deliberately broken"), "%s", clg_last_error());
    ck_assert_msg(strstr(clg_last_error(), "undefined_name"), "no build log in: %s",
                  clg_last_error());
    clg_context_free(ctx);
}
END_TEST

int main(void) {
    atexit(remove_dir);
    Suite *s = suite_create("program-cache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, miss_then_hit);
    tcase_add_test(tc, memory_hit);
    tcase_add_test(tc, truncated_entry_is_a_silent_miss);
    tcase_add_test(tc, garbage_entry_is_a_silent_miss);
    tcase_add_test(tc, foreign_entry_is_a_miss);
    tcase_add_test(tc, off_switch);
    tcase_add_test(tc, build_failure_names_program_and_log);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
