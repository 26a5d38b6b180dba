/* A clgrad context: one OpenCL device, its queue, its program cache and its parameters.
 * Ownership: the context owns every parameter, optimizer, graph and plan created through
 * it; clg_context_free releases them all. */
#ifndef CLGRAD_CONTEXT_H
#define CLGRAD_CONTEXT_H

#include <stddef.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clg_context clg_context;

/* Open the device chosen by spec (NULL: read CLGRAD_DEVICE). On failure *ctx is NULL and the
 * last error says why and lists the devices that exist. */
clg_status clg_context_create(const char *device_spec, clg_context **ctx);

/* Release the context and everything it owns. NULL is a no-op. */
void clg_context_free(clg_context *ctx);

/* The device the context runs on. Owned by the context. */
const clg_device_info *clg_context_device(const clg_context *ctx);

/* Wait until all work queued on the context's device has finished; reports errors that
 * asynchronous execution raised. */
clg_status clg_context_finish(clg_context *ctx);

/* ---- Device memory ----
 * The context counts every device buffer clgrad creates for it (parameters, optimizer state,
 * plans' intermediates, inputs and constants, GEMM scratch) and can cap their total. Past the
 * cap an allocation fails with CLG_ERR_OUT_OF_MEMORY and a message naming what it was for and
 * the totals; the failed call leaves no buffer of its own behind (GEMM scratch, which the
 * context's plans share, stays at the size a failed compile may have grown it to). Not
 * counted: what the OpenCL driver and CLBlast allocate internally. */

/* Cap the bytes clgrad may hold on the device (0: no cap). The initial cap is
 * CLGRAD_MAX_DEVICE_BYTES (bytes, or with K, M, G or T: powers of 1024), read by
 * clg_context_create, which fails naming the variable when it is malformed. A cap below what
 * the context already holds frees nothing: later allocations fail until use falls under it.
 * CLG_ERR_INVALID_ARGUMENT for a NULL ctx. */
clg_status clg_context_set_memory_limit(clg_context *ctx, size_t bytes);
/* The current cap (0: none). 0 for NULL. */
size_t clg_context_memory_limit(const clg_context *ctx);
/* Device bytes clgrad holds for the context now. 0 for NULL. */
size_t clg_context_memory_used(const clg_context *ctx);

#ifdef __cplusplus
}
#endif

#endif
