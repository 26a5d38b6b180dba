/* Owner lists (owners.h). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/owners.h"

clg_status clg_owners_add(clg_owner_list *list, void *object, clg_free_fn free_fn, bool base) {
    if (list->n == list->cap) {
        size_t nc = list->cap ? list->cap * 2 : 8;
        clg_owned *ni = realloc(list->items, nc * sizeof *ni);
        if (!ni) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "out of host memory");
        list->items = ni;
        list->cap = nc;
    }
    list->items[list->n++] = (clg_owned){object, free_fn, base};
    return CLG_OK;
}

void clg_owners_remove(clg_owner_list *list, void *object) {
    for (size_t i = list->n; i-- > 0;)
        if (list->items[i].object == object) {
            memmove(list->items + i, list->items + i + 1, (list->n - i - 1) * sizeof *list->items);
            list->n--;
            return;
        }
}

/* The newest entry with the given base flag, taken off the list; false when none is left. */
static bool pop(clg_owner_list *list, bool base, clg_owned *out) {
    for (size_t i = list->n; i-- > 0;)
        if (list->items[i].base == base) {
            *out = list->items[i];
            /* off the list before it is freed: its free function may try to remove it again */
            memmove(list->items + i, list->items + i + 1, (list->n - i - 1) * sizeof *list->items);
            list->n--;
            return true;
        }
    return false;
}

void clg_owners_free_all(clg_owner_list *list) {
    clg_owned o;
    while (pop(list, false, &o)) o.free(o.object);
    while (pop(list, true, &o)) o.free(o.object);
    free(list->items);
    list->items = NULL;
    list->cap = 0;
}
