/* IDX files (MNIST's format), plain or gzip-compressed: the header is checked against the
 * payload before and while reading it, so a corrupt file is a message naming the file and the
 * problem, never a crash, an out-of-bounds read or a giant allocation. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "clgrad/data.h"
#include "core/error.h"

/* Larger than any dataset a host-side loader should hold; a header claiming more is almost
 * certainly corrupt, and refusing it beats a malloc that the OS might grant lazily. */
#define MAX_PAYLOAD_BYTES ((uint64_t)8 << 30)

/* gzread takes an unsigned int count; stay well inside it. */
#define READ_CHUNK ((size_t)1 << 30)

/* Where the payload's size cannot be known up front (gzip, a pipe), its buffer starts this
 * large and doubles as data arrives, so a header claiming gigabytes costs only what came. */
#define FIRST_BUFFER ((size_t)1 << 16)

static const char *type_name(int code) {
    switch (code) {
    case CLG_IDX_U8:
        return "u8";
    case CLG_IDX_I8:
        return "i8";
    case CLG_IDX_I16:
        return "i16";
    case CLG_IDX_I32:
        return "i32";
    case CLG_IDX_F32:
        return "f32";
    case CLG_IDX_F64:
        return "f64";
    default:
        return NULL;
    }
}

static size_t type_size(int code) {
    switch (code) {
    case CLG_IDX_U8:
    case CLG_IDX_I8:
        return 1;
    case CLG_IDX_I16:
        return 2;
    case CLG_IDX_I32:
    case CLG_IDX_F32:
        return 4;
    case CLG_IDX_F64:
        return 8;
    default:
        return 0;
    }
}

/* Turns the gzip state after a short or failed read into a status; CLG_OK at a clean end. */
static clg_status stream_status(gzFile gz, const char *path) {
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    if (errnum == Z_OK) return CLG_OK;
    /* zlib prefixes its message with the path, which ours already starts with. */
    size_t plen = strlen(path);
    if (strncmp(msg, path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0) msg += plen + 2;
    if (errnum == Z_ERRNO)
        return clg_fail(CLG_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    if (errnum == Z_MEM_ERROR)
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: zlib: out of memory", path);
    if (errnum == Z_BUF_ERROR)
        return clg_fail(CLG_ERR_FORMAT, "%s: corrupt gzip stream: it ends early (%s)", path, msg);
    return clg_fail(CLG_ERR_FORMAT, "%s: corrupt gzip stream: %s", path, msg);
}

/* Reads up to n bytes into buf; *got says how many arrived before the end of the data. */
static clg_status read_some(gzFile gz, const char *path, void *buf, size_t n, size_t *got) {
    unsigned char *p = buf;
    size_t done = 0;
    while (done < n) {
        size_t want = n - done < READ_CHUNK ? n - done : READ_CHUNK;
        int r = gzread(gz, p + done, (unsigned)want);
        if (r < 0) {
            *got = done;
            clg_status st = stream_status(gz, path);
            return st != CLG_OK ? st : clg_fail(CLG_ERR_IO, "%s: read failed", path);
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    /* zlib reports a gzip stream cut short as a short read with Z_BUF_ERROR set. */
    return done < n ? stream_status(gz, path) : CLG_OK;
}

static void describe_shape(const clg_idx *idx, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (int d = 0; d < idx->ndim && len < size; ++d)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", d ? "x" : "",
                                (long long)idx->dims[d]);
    if (len < size) snprintf(buf + len, size - len, " %s", type_name(idx->type));
}

/* IDX stores multi-byte values big-endian. */
static void to_host_order(void *data, int64_t count, size_t elem) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    if (elem == 1 || first == 0) return;
    unsigned char *p = data;
    for (int64_t i = 0; i < count; ++i, p += elem) {
        for (size_t a = 0, z = elem - 1; a < z; ++a, --z) {
            unsigned char t = p[a];
            p[a] = p[z];
            p[z] = t;
        }
    }
}

/* Reads the payload into a buffer of cap bytes (cap <= bytes), doubling it up to bytes while
 * it fills; *got says how much arrived. The buffer goes to *data, also on failure. */
static clg_status read_payload(gzFile gz, const char *path, size_t bytes, size_t cap,
                               const char *shape, unsigned char **data, size_t *got) {
    size_t done = 0;
    *got = 0;
    *data = malloc(cap);
    if (!*data)
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for %s", path, cap,
                        shape);
    for (;;) {
        size_t n;
        clg_status st = read_some(gz, path, *data + done, cap - done, &n);
        done += n;
        *got = done;
        if (st != CLG_OK || done < cap || cap == bytes) return st;
        size_t next = cap > bytes / 2 ? bytes : 2 * cap;
        unsigned char *grown = realloc(*data, next);
        if (!grown)
            return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                            "%s: cannot allocate %zu bytes for %s (%zu bytes of it read)", path,
                            next, shape, done);
        *data = grown;
        cap = next;
    }
}

