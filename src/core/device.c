/* Device discovery: walk every OpenCL platform and device into plain clg_device_info records,
 * and find the cl handles of a record again when a context is opened. Which device a spec
 * chooses is decided elsewhere (device_match.c), without OpenCL. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/error.h"

const char *clg_device_type_name(clg_device_type type) {
    switch (type) {
    case CLG_DEVICE_GPU:
        return "gpu";
    case CLG_DEVICE_ACCELERATOR:
        return "accelerator";
    case CLG_DEVICE_CPU:
        return "cpu";
    default:
        return "other";
    }
}

/* Drivers pad some names with spaces (Intel's CPU runtime does); trimming keeps the listing
 * tidy and lets name comparisons ignore it. Longer strings are cut to the field's size. */
static void copy_trimmed(char dst[CLG_DEVICE_STR], const char *src) {
    while (isspace((unsigned char)*src))
        ++src;
    size_t n = strlen(src);
    while (n && isspace((unsigned char)src[n - 1]))
        --n;
    if (n > CLG_DEVICE_STR - 1) n = CLG_DEVICE_STR - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* String queries come in two calls (size, then value) and the value may lack its NUL on
 * sloppy drivers, so one is always added. Returns a malloc'ed string or NULL. */
static char *platform_string(cl_platform_id p, cl_platform_info what, cl_int *err) {
    size_t size = 0;
    *err = clGetPlatformInfo(p, what, 0, NULL, &size);
    if (*err != CL_SUCCESS) return NULL;
    char *s = malloc(size + 1);
    if (!s) {
        *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    *err = size ? clGetPlatformInfo(p, what, size, s, NULL) : CL_SUCCESS;
    if (*err != CL_SUCCESS) {
        free(s);
        return NULL;
    }
    s[size] = '\0';
    return s;
}

static char *device_string(cl_device_id d, cl_device_info what, cl_int *err) {
    size_t size = 0;
    *err = clGetDeviceInfo(d, what, 0, NULL, &size);
    if (*err != CL_SUCCESS) return NULL;
    char *s = malloc(size + 1);
    if (!s) {
        *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    *err = size ? clGetDeviceInfo(d, what, size, s, NULL) : CL_SUCCESS;
    if (*err != CL_SUCCESS) {
        free(s);
        return NULL;
    }
    s[size] = '\0';
    return s;
}

/* Optional strings (vendor, versions) read as "" when the driver cannot say. */
static void device_field(cl_device_id d, cl_device_info what, char dst[CLG_DEVICE_STR]) {
    cl_int err;
    char *s = device_string(d, what, &err);
    copy_trimmed(dst, s ? s : "");
    free(s);
}

/* Whole-word search in a space-separated extension list: "cl_khr_fp16" must not match a
 * longer name that merely starts with it. */
static bool has_token(const char *list, const char *token) {
    size_t n = strlen(token);
    for (const char *p = list; (p = strstr(p, token)) != NULL; p += n) {
        bool starts = p == list || isspace((unsigned char)p[-1]);
        bool ends = p[n] == '\0' || isspace((unsigned char)p[n]);
        if (starts && ends) return true;
    }
    return false;
}

static clg_device_type map_type(cl_device_type t) {
    /* A device may carry several bits (GPU | DEFAULT); the most capable kind wins. */
    if (t & CL_DEVICE_TYPE_GPU) return CLG_DEVICE_GPU;
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return CLG_DEVICE_ACCELERATOR;
    if (t & CL_DEVICE_TYPE_CPU) return CLG_DEVICE_CPU;
    return CLG_DEVICE_OTHER;
}

/* Fill everything that comes from the device itself. Returns the failing query's error, or
 * CL_SUCCESS; a device that cannot tell its type, name or sizes is skipped by the caller. */
static cl_int describe_device(cl_device_id d, clg_device_info *info, const char **failed) {
    cl_int err;
    char *name = device_string(d, CL_DEVICE_NAME, &err);
    if (!name) {
        *failed = "CL_DEVICE_NAME";
        return err;
    }
    copy_trimmed(info->name, name);
    free(name);

    cl_device_type type = 0;
    cl_uint units = 0, clock = 0;
    cl_ulong global = 0, local = 0, max_alloc = 0;
    size_t wg = 0;
    struct {
        cl_device_info what;
        size_t size;
        void *value;
        const char *name;
    } q[] = {
        {CL_DEVICE_TYPE, sizeof type, &type, "CL_DEVICE_TYPE"},
        {CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, "CL_DEVICE_MAX_COMPUTE_UNITS"},
        {CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof clock, &clock, "CL_DEVICE_MAX_CLOCK_FREQUENCY"},
        {CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, "CL_DEVICE_GLOBAL_MEM_SIZE"},
        {CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, "CL_DEVICE_LOCAL_MEM_SIZE"},
        {CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc,
         "CL_DEVICE_MAX_MEM_ALLOC_SIZE"},
        {CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, "CL_DEVICE_MAX_WORK_GROUP_SIZE"},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; ++i) {
        err = clGetDeviceInfo(d, q[i].what, q[i].size, q[i].value, NULL);
        if (err != CL_SUCCESS) {
            *failed = q[i].name;
            return err;
        }
    }
    info->type = map_type(type);
    info->compute_units = units;
    info->clock_mhz = clock;
    info->global_mem_bytes = global;
    info->local_mem_bytes = local;
    info->max_alloc_bytes = max_alloc;
    info->max_work_group_size = wg;

    device_field(d, CL_DEVICE_VENDOR, info->vendor);
    device_field(d, CL_DRIVER_VERSION, info->driver_version);
    device_field(d, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version);

    char *ext = device_string(d, CL_DEVICE_EXTENSIONS, &err);
    info->fp16 = ext && has_token(ext, "cl_khr_fp16");
    info->fp64 = ext && has_token(ext, "cl_khr_fp64");
    free(ext);
    /* Since OpenCL 1.2 a non-zero double config means doubles work even where the extension
     * name is no longer listed; older drivers reject the query, which just means "no". */
    cl_device_fp_config dbl = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof dbl, &dbl, NULL) == CL_SUCCESS &&
        dbl != 0)
        info->fp64 = true;
    return CL_SUCCESS;
}

/* Fetch the platform ids (n may be 0; *ids is then NULL). */
static cl_int get_platforms(cl_platform_id **ids, cl_uint *n) {
    *ids = NULL;
    *n = 0;
    cl_uint count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &count);
    if (err != CL_SUCCESS) return err;
    if (count == 0) return CL_SUCCESS;
    cl_platform_id *p = calloc(count, sizeof *p);
    if (!p) return CL_OUT_OF_HOST_MEMORY;
    err = clGetPlatformIDs(count, p, &count);
    if (err != CL_SUCCESS) {
        free(p);
        return err;
    }
    *ids = p;
    *n = count;
    return CL_SUCCESS;
}

