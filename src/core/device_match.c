/* Device selection: which entry of a device list a spec string chooses (CLGRAD_DEVICE, or the
 * spec given to clg_context_create). Pure: no OpenCL here, so it is tested on made-up lists.
 *
 * Grammar of a device spec. Spaces around the spec and around ':' are ignored; words ignore
 * case.
 *   (unset or empty)   the best device: a GPU, else an accelerator, else a CPU, else any other
 *                      kind; among equals the most compute units x clock MHz, then the most
 *                      global memory, then the lowest index.
 *   gpu[:N]            the N-th GPU, counted from 0 in list order (":N" left out: the first).
 *   cpu[:N], accelerator[:N], other[:N]   the same for CPUs, accelerators, other devices.
 *   N                  the device with index N, as printed by clgrad-devices.
 *   P:D                device D of OpenCL platform P, both counted from 0 as clinfo counts
 *                      them (a platform without devices keeps its number).
 *   WORD[:N]           the N-th device (from 0; the first without ":N") whose platform name,
 *                      platform version, vendor or device name contains WORD: nvidia, amd,
 *                      intel, pocl, rusticl, llvmpipe, "portable computing".
 * A spec made only of digits, ':', '+', '-' and spaces must be N or P:D ("-1" and "1:2:3" are
 * errors), and a number after ':' must be plain digits. Other text after the last ':' belongs
 * to WORD, since some device names hold colons (AMD's "gfx90a:sramecc+:xnack-").
 * Errors: CLG_ERR_DEVICE_SPEC when the spec does not parse, CLG_ERR_DEVICE_NOT_FOUND when it
 * matches no device, CLG_ERR_NO_PLATFORM when the list is empty. The message says what was
 * asked and lists every device. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clgrad/device.h"
#include "core/context.h"
#include "core/error.h"

/* The spec is never copied: it may be arbitrarily long, so parsing works on slices of it. */
typedef struct span {
    const char *s;
    size_t n;
} span;

typedef enum spec_kind {
    SPEC_BEST,
    SPEC_TYPE,     /* type, nth */
    SPEC_INDEX,    /* nth = the index */
    SPEC_POSITION, /* platform:device = nth:device */
    SPEC_WORD,     /* word, nth */
} spec_kind;

typedef struct parsed_spec {
    spec_kind kind;
    clg_device_type type;
    size_t nth;
    size_t device;
    span word;
} parsed_spec;

static span trim(span x) {
    while (x.n && isspace((unsigned char)x.s[0]))
        ++x.s, --x.n;
    while (x.n && isspace((unsigned char)x.s[x.n - 1]))
        --x.n;
    return x;
}

static bool all_digits(span x) {
    if (x.n == 0) return false;
    for (size_t i = 0; i < x.n; ++i)
        if (!isdigit((unsigned char)x.s[i])) return false;
    return true;
}

/* Text that can only have been meant as numbers ("-1", "1:2:3", ":"). */
static bool numeric_only(span x) {
    for (size_t i = 0; i < x.n; ++i) {
        unsigned char c = (unsigned char)x.s[i];
        if (!isdigit(c) && c != ':' && c != '+' && c != '-' && !isspace(c)) return false;
    }
    return true;
}

/* Saturates at SIZE_MAX: a number too large for size_t is still just "no such device". */
static size_t parse_size(span x) {
    size_t v = 0;
    for (size_t i = 0; i < x.n; ++i) {
        size_t digit = (size_t)(x.s[i] - '0');
        if (v > (SIZE_MAX - digit) / 10) return SIZE_MAX;
        v = v * 10 + digit;
    }
    return v;
}

static bool span_ieq(span x, const char *lit) {
    size_t n = strlen(lit);
    if (x.n != n) return false;
    for (size_t i = 0; i < n; ++i)
        if (tolower((unsigned char)x.s[i]) != tolower((unsigned char)lit[i])) return false;
    return true;
}

/* Device strings are fixed arrays; a hand-built list may fill one without a NUL. */
static int field_len(const char field[CLG_DEVICE_STR]) {
    return (int)strnlen(field, CLG_DEVICE_STR);
}

static bool contains_ci(const char field[CLG_DEVICE_STR], span needle) {
    size_t n = (size_t)field_len(field);
    if (needle.n > n) return false;
    for (size_t i = 0; i + needle.n <= n; ++i) {
        size_t j = 0;
        while (j < needle.n &&
               tolower((unsigned char)field[i + j]) == tolower((unsigned char)needle.s[j]))
            ++j;
        if (j == needle.n) return true;
    }
    return false;
}

