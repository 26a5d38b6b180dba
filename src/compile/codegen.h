/* Generation of fused OpenCL kernels: one kernel per elementwise group (a materialised
 * elementwise node plus the producers inlined into it) and per reduction (with its fused
 * prologue). Sizes, strides and scalar values are kernel arguments, never source text (only
 * which strides are 0 or 1 shows in it), so graphs that differ only in sizes, as a training
 * graph and an evaluation graph with another batch size do, yield the same program. */
#ifndef CLG_COMPILE_CODEGEN_H
#define CLG_COMPILE_CODEGEN_H

#include <stdint.h>

#include "graph/graph_internal.h"

/* ---- used by op emit callbacks (src/ops/) ---- */

/* Name of a new kernel argument holding a value fixed for the plan. */
const char *clg_cg_float_arg(clg_codegen *cg, float value);
const char *clg_cg_uint_arg(clg_codegen *cg, uint32_t value);
/* Expression of the element's linear (row-major) index in the kernel's iteration space,
 * which for an inlined node is its own linear index. */
const char *clg_cg_linear_index(clg_codegen *cg);
/* "lo, hi": the two uint arguments carrying the per-run random counter. */
const char *clg_cg_run_counter(clg_codegen *cg);
/* Format helper: snprintf into out. */
void clg_cg_format(char *out, size_t size, const char *fmt, ...) CLG_PRINTF(3, 4);

#endif
