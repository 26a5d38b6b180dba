/* A compiled plan: an ordered list of steps (kernel launches, GEMM calls) over buffers fixed at
 * compile time. A run enqueues every step on the context's one in-order queue and never waits;
 * reads wait. Ops that need per-run values (an optimizer's learning rate and step count, random
 * ops' counter) hook in through callbacks that update a few kernel arguments before the steps
 * are queued; a step may run only on every N-th run (the update of gradient accumulation). */
#ifndef CLG_RUNTIME_PLAN_H
#define CLG_RUNTIME_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <CL/cl.h>

#include "core/context.h"
#include "gemm/gemm.h"
#include "graph/graph_internal.h"

/* With guard bytes on (testing), every arena is filled with this word before the first run:
 * a NaN, so an element a kernel should have written but did not fails any comparison, and
 * the guards around each tensor must still hold it afterwards. */
#define CLG_GUARD_PATTERN 0x7FC5A5A5u

typedef enum clg_step_kind {
    CLG_STEP_KERNEL,
    CLG_STEP_GEMM,
    CLG_STEP_CONVGEMM,
} clg_step_kind;

typedef struct clg_step {
    clg_step_kind kind;
    char label[64]; /* op names, for profiles and errors */
    /* kernel */
    cl_kernel kernel;
    cl_uint work_dim;
    size_t global[3];
    size_t local[3];
    bool has_local;
    int counter_arg; /* index of the two per-run random counter args, or -1 */
    uint32_t every, phase; /* queued on runs r with r % every == phase (every 0 or 1: all) */
    /* gemm */
    clg_gemm_call gemm;
    /* convgemm */
    clg_convgemm_call conv;
} clg_step;

/* Where a node's values live during a run. */
typedef struct clg_storage {
    cl_mem mem;     /* NULL: no storage (scalar, or not in the plan) */
    int64_t offset; /* elements */
    bool scalar;
    float scalar_value;
    bool kept; /* holds its value when a run ends (leaves, outputs, what updates read) */
} clg_storage;

/* A host copy that a queued write reads from, and that write's event (NULL once done). */
typedef struct clg_staging {
    void *mem;
    cl_event write;
    uint64_t seq; /* which write of the input used it last: the oldest is waited for first */
} clg_staging;

typedef struct clg_plan_input {
    const clg_tensor *node;
    cl_mem mem;
    size_t bytes;
    /* A write copies into a host copy whose last write has completed, or into a new one: the
     * caller may reuse its buffer at once and no write waits for the device, yet no copy is
     * freed while the device may read it. No event callbacks: they run on a driver thread at a
     * time the driver picks; copies are freed by clg_plan_free, after the queue has finished. */
    clg_staging *copies;
    int n_copies;
    uint64_t writes;
    void *staging; /* the copy of the latest write (CLGRAD_CHECK_FINITE reads it) */
} clg_plan_input;

/* Per-run callback: called at the start of every clg_plan_run (run: how many runs came
 * before), before steps are queued. */
typedef clg_status (*clg_run_hook)(uint64_t run, void *user);

typedef struct clg_plan_hook {
    clg_run_hook fn;
    void *user;
    clg_free_fn free_user; /* with the plan; NULL: user is not the plan's */
} clg_plan_hook;

struct clg_plan {
    clg_context *ctx;
    clg_graph *graph;
    size_t n_nodes; /* graph size at compile time: later nodes are not in the plan */

    clg_step *steps;
    size_t n_steps, cap_steps;

    clg_storage *storage; /* indexed by node id */
    cl_mem *arenas;
    size_t *arena_bytes;
    size_t n_arenas;
    cl_mem *owned; /* constants' buffers */
    size_t n_owned;
    clg_plan_input *inputs;
    size_t n_inputs;

    size_t peak_bytes, fixed_bytes;
    size_t guard_bytes; /* 0: no guards */
    cl_program program; /* generated kernels; owned by the context's program cache */
    size_t n_bodies;    /* distinct kernel bodies in it (steps with equal ones share) */

    bool uses_rng;
    clg_plan_hook *hooks;
    size_t n_hooks;

    uint64_t runs;

    /* CLGRAD_CHECK_FINITE (runtime/check_finite.c): every op's result, in schedule order */
    bool check_finite;
    const clg_tensor **checked;
    size_t n_checked;

    /* CLGRAD_PROFILE */
    cl_event *events;       /* per step: its (last) kernel's event */
    cl_event *first_events; /* per step of several kernels: the first one's, or NULL */
    double *kernel_ms; /* summed per step over all profiled runs */
    uint64_t profiled_runs;
    bool events_pending;
};

/* Append steps. The plan owns kernels passed in (released also when this fails). */
clg_status clg_plan_add_kernel(clg_plan *plan, cl_kernel kernel, cl_uint work_dim,
                               const size_t *global, const size_t *local, const char *label,
                               int counter_arg);
clg_status clg_plan_add_gemm(clg_plan *plan, const clg_gemm_call *call, const char *label);
clg_status clg_plan_add_convgemm(clg_plan *plan, const clg_convgemm_call *call, const char *label);
/* Make the last step added run only on runs r with r % every == phase. */
void clg_plan_last_step_every(clg_plan *plan, uint32_t every, uint32_t phase);
/* A per-run callback; user is freed with free_user (may be NULL) when the plan is freed, also
 * when this fails. */
clg_status clg_plan_add_hook(clg_plan *plan, clg_run_hook hook, void *user, clg_free_fn free_user);
/* A device buffer that lives as long as the plan (scratch for a kernel's partial results). */
clg_status clg_plan_own_buffer(clg_plan *plan, size_t bytes, const char *what, cl_mem *out);

/* CLGRAD_CHECK_FINITE: before a run's steps are queued, its inputs and parameters must be
 * finite; after them, every op's result and then every parameter (CLG_ERR_NOT_FINITE naming
 * the first op, input or parameter that is not). */
clg_status clg_check_finite_before(clg_plan *plan);
clg_status clg_check_finite_after(clg_plan *plan);

/* clg_plan_free as an owner list's free function (a graph owns its plans). */
void clg_plan_free_owned(void *plan);

/* Storage of a node in this plan (NULL mem if it has none). */
const clg_storage *clg_plan_storage(const clg_plan *plan, const clg_tensor *t);

#endif