static cl_int get_devices(cl_platform_id p, cl_device_id **ids, cl_uint *n) {
    *ids = NULL;
    *n = 0;
    cl_uint count = 0;
    cl_int err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, NULL, &count);
    if (err != CL_SUCCESS) return err;
    if (count == 0) return CL_DEVICE_NOT_FOUND;
    cl_device_id *d = calloc(count, sizeof *d);
    if (!d) return CL_OUT_OF_HOST_MEMORY;
    err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, count, d, &count);
    if (err != CL_SUCCESS) {
        free(d);
        return err;
    }
    *ids = d;
    *n = count;
    return CL_SUCCESS;
}

/* Why platforms or devices were skipped; shown only when nothing usable is left. */
#define MAX_NOTES 16
typedef struct skip_notes {
    char text[MAX_NOTES][256];
    size_t n;
} skip_notes;

static void note(skip_notes *notes, const char *platform, int p, const char *what, cl_int err) {
    clg_trace("skipping platform %d (%s): %s: %s (%d)", p, platform, what, clg_cl_error_name(err),
            (int)err);
    if (notes->n == MAX_NOTES) return;
    snprintf(notes->text[notes->n++], sizeof notes->text[0], "platform %d (%s): %s: %s (%d)", p,
             platform, what, clg_cl_error_name(err), (int)err);
}

