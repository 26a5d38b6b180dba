/* The CLGRAD_DEVICE grammar (clg_device_match) over a fixed, made-up device list: no OpenCL.
 * The first input byte picks how many of the list's devices exist (0 to all), the rest is the
 * spec. A match must be a device of the list, the same one every time, and the kind of device
 * the spec asked for. */
#include <ctype.h>
#include <stdbool.h>

#include "clgrad/device.h"
#include "fuzz.h"

#define N_DEVICES 7
static clg_device_info devices[N_DEVICES];

static void set(clg_device_info *d, int index, int platform, int device, clg_device_type type,
                const char *platform_name, const char *version, const char *vendor,
                const char *name, unsigned cus, unsigned mhz, uint64_t mem) {
    *d = (clg_device_info){.index = index,
                           .platform_index = platform,
                           .device_index = device,
                           .type = type,
                           .compute_units = cus,
                           .clock_mhz = mhz,
                           .global_mem_bytes = mem};
    snprintf(d->platform_name, sizeof d->platform_name, "%s", platform_name);
    snprintf(d->platform_version, sizeof d->platform_version, "%s", version);
    snprintf(d->vendor, sizeof d->vendor, "%s", vendor);
    snprintf(d->name, sizeof d->name, "%s", name);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    set(&devices[0], 0, 0, 0, CLG_DEVICE_CPU, "Portable Computing Language",
        "OpenCL 3.0 PoCL 3.1+debian", "AuthenticAMD", "cpu-haswell-AMD EPYC 7B13", 2, 2450,
        8ull << 30);
    set(&devices[1], 1, 1, 0, CLG_DEVICE_GPU, "NVIDIA CUDA", "OpenCL 3.0 CUDA 12.2.138",
        "NVIDIA Corporation", "NVIDIA H200", 132, 1980, 141ull << 30);
    set(&devices[2], 2, 1, 1, CLG_DEVICE_GPU, "NVIDIA CUDA", "OpenCL 3.0 CUDA 12.2.138",
        "NVIDIA Corporation", "NVIDIA H200", 132, 1980, 141ull << 30);
    set(&devices[3], 3, 2, 0, CLG_DEVICE_GPU, "AMD Accelerated Parallel Processing",
        "OpenCL 2.1 AMD-APP (3581.0)", "Advanced Micro Devices, Inc.", "gfx90a:sramecc+:xnack-",
        104, 1700, 64ull << 30);
    /* Platform 3 lists no device; rusticl is platform 4. */
    set(&devices[4], 4, 4, 0, CLG_DEVICE_CPU, "rusticl", "OpenCL 3.0 ", "Mesa/X.org",
        "llvmpipe (LLVM 15.0.6, 256 bits)", 2, 0, 4ull << 30);
    set(&devices[5], 5, 5, 0, CLG_DEVICE_ACCELERATOR, "Intel(R) FPGA Emulation Platform",
        "OpenCL 1.2 Intel(R) FPGA SDK", "Intel(R) Corporation", "Intel(R) FPGA Emulation Device", 2,
        2450, 8ull << 30);
    /* Every text field full, without a NUL (a hand-built list may do that). */
    set(&devices[6], 6, 5, 1, CLG_DEVICE_OTHER, "", "", "", "", 1, 1, 1);
    memset(devices[6].platform_name, 'x', CLG_DEVICE_STR);
    memset(devices[6].platform_version, 'y', CLG_DEVICE_STR);
    memset(devices[6].vendor, ':', CLG_DEVICE_STR);
    memset(devices[6].name, '7', CLG_DEVICE_STR);
    return 0;
}

static bool digits_only(const char *s) {
    if (!*s) return false;
    for (; *s; ++s)
        if (!isdigit((unsigned char)*s)) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t count = size ? data[0] % (N_DEVICES + 1) : N_DEVICES;
    const char *text = NULL; /* an empty input also tries spec NULL */
    char *spec = NULL;
    if (size) {
        spec = malloc(size);
        FUZZ_CHECK(spec);
        memcpy(spec, data + 1, size - 1);
        spec[size - 1] = '\0';
        text = spec;
    }
    size_t index = SIZE_MAX, again = SIZE_MAX;
    clg_status st = clg_device_match(devices, count, text, &index);
    clg_status st2 = clg_device_match(devices, count, text, &again);
    FUZZ_CHECK(st == st2);
    if (st == CLG_OK) {
        FUZZ_CHECK(index < count && again == index);
        /* A bare number is the device with that index. */
        if (text && digits_only(text))
            FUZZ_CHECK(strtoull(text, NULL, 10) == (unsigned long long)devices[index].index);
    } else {
        FUZZ_CHECK(st == CLG_ERR_DEVICE_SPEC || st == CLG_ERR_DEVICE_NOT_FOUND ||
                   st == CLG_ERR_NO_PLATFORM);
        FUZZ_CHECK(count > 0 || st != CLG_ERR_DEVICE_NOT_FOUND);
    }
    free(spec);
    return 0;
}
