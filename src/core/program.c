/* Program building and caching. One function builds every program for the context's device;
 * built programs are kept in memory per context and, as device binaries, on disk under
 * $XDG_CACHE_HOME/clgrad (CLGRAD_CACHE_DIR overrides, "off" disables). A disk entry is keyed
 * by a hash of everything that changes the binary and repeats that key inside the file, so a
 * corrupt, truncated or foreign entry is a silent miss that gets rewritten. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/kernel_source.h"
#include "core/program.h"
#include "core/atomic_file.h"

/* Bump when the entry layout or the build options change meaning. */
#define CACHE_FORMAT "clgrad-program-cache-1"
#define ENTRY_MAGIC "CLGPROG1"

/* No device binary comes near this; a larger length field is corruption. The whole entry adds
 * the magic, the key (under 2 KiB, see program_get) and three length and checksum fields. */
#define MAX_BINARY_BYTES ((uint64_t)1 << 31)
#define MAX_ENTRY_BYTES (MAX_BINARY_BYTES + 65536)

typedef struct cache_entry {
    uint64_t h1, h2; /* 128-bit key hash */
    char *family;    /* kernel family name, or NULL for generated programs */
    cl_program program;
} cache_entry;

struct clg_program_cache {
    cache_entry *entries;
    size_t n, cap;
    char dir[4096]; /* "" when the disk cache is off */
    clg_program_stats stats;
};

/* Two FNV-1a style 64-bit hashes with different bases give a 128-bit key; the full key text
 * is also stored in the entry and compared on load, so a collision is only ever a miss. */
typedef struct hasher {
    uint64_t a, b;
} hasher;

static void hash_init(hasher *h) {
    h->a = 0xcbf29ce484222325ull;
    h->b = 0x84222325cbf29ce4ull ^ 0x9E3779B97F4A7C15ull;
}

static void hash_bytes(hasher *h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; ++i) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ull;
        h->b = (h->b ^ p[i]) * 0x00000100000001b3ull + 0x632BE59BD9B4E019ull;
        h->b ^= h->b >> 29;
    }
}

static void hash_str(hasher *h, const char *s) {
    hash_bytes(h, s, strlen(s) + 1); /* include the terminator so "ab","c" != "a","bc" */
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int mkdir_p(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; ++p) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* pocl keeps its own kernel cache keyed by source; handing it a binary back makes it
 * recompile the work-group functions, which measured slower than letting it find the source
 * in its own cache (see README, "Program cache"). Every other platform gets binaries. */
static bool platform_wants_binaries(const clg_context *ctx) {
    const char *force = getenv("CLGRAD_CACHE_BINARIES");
    if (force && *force) return strcmp(force, "0") != 0 && strcmp(force, "off") != 0;
    return strstr(ctx->info.platform_name, "Portable Computing Language") == NULL;
}

/* Says on stderr, once per process and problem, that the cache is off and why: an unusable
 * folder would otherwise cost every run its build time without a word (issue 11). Every
 * context asks again, so a table of what was said keeps it to once. */
static void warn_cache_off(const char *fmt, ...) CLG_PRINTF(1, 2);
static void warn_cache_off(const char *fmt, ...) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t said[32];
    static size_t n_said;
    char msg[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    hasher h;
    hash_init(&h);
    hash_str(&h, msg);
    bool fresh = true;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_said && fresh; ++i)
        fresh = said[i] != h.a;
    if (fresh && n_said < sizeof said / sizeof *said) said[n_said++] = h.a;
    pthread_mutex_unlock(&lock);
    if (fresh) fprintf(stderr, "clgrad: %s; the program cache is off\n", msg);
}

static const char *file_kind(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a folder";
}

/* mkdir_p succeeds when the name already exists, whatever it is; only a folder we may create
 * files in is a usable cache. */
static bool usable_cache_dir(const char *dir, const char *what) {
    struct stat sb;
    if (mkdir_p(dir) != 0) {
        warn_cache_off("%s cannot be created: %s", what, strerror(errno));
        return false;
    }
    if (stat(dir, &sb) != 0) {
        warn_cache_off("%s cannot be used: %s", what, strerror(errno));
        return false;
    }
    if (!S_ISDIR(sb.st_mode)) {
        warn_cache_off("%s is not a directory (%s)", what, file_kind(sb.st_mode));
        return false;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        warn_cache_off("%s is not writable: %s", what, strerror(errno));
        return false;
    }
    return true;
}

