/* Shared by the tests that drive the character language-model examples (test-char-lm,
 * test-gpt-char) as a user would: a slice of Tiny Shakespeare in a temporary folder, the
 * bound H(next | current) of its validation split, and running the example with its output
 * captured. The test process itself never touches OpenCL. */
#ifndef CLG_TEST_TEXT_SLICE_H
#define CLG_TEST_TEXT_SLICE_H

#include <stddef.h>

/* The folder (mkdtemp of /tmp/clgrad-<tag>-XXXXXX) with "slice.txt": the first size bytes of
 * Tiny Shakespeare. Returns H(next | current) in nats of the slice's validation split (the
 * examples' last 10 %): the lowest mean cross-entropy a model predicting each character from
 * that character alone can reach there (the pairs' own conditional frequencies minimise it). */
double text_slice_setup(const char *tag, size_t size);
/* Remove the folder. */
void text_slice_teardown(void);
/* A path in the folder (one of 16 static buffers, reused in turn). */
const char *text_slice_path(const char *name);
/* Run example with the NULL-terminated flags, stdout into out and stderr into err (NULL: into
 * out too); its exit status. */
int text_slice_run(const char *example, const char *out, const char *err, ...);
/* A file's first 64 KiB as a string (one static buffer). */
char *text_slice_read(const char *path);
/* The number after the last "\nvalidation loss " of an example's output. */
double text_slice_validation_loss(const char *output);

#endif
