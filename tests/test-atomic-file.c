/* Atomic file replacement under hostile and violent conditions: symlinks planted at every name
 * a temporary could take (a save never writes through one), the mode of the result, and
 * writers killed with SIGKILL in the middle of saving a checkpoint-sized safetensors file (the
 * file always loads as one of the saved versions; the dead writer's temporary is swept by the
 * next save, and a live writer's never is). Host only: forked children touch no OpenCL. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "core/atomic_file.h"
#include "io/safetensors.h"

/* ---- Scratch files ---- */

static char tmpdir[256];

static void setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clgrad-test-atomic-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Removes dir and everything under it, never following a symlink. */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* A child that lives until killed; teardown ends it if a failed check left it running (it
 * would hold the test's output open, and meson would wait for it). */
static pid_t live_pid;

static void end_child(pid_t pid) {
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    if (pid == live_pid) live_pid = 0;
}

static void teardown(void) {
    if (live_pid) end_child(live_pid);
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
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, size, f), size);
    ck_assert_int_eq(fclose(f), 0);
}

/* The whole file, or NULL if it cannot be read. */
static unsigned char *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void expect_content(const char *path, const void *want, size_t want_size) {
    size_t size;
    unsigned char *b = read_bytes(path, &size);
    ck_assert_msg(b != NULL, "cannot read %s", path);
    ck_assert_msg(size == want_size && memcmp(b, want, size) == 0,
                  "%s: %zu bytes, not the %zu expected (or other bytes)", path, size, want_size);
    free(b);
}

/* Entries of dir named "<base>.<anything>": in a private folder holding one target, those can
 * only be temporaries, whatever their naming scheme. */
static int count_temporaries(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = strlen(base);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, base, n) == 0 && e->d_name[n] == '.') count++;
    closedir(d);
    return count;
}

/* ---- Planted symlinks ---- */

/* Symlinks at every name the temporary of path could be guessed to take: the old scheme's
 * "<path>.tmp.<pid>" and the new scheme's prefix with easy suffixes. */
static int plant_symlinks(const char *path, const char *victim, char names[][600], int max) {
    static const char *const suffixes[] = {"0000000000000000", "ffffffffffffffff",
                                           "0123456789abcdef"};
    int n = 0;
    snprintf(names[n++], 600, "%s.tmp.%ld", path, (long)getpid());
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes && n < max; ++i)
        snprintf(names[n++], 600, "%s" CLG_ATOMIC_TMP_TAG "%ld.%s", path, (long)getpid(),
                 suffixes[i]);
    for (int i = 0; i < n; ++i)
        ck_assert_msg(symlink(victim, names[i]) == 0, "symlink %s: %s", names[i],
                      strerror(errno));
    return n;
}

static void expect_symlinks_intact(char names[][600], int n, const char *victim) {
    for (int i = 0; i < n; ++i) {
        struct stat sb;
        ck_assert_msg(lstat(names[i], &sb) == 0 && S_ISLNK(sb.st_mode),
                      "%s is no longer the planted symlink", names[i]);
        char target[600];
        ssize_t len = readlink(names[i], target, sizeof target - 1);
        ck_assert_int_gt(len, 0);
        target[len] = '\0';
        ck_assert_str_eq(target, victim);
    }
}

START_TEST(never_writes_through_a_symlink) {
    const char *outside = tmp_path("outside");
    ck_assert_int_eq(mkdir(outside, 0700), 0);
    char victim[600], victim2[600];
    snprintf(victim, sizeof victim, "%s/victim", outside);
    snprintf(victim2, sizeof victim2, "%s/victim2", outside);
    write_bytes(victim, "VICTIM", 6);
    write_bytes(victim2, "VICTIM2", 7);

    /* 300 KB: more than one stdio buffer, so a write through a link would really happen */
    size_t size = 300000;
    unsigned char *data = malloc(size);
    for (size_t i = 0; i < size; ++i)
        data[i] = (unsigned char)(i * 2654435761u >> 13);

    /* umask 0 shows the mode asked for (0644; a plain fopen gives 0666), 027 that the umask
     * applies to it. */
    static const mode_t masks[] = {0, 027};
    for (size_t m = 0; m < 2; ++m) {
        char name[64];
        snprintf(name, sizeof name, "model-%zu.safetensors", m);
        const char *path = tmp_path(name);
        char planted[8][600];
        int n = plant_symlinks(path, victim, planted, 8);
        mode_t old_mask = umask(masks[m]);
        clg_status st = clg_atomic_write(path, data, size);
        umask(old_mask);
        clg_assert_ok(st);
        expect_content(victim, "VICTIM", 6);
        expect_symlinks_intact(planted, n, victim);
        struct stat sb;
        ck_assert_int_eq(lstat(path, &sb), 0);
        ck_assert_msg(S_ISREG(sb.st_mode), "%s is not a regular file", path);
        ck_assert_msg((sb.st_mode & 07777) == (0644 & ~masks[m]),
                      "%s has mode %04o, want %04o (umask %03o)", path,
                      (unsigned)(sb.st_mode & 07777), (unsigned)(0644 & ~masks[m]),
                      (unsigned)masks[m]);
        expect_content(path, data, size);
        /* only the planted links remain next to the target: no temporary of ours */
        ck_assert_int_eq(count_temporaries(tmpdir, name), n);
    }

    /* A safetensors save, and a target that is itself a symlink: the link is replaced by the
     * new file, its target untouched. */
    const char *path = tmp_path("linked.safetensors");
    ck_assert_int_eq(symlink(victim2, path), 0);
    char planted[8][600];
    int n = plant_symlinks(path, victim, planted, 8);
    const int64_t shape[] = {(int64_t)(size / 4)};
    const clg_st_tensor t[] = {{"w", CLG_ST_DTYPE_F32, 1, shape, data}};
    clg_assert_ok(clg_safetensors_save(path, t, 1, NULL, 0));
    expect_content(victim, "VICTIM", 6);
    expect_content(victim2, "VICTIM2", 7);
    expect_symlinks_intact(planted, n, victim);
    struct stat sb;
    ck_assert_int_eq(lstat(path, &sb), 0);
    ck_assert(S_ISREG(sb.st_mode));
    clg_safetensors *st;
    clg_assert_ok(clg_safetensors_load(path, &st));
    const clg_st_view *w = clg_safetensors_find(st, "w");
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->nbytes, size);
    ck_assert_mem_eq(w->data, data, size);
    clg_safetensors_free(st);
    free(data);
}
END_TEST