bool clg_cache_dir(char *out, size_t size) {
    const char *dir = getenv("CLGRAD_CACHE_DIR");
    const char *from = "CLGRAD_CACHE_DIR";
    out[0] = '\0';
    if (dir && strcmp(dir, "off") == 0) return false;
    if (dir && *dir) {
        snprintf(out, size, "%s", dir);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        if (xdg && *xdg) {
            snprintf(out, size, "%s/clgrad", xdg);
            from = "XDG_CACHE_HOME";
        } else if (home && *home) {
            snprintf(out, size, "%s/.cache/clgrad", home);
            from = "HOME";
        }
    }
    if (!out[0]) return false;
    char what[4200];
    if (dir && *dir)
        snprintf(what, sizeof what, "CLGRAD_CACHE_DIR=%s", out);
    else
        snprintf(what, sizeof what, "the cache folder %s (from %s)", out, from);
    if (!usable_cache_dir(out, what)) {
        out[0] = '\0';
        return false;
    }
    return true;
}

clg_status clg_program_cache_init(clg_context *ctx) {
    clg_program_cache *c = calloc(1, sizeof *c);
    if (!c) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "program cache: out of host memory");
    clg_cache_dir(c->dir, sizeof c->dir);
    if (c->dir[0] && !platform_wants_binaries(ctx)) {
        clg_trace("program cache: binaries off on %s (its own cache is faster)",
                ctx->info.platform_name);
        c->dir[0] = '\0';
    }

    ctx->programs = c;
    return CLG_OK;
}

void clg_program_cache_free(clg_context *ctx) {
    clg_program_cache *c = ctx->programs;
    if (!c) return;
    for (size_t i = 0; i < c->n; ++i) {
        clReleaseProgram(c->entries[i].program);
        free(c->entries[i].family);
    }
    free(c->entries);
    free(c);
    ctx->programs = NULL;
}

clg_program_stats clg_program_cache_stats(const clg_context *ctx) {
    return ctx->programs->stats;
}

/* The key text: everything that changes the binary except the source, which enters through
 * its hash and length. */
static void key_text(const clg_context *ctx, const char *options, const hasher *src,
                     size_t length, char *out, size_t size) {
    snprintf(out, size, "%s\n%s\n%s\n%s\n%s\n%s\n%016llx%016llx:%zu", CACHE_FORMAT,
             options, ctx->info.name, ctx->info.driver_version, ctx->info.platform_name,
             ctx->info.platform_version, (unsigned long long)src->a,
             (unsigned long long)src->b, length);
}

static void entry_path(const clg_program_cache *c, uint64_t h1, uint64_t h2, char *out,
                       size_t size) {
    snprintf(out, size, "%s/%016llx%016llx.bin", c->dir, (unsigned long long)h1,
             (unsigned long long)h2);
}

static uint64_t checksum(const unsigned char *data, size_t n) {
    hasher h;
    hash_init(&h);
    hash_bytes(&h, data, n);
    return h.a ^ h.b;
}

bool clg_program_entry_decode(const unsigned char *data, size_t size, const char *key,
                              size_t *binary_offset, size_t *binary_size) {
    if (!data || !key) return false;
    size_t key_len = strlen(key);
    uint32_t stored_key_len;
    uint64_t bin_len, sum;
    /* Layout: magic[8], u32 key length, key, u64 binary length, binary, u64 checksum, all in
     * host byte order (an entry never leaves the machine that wrote it). Every check compares
     * against what is left, so no length field can make a read run past size. */
    size_t pos = 0;
    if (size < 8 || memcmp(data, ENTRY_MAGIC, 8) != 0) return false;
    pos += 8;
    if (size - pos < sizeof stored_key_len) return false;
    memcpy(&stored_key_len, data + pos, sizeof stored_key_len);
    pos += sizeof stored_key_len;
    if (stored_key_len != key_len || size - pos < key_len) return false;
    if (memcmp(data + pos, key, key_len) != 0) return false;
    pos += key_len;
    if (size - pos < sizeof bin_len) return false;
    memcpy(&bin_len, data + pos, sizeof bin_len);
    pos += sizeof bin_len;
    if (bin_len == 0 || bin_len > MAX_BINARY_BYTES || bin_len > size - pos) return false;
    size_t offset = pos;
    pos += (size_t)bin_len;
    if (size - pos != sizeof sum) return false; /* a short tail, or trailing garbage */
    memcpy(&sum, data + pos, sizeof sum);
    if (sum != checksum(data + offset, (size_t)bin_len)) return false;
    if (binary_offset) *binary_offset = offset;
    if (binary_size) *binary_size = (size_t)bin_len;
    return true;
}

