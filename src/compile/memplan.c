/* Memory planning: intermediate tensors live in a few large arena buffers. Each tensor has a
 * live range [first step, last step]; tensors whose ranges overlap never share bytes, others
 * reuse the same offsets. A tensor that would push an arena past the device's largest
 * allocation goes to another arena.
 *
 * Two placements. Up to MEMPLAN_GREEDY_MAX tensors: largest first, lowest offset free of every
 * tensor placed so far that overlaps in time (packs well for the chain-shaped lifetimes of
 * training graphs, but costs O(n^2): each tensor is checked against all placed ones, and in an
 * unrolled recurrent graph the activations kept for the backward pass all overlap one another).
 * Past that, in order of first step, as an allocator would run: tensors whose range has ended
 * return their bytes to a free list (coalesced), each new one takes the best-fitting free block
 * or the arena's top; O(n (log n + free blocks)). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile_internal.h"

#define MEMPLAN_GREEDY_MAX 4096

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

clg_status clg_memplan_greedy(size_t n, const size_t *bytes, const int *start, const int *end,
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

/* ---- in order of first step ---- */

typedef struct free_block {
    size_t offset, bytes;
} free_block;

typedef struct arena_state {
    free_block *free; /* sorted by offset, never adjacent (coalesced) */
    size_t n_free, cap_free;
    size_t top; /* bytes in use up to here; everything above is free */
} arena_state;

typedef struct live_item {
    int end;
    size_t index;
} live_item;

static int by_start(const void *a, const void *b) {
    const order_item *x = a, *y = b; /* bytes holds the start step here */
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* min-heap of live tensors by last step */
static void heap_push(live_item *h, size_t *n, live_item it) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2].end > it.end) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = it;
}

static live_item heap_pop(live_item *h, size_t *n) {
    live_item top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1].end < h[c].end) ++c;
        if (h[c].end >= last.end) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Give [offset, offset + bytes) back to arena a, merging with its neighbours and the top. */
static bool arena_release(arena_state *a, size_t offset, size_t bytes) {
    size_t lo = 0, hi = a->n_free;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a->free[mid].offset < offset) lo = mid + 1;
        else hi = mid;
    }
    bool join_prev = lo > 0 && a->free[lo - 1].offset + a->free[lo - 1].bytes == offset;
    bool join_next = lo < a->n_free && offset + bytes == a->free[lo].offset;
    if (join_prev && join_next) {
        a->free[lo - 1].bytes += bytes + a->free[lo].bytes;
        memmove(&a->free[lo], &a->free[lo + 1], (a->n_free - lo - 1) * sizeof *a->free);
        --a->n_free;
    } else if (join_prev) {
        a->free[lo - 1].bytes += bytes;
    } else if (join_next) {
        a->free[lo].offset = offset;
        a->free[lo].bytes += bytes;
    } else {
        if (a->n_free == a->cap_free) {
            size_t nc = a->cap_free ? 2 * a->cap_free : 16;
            free_block *nf = realloc(a->free, nc * sizeof *nf);
            if (!nf) return false;
            a->free = nf;
            a->cap_free = nc;
        }
        memmove(&a->free[lo + 1], &a->free[lo], (a->n_free - lo) * sizeof *a->free);
        a->free[lo] = (free_block){offset, bytes};
        ++a->n_free;
    }
    /* a free block that reaches the top lowers it */
    if (a->n_free && a->free[a->n_free - 1].offset + a->free[a->n_free - 1].bytes == a->top) {
        a->top = a->free[a->n_free - 1].offset;
        --a->n_free;
    }
    return true;
}

/* Offset for need bytes in a: the best-fitting free block, else the top; SIZE_MAX when the top
 * would pass max_bytes (an empty arena takes any size, as the greedy placement does). */
static size_t arena_take(arena_state *a, size_t need, size_t max_bytes) {
    size_t best = SIZE_MAX;
    for (size_t j = 0; j < a->n_free; ++j)
        if (a->free[j].bytes >= need && (best == SIZE_MAX || a->free[j].bytes < a->free[best].bytes))
            best = j;
    if (best != SIZE_MAX) {
        size_t at = a->free[best].offset;
        a->free[best].offset += need;
        a->free[best].bytes -= need;
        if (a->free[best].bytes == 0) {
            memmove(&a->free[best], &a->free[best + 1], (a->n_free - best - 1) * sizeof *a->free);
            --a->n_free;
        }
        return at;
    }
    if (a->top + need > max_bytes && a->top > 0) return SIZE_MAX;
    size_t at = a->top;
    a->top += need;
    return at;
}

clg_status clg_memplan_by_start(size_t n, const size_t *bytes, const int *start, const int *end,
                                size_t max_bytes, size_t align, int *arena, size_t *offset,
                                size_t **arena_bytes, size_t *n_arenas) {
    *arena_bytes = NULL;
    *n_arenas = 0;
    if (n == 0) return CLG_OK;
    order_item *order = malloc(n * sizeof *order);
    live_item *live = malloc(n * sizeof *live);
    arena_state *arenas = calloc(n, sizeof *arenas); /* at most n arenas */
    size_t *sizes = calloc(n, sizeof *sizes);
    size_t used = 0, n_live = 0;
    clg_status st = CLG_OK;
    if (!order || !live || !arenas || !sizes) goto oom;
    for (size_t i = 0; i < n; ++i) order[i] = (order_item){(size_t)start[i], i};
    qsort(order, n, sizeof *order, by_start);
    for (size_t oi = 0; oi < n; ++oi) {
        size_t i = order[oi].index;
        while (n_live && live[0].end < start[i]) {
            size_t d = heap_pop(live, &n_live).index;
            if (!arena_release(&arenas[arena[d]], offset[d], (bytes[d] + align - 1) / align * align))
                goto oom;
        }
        size_t need = (bytes[i] + align - 1) / align * align;
        for (size_t a = 0;; ++a) {
            if (a == used) ++used;
            size_t at = arena_take(&arenas[a], need, max_bytes);
            if (at == SIZE_MAX) continue;
            arena[i] = (int)a;
            offset[i] = at;
            if (at + need > sizes[a]) sizes[a] = at + need;
            break;
        }
        heap_push(live, &n_live, (live_item){end[i], i});
    }
    *arena_bytes = sizes;
    *n_arenas = used;
    sizes = NULL;
    goto out;
oom:
    st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "memory planner: out of host memory");
out:
    if (arenas)
        for (size_t a = 0; a < n; ++a) free(arenas[a].free);
    free(arenas);
    free(order);
    free(live);
    free(sizes);
    return st;
}

clg_status clg_memplan(size_t n, const size_t *bytes, const int *start, const int *end,
                       size_t max_bytes, size_t align, int *arena, size_t *offset,
                       size_t **arena_bytes, size_t *n_arenas) {
    return (n <= MEMPLAN_GREEDY_MAX ? clg_memplan_greedy : clg_memplan_by_start)(
        n, bytes, start, end, max_bytes, align, arena, offset, arena_bytes, n_arenas);
}
