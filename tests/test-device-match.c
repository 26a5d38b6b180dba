/* Unit tests of device selection (clg_device_match) on made-up device lists. No OpenCL is
 * touched, so they run anywhere and cover machines CI lacks: several GPUs, platforms without
 * devices, accelerators, hostile spec strings. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define GIB (1024ull * 1024 * 1024)

static clg_device_info make(clg_device_type type, int platform, int device, const char *pname,
                            const char *vendor, const char *name, unsigned cu, unsigned mhz,
                            uint64_t gmem) {
    clg_device_info d;
    memset(&d, 0, sizeof d);
    d.type = type;
    d.platform_index = platform;
    d.device_index = device;
    snprintf(d.platform_name, sizeof d.platform_name, "%s", pname);
    snprintf(d.platform_version, sizeof d.platform_version, "OpenCL 3.0");
    snprintf(d.vendor, sizeof d.vendor, "%s", vendor);
    snprintf(d.name, sizeof d.name, "%s", name);
    d.compute_units = cu;
    d.clock_mhz = mhz;
    d.global_mem_bytes = gmem;
    return d;
}

/* A workstation. Platform 0: NVIDIA with two identical GPUs. Platform 1 lists no device (as
 * Mesa's Clover does without an AMD GPU), so no entry has P = 1. Platform 2: pocl on the CPU
 * (it says "PoCL" only in its platform version, as the real one does). Platform 3: an FPGA
 * board with two cards, listed apart, with colons in their names. Platform 4: rusticl. */
enum { N_WORKSTATION = 6 };
static clg_device_info ws[N_WORKSTATION];

static void setup_workstation(void) {
    ws[0] = make(CLG_DEVICE_GPU, 0, 0, "NVIDIA CUDA", "NVIDIA Corporation",
                 "NVIDIA GeForce RTX 3090", 82, 1695, 24 * GIB);
    ws[1] = make(CLG_DEVICE_GPU, 0, 1, "NVIDIA CUDA", "NVIDIA Corporation",
                 "NVIDIA GeForce RTX 3090", 82, 1695, 24 * GIB);
    ws[2] = make(CLG_DEVICE_CPU, 2, 0, "Portable Computing Language", "AuthenticAMD",
                 "pthread-znver3-AMD Ryzen 9 5950X", 32, 3400, 64 * GIB);
    snprintf(ws[2].platform_version, sizeof ws[2].platform_version,
             "OpenCL 3.0 PoCL 3.1+debian  Linux, RELOC, LLVM 15.0.6");
    ws[3] = make(CLG_DEVICE_ACCELERATOR, 3, 0, "Intel(R) FPGA SDK for OpenCL(TM)",
                 "Intel(R) Corporation", "pac_a10 : Intel PAC Platform", 1, 240, 8 * GIB);
    ws[4] = make(CLG_DEVICE_CPU, 4, 0, "rusticl", "Mesa/X.org", "llvmpipe (LLVM 15.0.6, 256 bits)",
                 8, 300, 2 * GIB);
    ws[5] = make(CLG_DEVICE_ACCELERATOR, 3, 1, "Intel(R) FPGA SDK for OpenCL(TM)",
                 "Intel(R) Corporation", "pac_s10 : Intel PAC Platform", 1, 250, 8 * GIB);
    for (int i = 0; i < N_WORKSTATION; ++i)
        ws[i].index = i;
}

/* Index that spec chooses on the workstation; the test fails with clgrad's message if none. */
static size_t pick(const char *spec) {
    size_t index = SIZE_MAX;
    clg_status st = clg_device_match(ws, N_WORKSTATION, spec, &index);
    ck_assert_msg(st == CLG_OK, "spec \"%s\": %s: %s", spec ? spec : "(null)", clg_status_name(st),
                  clg_last_error());
    ck_assert_uint_lt(index, N_WORKSTATION);
    return index;
}

/* Status of a spec that must fail on the workstation. The message must list every device in
 * the documented line format, name CLGRAD_DEVICE, and leave *index alone. */