/* Read a whole entry and check it; any inconsistency is a miss (NULL), never an error. The
 * binary is at the returned buffer + *offset. */
static unsigned char *load_entry(const char *path, const char *key, size_t *offset,
                                 size_t *binary_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat sb;
    unsigned char *data = NULL;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
        (uint64_t)sb.st_size <= MAX_ENTRY_BYTES) {
        /* One byte more than the size: a file that grew since fstat is not what we checked. */
        size_t size = (size_t)sb.st_size, got = 0;
        data = malloc(size + 1);
        while (data && got <= size) {
            ssize_t r = read(fd, data + got, size + 1 - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (data &&
            (got != size || !clg_program_entry_decode(data, size, key, offset, binary_size))) {
            free(data);
            data = NULL;
        }
    }
    close(fd);
    return data;
}

/* Write an entry through the atomic file (a reader never sees half an entry, and a planted
 * name is refused); failures only log: the cache is an optimisation. */
static void store_entry(clg_program_cache *c, const char *path, const char *key,
                        const unsigned char *bin, size_t bin_len) {
    uint32_t key_len = (uint32_t)strlen(key);
    uint64_t len = bin_len, sum = checksum(bin, bin_len);
    clg_atomic_file *f;
    clg_status st = clg_atomic_file_open(path, &f);
    if (st == CLG_OK) {
        /* A failed write is remembered by f and reported by the commit, which then aborts. */
        clg_atomic_file_write(f, ENTRY_MAGIC, 8);
        clg_atomic_file_write(f, &key_len, sizeof key_len);
        clg_atomic_file_write(f, key, key_len);
        clg_atomic_file_write(f, &len, sizeof len);
        clg_atomic_file_write(f, bin, bin_len);
        clg_atomic_file_write(f, &sum, sizeof sum);
        st = clg_atomic_file_commit(f);
    }
    if (st != CLG_OK) {
        clg_trace("program cache: entry not stored: %s", clg_last_error());
        return;
    }
    c->stats.disk_writes++;
}

static clg_status build_failed(clg_context *ctx, cl_program prog, cl_int err, const char *name) {
    size_t log_size = 0;
    clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
    char *log = malloc(log_size + 1);
    if (log) {
        log[0] = '\0';
        clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL);
        log[log_size] = '\0';
    }
    clg_status st = clg_fail(CLG_ERR_BUILD, "building program '%s' for %s failed: %s (%d)\n%.12000s",
                             name, ctx->info.name, clg_cl_error_name(err), (int)err,
                             log ? log : "(no build log)");
    free(log);
    return st;
}

static cl_program try_binary(clg_context *ctx, const unsigned char *bin, size_t len,
                             const char *options) {
    cl_int err, bin_status;
    cl_program p = clCreateProgramWithBinary(ctx->cl, 1, &ctx->device, &len, &bin, &bin_status,
                                             &err);
    if (!p) return NULL;
    if (err != CL_SUCCESS || bin_status != CL_SUCCESS ||
        clBuildProgram(p, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        return NULL;
    }
    return p;
}

static clg_status build_source(clg_context *ctx, const char *name, const char *source,
                               size_t length, const char *options, cl_program *out) {
    cl_int err;
    cl_program p = clCreateProgramWithSource(ctx->cl, 1, &source, &length, &err);
    if (!p) return clg_fail_cl(err, "creating program '%s'", name);
    err = clBuildProgram(p, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        clg_status st = build_failed(ctx, p, err, name);
        clReleaseProgram(p);
        return st;
    }
    *out = p;
    return CLG_OK;
}

static unsigned char *program_binary(cl_program p, size_t *len) {
    size_t size = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return NULL;
    unsigned char *bin = malloc(size);
    if (!bin) return NULL;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        return NULL;
    }
    *len = size;
    return bin;
}

