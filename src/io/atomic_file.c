/* Atomic file replacement (see atomic_file.h). rename() within one directory is atomic on
 * POSIX file systems, so a reader sees either the old file or the complete new one; the
 * fsyncs order the data before the rename on disk, so a crash cannot leave a torn file. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/atomic_file.h"

struct clg_atomic_file {
    FILE *fp;
    char *path;
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

clg_status clg_atomic_file_open(const char *path, clg_atomic_file **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_atomic_file_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_atomic_file_open: empty path");
    clg_atomic_file *f = calloc(1, sizeof *f);
    size_t len = strlen(path);
    size_t cap = len + 32;
    if (f) f->path = malloc(len + 1);
    if (f) f->tmp = malloc(cap);
    if (!f || !f->path || !f->tmp) {
        if (f) {
            free(f->path);
            free(f->tmp);
        }
        free(f);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    memcpy(f->path, path, len + 1);
    /* The pid keeps two processes saving the same checkpoint from sharing a temporary. */
    snprintf(f->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        int err = errno;
        clg_status st = clg_fail(CLG_ERR_IO, "%s: cannot create temporary file %s: %s", path,
                                 f->tmp, strerror(err));
        free(f->tmp);
        free(f->path);
        free(f);
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
    remove(f->tmp);
    free(f->tmp);
    free(f->path);
    free(f);
}

/* The directory entry of the rename must reach the disk too, or a crash could bring back the
 * old file (or neither). Some file systems cannot fsync a directory (EINVAL): nothing more can
 * be done there, so that is not an error. */
static clg_status sync_directory(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = malloc(2);
        if (dir) strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (!dir) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    clg_status st = CLG_OK;
    int fd = open(dir, O_RDONLY);
    if (fd < 0) {
        st = clg_fail(CLG_ERR_IO, "%s: written, but cannot open directory %s to sync it: %s", path,
                      dir, strerror(errno));
    } else {
        if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
            st = clg_fail(CLG_ERR_IO, "%s: written, but syncing directory %s failed: %s", path, dir,
                          strerror(errno));
        close(fd);
    }
    free(dir);
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
    st = sync_directory(f->path);
    free(f->tmp);
    free(f->path);
    free(f);
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
