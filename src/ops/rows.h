/* What the softmax family (ops/softmax.c) and the tests need from the row kernels
 * (ops/rows.c): whether ops over the last axis take them, and the fused builders. */
#ifndef CLG_OPS_ROWS_H
#define CLG_OPS_ROWS_H

#include <stdbool.h>

#include "graph/graph_internal.h"

/* CLGRAD_ROWS: unset or "" auto (row kernels, a work-group per row on GPUs, a work-item per
 * row on CPU devices), "composite" (reductions and elementwise ops, as before the row
 * kernels), "group" or "item" (row kernels in that form on any device). */
typedef enum clg_rows_mode {
    CLG_ROWS_AUTO,
    CLG_ROWS_COMPOSITE,
    CLG_ROWS_GROUP,
    CLG_ROWS_ITEM,
    CLG_ROWS_MODE_COUNT
} clg_rows_mode;

/* Override CLGRAD_ROWS for the graphs built and plans compiled from now on (tests compare
 * the forms in one process); CLG_ROWS_AUTO goes back to what the environment says. */
void clg_rows_force(clg_rows_mode mode);

/* Whether softmax-family builders on g take the row kernels. false for composite, and on an
 * unknown CLGRAD_ROWS value (then g is poisoned, naming it). */
bool clg_rows_fused(clg_graph *g);

typedef enum clg_rows_what {
    CLG_ROWS_SOFTMAX,
    CLG_ROWS_LOG_SOFTMAX,
    CLG_ROWS_LOGSUMEXP, /* keepdims: the last axis has size 1 */
} clg_rows_what;

/* The row kernel of what over x's last axis (x valid, f32 or i32). */
clg_tensor *clg_rows_softmax(clg_graph *g, clg_tensor *x, clg_rows_what what);

#endif
