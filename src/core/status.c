/* Status names, the per-thread last-error message, OpenCL error names and the logger. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define ERROR_CAP 16384

static _Thread_local char last_error[ERROR_CAP];

const char *clg_status_name(clg_status status) {
    static const char *const names[CLG_STATUS_COUNT] = {
        [CLG_OK] = "CLG_OK",
        [CLG_ERR_INVALID_ARGUMENT] = "CLG_ERR_INVALID_ARGUMENT",
        [CLG_ERR_SHAPE] = "CLG_ERR_SHAPE",
        [CLG_ERR_DTYPE] = "CLG_ERR_DTYPE",
        [CLG_ERR_GRAPH] = "CLG_ERR_GRAPH",
        [CLG_ERR_NO_PLATFORM] = "CLG_ERR_NO_PLATFORM",
        [CLG_ERR_DEVICE_NOT_FOUND] = "CLG_ERR_DEVICE_NOT_FOUND",
        [CLG_ERR_DEVICE_SPEC] = "CLG_ERR_DEVICE_SPEC",
        [CLG_ERR_OPENCL] = "CLG_ERR_OPENCL",
        [CLG_ERR_BUILD] = "CLG_ERR_BUILD",
        [CLG_ERR_OUT_OF_MEMORY] = "CLG_ERR_OUT_OF_MEMORY",
        [CLG_ERR_IO] = "CLG_ERR_IO",
        [CLG_ERR_FORMAT] = "CLG_ERR_FORMAT",
        [CLG_ERR_MISMATCH] = "CLG_ERR_MISMATCH",
        [CLG_ERR_UNSUPPORTED] = "CLG_ERR_UNSUPPORTED",
        [CLG_ERR_INTERNAL] = "CLG_ERR_INTERNAL",
        [CLG_ERR_NOT_FINITE] = "CLG_ERR_NOT_FINITE",
    };
    if ((int)status < 0 || status >= CLG_STATUS_COUNT) return "CLG_ERR_UNKNOWN";
    return names[status];
}

const char *clg_last_error(void) {
    return last_error;
}

void clg_clear_error(void) {
    last_error[0] = '\0';
}

clg_status clg_fail(clg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void clg_error_append(const char *fmt, ...) {
    size_t len = strlen(last_error);
    if (len + 2 >= sizeof last_error) return;
    last_error[len++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error + len, sizeof last_error - len, fmt, ap);
    va_end(ap);
}

const char *clg_cl_error_name(cl_int err) {
    switch (err) {
#define E(x)                                                                                   \
    case x:                                                                                    \
        return #x;
        E(CL_SUCCESS)
        E(CL_DEVICE_NOT_FOUND)
        E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E(CL_OUT_OF_RESOURCES)
        E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE)
        E(CL_MEM_COPY_OVERLAP)
        E(CL_IMAGE_FORMAT_MISMATCH)
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        E(CL_BUILD_PROGRAM_FAILURE)
        E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE)
        E(CL_LINKER_NOT_AVAILABLE)
        E(CL_LINK_PROGRAM_FAILURE)
        E(CL_DEVICE_PARTITION_FAILED)
        E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE)
        E(CL_INVALID_PLATFORM)
        E(CL_INVALID_DEVICE)
        E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES)
        E(CL_INVALID_COMMAND_QUEUE)
        E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT)
        E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER)
        E(CL_INVALID_BINARY)
        E(CL_INVALID_BUILD_OPTIONS)
        E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE)
        E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL)
        E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE)
        E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION)
        E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET)
        E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT)
        E(CL_INVALID_OPERATION)
        E(CL_INVALID_GL_OBJECT)
        E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL)
        E(CL_INVALID_GLOBAL_WORK_SIZE)
        E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR)
        E(CL_INVALID_COMPILER_OPTIONS)
        E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
        return "CL_UNKNOWN_ERROR";
    }
}

clg_status clg_status_from_cl(cl_int err) {
    switch (err) {
    case CL_SUCCESS:
        return CLG_OK;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_RESOURCES:
    case CL_OUT_OF_HOST_MEMORY:
    case CL_INVALID_BUFFER_SIZE:
        return CLG_ERR_OUT_OF_MEMORY;
    case CL_BUILD_PROGRAM_FAILURE:
        return CLG_ERR_BUILD;
    default:
        return CLG_ERR_OPENCL;
    }
}

clg_status clg_fail_cl(cl_int err, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return clg_fail(clg_status_from_cl(err), "%s: %s (%d)", what, clg_cl_error_name(err), (int)err);
}

bool clg_env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0 && strcmp(v, "off") != 0 && strcmp(v, "no") != 0;
}

bool clg_trace_enabled(void) {
    static int enabled = -1;
    if (enabled < 0) enabled = clg_env_flag("CLGRAD_LOG") ? 1 : 0;
    return enabled == 1;
}

void clg_trace(const char *fmt, ...) {
    if (!clg_trace_enabled()) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("clgrad: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
