/* A clgrad context: one OpenCL device, its queue, its program cache and its parameters.
 * Ownership: the context owns every parameter, optimizer, graph and plan created through
 * it; clg_context_free releases them all. */
#ifndef CLGRAD_CONTEXT_H
#define CLGRAD_CONTEXT_H

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

#ifdef __cplusplus
}
#endif

#endif