static clg_status reject(const char *spec) {
    size_t index = 12345;
    clg_clear_error();
    clg_status st = clg_device_match(ws, N_WORKSTATION, spec, &index);
    ck_assert_msg(st != CLG_OK, "spec \"%s\" unexpectedly chose %zu", spec, index);
    ck_assert_uint_eq(index, 12345);
    const char *msg = clg_last_error();
    for (int i = 0; i < N_WORKSTATION; ++i)
        ck_assert_msg(strstr(msg, ws[i].name), "message for \"%s\" lacks %s:\n%s", spec, ws[i].name,
                      msg);
    ck_assert_msg(strstr(msg, "\n  [0] 0:0 gpu NVIDIA GeForce RTX 3090 (NVIDIA CUDA)\n"),
                  "device line format changed:\n%s", msg);
    ck_assert_msg(strstr(msg, "\n  [5] 3:1 accelerator pac_s10 : Intel PAC Platform (Intel(R) "
                              "FPGA SDK for OpenCL(TM))"),
                  "device line format changed:\n%s", msg);
    ck_assert_msg(strstr(msg, "CLGRAD_DEVICE"), "message does not name CLGRAD_DEVICE:\n%s", msg);
    return st;
}

static void assert_message_has(const char *what) {
    ck_assert_msg(strstr(clg_last_error(), what), "message lacks \"%s\":\n%s", what,
                  clg_last_error());
}

START_TEST(default_prefers_gpu_then_lowest_index) {
    /* Two identical GPUs: the tie goes to the first. The CPU's larger memory and clock do not
     * count while a GPU exists. */
    ck_assert_uint_eq(pick(NULL), 0);
    ck_assert_uint_eq(pick(""), 0);
    ck_assert_uint_eq(pick("   \t\n "), 0);
}
END_TEST

START_TEST(default_type_order) {
    clg_device_info list[3] = {
        make(CLG_DEVICE_CPU, 0, 0, "pocl", "AMD", "big cpu", 128, 4000, 512 * GIB),
        make(CLG_DEVICE_ACCELERATOR, 1, 0, "fpga", "Intel", "small fpga", 1, 100, GIB),
        make(CLG_DEVICE_OTHER, 2, 0, "custom", "x", "custom device", 1000, 1000, 900 * GIB),
    };
    for (int i = 0; i < 3; ++i)
        list[i].index = i;
    size_t index;
    clg_assert_ok(clg_device_match(list, 3, NULL, &index));
    ck_assert_uint_eq(index, 1); /* an accelerator beats a faster CPU */
    list[1].type = CLG_DEVICE_OTHER;
    clg_assert_ok(clg_device_match(list, 3, NULL, &index));
    ck_assert_uint_eq(index, 0);        /* a CPU beats "other" */
    list[0].type = (clg_device_type)77; /* garbage from a hand-built list counts as other */
    clg_assert_ok(clg_device_match(list, 3, NULL, &index));
    ck_assert_uint_eq(index, 2);
    clg_assert_ok(clg_device_match(list, 1, NULL, &index));
    ck_assert_uint_eq(index, 0);
}
END_TEST

START_TEST(default_ties_by_throughput_then_memory) {
    clg_device_info list[4] = {
        make(CLG_DEVICE_GPU, 0, 0, "p", "v", "slow", 10, 1000, 16 * GIB),
        make(CLG_DEVICE_GPU, 0, 1, "p", "v", "fast", 20, 1000, 8 * GIB),
        make(CLG_DEVICE_GPU, 0, 2, "p", "v", "as fast, more memory", 40, 500, 12 * GIB),
        make(CLG_DEVICE_GPU, 0, 3, "p", "v", "its twin", 40, 500, 12 * GIB),
    };
    for (int i = 0; i < 4; ++i)
        list[i].index = i;
    size_t index;
    clg_assert_ok(clg_device_match(list, 4, "", &index));
    ck_assert_uint_eq(index, 2);
    clg_assert_ok(clg_device_match(list, 2, "", &index));
    ck_assert_uint_eq(index, 1);
    /* Units x clock is a 64-bit product: the largest values must not wrap to a small score. */
    list[0].compute_units = UINT_MAX;
    list[0].clock_mhz = UINT_MAX;
    clg_assert_ok(clg_device_match(list, 4, "", &index));
    ck_assert_uint_eq(index, 0);
}
END_TEST

