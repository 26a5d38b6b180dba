/* Scratch files for host tests (scratch.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "scratch.h"

static char dir[256];

void clg_scratch_setup(void) {
    snprintf(dir, sizeof dir, "/tmp/clgrad-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

void clg_scratch_teardown(void) {
    if (!dir[0]) return;
    /* depth first, not following symbolic links: a test's planted link goes, its target stays */
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove all of %s\n", dir);
    dir[0] = '\0';
}

const char *clg_scratch_dir(void) {
    return dir;
}

const char *clg_scratch_path(const char *name) {
    static char paths[16][320];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

const char *clg_scratch_write(const char *name, const void *data, size_t size, bool gz) {
    const char *path = clg_scratch_path(name);
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

unsigned char *clg_scratch_read(const char *path, size_t *size) {
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

size_t clg_scratch_idx(unsigned char *out, int type, int ndim, const uint32_t *dims,
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
