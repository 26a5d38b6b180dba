/* Scratch files for host tests: a private folder per test (made by the fixture, removed with
 * everything in it afterwards), files written plain or gzip-compressed, files read back, and
 * IDX images built byte by byte. */
#ifndef CLG_TESTS_SCRATCH_H
#define CLG_TESTS_SCRATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Checked-fixture pair: a fresh folder under /tmp, then its removal with its contents. */
void clg_scratch_setup(void);
void clg_scratch_teardown(void);
/* The folder, and a path in it (the result lives until 15 more calls). */
const char *clg_scratch_dir(void);
const char *clg_scratch_path(const char *name);
/* Write size bytes to the folder's file name (gzip-compressed if gz); returns its path. */
const char *clg_scratch_write(const char *name, const void *data, size_t size, bool gz);
/* A file's whole content (malloc'ed, one spare byte; free() it). */
unsigned char *clg_scratch_read(const char *path, size_t *size);

/* An IDX image into out: header (type, ndim, big-endian dims) then payload; its size. */
size_t clg_scratch_idx(unsigned char *out, int type, int ndim, const uint32_t *dims,
                       const void *payload, size_t payload_size);

#endif