static clg_status remember(clg_program_cache *c, uint64_t h1, uint64_t h2, const char *family,
                           cl_program p) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        cache_entry *ne = realloc(c->entries, nc * sizeof *ne);
        if (!ne) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "program cache: out of host memory");
        c->entries = ne;
        c->cap = nc;
    }
    char *fam = NULL;
    if (family) {
        fam = malloc(strlen(family) + 1);
        if (!fam) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "program cache: out of host memory");
        strcpy(fam, family);
    }
    c->entries[c->n++] = (cache_entry){h1, h2, fam, p};
    return CLG_OK;
}

static clg_status program_get(clg_context *ctx, const char *name, const char *family,
                              const char *source, size_t length, const char *options,
                              cl_program *program) {
    clg_program_cache *c = ctx->programs;
    char opts[1024];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2%s%s", options && *options ? " " : "",
             options ? options : "");
    hasher src;
    hash_init(&src);
    hash_bytes(&src, source, length);
    char key[2048];
    key_text(ctx, opts, &src, length, key, sizeof key);
    hasher kh;
    hash_init(&kh);
    hash_str(&kh, key);

    for (size_t i = 0; i < c->n; ++i)
        if (c->entries[i].h1 == kh.a && c->entries[i].h2 == kh.b) {
            c->stats.memory_hits++;
            *program = c->entries[i].program;
            return CLG_OK;
        }

    double t0 = now_seconds();
    cl_program p = NULL;
    char path[4200] = "";
    if (c->dir[0]) {
        entry_path(c, kh.a, kh.b, path, sizeof path);
        size_t offset = 0, bin_len = 0;
        unsigned char *entry = load_entry(path, key, &offset, &bin_len);
        if (entry) {
            p = try_binary(ctx, entry + offset, bin_len, opts);
            free(entry);
        }
        if (p) {
            c->stats.disk_hits++;
            clg_trace("program '%s': disk cache hit (%.3f s)", name, now_seconds() - t0);
        }
    }
    if (!p) {
        clg_status st = build_source(ctx, name, source, length, opts, &p);
        if (st != CLG_OK) return st;
        c->stats.disk_misses++;
        clg_trace("program '%s': built from source in %.3f s%s", name, now_seconds() - t0,
                c->dir[0] ? " (disk cache miss)" : "");
        if (c->dir[0]) {
            size_t bin_len = 0;
            unsigned char *bin = program_binary(p, &bin_len);
            if (bin) store_entry(c, path, key, bin, bin_len);
            free(bin);
        }
    }
    clg_status st = remember(c, kh.a, kh.b, family, p);
    if (st != CLG_OK) {
        clReleaseProgram(p);
        return st;
    }
    *program = p;
    return CLG_OK;
}

clg_status clg_program_get(clg_context *ctx, const char *name, const char *source,
                           size_t length, const char *options, cl_program *program) {
    return program_get(ctx, name, NULL, source, length, options, program);
}

clg_status clg_program_family(clg_context *ctx, const char *family, cl_program *program) {
    clg_program_cache *c = ctx->programs;
    for (size_t i = 0; i < c->n; ++i)
        if (c->entries[i].family && strcmp(c->entries[i].family, family) == 0) {
            c->stats.memory_hits++;
            *program = c->entries[i].program;
            return CLG_OK;
        }
    char *text = NULL;
    size_t len = 0;
    clg_status st = clg_kernel_source(family, &text, &len);
    if (st != CLG_OK) return st;
    st = program_get(ctx, family, family, text, len, NULL, program);
    free(text);
    return st;
}

clg_status clg_kernel_new(clg_context *ctx, const char *family, const char *kernel,
                          cl_kernel *out) {
    cl_program p;
    clg_status st = clg_program_family(ctx, family, &p);
    if (st != CLG_OK) return st;
    cl_int err;
    *out = clCreateKernel(p, kernel, &err);
    if (!*out) return clg_fail_cl(err, "creating kernel %s from cl/%s.cl", kernel, family);
    return CLG_OK;
}
