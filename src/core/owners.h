/* Owner lists: what a context (or a graph) owns, each object with the function that frees it.
 * Objects register themselves when they are made and leave when they are freed, so an owner
 * frees everything it owns without knowing what it is: the one-way dependency of the layers
 * (tools/check-layers) holds, and freeing runs in reverse order of creation (a plan goes
 * before the graph and the optimizer it uses, a graph before the parameters it reads). */
#ifndef CLG_CORE_OWNERS_H
#define CLG_CORE_OWNERS_H

#include <stdbool.h>
#include <stddef.h>

#include "clgrad/status.h"

typedef void (*clg_free_fn)(void *object);

typedef struct clg_owned {
    void *object;
    clg_free_fn free;
    bool base; /* shared state others use to the end (parameters, GEMM state): freed last */
} clg_owned;

typedef struct clg_owner_list {
    clg_owned *items;
    size_t n, cap;
} clg_owner_list;

/* Register object (CLG_ERR_OUT_OF_MEMORY when the list cannot grow; nothing registered).
 * base: freed after every other object, whenever it was registered. */
clg_status clg_owners_add(clg_owner_list *list, void *object, clg_free_fn free_fn, bool base);
/* Forget object (no-op if absent); its free function is not called. */
void clg_owners_remove(clg_owner_list *list, void *object);
/* Free every object, newest first (base objects after all others), then the list itself. A
 * free function may remove its own object (or others) from the list while this runs. */
void clg_owners_free_all(clg_owner_list *list);

#endif
