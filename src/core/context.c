/* Context creation: select the device, create the OpenCL context and its one in-order queue,
 * and own everything made through it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/error.h"
#include "core/program.h"

/* After a failure on the chosen device, say which devices exist (another may work). */
static clg_status list_devices_after(clg_status st) {
    clg_device_info *list = NULL;
    size_t count = 0;
    char msg[8192];
    snprintf(msg, sizeof msg, "%s", clg_last_error());
    if (clg_device_list(&list, &count) == CLG_OK) {
        clg_fail(st, "%s", msg);
        clg_device_append_list(list, count);
    } else {
        clg_fail(st, "%s", msg);
    }
    clg_device_list_free(list);
    return st;
}

static clg_status pick_device(const char *spec, clg_device_info *chosen) {
    clg_device_info *list = NULL;
    size_t count = 0;
    clg_status st = clg_device_list(&list, &count);
    if (st != CLG_OK) return st;
    size_t index = 0;
    st = clg_device_match(list, count, spec, &index);
    if (st == CLG_OK) *chosen = list[index];
    clg_device_list_free(list);
    return st;
}

static void CL_CALLBACK context_notify(const char *msg, const void *info, size_t cb, void *user) {
    (void)info;
    (void)cb;
    (void)user;
    clg_trace("OpenCL: %s", msg);
}

clg_status clg_context_create(const char *device_spec, clg_context **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_context_create: out is NULL");
    *out = NULL;
    if (!device_spec) device_spec = getenv("CLGRAD_DEVICE");

    /* read before any device work, so a malformed cap fails fast */
    size_t memory_limit;
    clg_status st = clg_memory_limit_parse(getenv("CLGRAD_MAX_DEVICE_BYTES"), &memory_limit);
    if (st != CLG_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", clg_last_error());
        return clg_fail(st, "clg_context_create: %s", msg);
    }

    clg_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_context_create: out of host memory");
    ctx->memory_limit = memory_limit;
    st = pick_device(device_spec, &ctx->info);
    if (st != CLG_OK) {
        free(ctx);
        return st;
    }
    st = clg_device_open(&ctx->info, &ctx->platform, &ctx->device);
    if (st != CLG_OK) {
        free(ctx);
        return list_devices_after(st);
    }
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform,
                                     0};
    ctx->cl = clCreateContext(props, 1, &ctx->device, context_notify, NULL, &err);
    if (!ctx->cl) {
        st = clg_fail_cl(err, "cannot create an OpenCL context on device %d (%s, %s)",
                         ctx->info.index, ctx->info.name, ctx->info.platform_name);
        free(ctx);
        return list_devices_after(st);
    }
    ctx->profiling = clg_env_flag("CLGRAD_PROFILE");
    ctx->queue = clCreateCommandQueue(ctx->cl, ctx->device,
                                      ctx->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (!ctx->queue) {
        st = clg_fail_cl(err, "cannot create a command queue on device %d (%s)", ctx->info.index,
                         ctx->info.name);
        clReleaseContext(ctx->cl);
        free(ctx);
        return list_devices_after(st);
    }
    st = clg_program_cache_init(ctx);
    if (st != CLG_OK) {
        clg_context_free(ctx);
        return st;
    }
    clg_trace("device %d: %s (%s, %s), OpenCL C %s", ctx->info.index, ctx->info.name,
            ctx->info.platform_name, ctx->info.driver_version, ctx->info.opencl_c_version);
    *out = ctx;
    return CLG_OK;
}

void clg_context_free(clg_context *ctx) {
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    clg_owners_free_all(&ctx->owners);
    /* every buffer has been released through clg_buffer_release by now */
    if (ctx->memory_used)
        clg_trace("context freed with %zu device bytes still counted (a release was missed)",
                  ctx->memory_used);
    clg_program_cache_free(ctx);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl) clReleaseContext(ctx->cl);
    free(ctx);
}

const clg_device_info *clg_context_device(const clg_context *ctx) {
    return ctx ? &ctx->info : NULL;
}

clg_status clg_context_finish(clg_context *ctx) {
    if (!ctx) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_context_finish: ctx is NULL");
    cl_int err = clFinish(ctx->queue);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "clFinish on %s", ctx->info.name);
    return CLG_OK;
}

clg_status clg_context_own(clg_context *ctx, void *object, clg_free_fn free_fn, bool base) {
    return clg_owners_add(&ctx->owners, object, free_fn, base);
}

void clg_context_disown(clg_context *ctx, void *object) {
    clg_owners_remove(&ctx->owners, object);
}

size_t clg_kernel_group_pow2(const clg_context *ctx, cl_kernel k, size_t cap) {
    size_t lim = cap, kmax = 0;
    if (ctx->info.max_work_group_size && ctx->info.max_work_group_size < lim)
        lim = ctx->info.max_work_group_size;
    if (clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax,
                                 NULL) == CL_SUCCESS &&
        kmax && kmax < lim)
        lim = kmax;
    size_t l = 1;
    while (l * 2 <= lim)
        l *= 2;
    return l;
}