static bool type_word(span x, clg_device_type *type) {
    static const struct {
        const char *word;
        clg_device_type type;
    } words[] = {{"gpu", CLG_DEVICE_GPU},
                 {"accelerator", CLG_DEVICE_ACCELERATOR},
                 {"cpu", CLG_DEVICE_CPU},
                 {"other", CLG_DEVICE_OTHER}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; ++i)
        if (span_ieq(x, words[i].word)) {
            *type = words[i].type;
            return true;
        }
    return false;
}

/* Returns NULL when the spec parses, else why it does not. */
static const char *parse_spec(const char *text, parsed_spec *out) {
    memset(out, 0, sizeof *out);
    out->kind = SPEC_BEST;
    if (!text) return NULL;
    span spec = trim((span){text, strlen(text)});
    if (spec.n == 0) return NULL;

    size_t colons = 0, last = 0;
    for (size_t i = 0; i < spec.n; ++i)
        if (spec.s[i] == ':') ++colons, last = i;
    span head = spec, tail = {spec.s + spec.n, 0};
    if (colons) {
        head = trim((span){spec.s, last});
        tail = trim((span){spec.s + last + 1, spec.n - last - 1});
    }

    if (numeric_only(spec)) {
        if (colons == 0 && all_digits(spec)) {
            out->kind = SPEC_INDEX;
            out->nth = parse_size(spec);
            return NULL;
        }
        if (colons == 1 && all_digits(head) && all_digits(tail)) {
            out->kind = SPEC_POSITION;
            out->nth = parse_size(head);
            out->device = parse_size(tail);
            return NULL;
        }
        return "a spec made of numbers must be an index N or a position P:D, digits only";
    }

    clg_device_type type;
    bool numbered = colons && (tail.n == 0 || numeric_only(tail));
    if (numbered) {
        if (!all_digits(tail)) return "after ':' comes a number from 0 (digits only)";
        out->nth = parse_size(tail);
    } else {
        if (colons && type_word(head, &type))
            return "after a device type and ':' comes a number from 0 (digits only)";
        head = spec;
    }
    if (type_word(head, &type)) {
        out->kind = SPEC_TYPE;
        out->type = type;
    } else {
        out->kind = SPEC_WORD;
        out->word = head;
    }
    return NULL;
}

/* Lower is better. Unknown enum values from a hand-built list count as "other". */
static int type_rank(clg_device_type t) {
    switch (t) {
    case CLG_DEVICE_GPU:
        return 0;
    case CLG_DEVICE_ACCELERATOR:
        return 1;
    case CLG_DEVICE_CPU:
        return 2;
    default:
        return 3;
    }
}

static bool better(const clg_device_info *a, const clg_device_info *b) {
    int ra = type_rank(a->type), rb = type_rank(b->type);
    if (ra != rb) return ra < rb;
    /* Both factors are 32-bit, so the product cannot overflow 64 bits. */
    uint64_t sa = (uint64_t)a->compute_units * a->clock_mhz;
    uint64_t sb = (uint64_t)b->compute_units * b->clock_mhz;
    if (sa != sb) return sa > sb;
    return a->global_mem_bytes > b->global_mem_bytes;
}

static bool type_is(const clg_device_info *d, clg_device_type t) {
    return type_rank(d->type) == type_rank(t);
}

/* The platform version is searched too because pocl names itself only there: its platform
 * is "Portable Computing Language", its version "OpenCL 3.0 PoCL 3.1 ...". */
static bool word_matches(const clg_device_info *d, span word) {
    return contains_ci(d->platform_name, word) || contains_ci(d->vendor, word) ||
           contains_ci(d->name, word) || contains_ci(d->platform_version, word);
}

/* Spec text as it appears in messages: cut short and with control characters replaced, since
 * it may be anything a user put in an environment variable. */
#define SHOWN_MAX 120
static void show(span x, char out[SHOWN_MAX + 4]) {
    size_t n = x.n < SHOWN_MAX ? x.n : SHOWN_MAX;
    for (size_t i = 0; i < n; ++i)
        out[i] = iscntrl((unsigned char)x.s[i]) ? '?' : x.s[i];
    strcpy(out + n, x.n > n ? "..." : "");
}