static clg_status parse(gzFile gz, const char *path, const struct stat *file, clg_idx *idx) {
    unsigned char magic[4];
    size_t got;
    clg_status st = read_some(gz, path, magic, 4, &got);
    if (st != CLG_OK) return st;
    const char *form = gzdirect(gz) ? "file" : "decompressed file";
    if (got < 4)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: truncated header: %s has %zu bytes, an IDX header needs at least 4",
                        path, form, got);
    if (magic[0] != 0 || magic[1] != 0)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: not an IDX file: magic bytes %02x %02x %02x %02x, expected 00 00 "
                        "<type> <ndim>",
                        path, magic[0], magic[1], magic[2], magic[3]);
    if (!type_name(magic[2]))
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: unknown IDX element type 0x%02x (expected 0x08 u8, 0x09 i8, 0x0B "
                        "i16, 0x0C i32, 0x0D f32 or 0x0E f64)",
                        path, magic[2]);
    if (magic[3] < 1 || magic[3] > CLG_MAX_DIMS)
        return clg_fail(CLG_ERR_FORMAT, "%s: IDX header says %d dimensions; clgrad reads 1 to %d",
                        path, magic[3], CLG_MAX_DIMS);
    idx->type = (clg_idx_type)magic[2];
    idx->ndim = magic[3];

    unsigned char dims[4 * CLG_MAX_DIMS];
    size_t need = 4 * (size_t)idx->ndim;
    st = read_some(gz, path, dims, need, &got);
    if (st != CLG_OK) return st;
    if (got < need)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: truncated header: %d dimensions need %zu bytes after the magic, %s "
                        "has %zu",
                        path, idx->ndim, need, form, got);
    size_t elem = type_size(idx->type);
    uint64_t bytes = elem;
    bool too_big = false;
    for (int d = 0; d < idx->ndim; ++d) {
        const unsigned char *b = dims + 4 * d;
        uint64_t v = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
        if (v == 0) return clg_fail(CLG_ERR_FORMAT, "%s: IDX header: dimension %d is 0", path, d);
        idx->dims[d] = (int64_t)v;
        /* Each factor is below 2^32 and the running product stays below the limit, so the
         * check itself cannot overflow. */
        if (!too_big && bytes > MAX_PAYLOAD_BYTES / v) too_big = true;
        if (!too_big) bytes *= v;
    }
    char shape[160];
    describe_shape(idx, shape, sizeof shape);
    if (too_big || bytes > MAX_PAYLOAD_BYTES || bytes > SIZE_MAX)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: IDX header says %s, more than the 8 GiB clgrad accepts (corrupt "
                        "header?)",
                        path, shape);
    idx->count = (int64_t)(bytes / elem);

    /* A plain file's size is known: a header claiming more than follows it is refused before
     * anything is allocated (a 12-byte file can claim 2 GiB). */
    uint64_t header = 4 + need;
    size_t cap = bytes < FIRST_BUFFER ? (size_t)bytes : FIRST_BUFFER;
    if (gzdirect(gz) && S_ISREG(file->st_mode)) {
        uint64_t size = (uint64_t)file->st_size;
        uint64_t has = size > header ? size - header : 0;
        if (has < bytes)
            return clg_fail(CLG_ERR_FORMAT,
                            "%s: truncated: header says %s = %llu bytes of data, %s has %llu: "
                            "the header claims more data than the file holds",
                            path, shape, (unsigned long long)bytes, form,
                            (unsigned long long)has);
        cap = (size_t)bytes;
    }
    unsigned char *data;
    st = read_payload(gz, path, (size_t)bytes, cap, shape, &data, &got);
    idx->data = data;
    if (st != CLG_OK) return st;
    if (got < bytes)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: truncated: header says %s = %llu bytes of data, %s has %zu: the "
                        "header claims more data than the file holds",
                        path, shape, (unsigned long long)bytes, form, got);

    /* Count what follows the payload: a file longer than its header says is as suspect as a
     * shorter one (a wrong header, or two files concatenated). */
    unsigned char scratch[65536];
    uint64_t extra = 0;
    for (;;) {
        st = read_some(gz, path, scratch, sizeof scratch, &got);
        if (st != CLG_OK) return st;
        extra += got;
        if (got < sizeof scratch) break;
    }
    if (extra)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: oversized: header says %s = %llu bytes of data, %s has %llu (%llu "
                        "extra bytes)",
                        path, shape, (unsigned long long)bytes, form,
                        (unsigned long long)(bytes + extra), (unsigned long long)extra);
    to_host_order(idx->data, idx->count, elem);
    return CLG_OK;
}

clg_status clg_idx_load(const char *path, clg_idx **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_idx_load: out is NULL");
    *out = NULL;
    if (!path) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_idx_load: path is NULL");
    /* Opened here rather than by gzopen, so that parse can compare the header's claim with
     * the file's size. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        return clg_fail(CLG_ERR_IO, "%s: cannot open: %s", path, strerror(err));
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: cannot open: out of memory", path);
    }
    gzbuffer(gz, 1u << 17);
    clg_idx *idx = calloc(1, sizeof *idx);
    clg_status st = idx ? parse(gz, path, &sb, idx)
                        : clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    gzclose(gz);
    if (st != CLG_OK) {
        clg_idx_free(idx);
        return st;
    }
    *out = idx;
    return CLG_OK;
}

void clg_idx_free(clg_idx *idx) {
    if (!idx) return;
    free(idx->data);
    free(idx);
}
