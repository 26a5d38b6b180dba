/* Shared by the libFuzzer harnesses: a scratch folder for the parsers that read files, and the
 * one way a harness reports a broken invariant (abort, which libFuzzer records as a crash with
 * the input that caused it). Every error status of the code under test is a normal outcome. */
#ifndef CLG_FUZZ_H
#define CLG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libFuzzer's entry points (defined by each harness). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: broken invariant: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A private folder under $TMPDIR (else /tmp), removed at exit with the files named through
 * fuzz_path. One per process: each harness runs its inputs one at a time. */
static char fuzz_dir[512];
static char fuzz_names[4][640];
static int fuzz_n_names;

static inline void fuzz_cleanup(void) {
    for (int i = 0; i < fuzz_n_names; ++i)
        remove(fuzz_names[i]);
    if (fuzz_dir[0]) rmdir(fuzz_dir);
}

/* The path of scratch file `name` (at most four names per harness). */
static inline const char *fuzz_path(const char *name) {
    if (!fuzz_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/clgrad-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fuzz_dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    for (int i = 0; i < fuzz_n_names; ++i)
        if (strcmp(strrchr(fuzz_names[i], '/') + 1, name) == 0) return fuzz_names[i];
    if (fuzz_n_names == 4) abort();
    snprintf(fuzz_names[fuzz_n_names], sizeof fuzz_names[0], "%s/%s", fuzz_dir, name);
    return fuzz_names[fuzz_n_names++];
}

/* Replace scratch file `name` with data[0, size); returns its path. */
static inline const char *fuzz_write_file(const char *name, const void *data, size_t size) {
    const char *path = fuzz_path(name);
    /* A new file rather than a truncated one: ext4 flushes a truncated and rewritten file to
     * disk on close (auto_da_alloc), which would make every run wait for the disk. */
    remove(path);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: writing a scratch file");
        abort();
    }
    return path;
}

/* The whole of file path, malloc'ed (a scratch file this harness wrote). */
static inline unsigned char *fuzz_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) abort();
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    *size = n;
    return buf;
}

#endif
