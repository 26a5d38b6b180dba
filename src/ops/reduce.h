/* Reduction nodes as the kernel generator reads them. */
#ifndef CLG_OPS_REDUCE_H
#define CLG_OPS_REDUCE_H

#include "graph/graph_internal.h"

typedef enum clg_reduce_kind {
    CLG_REDUCE_SUM,
    CLG_REDUCE_MAX,
    CLG_REDUCE_MIN,
    CLG_REDUCE_ARGMAX,
} clg_reduce_kind;

typedef struct clg_reduce_op {
    clg_op_info info;
    clg_reduce_kind kind;
} clg_reduce_op;

/* A reduce node keeps the input's rank (reduced dims have size 1);
 * ia[0]: bit mask of reduced axes; fa[0]: scale applied to a sum (1/N for a mean). */
static inline clg_reduce_kind clg_reduce_kind_of(const clg_tensor *t) {
    return ((const clg_reduce_op *)t->info)->kind;
}

#endif