static clg_status no_device_error(cl_int platforms_err, cl_uint n_platforms,
                                  const skip_notes *notes) {
    if (platforms_err != CL_SUCCESS)
        clg_fail(CLG_ERR_NO_PLATFORM, "no OpenCL device found: clGetPlatformIDs: %s (%d)",
                 clg_cl_error_name(platforms_err), (int)platforms_err);
    else if (n_platforms == 0)
        clg_fail(CLG_ERR_NO_PLATFORM, "no OpenCL device found: no OpenCL platform is installed");
    else
        clg_fail(CLG_ERR_NO_PLATFORM,
                 "no OpenCL device found: %u platform%s, none with a usable device:",
                 (unsigned)n_platforms, n_platforms == 1 ? "" : "s");
    for (size_t i = 0; i < notes->n; ++i)
        clg_error_append("  %s", notes->text[i]);
    const char *vendors = getenv("OCL_ICD_VENDORS");
    clg_error_append("Install an OpenCL driver: on Debian or Ubuntu `apt install pocl-opencl-icd` "
                     "gives a CPU device; a GPU needs its vendor's OpenCL driver.");
    if (vendors)
        clg_error_append("OCL_ICD_VENDORS is set to \"%s\": the loader looks only there for "
                         ".icd files; unset it to use /etc/OpenCL/vendors.",
                         vendors);
    else
        clg_error_append("The loader reads /etc/OpenCL/vendors/*.icd, or the folder that "
                         "OCL_ICD_VENDORS names.");
    return CLG_ERR_NO_PLATFORM;
}

clg_status clg_device_list(clg_device_info **list, size_t *count) {
    if (!list || !count)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_device_list: list or count is NULL");
    *list = NULL;
    *count = 0;

    cl_platform_id *platforms;
    cl_uint n_platforms;
    cl_int platforms_err = get_platforms(&platforms, &n_platforms);
    if (platforms_err == CL_OUT_OF_HOST_MEMORY)
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_device_list: out of host memory");

    clg_device_info *out = NULL;
    size_t n = 0, cap = 0;
    skip_notes notes = {.n = 0};
    clg_status st = CLG_OK;
    for (cl_uint p = 0; p < n_platforms && st == CLG_OK; ++p) {
        cl_int err;
        char *pname = platform_string(platforms[p], CL_PLATFORM_NAME, &err);
        char platform_name[CLG_DEVICE_STR];
        copy_trimmed(platform_name, pname ? pname : "?");
        free(pname);
        if (err != CL_SUCCESS) {
            note(&notes, platform_name, (int)p, "CL_PLATFORM_NAME", err);
            continue;
        }
        char *pversion = platform_string(platforms[p], CL_PLATFORM_VERSION, &err);
        char platform_version[CLG_DEVICE_STR];
        copy_trimmed(platform_version, pversion ? pversion : "");
        free(pversion);

        cl_device_id *devices;
        cl_uint n_devices;
        err = get_devices(platforms[p], &devices, &n_devices);
        if (err != CL_SUCCESS) {
            /* Mesa's rusticl lists no device until told which drivers to enable. */
            bool rusticl = strcmp(platform_name, "rusticl") == 0 && !getenv("RUSTICL_ENABLE");
            note(&notes, platform_name, (int)p,
                 rusticl ? "clGetDeviceIDs (set RUSTICL_ENABLE=llvmpipe for its CPU device)"
                         : "clGetDeviceIDs",
                 err);
            continue;
        }
        for (cl_uint d = 0; d < n_devices; ++d) {
            clg_device_info info;
            memset(&info, 0, sizeof info);
            const char *failed = "";
            err = describe_device(devices[d], &info, &failed);
            if (err != CL_SUCCESS) {
                char what[128];
                snprintf(what, sizeof what, "device %u: %s", (unsigned)d, failed);
                note(&notes, platform_name, (int)p, what, err);
                continue;
            }
            if (n == cap) {
                size_t new_cap = cap ? 2 * cap : 8;
                clg_device_info *grown = realloc(out, new_cap * sizeof *grown);
                if (!grown) {
                    st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_device_list: out of host memory");
                    break;
                }
                out = grown;
                cap = new_cap;
            }
            info.index = (int)n;
            info.platform_index = (int)p;
            info.device_index = (int)d;
            memcpy(info.platform_name, platform_name, sizeof platform_name);
            memcpy(info.platform_version, platform_version, sizeof platform_version);
            /* Mesa's gallivm caps the loop iterations of a shader invocation at 65535 (its
             * loop limiter, against hangs), counting every loop together: measured on rusticl
             * with a kernel of one counting loop, which stops at 65535 however far it should
             * go. Its kernels then return wrong results without any error. */
            if (strstr(info.name, "llvmpipe") &&
                (strcmp(platform_name, "rusticl") == 0 || strcmp(platform_name, "Clover") == 0))
                info.loop_limit = 65535;
            out[n++] = info;
        }
        free(devices);
    }
    free(platforms);

    if (st == CLG_OK && n == 0) st = no_device_error(platforms_err, n_platforms, &notes);
    if (st != CLG_OK) {
        free(out);
        return st;
    }
    *list = out;
    *count = n;
    return CLG_OK;
}

