/* clgrad-devices: list every OpenCL device clgrad can use, with the numbers CLGRAD_DEVICE
 * accepts, and mark the one the current CLGRAD_DEVICE (or the default) selects.
 * Text for people, --json for scripts. Uses only the public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/device.h"
#include "clgrad/status.h"

static void usage(FILE *f) {
    fputs("usage: clgrad-devices [--json]\n"
          "List the OpenCL devices clgrad can use; '*' marks the one CLGRAD_DEVICE selects.\n"
          "  --json   print a JSON array of objects (with a \"selected\" member)\n"
          "  --help   show this help\n"
          "CLGRAD_DEVICE: unset or empty for the best device, gpu|cpu|accelerator[:N],\n"
          "an index N from this list, P:D (platform:device), or a name substring[:N]\n"
          "such as pocl, rusticl, nvidia.\n"
          "Exit status: 0 listed and selected, 1 no device or CLGRAD_DEVICE selects none,\n"
          "2 bad usage.\n",
          f);
}

/* Binary units with one decimal: enough to tell devices apart at a glance. */
static const char *human_bytes(uint64_t bytes, char *buf, size_t cap) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0])
        v /= 1024.0, ++u;
    if (u == 0 || v == (double)(uint64_t)v)
        snprintf(buf, cap, "%.0f %s", v, units[u]);
    else
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

/* "OpenCL C 1.2 pocl" -> "1.2": the column holds the number, --json keeps the full string. */
static const char *c_version(const char *full, char *buf, size_t cap) {
    const char *prefix = "OpenCL C ";
    const char *v = strncmp(full, prefix, strlen(prefix)) == 0 ? full + strlen(prefix) : full;
    size_t n = strcspn(v, " ");
    if (n == 0) return "?";
    if (n >= cap) n = cap - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

static void print_text(const clg_device_info *list, size_t count, size_t selected,
                       int have_selection) {
    printf("   # P:D  type         CUs   MHz     global      local  max alloc  OpenCL C  fp16 "
           "fp64  device | platform | vendor\n");
    for (size_t i = 0; i < count; ++i) {
        const clg_device_info *d = &list[i];
        char pd[32], g[32], l[32], a[32], cv[32];
        snprintf(pd, sizeof pd, "%d:%d", d->platform_index, d->device_index);
        printf("%c%3d %-4s %-11s %4u %5u %10s %10s %10s  %-8s  %-4s %-4s  %s | %s | %s\n",
               have_selection && i == selected ? '*' : ' ', d->index, pd,
               clg_device_type_name(d->type), d->compute_units, d->clock_mhz,
               human_bytes(d->global_mem_bytes, g, sizeof g),
               human_bytes(d->local_mem_bytes, l, sizeof l),
               human_bytes(d->max_alloc_bytes, a, sizeof a),
               c_version(d->opencl_c_version, cv, sizeof cv), d->fp16 ? "yes" : "no",
               d->fp64 ? "yes" : "no", d->name, d->platform_name, d->vendor);
    }
}

/* Length of the valid UTF-8 sequence at s, or 0 if the byte there starts none. Drivers report
 * names in whatever bytes they like; JSON must stay valid whatever they are. */
static size_t utf8_len(const unsigned char *s) {
    size_t n;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xE0) == 0xC0)
        n = 2, min = 0x80, cp = s[0] & 0x1F;
    else if ((s[0] & 0xF0) == 0xE0)
        n = 3, min = 0x800, cp = s[0] & 0x0F;
    else if ((s[0] & 0xF8) == 0xF0)
        n = 4, min = 0x10000, cp = s[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; ++i) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

static void json_string(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    putchar('"');
    while (*p) {
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p++);
        } else if (*p < 0x20 || *p == 0x7F) {
            printf("\\u%04x", *p++);
        } else {
            size_t n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", stdout);
                ++p;
            } else {
                fwrite(p, 1, n, stdout);
                p += n;
            }
        }
    }
    putchar('"');
}

static void json_member(const char *key, const char *value, int last) {
    printf("    \"%s\": ", key);
    json_string(value);
    fputs(last ? "\n" : ",\n", stdout);
}

static void print_json(const clg_device_info *list, size_t count, size_t selected,
                       int have_selection) {
    fputs("[", stdout);
    for (size_t i = 0; i < count; ++i) {
        const clg_device_info *d = &list[i];
        fputs(i ? ",\n  {\n" : "\n  {\n", stdout);
        printf("    \"index\": %d,\n", d->index);
        printf("    \"platform_index\": %d,\n", d->platform_index);
        printf("    \"device_index\": %d,\n", d->device_index);
        json_member("type", clg_device_type_name(d->type), 0);
        json_member("name", d->name, 0);
        json_member("platform", d->platform_name, 0);
        json_member("platform_version", d->platform_version, 0);
        json_member("vendor", d->vendor, 0);
        json_member("driver_version", d->driver_version, 0);
        json_member("opencl_c_version", d->opencl_c_version, 0);
        printf("    \"compute_units\": %u,\n", d->compute_units);
        printf("    \"clock_mhz\": %u,\n", d->clock_mhz);
        printf("    \"global_mem_bytes\": %llu,\n", (unsigned long long)d->global_mem_bytes);
        printf("    \"local_mem_bytes\": %llu,\n", (unsigned long long)d->local_mem_bytes);
        printf("    \"max_alloc_bytes\": %llu,\n", (unsigned long long)d->max_alloc_bytes);
        printf("    \"max_work_group_size\": %zu,\n", d->max_work_group_size);
        printf("    \"fp16\": %s,\n", d->fp16 ? "true" : "false");
        printf("    \"fp64\": %s,\n", d->fp64 ? "true" : "false");
        printf("    \"loop_limit\": %u,\n", (unsigned)d->loop_limit);
        printf("    \"selected\": %s\n  }", have_selection && i == selected ? "true" : "false");
    }
    fputs(count ? "\n]\n" : "]\n", stdout);
}

int main(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "clgrad-devices: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    clg_device_info *list = NULL;
    size_t count = 0;
    clg_status st = clg_device_list(&list, &count);
    if (st != CLG_OK) {
        if (json) print_json(NULL, 0, 0, 0);
        fprintf(stderr, "clgrad-devices: %s: %s\n", clg_status_name(st), clg_last_error());
        return 1;
    }

    const char *spec = getenv("CLGRAD_DEVICE");
    size_t selected = 0;
    clg_status sel = clg_device_match(list, count, spec, &selected);
    /* The match error is read before printing: the listing must not depend on it, and the
     * message must survive until it is shown. */
    char *why = NULL;
    if (sel != CLG_OK) {
        const char *msg = clg_last_error();
        why = malloc(strlen(msg) + 1);
        if (why) strcpy(why, msg);
    }

    if (json)
        print_json(list, count, selected, sel == CLG_OK);
    else
        print_text(list, count, selected, sel == CLG_OK);

    if (sel == CLG_OK && !json) {
        if (spec && spec[strspn(spec, " \t\n\r\f\v")])
            printf("* selected by CLGRAD_DEVICE=%s\n", spec);
        else
            printf("* selected by default (CLGRAD_DEVICE unset or empty): the best device\n");
    }
    if (sel != CLG_OK)
        fprintf(stderr, "clgrad-devices: CLGRAD_DEVICE selects no device: %s: %s\n",
                clg_status_name(sel), why ? why : "");
    free(why);
    clg_device_list_free(list);
    return sel == CLG_OK ? 0 : 1;
}