START_TEST(types_with_and_without_n) {
    ck_assert_uint_eq(pick("gpu"), 0);
    ck_assert_uint_eq(pick("gpu:0"), 0);
    ck_assert_uint_eq(pick("gpu:1"), 1); /* the second of two identical GPUs */
    ck_assert_uint_eq(pick("cpu"), 2);
    ck_assert_uint_eq(pick("cpu:1"), 4);
    ck_assert_uint_eq(pick("accelerator"), 3);
    ck_assert_uint_eq(pick("accelerator:1"), 5);
    ck_assert_uint_eq(reject("other"), CLG_ERR_DEVICE_NOT_FOUND);
    assert_message_has("there is no other device");
}
END_TEST

START_TEST(case_and_whitespace) {
    ck_assert_uint_eq(pick("GPU:1"), 1);
    ck_assert_uint_eq(pick("Cpu"), 2);
    ck_assert_uint_eq(pick("  ACCELERATOR : 1 "), 5);
    ck_assert_uint_eq(pick(" 4\n"), 4);
    ck_assert_uint_eq(pick(" 3 : 1 "), 5);
    ck_assert_uint_eq(pick("RUSTICL"), 4);
    ck_assert_uint_eq(pick("LlVmPiPe"), 4);
    ck_assert_uint_eq(pick("  portable COMPUTING  "), 2);
}
END_TEST

START_TEST(index_and_position) {
    for (int i = 0; i < N_WORKSTATION; ++i) {
        char spec[32];
        snprintf(spec, sizeof spec, "%d", i);
        ck_assert_uint_eq(pick(spec), (size_t)i);
        snprintf(spec, sizeof spec, "%d:%d", ws[i].platform_index, ws[i].device_index);
        ck_assert_uint_eq(pick(spec), (size_t)i);
    }
    ck_assert_uint_eq(pick("005"), 5);
    ck_assert_uint_eq(pick("04:00"), 4);
    /* N is the printed index, not the position in whatever list was passed. */
    ck_assert_uint_eq(pick("2"), 2);
    clg_device_info tail[2] = {ws[4], ws[5]};
    size_t index;
    clg_assert_ok(clg_device_match(tail, 2, "5", &index));
    ck_assert_uint_eq(index, 1);
}
END_TEST

START_TEST(substrings) {
    ck_assert_uint_eq(pick("nvidia"), 0);
    ck_assert_uint_eq(pick("nvidia:1"), 1);
    ck_assert_uint_eq(pick("GeForce:1"), 1);
    ck_assert_uint_eq(pick("pocl"), 2); /* from the platform version */
    ck_assert_uint_eq(pick("amd"), 2);  /* the vendor and name of pocl's CPU */
    ck_assert_uint_eq(pick("mesa"), 4);
    ck_assert_uint_eq(pick("intel"), 3);
    ck_assert_uint_eq(pick("intel:1"), 5);
    ck_assert_uint_eq(pick("llvm"), 2); /* pocl's version names LLVM too, and comes first */
    ck_assert_uint_eq(pick("llvm:1"), 4);
    /* Colons that are not followed by a number are part of the name. */
    ck_assert_uint_eq(pick("pac_s10 : Intel"), 5);
    ck_assert_uint_eq(pick("pac_s10 : Intel:0"), 5);
}
END_TEST