void clg_device_append_list(const clg_device_info *list, size_t count) {
    if (count == 0) {
        clg_error_append("No OpenCL device exists here: install one (on Debian or Ubuntu `apt "
                         "install pocl-opencl-icd` gives a CPU device), and check that "
                         "OCL_ICD_VENDORS, if set, names a folder of .icd files.");
        return;
    }
    clg_error_append("Devices (choose one with CLGRAD_DEVICE=N, P:D, gpu|cpu|accelerator[:N] "
                     "or a name[:N]; unset picks the best):");
    for (size_t i = 0; i < count; ++i) {
        const clg_device_info *d = &list[i];
        clg_error_append("  [%d] %d:%d %s %.*s (%.*s)", d->index, d->platform_index,
                         d->device_index, clg_device_type_name(d->type), field_len(d->name),
                         d->name, field_len(d->platform_name), d->platform_name);
    }
}

static clg_status fail_listing(clg_status st, const clg_device_info *list, size_t count,
                               const char *fmt, ...) CLG_PRINTF(4, 5);
static clg_status fail_listing(clg_status st, const clg_device_info *list, size_t count,
                               const char *fmt, ...) {
    char first[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first, sizeof first, fmt, ap);
    va_end(ap);
    clg_fail(st, "%s", first);
    clg_device_append_list(list, count);
    return st;
}

clg_status clg_device_match(const clg_device_info *list, size_t count, const char *spec,
                            size_t *index) {
    if (!index) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_device_match: index is NULL");
    if (!list && count) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_device_match: list is NULL");
    char shown[SHOWN_MAX + 4];
    show(trim((span){spec ? spec : "", spec ? strlen(spec) : 0}), shown);

    parsed_spec p;
    const char *why = parse_spec(spec, &p);
    if (why)
        return fail_listing(CLG_ERR_DEVICE_SPEC, list, count, "bad device spec \"%s\": %s", shown,
                            why);
    if (count == 0)
        return fail_listing(CLG_ERR_NO_PLATFORM, list, count,
                            "no OpenCL device to choose from (device spec \"%s\")", shown);

    size_t seen = 0;
    for (size_t i = 0; i < count; ++i) {
        const clg_device_info *d = &list[i];
        bool hit = false;
        switch (p.kind) {
        case SPEC_BEST:
            if (i == 0 || better(d, &list[*index])) *index = i;
            continue;
        case SPEC_INDEX:
            hit = d->index >= 0 && (size_t)d->index == p.nth;
            break;
        case SPEC_POSITION:
            hit = d->platform_index >= 0 && d->device_index >= 0 &&
                  (size_t)d->platform_index == p.nth && (size_t)d->device_index == p.device;
            break;
        case SPEC_TYPE:
            hit = type_is(d, p.type) && seen++ == p.nth;
            break;
        case SPEC_WORD:
            hit = word_matches(d, p.word) && seen++ == p.nth;
            break;
        }
        if (hit) {
            *index = i;
            return CLG_OK;
        }
    }
    if (p.kind == SPEC_BEST) return CLG_OK;

    switch (p.kind) {
    case SPEC_INDEX:
        return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                            "no device has index %s (there %s %zu device%s)", shown,
                            count == 1 ? "is" : "are", count, count == 1 ? "" : "s");
    case SPEC_POSITION:
        return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                            "no device at platform:device %s (P counts every OpenCL platform, "
                            "D the devices within it)",
                            shown);
    case SPEC_TYPE: {
        const char *t = clg_device_type_name(p.type);
        if (seen == 0)
            return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                                "no device matches \"%s\": there is no %s device", shown, t);
        if (seen == 1)
            return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                                "no device matches \"%s\": there is 1 %s device, %s:0", shown, t,
                                t);
        return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                            "no device matches \"%s\": there are %zu %s devices, %s:0 to %s:%zu",
                            shown, seen, t, t, t, seen - 1);
    }
    default: {
        char word[SHOWN_MAX + 4];
        show(p.word, word);
        if (seen == 0)
            return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                                "no device matches \"%s\": no platform name, platform version, "
                                "vendor or device name contains \"%s\"",
                                shown, word);
        if (seen == 1)
            return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                                "no device matches \"%s\": only 1 device matches \"%s\", %s:0",
                                shown, word, word);
        return fail_listing(CLG_ERR_DEVICE_NOT_FOUND, list, count,
                            "no device matches \"%s\": only %zu devices match \"%s\", %s:0 to "
                            "%s:%zu",
                            shown, seen, word, word, word, seen - 1);
    }
    }
}
