/* The context's full definition: device handles, queue, program cache, and the list of what
 * it owns (parameters, graphs, optimizers, GEMM state: each registers itself). */
#ifndef CLG_CORE_CONTEXT_H
#define CLG_CORE_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include <CL/cl.h>

#include "clgrad/context.h"
#include "core/owners.h"

typedef struct clg_program_cache clg_program_cache;
typedef struct clg_gemm_state clg_gemm_state;
typedef struct clg_param_table clg_param_table;

struct clg_context {
    clg_device_info info;
    cl_platform_id platform;
    cl_device_id device;
    cl_context cl;
    cl_command_queue queue; /* one in-order queue: every kernel of every plan goes here */
    bool profiling;         /* CLGRAD_PROFILE: queue records events */

    clg_program_cache *programs; /* in-memory and on-disk program cache (core/program.c) */
    /* Made on first use by the layers they belong to, and registered in owners: */
    clg_gemm_state *gemm;    /* GEMM dispatch state (gemm/gemm.c) */
    clg_param_table *params; /* parameters by creation order and by name (graph/param.c) */

    /* Everything made through the context, freed newest first by clg_context_free. */
    clg_owner_list owners;

    /* Random streams: every run of a plan with random ops draws from counter values starting
     * at rng_offset and advances it, so a checkpoint that saves it resumes exactly. */
    uint64_t rng_offset;

    /* Device bytes held through clg_buffer_create (core/memory.c), and the cap on them
     * (0: none; CLGRAD_MAX_DEVICE_BYTES sets it at creation). */
    size_t memory_used, memory_limit;
};

/* Whether kernels should give each work-item a long run of elements: on a CPU device (pocl,
 * llvmpipe) a work-item costs a few nanoseconds whatever it does and loops inside one
 * vectorise, so generated and hand-written kernels loop over runs (kept under the device's
 * loop_limit); elsewhere they keep one element or row per work-item. */
static inline bool clg_long_work_items(const clg_context *ctx) {
    return ctx->info.type == CLG_DEVICE_CPU;
}

/* Device buffers (core/memory.c). Every buffer clgrad makes is created here, counted against
 * the context's cap (CLG_ERR_OUT_OF_MEMORY naming `what` when it would go past), and released
 * with clg_buffer_release, which subtracts its size again. Errors name what it was for. */
clg_status clg_buffer_create(clg_context *ctx, size_t bytes, const char *what, cl_mem *out);
void clg_buffer_release(clg_context *ctx, cl_mem mem); /* NULL: no-op */
/* Whether bytes more fit under the cap; for callers that check a whole need up front. */
bool clg_memory_fits(const clg_context *ctx, size_t bytes);
/* Fail with CLG_ERR_OUT_OF_MEMORY: allocating `what` (bytes) would pass the cap. */
clg_status clg_memory_refuse(const clg_context *ctx, const char *what, size_t bytes);
/* CLGRAD_MAX_DEVICE_BYTES's grammar: bytes, optionally K/M/G/T (powers of 1024); NULL or ""
 * is 0 (no cap). A malformed value fails naming the variable. */
clg_status clg_memory_limit_parse(const char *text, size_t *bytes);
/* "N bytes", with MiB or GiB after it for large N; returns buf. */
const char *clg_bytes_str(size_t bytes, char *buf, size_t size);

/* Register an object the context owns (freed by clg_context_free, newest first, unless it
 * leaves first with clg_context_disown, as its own free function does). base: state the other
 * objects use until they are gone (parameters, GEMM state), freed after all of them. */
clg_status clg_context_own(clg_context *ctx, void *object, clg_free_fn free_fn, bool base);
void clg_context_disown(clg_context *ctx, void *object);

/* Append "Devices: ..." (or how to install one) to the last error (core/device_match.c). */
void clg_device_append_list(const clg_device_info *list, size_t count);

/* Device-internal helpers implemented in core/device.c. */
clg_status clg_device_open(const clg_device_info *info, cl_platform_id *platform,
                           cl_device_id *device);

/* The largest power of two, at most cap, that the device and kernel k allow as a work-group
 * size (for kernels whose tree reductions want a power of two). */
size_t clg_kernel_group_pow2(const clg_context *ctx, cl_kernel k, size_t cap);

#endif
