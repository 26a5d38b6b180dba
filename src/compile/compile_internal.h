/* State shared by the compiler's passes: which nodes a plan computes, which are fused into
 * which kernel, when each buffer is live, and where it lives. */
#ifndef CLG_COMPILE_INTERNAL_H
#define CLG_COMPILE_INTERNAL_H

#include "compile/lowering.h"
#include "runtime/plan.h"

/* The most buffers and fused nodes one generated kernel takes (its arguments stay far below
 * OpenCL's minimum CL_DEVICE_MAX_PARAMETER_SIZE of 1024 bytes). Fusion splits a group that
 * would take more, so a graph of any length compiles. */
#define CLG_GROUP_MAX_OPERANDS 48
#define CLG_GROUP_MAX_MEMBERS 256

typedef struct clg_node_plan {
    bool reachable;
    bool forced;      /* must have storage: read by a view, a kernel op or the host */
    bool pinned;      /* must be computed at its own place: an output, a gradient the optimizer
                         reads, or a read before a clg_assign */
    bool materialize; /* computed by a step into its own arena storage */
    bool inlined;     /* computed inside the kernel of node `group` */
    int consumers;    /* distinct reachable consumers */
    const clg_tensor *consumer;
    int group; /* id of the materialised node whose step computes this node */
    /* The nodes a generated kernel computes, in id order: the group node's first_member and
     * each member's next_member (-1 ends), so codegen need not scan the graph per kernel. */
    int first_member, next_member;
    int step;  /* schedule index of that step */
    int last_use;
    size_t bytes;
    /* A kernel op computes this node in its epilogue: the producer's id (else -1) and what
     * it absorbed. */
    int epilogue_of;
    clg_epilogue epi;
    /* The lowering chosen by the op's choose callback (0: the default), and the inputs it does
     * not read (a bit per input). */
    int variant;
    uint32_t unread;
} clg_node_plan;

typedef struct clg_compiler {
    clg_graph *g;
    clg_context *ctx;
    clg_plan *plan;
    clg_compile_options opts;
    clg_node_plan *np; /* indexed by node id */
    size_t n;
    int *schedule; /* ids of materialised non-leaf nodes, in order */
    int n_sched;
} clg_compiler;

struct clg_lowering {
    clg_compiler *c;
};

/* How node x reads in this plan: buffer, offset and strides (or a scalar). */
clg_operand clg_compiler_operand(const clg_compiler *c, const clg_tensor *x);

/* memplan.c: place n live ranges [start[i], end[i]] of bytes[i] into arenas of at most
 * max_bytes each; outputs arena[i] and offset[i]; returns the number of arenas and their
 * sizes in arena_bytes (caller frees). align: byte alignment of every offset. clg_memplan
 * picks one of the two placements by n; tests call each. */
clg_status clg_memplan(size_t n, const size_t *bytes, const int *start, const int *end,
                       size_t max_bytes, size_t align, int *arena, size_t *offset,
                       size_t **arena_bytes, size_t *n_arenas);
clg_status clg_memplan_greedy(size_t n, const size_t *bytes, const int *start, const int *end,
                              size_t max_bytes, size_t align, int *arena, size_t *offset,
                              size_t **arena_bytes, size_t *n_arenas);
clg_status clg_memplan_by_start(size_t n, const size_t *bytes, const int *start, const int *end,
                                size_t max_bytes, size_t align, int *arena, size_t *offset,
                                size_t **arena_bytes, size_t *n_arenas);

/* codegen.c: append the kernel for scheduled node m (elementwise group or reduction) named
 * "k<step>" to the program source; its argument list is kept for clg_codegen_bind. */
typedef struct clg_program_gen clg_program_gen;
clg_program_gen *clg_program_gen_new(void);
void clg_program_gen_free(clg_program_gen *pg);
clg_status clg_codegen_kernel(clg_program_gen *pg, clg_compiler *c, const clg_tensor *m,
                              int step);
/* Prepend the prelude the kernels need (random functions). */
clg_status clg_program_gen_finish(clg_program_gen *pg);
/* Distinct kernel bodies generated so far: steps whose fused ops and 0/1 strides are equal
 * share one kernel function, launched with their own arguments. */
int clg_program_gen_bodies(const clg_program_gen *pg);
/* The whole program's source (prelude + kernels); NULL if no kernel was generated. */
const char *clg_program_gen_source(const clg_program_gen *pg, size_t *length);
/* Create the kernel of step from program, set its plan-fixed args, append it to the plan. */
clg_status clg_codegen_bind(clg_program_gen *pg, clg_compiler *c, cl_program program,
                            const clg_tensor *m, int step);

#endif
