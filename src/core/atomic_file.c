/* Atomic file replacement (see atomic_file.h). rename() within one directory is atomic on
 * POSIX file systems, so a reader sees either the old file or the complete new one; the
 * fsyncs order the data before the rename on disk, so a crash cannot leave a torn file. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/atomic_file.h"

/* Creating the temporary gives up after this many names that already exist: random names
 * collide only when someone plants them. */
#define MAX_NAME_TRIES 64

struct clg_atomic_file {
    FILE *fp;
    char *path;
    char *dir; /* the target's folder, for the stale-temporary sweep and its fsync */
    char *tmp;
    clg_status status; /* first failure of a write; commit refuses after one */
};

static _Thread_local clg_atomic_fail injected;

void clg_atomic_file_inject_failure(clg_atomic_fail step) {
    injected = step;
}

static bool fail_now(clg_atomic_fail step) {
    if (injected != step) return false;
    errno = step == CLG_ATOMIC_FAIL_WRITE ? ENOSPC : EIO;
    return true;
}

static void free_file(clg_atomic_file *f) {
    free(f->tmp);
    free(f->dir);
    free(f->path);
    free(f);
}

/* 64 unpredictable bits, so nobody can plant the temporary's name in advance. Without
 * /dev/urandom the clocks and an address still vary; O_EXCL keeps even a guessed name safe
 * (the open fails and another name is tried), so guessing buys an attacker nothing more. */
static uint64_t random_bits(void) {
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, &r, sizeof r);
        close(fd);
        if (n == (ssize_t)sizeof r) return r;
    }
    static _Thread_local uint64_t counter;
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    r = (uint64_t)a.tv_nsec ^ (uint64_t)a.tv_sec << 30 ^ (uint64_t)b.tv_nsec << 17 ^
        (uint64_t)(uintptr_t)&r ^ ++counter * 0x9E3779B97F4A7C15ull;
    /* splitmix64's finaliser spreads the few varying bits over all 64 */
    r = (r ^ r >> 30) * 0xBF58476D1CE4E5B9ull;
    r = (r ^ r >> 27) * 0x94D049BB133111EBull;
    return r ^ r >> 31;
}

/* True when name is "<base>" CLG_ATOMIC_TMP_TAG "<pid>.<16 hex digits>"; *pid gets the pid. */
static bool temp_name_of(const char *name, const char *base, size_t base_len, pid_t *pid) {
    static const char tag[] = CLG_ATOMIC_TMP_TAG;
    if (strncmp(name, base, base_len) != 0) return false;
    name += base_len;
    if (strncmp(name, tag, sizeof tag - 1) != 0) return false;
    name += sizeof tag - 1;
    long v = 0;
    int digits = 0;
    for (; *name >= '0' && *name <= '9'; ++name, ++digits) {
        if (digits == 9) return false; /* pids fit in 9 digits on every system we know */
        v = v * 10 + (*name - '0');
    }
    /* pid 0 or 1 would make kill() test a process group or init: never ours */
    if (digits == 0 || v < 2 || *name++ != '.') return false;
    for (int i = 0; i < 16; ++i, ++name)
        if (!((*name >= '0' && *name <= '9') || (*name >= 'a' && *name <= 'f'))) return false;
    if (*name) return false;
    *pid = (pid_t)v;
    return true;
}

/* A writer killed mid-save (kill -9, OOM killer) leaves its full-size temporary behind, and
 * nothing else would ever remove it. Remove those of this path whose writer is gone: a live
 * process's temporary (another thread's, another saver's) is never touched, and neither is
 * anything but a regular file (lstat semantics; unlinkat removes a name, never follows it).
 * Best effort: a folder we cannot read just keeps its leftovers. */
static void remove_stale_temporaries(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return;
    int dfd = dirfd(d);
    size_t base_len = strlen(base);
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        pid_t pid;
        if (!temp_name_of(e->d_name, base, base_len, &pid) || pid == self) continue;
        /* EPERM means the process exists under another user: alive, so keep its file. */
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        struct stat sb;
        if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (unlinkat(dfd, e->d_name, 0) == 0)
            clg_trace("%s/%s: removed the temporary of a writer that is gone", dir, e->d_name);
    }
    closedir(d);
}

/* Splits path into its folder (".", "/" or the part before the last slash) and base name. */
static bool split_path(const char *path, char **dir, const char **base) {
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    *dir = malloc(n + 1);
    if (!*dir) return false;
    if (!slash)
        memcpy(*dir, ".", 2);
    else {
        memcpy(*dir, path, n);
        (*dir)[n] = '\0';
    }
    *base = slash ? slash + 1 : path;
    return true;
}

