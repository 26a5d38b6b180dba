/* Atomic file replacement: write a temporary "<path>.clgtmp.<pid>.<16 random hex digits>" in
 * the target's directory (created with O_EXCL|O_NOFOLLOW, mode 0644 less the umask), flush and
 * fsync it, rename it over the target and fsync the directory. A failure at any step removes
 * the temporary file and leaves the previous file untouched; messages name the path. Opening
 * also removes the temporaries of the same path whose writer process is gone (killed
 * mid-write), never a live process's and never anything but a regular file. */
#ifndef CLG_CORE_ATOMIC_FILE_H
#define CLG_CORE_ATOMIC_FILE_H

#include <stddef.h>

#include "clgrad/status.h"

typedef struct clg_atomic_file clg_atomic_file;

/* What marks a temporary's name, between the target's name and the pid. */
#define CLG_ATOMIC_TMP_TAG ".clgtmp."

/* Create the temporary file for path (after sweeping away stale ones of that path). */
clg_status clg_atomic_file_open(const char *path, clg_atomic_file **out);
/* Append bytes to the temporary file. After a failure only _abort is useful. */
clg_status clg_atomic_file_write(clg_atomic_file *f, const void *data, size_t size);
/* Flush, fsync, rename over the target, fsync the directory; frees f whatever happens. */
clg_status clg_atomic_file_commit(clg_atomic_file *f);
/* Remove the temporary file and free f. NULL is a no-op. */
void clg_atomic_file_abort(clg_atomic_file *f);

/* The whole of data as the new content of path. */
clg_status clg_atomic_write(const char *path, const void *data, size_t size);

/* Tests only: make the given step fail (as if the disk were full or the rename refused) on
 * the calling thread until cleared with CLG_ATOMIC_FAIL_NONE. */
typedef enum clg_atomic_fail {
    CLG_ATOMIC_FAIL_NONE,
    CLG_ATOMIC_FAIL_WRITE,
    CLG_ATOMIC_FAIL_SYNC,
    CLG_ATOMIC_FAIL_RENAME,
    CLG_ATOMIC_FAIL_COUNT
} clg_atomic_fail;
void clg_atomic_file_inject_failure(clg_atomic_fail step);

#endif
