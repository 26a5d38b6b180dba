/* The program cache: in-memory hits, disk misses and hits, corrupt and truncated entries
 * (silent misses that get rewritten), foreign entries, the "off" switch, an unusable cache
 * folder (said on stderr), entries written without following planted symlinks, the entry
 * parser, and build failures that name the program and carry the build log. Each check makes
 * fresh contexts, since the disk cache is read at context creation. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/program.h"
#include "gemm/gemm.h"
#include "gemm/gemm_internal.h"
#include "harness.h"
#include "core/atomic_file.h"

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

/* The number of entry files in dir; path gets the last one's. */
static int entries(char *path, size_t size) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".bin") && !strstr(e->d_name, CLG_ATOMIC_TMP_TAG)) {
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

/* ---- An unusable cache folder ---- */

/* The whole file, NUL-terminated, with 16 spare bytes after it. */
static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc((size_t)n + 16, 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (size) *size = (size_t)n;
    return b;
}

static int occurrences(const char *text, const char *what) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* stderr goes to a file between the two calls; the second returns what was printed. */
static int saved_stderr = -1;
static char capture_path[300];

static void capture_begin(void) {
    snprintf(capture_path, sizeof capture_path, "%s/stderr.txt", dir);
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, 2), 2);
    close(fd);
}

static char *capture_end(void) {
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    char *text = read_file(capture_path, NULL);
    fprintf(stderr, "%s", text); /* the log keeps it */
    return text;
}

