/* Device-memory accounting: every buffer clgrad creates goes through clg_buffer_create and
 * leaves through clg_buffer_release, so the context knows what it holds on the device and
 * can refuse an allocation that would take it past its cap (CLGRAD_MAX_DEVICE_BYTES). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/context.h"
#include "core/error.h"

const char *clg_bytes_str(size_t bytes, char *buf, size_t size) {
    const double mib = 1024.0 * 1024.0;
    if (bytes >= (size_t)1 << 30)
        snprintf(buf, size, "%zu bytes (%.2f GiB)", bytes, (double)bytes / (mib * 1024.0));
    else if (bytes >= (size_t)1 << 20)
        snprintf(buf, size, "%zu bytes (%.2f MiB)", bytes, (double)bytes / mib);
    else
        snprintf(buf, size, "%zu bytes", bytes);
    return buf;
}

clg_status clg_memory_limit_parse(const char *text, size_t *out) {
    *out = 0;
    if (!text || !*text) return CLG_OK;
    bool digits = *text >= '0' && *text <= '9'; /* strtoull would take spaces and signs */
    char *end = NULL;
    errno = 0;
    unsigned long long v = digits ? strtoull(text, &end, 10) : 0;
    bool ok = digits && errno == 0;
    /* one optional suffix, K M G or T in either case: powers of 1024 */
    static const char suffixes[] = "kmgt";
    unsigned shift = 0;
    if (ok && *end) {
        int c = *end | 0x20; /* ASCII lower case */
        const char *hit = NULL;
        for (const char *q = suffixes; *q && !hit; ++q)
            if (*q == c) hit = q;
        ok = hit && end[1] == '\0';
        if (ok) shift = 10u * (unsigned)(hit - suffixes + 1);
    }
    /* the suffix must not overflow size_t (a 32-bit host cannot cap at 8G either) */
    if (ok && (v > (SIZE_MAX >> shift))) ok = false;
    if (!ok)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "CLGRAD_MAX_DEVICE_BYTES='%s' is not a byte count: write a number of "
                        "bytes, optionally followed by K, M, G or T (powers of 1024), e.g. "
                        "536870912 or 512M; 0 or unset means no cap",
                        text);
    *out = (size_t)v << shift;
    return CLG_OK;
}

bool clg_memory_fits(const clg_context *ctx, size_t bytes) {
    size_t cap = ctx->memory_limit;
    return cap == 0 || (bytes <= cap && ctx->memory_used <= cap - bytes);
}

clg_status clg_memory_refuse(const clg_context *ctx, const char *what, size_t bytes) {
    char a[64], b[64], c[64];
    return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                    "allocating %s (%s) would take the context past its device-memory cap: it "
                    "already holds %s and the cap is %s (CLGRAD_MAX_DEVICE_BYTES or "
                    "clg_context_set_memory_limit)",
                    what, clg_bytes_str(bytes, a, sizeof a),
                    clg_bytes_str(ctx->memory_used, b, sizeof b),
                    clg_bytes_str(ctx->memory_limit, c, sizeof c));
}

clg_status clg_buffer_create(clg_context *ctx, size_t bytes, const char *what, cl_mem *out) {
    *out = NULL;
    if (bytes == 0) bytes = 4;
    if (bytes > ctx->info.max_alloc_bytes)
        return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                        "%s needs a buffer of %zu bytes, above this device's largest single "
                        "allocation (CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes on %s)",
                        what, bytes, (unsigned long long)ctx->info.max_alloc_bytes, ctx->info.name);
    if (!clg_memory_fits(ctx, bytes)) return clg_memory_refuse(ctx, what, bytes);
    cl_int err;
    cl_mem m = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!m)
        return clg_fail_cl(err, "allocating %zu bytes for %s on %s", bytes, what, ctx->info.name);
    ctx->memory_used += bytes;
    *out = m;
    return CLG_OK;
}

void clg_buffer_release(clg_context *ctx, cl_mem mem) {
    if (!mem) return;
    /* The size recorded by OpenCL is the one clg_buffer_create asked for (after its 0 -> 4). */
    size_t bytes = 0;
    if (clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL) != CL_SUCCESS) bytes = 0;
    ctx->memory_used = bytes < ctx->memory_used ? ctx->memory_used - bytes : 0;
    clReleaseMemObject(mem);
}

clg_status clg_context_set_memory_limit(clg_context *ctx, size_t bytes) {
    if (!ctx)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_context_set_memory_limit: ctx is NULL");
    ctx->memory_limit = bytes;
    return CLG_OK;
}

size_t clg_context_memory_limit(const clg_context *ctx) {
    return ctx ? ctx->memory_limit : 0;
}

size_t clg_context_memory_used(const clg_context *ctx) {
    return ctx ? ctx->memory_used : 0;
}
