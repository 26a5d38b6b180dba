/* Memory planning: intermediate tensors live in a few large arena buffers. Each tensor has a
 * live range [first step, last step]; tensors whose ranges overlap never share bytes, others
 * reuse the same offsets. Largest first, lowest fitting offset (a greedy that packs well for
 * the chain-shaped lifetimes of training graphs). A tensor that would push an arena past the
 * device's largest allocation goes to another arena. */
#include <stdlib.h>
#include <string.h>

#include "compile/compile_internal.h"

typedef struct placed {
    size_t offset, bytes;
    int start, end, arena;
} placed;

typedef struct order_item {
    size_t bytes;
    size_t index;
} order_item;

static int by_size_desc(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

static int by_offset(const void *a, const void *b) {
    const placed *x = *(placed *const *)a, *y = *(placed *const *)b;
    return x->offset < y->offset ? -1 : (x->offset > y->offset);
}

clg_status clg_memplan(size_t n, const size_t *bytes, const int *start, const int *end,
                       size_t max_bytes, size_t align, int *arena, size_t *offset,
                       size_t **arena_bytes, size_t *n_arenas) {
    *arena_bytes = NULL;
    *n_arenas = 0;
    if (n == 0) return CLG_OK;
    order_item *order = malloc(n * sizeof *order);
    placed *done = malloc(n * sizeof *done);
    placed **conflicts = malloc(n * sizeof *conflicts);
    size_t *sizes = calloc(n, sizeof *sizes); /* at most n arenas */
    if (!order || !done || !conflicts || !sizes) {
        free(order);
        free(done);
        free(conflicts);
        free(sizes);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "memory planner: out of host memory");
    }
    for (size_t i = 0; i < n; ++i) order[i] = (order_item){bytes[i], i};
    qsort(order, n, sizeof *order, by_size_desc);
    size_t n_done = 0, arenas = 0;
    for (size_t oi = 0; oi < n; ++oi) {
        size_t i = order[oi].index;
        size_t need = (bytes[i] + align - 1) / align * align;
        for (int a = 0;; ++a) {
            size_t nc = 0;
            for (size_t j = 0; j < n_done; ++j)
                if (done[j].arena == a && done[j].start <= end[i] && start[i] <= done[j].end)
                    conflicts[nc++] = &done[j];
            qsort(conflicts, nc, sizeof *conflicts, by_offset);
            size_t at = 0;
            for (size_t j = 0; j < nc; ++j) {
                if (conflicts[j]->offset >= at + need) break;
                size_t e = conflicts[j]->offset + conflicts[j]->bytes;
                if (e > at) at = e;
            }
            if (at + need <= max_bytes || (nc == 0 && at == 0)) {
                done[n_done++] = (placed){at, need, start[i], end[i], a};
                arena[i] = a;
                offset[i] = at;
                if ((size_t)a + 1 > arenas) arenas = (size_t)a + 1;
                if (at + need > sizes[a]) sizes[a] = at + need;
                break;
            }
        }
    }
    free(order);
    free(done);
    free(conflicts);
    *arena_bytes = sizes;
    *n_arenas = arenas;
    return CLG_OK;
}
