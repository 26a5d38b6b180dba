/* OpenCL device discovery and selection.
 * A device spec string picks one device out of every platform's devices; the grammar is in
 * README.md ("Choosing a device") and is the same for CLGRAD_DEVICE and the C API. */
#ifndef CLGRAD_DEVICE_H
#define CLGRAD_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum clg_device_type {
    CLG_DEVICE_GPU,
    CLG_DEVICE_ACCELERATOR,
    CLG_DEVICE_CPU,
    CLG_DEVICE_OTHER,
    CLG_DEVICE_TYPE_COUNT
} clg_device_type;

#define CLG_DEVICE_STR 128

/* A plain description of one device, as enumerated. */
typedef struct clg_device_info {
    int index;          /* position in the full list, as printed by clgrad-devices */
    int platform_index; /* P in "P:D" */
    int device_index;   /* D in "P:D": index within its platform */
    clg_device_type type;
    char platform_name[CLG_DEVICE_STR];
    char platform_version[CLG_DEVICE_STR];
    char vendor[CLG_DEVICE_STR];
    char name[CLG_DEVICE_STR];
    char driver_version[CLG_DEVICE_STR];
    char opencl_c_version[CLG_DEVICE_STR];
    unsigned compute_units;
    unsigned clock_mhz;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    size_t max_work_group_size;
    bool fp16;
    bool fp64;
    /* Loop iterations one work-item may run in all before the driver silently stops its
     * loops, or 0 where no such limit is known. Mesa's llvmpipe (rusticl, Clover) has one:
     * 65535, shared by every loop of the work-item. clgrad sizes work-items to stay under it. */
    uint32_t loop_limit;
} clg_device_info;

/* Enumerate every device of every platform. Platforms that list no device or whose queries
 * fail are skipped. On success *list is malloc'ed (free with clg_device_list_free) and
 * *count may be 0 only if CLG_ERR_NO_PLATFORM is returned. */
clg_status clg_device_list(clg_device_info **list, size_t *count);
void clg_device_list_free(clg_device_info *list);

/* Pure selection: which entry of list[0..count) does spec choose? spec NULL or "" picks the
 * best device (GPU, accelerator, CPU; then compute units x clock; then global memory).
 * On failure the last error lists the devices that exist. */
clg_status clg_device_match(const clg_device_info *list, size_t count, const char *spec,
                            size_t *index);

/* Short name of a device type: "gpu", "accelerator", "cpu", "other". */
const char *clg_device_type_name(clg_device_type type);

#ifdef __cplusplus
}
#endif

#endif
