/* Benchmarks that time a first start run each measurement in a child process of their own, with
 * cache folders they choose: empty for a cold start (a fresh machine), the ones a cold child
 * filled for a warm one. */
#ifndef CLGRAD_TOOLS_BENCH_CHILD_H
#define CLGRAD_TOOLS_BENCH_CHILD_H

#include <stdbool.h>
#include <stddef.h>

/* Runs argv (argv[0] the program, NULL-terminated) with CLGRAD_CACHE_DIR, POCL_CACHE_DIR and
 * XDG_CACHE_HOME under cache, and reads the first line it prints into line. False if the child
 * failed or printed nothing. */
bool bench_child_line(char *const *argv, const char *cache, char *line, size_t size);

/* A fresh empty folder under /tmp named after prefix, into dir; false on failure. */
bool bench_child_cache_new(const char *prefix, char *dir, size_t size);

/* Removes a folder bench_child_cache_new made, and everything in it. */
void bench_child_cache_remove(const char *dir);

#endif
