#include "bench-child.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

bool bench_child_line(char *const *argv, const char *cache, char *line, size_t size) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid == 0) {
        char clg[600], pocl[600];
        snprintf(clg, sizeof clg, "%s/clgrad", cache);
        snprintf(pocl, sizeof pocl, "%s/pocl", cache);
        setenv("CLGRAD_CACHE_DIR", clg, 1);
        setenv("POCL_CACHE_DIR", pocl, 1);
        setenv("XDG_CACHE_HOME", cache, 1);
        dup2(fds[1], 1);
        close(fds[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    line[0] = '\0';
    bool ok = f && fgets(line, (int)size, f) != NULL;
    if (f) fclose(f);
    int status;
    waitpid(pid, &status, 0);
    return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool bench_child_cache_new(const char *prefix, char *dir, size_t size) {
    if (snprintf(dir, size, "/tmp/%s-XXXXXX", prefix) >= (int)size) return false;
    return mkdtemp(dir) != NULL;
}

void bench_child_cache_remove(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}