START_TEST(temporaries_are_private) {
    /* Two saves of one path at once (two threads' worth) get different temporaries, and each
     * abort removes only its own. */
    const char *path = tmp_path("shared.bin");
    clg_atomic_file *a, *b;
    clg_assert_ok(clg_atomic_file_open(path, &a));
    clg_assert_ok(clg_atomic_file_open(path, &b));
    clg_assert_ok(clg_atomic_file_write(a, "A", 1));
    clg_assert_ok(clg_atomic_file_write(b, "B", 1));
    ck_assert_int_eq(count_temporaries(tmpdir, "shared.bin"), 2);
    clg_atomic_file_abort(a);
    ck_assert_int_eq(count_temporaries(tmpdir, "shared.bin"), 1);
    clg_assert_ok(clg_atomic_file_commit(b));
    ck_assert_int_eq(count_temporaries(tmpdir, "shared.bin"), 0);
    expect_content(path, "B", 1);
}
END_TEST

/* ---- Stale temporaries ---- */

/* The pid of a process that has exited and been reaped. */
static pid_t dead_pid(void) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) _exit(0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return pid;
}

static pid_t live_child(void) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    live_pid = pid;
    return pid;
}

static bool exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

START_TEST(stale_temporaries_of_dead_writers_are_swept) {
    const char *path = tmp_path("ckpt.safetensors");
    const char *victim = tmp_path("victim");
    write_bytes(victim, "VICTIM", 6);
    pid_t dead = dead_pid(), live = live_child();
    char stale[600], alive[600], other[600], link[600], dir[600], odd[600], init[600];
    snprintf(stale, sizeof stale, "%s" CLG_ATOMIC_TMP_TAG "%ld.0123456789abcdef", path,
             (long)dead);
    snprintf(alive, sizeof alive, "%s" CLG_ATOMIC_TMP_TAG "%ld.0123456789abcdef", path,
             (long)live);
    /* another target's, a symlink, a folder, a name off the pattern, pid 1 */
    snprintf(other, sizeof other, "%s/other" CLG_ATOMIC_TMP_TAG "%ld.0123456789abcdef", tmpdir,
             (long)dead);
    snprintf(link, sizeof link, "%s" CLG_ATOMIC_TMP_TAG "%ld.fedcba9876543210", path,
             (long)dead);
    snprintf(dir, sizeof dir, "%s" CLG_ATOMIC_TMP_TAG "%ld.aaaaaaaaaaaaaaaa", path, (long)dead);
    snprintf(odd, sizeof odd, "%s" CLG_ATOMIC_TMP_TAG "%ld.0123456789abcdeg", path, (long)dead);
    snprintf(init, sizeof init, "%s" CLG_ATOMIC_TMP_TAG "1.0123456789abcdef", path);
    write_bytes(stale, "half a checkpoint", 17);
    write_bytes(alive, "being written", 13);
    write_bytes(other, "someone else's", 14);
    ck_assert_int_eq(symlink(victim, link), 0);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    write_bytes(odd, "odd", 3);
    write_bytes(init, "init", 4);

    clg_assert_ok(clg_atomic_write(path, "NEW", 3));
    ck_assert_msg(!exists(stale), "the dead writer's temporary %s is still there", stale);
    ck_assert_msg(exists(alive), "a live writer's temporary was removed");
    ck_assert(exists(other) && exists(link) && exists(dir) && exists(odd) && exists(init));
    expect_content(victim, "VICTIM", 6);
    expect_content(path, "NEW", 3);

    /* once that writer is gone too, its temporary goes with the next save */
    end_child(live);
    clg_assert_ok(clg_atomic_write(path, "NEWER", 5));
    ck_assert_msg(!exists(alive), "%s outlived its writer", alive);
    ck_assert(exists(other) && exists(link) && exists(dir) && exists(odd) && exists(init));
    expect_content(victim, "VICTIM", 6);
}
END_TEST

