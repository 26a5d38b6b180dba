/* Every OpenCL program build goes through here: build options for the device, build logs in
 * error messages, an in-memory cache per context and an on-disk binary cache
 * ($XDG_CACHE_HOME/clgrad, CLGRAD_CACHE_DIR overrides, "off" disables). */
#ifndef CLG_CORE_PROGRAM_H
#define CLG_CORE_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>

#include <CL/cl.h>

#include "core/context.h"

/* clgrad's cache folder (CLGRAD_CACHE_DIR, else $XDG_CACHE_HOME/clgrad, else
 * ~/.cache/clgrad), created if needed; false when it is off or unusable (cannot be created,
 * not a directory, not writable), which is said once per process and problem on stderr. */
bool clg_cache_dir(char *out, size_t size);

/* Set up / tear down ctx->programs. */
clg_status clg_program_cache_init(clg_context *ctx);
void clg_program_cache_free(clg_context *ctx);

/* A built program for source (length bytes) with extra build options (may be NULL).
 * name is for messages and logs ("random", "plan 3"). The program is owned by the context's
 * cache; do not release it. On a build failure: CLG_ERR_BUILD, message with name and log. */
clg_status clg_program_get(clg_context *ctx, const char *name, const char *source,
                           size_t length, const char *options, cl_program *program);

/* The program of kernel family cl/<family>.cl (built on first use). */
clg_status clg_program_family(clg_context *ctx, const char *family, cl_program *program);

/* A new kernel object from family cl/<family>.cl (caller releases it). */
clg_status clg_kernel_new(clg_context *ctx, const char *family, const char *kernel,
                          cl_kernel *out);

/* Parse the bytes of a disk-cache entry (host only; the fuzz harness calls it too): true when
 * data holds exactly one well-formed entry for key (magic, key length and text, binary length,
 * binary, checksum, nothing after), the binary being data[*binary_offset ..] of *binary_size
 * bytes. Never reads outside data[0 .. size); false on anything else, NULL data included. */
bool clg_program_entry_decode(const unsigned char *data, size_t size, const char *key,
                              size_t *binary_offset, size_t *binary_size);

/* Statistics for tests and CLGRAD_LOG. */
typedef struct clg_program_stats {
    unsigned memory_hits;
    unsigned disk_hits;
    unsigned disk_misses; /* built from source (includes corrupt entries) */
    unsigned disk_writes;
} clg_program_stats;
clg_program_stats clg_program_cache_stats(const clg_context *ctx);

#endif