void clg_device_list_free(clg_device_info *list) {
    free(list);
}

/* The list holds positions, not handles, so that it stays a plain value that can be copied
 * and matched without OpenCL; the name check catches a driver that reordered its devices. */
clg_status clg_device_open(const clg_device_info *info, cl_platform_id *platform,
                           cl_device_id *device) {
    if (!info || !platform || !device)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_device_open: argument is NULL");
    *platform = NULL;
    *device = NULL;
    if (info->platform_index < 0 || info->device_index < 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_device_open: negative index %d:%d",
                        info->platform_index, info->device_index);

    cl_platform_id *platforms;
    cl_uint n_platforms;
    cl_int err = get_platforms(&platforms, &n_platforms);
    if (err != CL_SUCCESS)
        return clg_fail_cl(err, "cannot reopen device %d:%d (%s): clGetPlatformIDs",
                           info->platform_index, info->device_index, info->name);
    if ((cl_uint)info->platform_index >= n_platforms) {
        free(platforms);
        return clg_fail(CLG_ERR_DEVICE_NOT_FOUND,
                        "device %d:%d (%s, %s) is gone: %u OpenCL platform%s left",
                        info->platform_index, info->device_index, info->name, info->platform_name,
                        (unsigned)n_platforms, n_platforms == 1 ? "" : "s");
    }
    cl_platform_id p = platforms[info->platform_index];
    free(platforms);

    cl_device_id *devices;
    cl_uint n_devices;
    err = get_devices(p, &devices, &n_devices);
    if (err != CL_SUCCESS)
        return clg_fail_cl(err, "cannot reopen device %d:%d (%s, %s): clGetDeviceIDs",
                           info->platform_index, info->device_index, info->name,
                           info->platform_name);
    if ((cl_uint)info->device_index >= n_devices) {
        free(devices);
        return clg_fail(CLG_ERR_DEVICE_NOT_FOUND,
                        "device %d:%d (%s) is gone: platform %s now lists %u device%s",
                        info->platform_index, info->device_index, info->name, info->platform_name,
                        (unsigned)n_devices, n_devices == 1 ? "" : "s");
    }
    cl_device_id d = devices[info->device_index];
    free(devices);

    char *raw = device_string(d, CL_DEVICE_NAME, &err);
    if (!raw)
        return clg_fail_cl(err, "cannot reopen device %d:%d (%s): CL_DEVICE_NAME",
                           info->platform_index, info->device_index, info->name);
    char name[CLG_DEVICE_STR];
    copy_trimmed(name, raw);
    free(raw);
    if (strncmp(name, info->name, CLG_DEVICE_STR) != 0)
        return clg_fail(CLG_ERR_DEVICE_NOT_FOUND,
                        "device %d:%d changed between listing and opening: it was \"%s\", it "
                        "is now \"%s\" (%s)",
                        info->platform_index, info->device_index, info->name, name,
                        info->platform_name);
    *platform = p;
    *device = d;
    return CLG_OK;
}