START_TEST(colons_in_device_names) {
    clg_device_info list[2] = {
        make(CLG_DEVICE_GPU, 0, 0, "AMD Accelerated Parallel Processing",
             "Advanced Micro Devices, Inc.", "gfx90a:sramecc+:xnack-", 104, 1700, 64 * GIB),
        make(CLG_DEVICE_GPU, 0, 1, "AMD Accelerated Parallel Processing",
             "Advanced Micro Devices, Inc.", "gfx1030", 36, 2500, 16 * GIB),
    };
    list[0].index = 0;
    list[1].index = 1;
    size_t index = 9;
    clg_assert_ok(clg_device_match(list, 2, "gfx90a:sramecc+:xnack-", &index));
    ck_assert_uint_eq(index, 0);
    clg_assert_ok(clg_device_match(list, 2, "gfx:1", &index));
    ck_assert_uint_eq(index, 1);
    clg_assert_ok(clg_device_match(list, 2, "xnack-:0", &index));
    ck_assert_uint_eq(index, 0);
}
END_TEST

START_TEST(out_of_range_is_not_found) {
    static const char *const specs[] = {
        "6",
        "3090", /* digits are always an index, never a name */
        "1:0",  /* platform 1 has no device */
        "0:2",
        "2:1",
        "9:9",
        "gpu:2",
        "cpu:2",
        "accelerator:2",
        "nvidia:2",
        "nonexistent",
        "portable:1",
        "99999999999999999999999999999999999999",
        "18446744073709551615",
        "18446744073709551616",
        "0:99999999999999999999999999999999",
        "99999999999999999999999999999999:0",
        "gpu:99999999999999999999999999999999",
        "nvidia:18446744073709551616",
        "gpu1",
        "gpu 1",
        ":nvidia",
        "0x10", /* letters make it a name, which matches nothing */
        "1e3",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; ++i) {
        ck_assert_msg(reject(specs[i]) == CLG_ERR_DEVICE_NOT_FOUND, "spec \"%s\": %s", specs[i],
                      clg_last_error());
        assert_message_has(specs[i]);
    }
    reject("gpu:2");
    assert_message_has("there are 2 gpu devices, gpu:0 to gpu:1");
    reject("nvidia:2");
    assert_message_has("only 2 devices match \"nvidia\"");
    reject("portable:1");
    assert_message_has("only 1 device matches \"portable\", portable:0\n");
    reject("nonexistent");
    assert_message_has("contains \"nonexistent\"");
}
END_TEST

START_TEST(garbage_is_a_spec_error) {
    static const char *const specs[] = {
        "gpu:x",
        "1:2:3",
        ":",
        "::",
        "-1",
        "+1",
        "gpu:-1",
        "gpu:+1",
        "gpu:",
        "cpu:",
        "1:",
        ":1",
        "1:-2",
        "1 2",
        "- 1",
        "nvidia:",
        "nvidia:-1",
        "cpu:1:",
        "accelerator:one",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; ++i) {
        clg_status st = reject(specs[i]);
        ck_assert_msg(st == CLG_ERR_DEVICE_SPEC, "spec \"%s\": got %s: %s", specs[i],
                      clg_status_name(st), clg_last_error());
        assert_message_has(specs[i]);
    }
}
END_TEST