/* ---- SIGKILL in the middle of saving ---- */

#define VERSIONS 3
#define WEIGHTS (1u << 20) /* 4 MB of f32 per version: checkpoint-sized */

typedef struct version {
    float *w;
    int64_t shape[1];
    char index[16];
    clg_st_tensor tensor;
    clg_st_meta meta;
    unsigned char *bytes; /* the file clg_safetensors_save writes for it */
    size_t size;
} version;

static clg_status save_version(const char *path, const version *v) {
    return clg_safetensors_save(path, &v->tensor, 1, &v->meta, 1);
}

static void make_versions(version *v) {
    for (int k = 0; k < VERSIONS; ++k) {
        v[k].w = malloc(WEIGHTS * sizeof(float));
        for (uint32_t i = 0; i < WEIGHTS; ++i)
            v[k].w[i] = (float)k * 1000.0f + (float)(i % 977);
        v[k].shape[0] = WEIGHTS;
        snprintf(v[k].index, sizeof v[k].index, "%d", k);
        v[k].tensor = (clg_st_tensor){"w", CLG_ST_DTYPE_F32, 1, v[k].shape, v[k].w};
        v[k].meta = (clg_st_meta){"version", v[k].index};
        void *bytes;
        clg_assert_ok(clg_safetensors_serialize(&v[k].tensor, 1, &v[k].meta, 1, &bytes,
                                                &v[k].size));
        v[k].bytes = bytes;
    }
}

/* The file on disk loads and is exactly one of the versions; returns which. */
static int check_file(const char *path, const version *v) {
    clg_safetensors *st;
    clg_status s = clg_safetensors_load(path, &st);
    ck_assert_msg(s == CLG_OK, "%s does not load after a kill: %s: %s", path,
                  clg_status_name(s), clg_last_error());
    clg_safetensors_free(st);
    size_t size;
    unsigned char *b = read_bytes(path, &size);
    ck_assert_ptr_nonnull(b);
    int which = -1;
    for (int k = 0; k < VERSIONS && which < 0; ++k)
        if (size == v[k].size && memcmp(b, v[k].bytes, size) == 0) which = k;
    free(b);
    ck_assert_msg(which >= 0, "%s (%zu bytes) is none of the saved versions", path, size);
    return which;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

START_TEST(sigkill_mid_save) {
    const char *path = tmp_path("ckpt.safetensors");
    version v[VERSIONS];
    make_versions(v);
    double t0 = now_s();
    clg_assert_ok(save_version(path, &v[0]));
    double save_s = now_s() - t0;

    /* Kills land anywhere in the first few saves of each child: delays up to three saves'
     * time, plus the child's start. */
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 11);
    int kills = 0, mid_write = 0, seen[VERSIONS] = {0};
    double t_start = now_s();
    while (kills < 20 || (mid_write < 3 && kills < 80)) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            /* each child starts one version further on, so every version reaches the disk */
            for (int i = kills + 1;; ++i)
                if (save_version(path, &v[i % VERSIONS]) != CLG_OK) _exit(3);
        }
        sleep_s(clg_test_uniform(&rng, 0.0f, 1.0f) * (3.0 * save_s + 0.002));
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "the saving child ended by itself (status %d): a save failed", status);
        kills++;
        seen[check_file(path, v)]++;
        int temps = count_temporaries(tmpdir, "ckpt.safetensors");
        ck_assert_msg(temps <= 1, "after kill %d: %d temporaries of %s (dead writers' pile up)",
                      kills, temps, path);
        mid_write += temps;
    }
    printf("sigkill_mid_save: %d kills in %.1f s (a save takes %.1f ms), %d inside a write; "
           "versions on disk: %d %d %d\n",
           kills, now_s() - t_start, 1e3 * save_s, mid_write, seen[0], seen[1], seen[2]);
    ck_assert_msg(mid_write > 0, "no kill landed inside a write: the test proved nothing");

    /* the next save (by anyone, here the parent) sweeps the dead writer's temporary */
    clg_assert_ok(save_version(path, &v[1]));
    ck_assert_int_eq(count_temporaries(tmpdir, "ckpt.safetensors"), 0);
    ck_assert_int_eq(check_file(path, v), 1);
    for (int k = 0; k < VERSIONS; ++k) {
        free(v[k].w);
        free(v[k].bytes);
    }
}
END_TEST

static Suite *atomic_suite(void) {
    Suite *s = suite_create("atomic-file");
    TCase *tc = tcase_create("atomic-file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, never_writes_through_a_symlink);
    tcase_add_test(tc, temporaries_are_private);
    tcase_add_test(tc, stale_temporaries_of_dead_writers_are_swept);
    tcase_add_test(tc, sigkill_mid_save);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return clg_test_run(atomic_suite());
}
