/* Look up embedded kernel sources, or read them from CLGRAD_KERNEL_DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernel_source.h"

static clg_status read_file(const char *path, char **text, size_t *length) {
    FILE *f = fopen(path, "rb");
    if (!f) return clg_fail(CLG_ERR_IO, "CLGRAD_KERNEL_DIR: cannot open %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return clg_fail(CLG_ERR_OUT_OF_MEMORY, "reading %s: out of host memory", path);
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return clg_fail(CLG_ERR_IO, "CLGRAD_KERNEL_DIR: error reading %s", path);
    }
    buf[len] = '\0';
    *text = buf;
    *length = len;
    return CLG_OK;
}

clg_status clg_kernel_source(const char *name, char **text, size_t *length) {
    const char *dir = getenv("CLGRAD_KERNEL_DIR");
    if (dir && *dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.cl", dir, name);
        return read_file(path, text, length);
    }
    for (const clg_embedded_source *s = clg_embedded_sources; s->name; ++s) {
        if (strcmp(s->name, name) == 0) {
            char *copy = malloc(s->length + 1);
            if (!copy) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel source %s: no memory", name);
            memcpy(copy, s->text, s->length + 1);
            *text = copy;
            *length = s->length;
            return CLG_OK;
        }
    }
    return clg_fail(CLG_ERR_INTERNAL, "no embedded kernel source named '%s'", name);
}