START_TEST(cache_dir_not_a_directory_is_said) {
    fresh_dir();
    char file[300];
    snprintf(file, sizeof file, "%s/not-a-dir", dir);
    FILE *f = fopen(file, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("a file", f);
    fclose(f);
    setenv("CLGRAD_CACHE_DIR", file, 1);
    capture_begin();
    clg_program_stats s1 = build_once(SOURCE);
    clg_program_stats s2 = build_once(SOURCE);
    char *text = capture_end();
    char want[600];
    snprintf(want, sizeof want,
             "clgrad: CLGRAD_CACHE_DIR=%s is not a directory (a regular file); the program "
             "cache is off\n",
             file);
    ck_assert_msg(occurrences(text, want) == 1, "want \"%s\" once on stderr, got:\n%s", want,
                  text);
    free(text);
    ck_assert_uint_eq(s1.disk_writes + s2.disk_writes, 0);
    ck_assert_uint_eq(s2.disk_hits, 0);
    char *content = read_file(file, NULL);
    ck_assert_str_eq(content, "a file");
    free(content);
}
END_TEST

/* A folder this process may not write to: as root that takes another user, so a child drops
 * to nobody (it only asks clg_cache_dir, no OpenCL, which does not survive fork). */
START_TEST(cache_dir_not_writable_is_said) {
    fresh_dir();
    ck_assert_int_eq(chmod(dir, 0755), 0);
    char ro[300];
    snprintf(ro, sizeof ro, "%s/read-only", dir);
    ck_assert_int_eq(mkdir(ro, 0555), 0);
    chmod(ro, 0555); /* whatever the umask */
    setenv("CLGRAD_CACHE_DIR", ro, 1);
    capture_begin();
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(77);
        char out[4096];
        bool a = clg_cache_dir(out, sizeof out), b = clg_cache_dir(out, sizeof out);
        _exit(a || b ? 1 : 0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    char *text = capture_end();
    ck_assert(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        printf("cache_dir_not_writable_is_said: skipped: running as root, and setuid(65534) to "
               "drop it failed\n");
        free(text);
        return;
    }
    ck_assert_msg(WEXITSTATUS(status) == 0, "clg_cache_dir accepted read-only %s", ro);
    char want[600];
    snprintf(want, sizeof want, "clgrad: CLGRAD_CACHE_DIR=%s is not writable: ", ro);
    ck_assert_msg(occurrences(text, want) == 1, "want \"%s...\" once on stderr, got:\n%s", want,
                  text);
    ck_assert_msg(strstr(text, "the program cache is off\n"), "%s", text);
    free(text);
}
END_TEST

/* ---- Writing entries safely ---- */

START_TEST(entry_write_never_follows_a_planted_symlink) {
    fresh_dir();
    build_once(SOURCE);
    char entry[512];
    ck_assert_int_eq(entries(entry, sizeof entry), 1);
    ck_assert_int_eq(unlink(entry), 0);
    /* the name the old code wrote through, and guessable names of the new scheme */
    char victim[300], planted[3][600];
    snprintf(victim, sizeof victim, "%s/victim.txt", dir);
    FILE *f = fopen(victim, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("VICTIM", f);
    fclose(f);
    snprintf(planted[0], sizeof planted[0], "%s.tmp.%ld", entry, (long)getpid());
    snprintf(planted[1], sizeof planted[1], "%s" CLG_ATOMIC_TMP_TAG "%ld.0000000000000000",
             entry, (long)getpid());
    snprintf(planted[2], sizeof planted[2], "%s" CLG_ATOMIC_TMP_TAG "%ld.ffffffffffffffff",
             entry, (long)getpid());
    for (int i = 0; i < 3; ++i)
        ck_assert_int_eq(symlink(victim, planted[i]), 0);
    clg_program_stats s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_writes, 1);
    char *content = read_file(victim, NULL);
    ck_assert_msg(strcmp(content, "VICTIM") == 0, "the entry was written through a symlink");
    free(content);
    struct stat sb;
    ck_assert_int_eq(lstat(entry, &sb), 0);
    ck_assert_msg(S_ISREG(sb.st_mode), "%s is not a regular file", entry);
    for (int i = 0; i < 3; ++i)
        ck_assert(lstat(planted[i], &sb) == 0 && S_ISLNK(sb.st_mode));
    s = build_once(SOURCE);
    ck_assert_uint_eq(s.disk_hits, 1);
}
END_TEST

/* The GEMM backend choices share the cache folder: a link planted at their file is refused,
 * not appended through (the choice is still used in this process). */
START_TEST(gemm_choices_never_follow_a_planted_symlink) {
    fresh_dir();
    char victim[300];
    snprintf(victim, sizeof victim, "%s/victim.txt", dir);
    FILE *f = fopen(victim, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("VICTIM", f);
    fclose(f);
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    const char *choices = clg_gemm_choices_path(ctx);
    ck_assert_msg(choices[0], "no choices file in the cache folder");
    ck_assert_int_eq(symlink(victim, choices), 0);
    clg_assert_ok(clg_gemm_record_choice(ctx, "test-shape", "cpu", 1.0, 2.0));
    ck_assert_str_eq(clg_gemm_find_choice(ctx, "test-shape"), "cpu");
    char *content = read_file(victim, NULL);
    ck_assert_msg(strcmp(content, "VICTIM") == 0, "the choice was appended through a symlink");
    free(content);
    /* with the link gone, the file is created and holds the choice */
    ck_assert_int_eq(unlink(choices), 0);
    clg_assert_ok(clg_gemm_record_choice(ctx, "test-shape-2", "clblast", 1.0, 2.0));
    content = read_file(choices, NULL);
    ck_assert_msg(strstr(content, "test-shape-2 clblast"), "%s", content);
    free(content);
    clg_context_free(ctx);
}
END_TEST

/* ---- The entry parser ---- */

START_TEST(entry_decode_accepts_only_the_exact_entry) {
    fresh_dir();
    build_once(SOURCE);
    char entry[512];
    ck_assert_int_eq(entries(entry, sizeof entry), 1);
    size_t size;
    unsigned char *data = (unsigned char *)read_file(entry, &size);
    /* the key is stored after the magic and its u32 length */
    uint32_t key_len;
    ck_assert_uint_gt(size, 12);
    memcpy(&key_len, data + 8, 4);
    ck_assert_uint_lt(key_len, size);
    char *key = malloc(key_len + 2);
    memcpy(key, data + 12, key_len);
    key[key_len] = '\0';

    size_t off = 0, len = 0;
    ck_assert(clg_program_entry_decode(data, size, key, &off, &len));
    ck_assert_uint_eq(off, 12 + key_len + 8);
    ck_assert_uint_eq(off + len + 8, size);
    size_t o2, l2; /* outputs of the calls that must fail */
    /* every cut; a flipped byte anywhere in the fields and the checksum, and at 64 places in
     * the binary (each try checksums all of it); trailing bytes, another key, no data */
    for (size_t cut = 0; cut < size; ++cut)
        ck_assert_msg(!clg_program_entry_decode(data, cut, key, &o2, &l2), "cut %zu", cut);
    /* cuts again at the end of an allocation of their exact size, where a sanitizer build
     * sees any read past them: the fields, some of the binary, the checksum */
    unsigned char *exact = malloc(size);
    for (size_t cut = 0; cut < size; cut += cut < off + 16 || cut + 16 > size ? 1 : 997) {
        memcpy(exact + size - cut, data, cut);
        ck_assert(!clg_program_entry_decode(exact + size - cut, cut, key, &o2, &l2));
    }
    free(exact);
    size_t step = len / 64 ? len / 64 : 1;
    for (size_t i = 0; i < size; i += i < off || i >= off + len ? 1 : step) {
        data[i] ^= 0x5A;
        ck_assert_msg(!clg_program_entry_decode(data, size, key, &o2, &l2), "byte %zu", i);
        data[i] ^= 0x5A;
    }
    data[size] = 0;
    ck_assert(!clg_program_entry_decode(data, size + 1, key, &o2, &l2));
    key[key_len - 1] ^= 1;
    ck_assert(!clg_program_entry_decode(data, size, key, &o2, &l2));
    key[key_len - 1] ^= 1;
    ck_assert(!clg_program_entry_decode(NULL, 0, key, &o2, &l2));
    ck_assert(!clg_program_entry_decode(data, size, NULL, &o2, &l2));
    /* a binary length larger than what follows, and one that wraps a size_t */
    uint64_t huge[] = {size, UINT64_MAX, UINT64_MAX - 7};
    for (int i = 0; i < 3; ++i) {
        uint64_t saved;
        memcpy(&saved, data + 12 + key_len, 8);
        memcpy(data + 12 + key_len, &huge[i], 8);
        ck_assert(!clg_program_entry_decode(data, size, key, &o2, &l2));
        memcpy(data + 12 + key_len, &saved, 8);
    }
    ck_assert(clg_program_entry_decode(data, size, key, &off, &len));
    free(key);
    free(data);
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
    tcase_add_test(tc, cache_dir_not_a_directory_is_said);
    tcase_add_test(tc, cache_dir_not_writable_is_said);
    tcase_add_test(tc, entry_write_never_follows_a_planted_symlink);
    tcase_add_test(tc, gemm_choices_never_follow_a_planted_symlink);
    tcase_add_test(tc, entry_decode_accepts_only_the_exact_entry);
    tcase_add_test(tc, build_failure_names_program_and_log);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