START_TEST(hostile_strings) {
    /* A very long spec: refused without reading past it, and quoted only in part. */
    size_t n = 1u << 20;
    char *longspec = malloc(n + 1);
    ck_assert_ptr_nonnull(longspec);
    memset(longspec, 'a', n);
    longspec[n] = '\0';
    ck_assert_uint_eq(reject(longspec), CLG_ERR_DEVICE_NOT_FOUND);
    ck_assert_uint_lt(strlen(clg_last_error()), 4096);
    assert_message_has("aaa...");
    memcpy(longspec + n - 2, ":1", 2);
    ck_assert_uint_eq(reject(longspec), CLG_ERR_DEVICE_NOT_FOUND);
    memset(longspec, '9', n);
    ck_assert_uint_eq(reject(longspec), CLG_ERR_DEVICE_NOT_FOUND);
    longspec[n / 2] = ':';
    ck_assert_uint_eq(reject(longspec), CLG_ERR_DEVICE_NOT_FOUND);
    free(longspec);

    /* Control characters never reach the message (it may be printed to a terminal). */
    ck_assert_uint_eq(reject("\x1b[2J\x07nvidia"), CLG_ERR_DEVICE_NOT_FOUND);
    ck_assert_ptr_null(strchr(clg_last_error(), '\x1b'));
    ck_assert_ptr_null(strchr(clg_last_error(), '\x07'));
    ck_assert_uint_eq(reject("\xff\xfe"), CLG_ERR_DEVICE_NOT_FOUND);

    /* Device strings that fill their arrays without a terminating NUL are still bounded. */
    clg_device_info full = ws[0];
    memset(full.name, 'x', sizeof full.name);
    memset(full.platform_name, 'y', sizeof full.platform_name);
    memset(full.platform_version, 'z', sizeof full.platform_version);
    memset(full.vendor, 'w', sizeof full.vendor);
    size_t index = 7;
    clg_assert_ok(clg_device_match(&full, 1, "xxxx", &index));
    ck_assert_uint_eq(index, 0);
    ck_assert_uint_eq(clg_device_match(&full, 1, "xxxxq", &index), CLG_ERR_DEVICE_NOT_FOUND);
    ck_assert_uint_eq(clg_device_match(&full, 1, "1", &index), CLG_ERR_DEVICE_NOT_FOUND);
}
END_TEST

START_TEST(empty_list) {
    static const char *const specs[] = {NULL, "", "gpu", "0", "0:0", "pocl"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; ++i) {
        size_t index = 3;
        clg_clear_error();
        ck_assert_uint_eq(clg_device_match(NULL, 0, specs[i], &index), CLG_ERR_NO_PLATFORM);
        ck_assert_uint_eq(index, 3);
        assert_message_has("pocl-opencl-icd");
        assert_message_has("OCL_ICD_VENDORS");
    }
    /* A spec that cannot parse is reported as such even with no device. */
    size_t index = 3;
    ck_assert_uint_eq(clg_device_match(ws, 0, "gpu:x", &index), CLG_ERR_DEVICE_SPEC);
    assert_message_has("gpu:x");
    assert_message_has("pocl-opencl-icd");
}
END_TEST

START_TEST(bad_arguments) {
    ck_assert_uint_eq(clg_device_match(ws, N_WORKSTATION, "gpu", NULL), CLG_ERR_INVALID_ARGUMENT);
    size_t index;
    ck_assert_uint_eq(clg_device_match(NULL, 3, "gpu", &index), CLG_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(type_names) {
    ck_assert_str_eq(clg_device_type_name(CLG_DEVICE_GPU), "gpu");
    ck_assert_str_eq(clg_device_type_name(CLG_DEVICE_ACCELERATOR), "accelerator");
    ck_assert_str_eq(clg_device_type_name(CLG_DEVICE_CPU), "cpu");
    ck_assert_str_eq(clg_device_type_name(CLG_DEVICE_OTHER), "other");
    ck_assert_str_eq(clg_device_type_name((clg_device_type)-1), "other");
    ck_assert_str_eq(clg_device_type_name(CLG_DEVICE_TYPE_COUNT), "other");
}
END_TEST

int main(void) {
    Suite *s = suite_create("device-match");
    TCase *tc = tcase_create("match");
    tcase_add_checked_fixture(tc, setup_workstation, NULL);
    tcase_add_test(tc, default_prefers_gpu_then_lowest_index);
    tcase_add_test(tc, default_type_order);
    tcase_add_test(tc, default_ties_by_throughput_then_memory);
    tcase_add_test(tc, types_with_and_without_n);
    tcase_add_test(tc, case_and_whitespace);
    tcase_add_test(tc, index_and_position);
    tcase_add_test(tc, substrings);
    tcase_add_test(tc, colons_in_device_names);
    tcase_add_test(tc, out_of_range_is_not_found);
    tcase_add_test(tc, garbage_is_a_spec_error);
    tcase_add_test(tc, hostile_strings);
    tcase_add_test(tc, empty_list);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, type_names);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