clg_status clg_atomic_file_open(const char *path, clg_atomic_file **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_atomic_file_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_atomic_file_open: empty path");
    clg_atomic_file *f = calloc(1, sizeof *f);
    size_t len = strlen(path);
    /* tag, a pid of up to 20 digits, '.', 16 hex digits, '\0' */
    size_t cap = len + sizeof CLG_ATOMIC_TMP_TAG + 40;
    const char *base = NULL;
    if (f) f->path = malloc(len + 1);
    if (f) f->tmp = malloc(cap);
    if (!f || !f->path || !f->tmp || !split_path(path, &f->dir, &base)) {
        if (f) free_file(f);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    memcpy(f->path, path, len + 1);
    if (!*base) {
        free_file(f);
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: names a folder, not a file", path);
    }
    remove_stale_temporaries(f->dir, base);

    /* The temporary sits next to the target (rename cannot cross file systems) under a name
     * nobody can predict; O_EXCL|O_NOFOLLOW refuse whatever is planted there, a symlink
     * included, instead of writing through it. */
    int fd = -1, err = EEXIST;
    for (int i = 0; i < MAX_NAME_TRIES && fd < 0 && err == EEXIST; ++i) {
        snprintf(f->tmp, cap, "%s" CLG_ATOMIC_TMP_TAG "%ld.%016llx", path, (long)getpid(),
                 (unsigned long long)random_bits());
        fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        err = fd < 0 ? errno : 0;
    }
    if (fd >= 0) {
        f->fp = fdopen(fd, "wb");
        if (!f->fp) {
            err = errno;
            close(fd);
            unlink(f->tmp);
        }
    }
    if (!f->fp) {
        clg_status st = clg_fail(CLG_ERR_IO, "%s: cannot create temporary file %s: %s", path,
                                 f->tmp, strerror(err));
        free_file(f);
        return st;
    }
    *out = f;
    return CLG_OK;
}

clg_status clg_atomic_file_write(clg_atomic_file *f, const void *data, size_t size) {
    if (!f) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_atomic_file_write: NULL file");
    if (f->status != CLG_OK) return f->status;
    if (size == 0) return CLG_OK;
    if (fail_now(CLG_ATOMIC_FAIL_WRITE) || fwrite(data, 1, size, f->fp) != size) {
        int err = errno;
        f->status =
            clg_fail(CLG_ERR_IO, "%s: write to %s failed: %s", f->path, f->tmp, strerror(err));
    }
    return f->status;
}

void clg_atomic_file_abort(clg_atomic_file *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    unlink(f->tmp);
    free_file(f);
}

/* The directory entry of the rename must reach the disk too, or a crash could bring back the
 * old file (or neither). Some file systems cannot fsync a directory (EINVAL): nothing more can
 * be done there, so that is not an error. */
static clg_status sync_directory(const clg_atomic_file *f) {
    clg_status st = CLG_OK;
    int fd = open(f->dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = clg_fail(CLG_ERR_IO, "%s: written, but cannot open directory %s to sync it: %s",
                      f->path, f->dir, strerror(errno));
    } else {
        if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
            st = clg_fail(CLG_ERR_IO, "%s: written, but syncing directory %s failed: %s",
                          f->path, f->dir, strerror(errno));
        close(fd);
    }
    return st;
}

clg_status clg_atomic_file_commit(clg_atomic_file *f) {
    if (!f) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_atomic_file_commit: NULL file");
    clg_status st = f->status;
    if (st == CLG_OK) {
        if (fail_now(CLG_ATOMIC_FAIL_SYNC) || fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0)
            st = clg_fail(CLG_ERR_IO, "%s: flushing %s to disk failed: %s", f->path, f->tmp,
                          strerror(errno));
    }
    if (st == CLG_OK) {
        FILE *fp = f->fp;
        f->fp = NULL;
        if (fclose(fp) != 0)
            st =
                clg_fail(CLG_ERR_IO, "%s: closing %s failed: %s", f->path, f->tmp, strerror(errno));
    }
    if (st == CLG_OK) {
        if (fail_now(CLG_ATOMIC_FAIL_RENAME) || rename(f->tmp, f->path) != 0)
            st = clg_fail(CLG_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp,
                          strerror(errno));
    }
    if (st != CLG_OK) {
        clg_atomic_file_abort(f);
        return st;
    }
    st = sync_directory(f);
    free_file(f);
    return st;
}

clg_status clg_atomic_write(const char *path, const void *data, size_t size) {
    clg_atomic_file *f;
    clg_status st = clg_atomic_file_open(path, &f);
    if (st != CLG_OK) return st;
    st = clg_atomic_file_write(f, data, size);
    if (st != CLG_OK) {
        clg_atomic_file_abort(f);
        return st;
    }
    return clg_atomic_file_commit(f);
}
