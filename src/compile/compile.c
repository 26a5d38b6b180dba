/* clg_graph_compile: from a graph to a plan.
 *   1. reachability from the outputs and the side effects (assigns, optimizer updates);
 *   2. fusion: an elementwise node with one consumer of the same shape (elementwise, or a
 *      reduction it feeds) is inlined into that consumer's kernel, else it is materialised;
 *   3. schedule: materialised nodes in creation (topological) order;
 *   4. liveness and the memory plan (arena offsets, buffer reuse);
 *   5. code generation for fused groups, one program per plan, then the steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile_internal.h"
#include "core/program.h"

#define ARENA_ALIGN 256

clg_operand clg_compiler_operand(const clg_compiler *c, const clg_tensor *x) {
    clg_operand o;
    memset(&o, 0, sizeof o);
    o.node = x;
    o.dtype = x->dtype;
    o.ndim = x->ndim;
    memcpy(o.shape, x->shape, sizeof o.shape);
    const clg_storage *s = &c->plan->storage[x->base->id];
    if (s->scalar) {
        o.is_scalar = true;
        o.scalar = s->scalar_value;
        return o;
    }
    o.mem = s->mem;
    o.offset = s->offset + x->offset;
    memcpy(o.strides, x->strides, sizeof o.strides);
    return o;
}

clg_context *clg_lowering_context(clg_lowering *lw) {
    return lw->c->ctx;
}

int clg_lowering_variant(const clg_lowering *lw, const clg_tensor *node) {
    return lw->c->np[node->id].variant;
}

/* Is input k of t read in this plan (not skipped by the lowering chosen for t)? */
static bool reads(const clg_node_plan *np, const clg_tensor *t, int k) {
    return k >= 32 || !(np[t->id].unread & (1u << k));
}

clg_status clg_lower_kernel(clg_lowering *lw, cl_kernel k, cl_uint work_dim,
                            const size_t *global, const size_t *local, const char *label) {
    return clg_plan_add_kernel(lw->c->plan, k, work_dim, global, local, label, -1);
}

clg_status clg_lower_kernel_every(clg_lowering *lw, cl_kernel k, cl_uint work_dim,
                                  const size_t *global, const size_t *local, const char *label,
                                  uint32_t every, uint32_t phase) {
    clg_status st = clg_plan_add_kernel(lw->c->plan, k, work_dim, global, local, label, -1);
    if (st == CLG_OK) clg_plan_last_step_every(lw->c->plan, every, phase);
    return st;
}

clg_status clg_lower_kernel_random(clg_lowering *lw, cl_kernel k, cl_uint work_dim,
                                   const size_t *global, const size_t *local, const char *label,
                                   int counter_arg) {
    lw->c->plan->uses_rng = true;
    return clg_plan_add_kernel(lw->c->plan, k, work_dim, global, local, label, counter_arg);
}

clg_status clg_lower_buffer(clg_lowering *lw, size_t bytes, const char *what, cl_mem *out) {
    return clg_plan_own_buffer(lw->c->plan, bytes, what, out);
}

clg_status clg_lower_hook(clg_lowering *lw, clg_lower_hook_fn hook, void *user,
                          clg_free_fn free_user) {
    return clg_plan_add_hook(lw->c->plan, hook, user, free_user);
}

clg_status clg_lower_gemm(clg_lowering *lw, clg_gemm_call *call, const char *label) {
    clg_status st = clg_gemm_prepare(lw->c->ctx, call);
    if (st == CLG_OK) st = clg_plan_add_gemm(lw->c->plan, call, label);
    if (st != CLG_OK) clg_gemm_release(call);
    return st;
}

clg_status clg_lower_convgemm(clg_lowering *lw, const clg_convgemm_call *call, const char *label) {
    return clg_plan_add_convgemm(lw->c->plan, call, label);
}

/* ---- analysis ---- */

static bool has_input(const clg_tensor *t, int upto, const clg_tensor *x) {
    for (int k = 0; k < upto; ++k)
        if (t->in[k] == x) return true;
    return false;
}

static clg_status find_roots(clg_compiler *c) {
    clg_graph *g = c->g;
    bool any = false;
    for (size_t i = 0; i < c->n; ++i) {
        clg_tensor *t = g->nodes[i];
        if (!t->is_output && !t->is_effect) continue;
        c->np[i].reachable = true;
        c->np[t->base->id].forced = c->np[t->base->id].pinned = true;
        c->np[i].pinned = true;
        any = true;
    }
    if (!any)
        return clg_fail(CLG_ERR_GRAPH,
                        "clg_graph_compile: nothing to compute: mark results with "
                        "clg_graph_output (or add an optimizer's update with "
                        "clg_optimizer_apply after clg_backward)");
    return CLG_OK;
}

/* A node that reads a parameter before a side effect writes it (clg_assign, an update) must
 * be computed at its own place: inlined into a consumer after the write, it would read the new
 * value. So a reader with one consumer is pinned when an effect writing what it reads lies
 * between the two. */
static clg_status pin_reads_before_writes(clg_compiler *c) {
    clg_graph *g = c->g;
    clg_node_plan *np = c->np;
    /* For each leaf, the ids of the effects that write it, ascending: writers[start[l] ..
     * start[l + 1]) (counted, then placed) */
    size_t *start = calloc(c->n + 1, sizeof *start), total = 0;
    if (!start) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    for (size_t e = 0; e < c->n; ++e) {
        const clg_tensor *eff = g->nodes[e];
        if (np[e].reachable && eff->is_effect)
            for (int k = 0; k < eff->n_targets; ++k) start[eff->in[k]->base->id + 1]++;
    }
    for (size_t l = 0; l < c->n; ++l) start[l + 1] += start[l];
    total = start[c->n];
    if (total == 0) {
        free(start);
        return CLG_OK;
    }
    int *writers = malloc(total * sizeof *writers);
    size_t *fill = malloc(c->n * sizeof *fill);
    if (!writers || !fill) {
        free(start);
        free(writers);
        free(fill);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    }
    memcpy(fill, start, c->n * sizeof *fill);
    for (size_t e = 0; e < c->n; ++e) {
        const clg_tensor *eff = g->nodes[e];
        if (np[e].reachable && eff->is_effect)
            for (int k = 0; k < eff->n_targets; ++k) writers[fill[eff->in[k]->base->id]++] = (int)e;
    }
    for (size_t i = 0; i < c->n; ++i) {
        const clg_tensor *t = g->nodes[i];
        if (!np[i].reachable || np[i].consumers != 1 || t->is_effect) continue;
        int u = np[i].consumer->id;
        for (int k = 0; k < t->n_in && !np[i].pinned; ++k) {
            int leaf = t->in[k]->base->id;
            for (size_t w = start[leaf]; w < start[leaf + 1]; ++w)
                if (writers[w] > (int)i && writers[w] < u) {
                    np[i].forced = np[i].pinned = true;
                    break;
                }
        }
    }
    free(start);
    free(writers);
    free(fill);
    return CLG_OK;
}

/* Keep every fused group within one kernel's budget: in creation order each node learns how
 * many operands and members its inlined subtree brings (operands counted with repeats, an
 * upper bound); a subtree over budget has its heaviest inlined inputs materialised until it
 * fits. So the gradient of a bias used at every step of a long unrolled graph, a sum of T
 * terms, becomes a chain of kernels instead of failing to compile. */
static clg_status split_groups(clg_compiler *c) {
    clg_node_plan *np = c->np;
    int *ops = calloc(c->n, sizeof *ops), *members = calloc(c->n, sizeof *members);
    if (!ops || !members) {
        free(ops);
        free(members);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    }
    for (size_t i = 0; i < c->n; ++i) {
        if (!np[i].inlined && !np[i].materialize) continue;
        const clg_tensor *t = c->g->nodes[i];
        if (t->info->kind != CLG_KIND_ELEMENTWISE && t->info->kind != CLG_KIND_REDUCE) continue;
        for (;;) {
            int o = 0, m = 1, heaviest = -1;
            for (int k = 0; k < t->n_in; ++k) {
                const clg_tensor *x = t->in[k];
                if (!reads(np, t, k) || has_input(t, k, x)) continue;
                if (np[x->id].inlined && np[x->id].consumer == t) {
                    o += ops[x->id];
                    m += members[x->id];
                    if (heaviest < 0 || ops[x->id] > ops[heaviest]) heaviest = x->id;
                } else {
                    o += 1;
                }
            }
            ops[i] = o;
            members[i] = m;
            if ((o <= CLG_GROUP_MAX_OPERANDS && m <= CLG_GROUP_MAX_MEMBERS) || heaviest < 0) break;
            np[heaviest].inlined = false; /* its own kernel, one operand here */
            np[heaviest].materialize = true;
        }
    }
    free(ops);
    free(members);
    return CLG_OK;
}

static clg_status analyse(clg_compiler *c) {
    clg_graph *g = c->g;
    clg_node_plan *np = c->np;
    /* Reachability, choosing lowerings on the way (a choice may leave inputs unread). */
    for (size_t i = c->n; i-- > 0;) {
        if (!np[i].reachable) continue;
        clg_tensor *t = g->nodes[i];
        if (t->info->choose) np[i].variant = t->info->choose(c->ctx, t, &np[i].unread);
        for (int k = 0; k < t->n_in; ++k)
            if (reads(np, t, k)) np[t->in[k]->id].reachable = true;
        if (t->info->kind == CLG_KIND_VIEW) np[t->base->id].reachable = true;
    }
    for (size_t i = 0; i < c->n; ++i) {
        if (!np[i].reachable) continue;
        clg_tensor *t = g->nodes[i];
        clg_kind kind = t->info->kind;
        if (kind == CLG_KIND_VIEW) np[t->base->id].forced = true;
        for (int k = 0; k < t->n_in; ++k) {
            clg_tensor *x = t->in[k];
            if (has_input(t, k, x) || !reads(np, t, k)) continue;
            np[x->id].consumers++;
            np[x->id].consumer = t;
            if (kind == CLG_KIND_KERNEL || x->info->kind == CLG_KIND_VIEW)
                np[x->base->id].forced = true;
        }
    }
    clg_status st = pin_reads_before_writes(c);
    if (st != CLG_OK) return st;
    for (size_t i = 0; i < c->n; ++i) {
        if (!np[i].reachable) continue;
        clg_tensor *t = g->nodes[i];
        switch (t->info->kind) {
        case CLG_KIND_KERNEL:
        case CLG_KIND_REDUCE:
            np[i].materialize = true;
            break;
        case CLG_KIND_ELEMENTWISE: {
            const clg_tensor *u = np[i].consumer;
            bool inl = !np[i].forced && !c->opts.no_fusion && np[i].consumers == 1 && u &&
                       ((u->info->kind == CLG_KIND_ELEMENTWISE && clg_same_shape(u, t)) ||
                        u->info->kind == CLG_KIND_REDUCE);
            np[i].inlined = inl;
            np[i].materialize = !inl;
            break;
        }
        default:
            break;
        }
    }
    return split_groups(c);
}

/* Epilogue fusion: a kernel op whose info can absorb elementwise work (a GEMM: bias add, then
 * activation; a pooling's backward: relu's gate) computes a chain of its sole consumers in its
 * own kernels, writing the last one's storage; the absorbed nodes get no kernel of their own.
 * Between the producer and the first consumer may sit a reshape view that keeps its memory
 * order (conv2d's [N, O, OH * OW] seen as [N, O, OH, OW]), which stays a view. Each link must
 * have one consumer and need no storage of its own; only the last may be an output. */
static void fuse_epilogues(clg_compiler *c) {
    clg_node_plan *np = c->np;
    for (size_t i = 0; i < c->n; ++i) np[i].epilogue_of = -1;
    if (c->opts.no_fusion) return;
    for (size_t i = 0; i < c->n; ++i) {
        clg_tensor *m = c->g->nodes[i];
        if (!np[i].reachable || !m->info->absorb || np[i].variant || np[i].pinned ||
            np[i].consumers != 1)
            continue;
        const clg_tensor *prev = m, *u = np[i].consumer, *view = NULL;
        if (u->info->kind == CLG_KIND_VIEW) {
            if (u->base != m || u->offset != 0 || !clg_is_contiguous(u) || np[u->id].pinned ||
                np[u->id].consumers != 1)
                continue;
            view = prev = u;
            u = np[u->id].consumer;
        } else if (np[i].forced) {
            continue;
        }
        clg_epilogue epi;
        memset(&epi, 0, sizeof epi);
        const clg_tensor *last = NULL;
        while (u && u->info->kind == CLG_KIND_ELEMENTWISE && u->info->epilogue &&
               m->info->absorb(m, prev, u, &epi)) {
            last = prev = u;
            if (np[u->id].consumers != 1 || np[u->id].forced) break;
            u = np[u->id].consumer;
        }
        if (!last) continue;
        /* the producer, the view and every absorbed node but the last are computed inside the
         * last one's step */
        for (const clg_tensor *t = view ? np[view->id].consumer : np[i].consumer; t != last;
             t = np[t->id].consumer) {
            np[t->id].materialize = false;
            np[t->id].inlined = true;
        }
        np[i].materialize = false;
        np[i].inlined = true;
        np[i].consumer = last; /* its group is the last node's */
        np[last->id].materialize = true;
        np[last->id].inlined = false;
        np[last->id].epilogue_of = (int)i;
        np[last->id].epi = epi;
        /* a bias is read from a buffer: an elementwise bias cannot stay inlined */
        if (epi.bias && np[epi.bias->base->id].inlined) {
            np[epi.bias->base->id].inlined = false;
            np[epi.bias->base->id].materialize = true;
        }
    }
}

static clg_status schedule(clg_compiler *c) {
    clg_node_plan *np = c->np;
    for (size_t i = c->n; i-- > 0;) {
        if (np[i].materialize) np[i].group = (int)i;
        else if (np[i].inlined) np[i].group = np[np[i].consumer->id].group;
        else np[i].group = -1;
    }
    int *tail = malloc((c->n ? c->n : 1) * sizeof *tail);
    if (!tail) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    for (size_t i = 0; i < c->n; ++i) np[i].first_member = np[i].next_member = -1;
    for (size_t i = 0; i < c->n; ++i) {
        int gid = np[i].group;
        if (!np[i].reachable || gid < 0 || (!np[i].inlined && gid != (int)i)) continue;
        if (np[gid].first_member < 0) np[gid].first_member = (int)i;
        else np[tail[gid]].next_member = (int)i;
        tail[gid] = (int)i;
    }
    free(tail);
    c->schedule = malloc((c->n ? c->n : 1) * sizeof *c->schedule);
    if (!c->schedule) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    for (size_t i = 0; i < c->n; ++i) {
        np[i].last_use = -1;
        if (np[i].materialize) {
            np[i].step = c->n_sched;
            c->schedule[c->n_sched++] = (int)i;
        }
    }
    for (size_t i = 0; i < c->n; ++i)
        if (np[i].inlined) np[i].step = np[np[i].group].step;
    /* liveness: a buffer lives until the last step that reads it */
    for (size_t i = 0; i < c->n; ++i) {
        if (!np[i].materialize && !np[i].inlined) continue;
        clg_tensor *t = c->g->nodes[i];
        for (int k = 0; k < t->n_in; ++k) {
            clg_tensor *x = t->in[k];
            if (!reads(np, t, k)) continue;
            if (np[x->id].inlined && np[x->id].group == np[i].group) continue;
            int b = x->base->id;
            if (np[i].step > np[b].last_use) np[b].last_use = np[i].step;
        }
    }
    /* Outputs are read after the run, and so may the gradients an update reads (the last
     * run's, through clg_plan_read_grad): both keep their buffers to the end. */
    for (size_t i = 0; i < c->n; ++i) {
        clg_tensor *t = c->g->nodes[i];
        if (!np[i].reachable) continue;
        if (t->is_output) np[t->base->id].last_use = c->n_sched;
        if (t->is_effect)
            for (int k = t->n_targets; k < t->n_in; ++k)
                np[t->in[k]->base->id].last_use = c->n_sched;
    }
    return CLG_OK;
}

/* The materialised results in schedule order, for CLGRAD_CHECK_FINITE. */
static clg_status list_checked(clg_compiler *c) {
    clg_plan *p = c->plan;
    p->checked = malloc((c->n_sched ? (size_t)c->n_sched : 1) * sizeof *p->checked);
    if (!p->checked) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    for (int k = 0; k < c->n_sched; ++k) p->checked[p->n_checked++] = c->g->nodes[c->schedule[k]];
    return CLG_OK;
}

/* ---- storage ---- */

static clg_status leaf_storage(clg_compiler *c) {
    clg_plan *p = c->plan;
    size_t n_inputs = 0, n_consts = 0;
    for (size_t i = 0; i < c->n; ++i) {
        if (!c->np[i].reachable) continue;
        const clg_tensor *t = c->g->nodes[i];
        if (t->info == &clg_op_input) n_inputs++;
        if (t->info == &clg_op_constant) n_consts++;
    }
    p->inputs = calloc(n_inputs ? n_inputs : 1, sizeof *p->inputs);
    p->owned = calloc(n_consts ? n_consts : 1, sizeof *p->owned);
    if (!p->inputs || !p->owned) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of memory");
    for (size_t i = 0; i < c->n; ++i) {
        if (!c->np[i].reachable) continue;
        clg_tensor *t = c->g->nodes[i];
        clg_storage *s = &p->storage[i];
        size_t bytes = (size_t)clg_tensor_numel(t) * clg_dtype_size(t->dtype);
        if (t->info == &clg_op_scalar) {
            s->scalar = true;
            s->scalar_value = t->attrs.scalar.value;
        } else if (t->info == &clg_op_param) {
            s->mem = t->param->buffer;
        } else if (t->info == &clg_op_input) {
            char what[300];
            snprintf(what, sizeof what, "input '%s'", t->name);
            clg_plan_input *in = &p->inputs[p->n_inputs];
            clg_status st = clg_buffer_create(c->ctx, bytes, what, &in->mem);
            if (st != CLG_OK) return st;
            p->n_inputs++;
            in->node = t;
            in->bytes = bytes;
            in->copies = calloc(1, sizeof *in->copies);
            in->staging = malloc(bytes);
            if (!in->copies || !in->staging) {
                free(in->staging);
                in->staging = NULL;
                return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of memory");
            }
            in->copies[0].mem = in->staging;
            in->n_copies = 1;
            p->fixed_bytes += bytes;
            s->mem = in->mem;
        } else if (t->info == &clg_op_constant) {
            cl_mem m;
            clg_status st = clg_buffer_create(c->ctx, bytes, "a constant", &m);
            if (st != CLG_OK) return st;
            p->owned[p->n_owned++] = m;
            cl_int err = clEnqueueWriteBuffer(c->ctx->queue, m, CL_FALSE, 0, bytes, t->data, 0,
                                              NULL, NULL);
            if (err != CL_SUCCESS) return clg_fail_cl(err, "uploading a constant");
            p->fixed_bytes += bytes;
            s->mem = m;
        }
    }
    return CLG_OK;
}

/* The plan's whole device need, checked before anything is allocated (arenas come first, then
 * inputs and constants, then what kernel ops allocate for themselves, such as an optimizer's
 * new state), against the device's global memory and the context's cap, so a plan that does
 * not fit fails with nothing to undo. Not counted here: split reductions' partial sums (a few
 * KiB, sized by code generation) and GEMM scratch (shared by the context's plans); their own
 * allocations are checked when they are made. */
static clg_status check_device_memory(clg_compiler *c, size_t arena_total, size_t n_arenas) {
    size_t inputs = 0, consts = 0, extra = 0;
    char extra_what[400] = "";
    for (size_t i = 0; i < c->n; ++i) {
        const clg_tensor *t = c->g->nodes[i];
        if (!c->np[i].reachable) continue;
        size_t bytes = (size_t)clg_tensor_numel(t) * clg_dtype_size(t->dtype);
        if (t->info == &clg_op_input) inputs += bytes;
        if (t->info == &clg_op_constant) consts += bytes;
        if (t->info->device_bytes) {
            char what[400] = "";
            size_t b = t->info->device_bytes(t, what, sizeof what);
            if (b && !extra_what[0]) snprintf(extra_what, sizeof extra_what, "%s", what);
            extra += b;
        }
    }
    const clg_device_info *dev = &c->ctx->info;
    size_t params = 0;
    for (size_t i = 0; i < clg_param_count(c->ctx); ++i)
        params += (size_t)clg_param_at(c->ctx, i)->numel * 4;
    if ((uint64_t)arena_total + inputs + consts + params > dev->global_mem_bytes)
        return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                        "clg_graph_compile: the plan needs %zu bytes of intermediates + %zu of "
                        "inputs and constants + %zu of parameters, more than the %llu bytes of "
                        "global memory of %s",
                        arena_total, inputs + consts, params,
                        (unsigned long long)dev->global_mem_bytes, dev->name);
    size_t own = arena_total + inputs + consts;
    if (clg_memory_fits(c->ctx, own + extra)) return CLG_OK;
    char what[500], a[64], cap[64];
    if (clg_memory_fits(c->ctx, own))
        snprintf(what, sizeof what, "%s", extra_what);
    else
        snprintf(what, sizeof what, "the plan's intermediate tensors, inputs and constants");
    return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                    "clg_graph_compile: allocating %s would take the context past its "
                    "device-memory cap: the plan needs %zu bytes (%zu for intermediate tensors "
                    "in %zu arena(s), %zu for inputs, %zu for constants, %zu for what its ops "
                    "allocate, such as new optimizer state), the context already holds %s and "
                    "the cap is %s (CLGRAD_MAX_DEVICE_BYTES or clg_context_set_memory_limit); "
                    "nothing was allocated",
                    what, own + extra, arena_total, n_arenas, inputs, consts, extra,
                    clg_bytes_str(c->ctx->memory_used, a, sizeof a),
                    clg_bytes_str(c->ctx->memory_limit, cap, sizeof cap));
}

/* Which buffers hold their values when a run ends (what clg_plan_read may read). */
static void mark_kept(clg_compiler *c) {
    clg_storage *st = c->plan->storage;
    for (size_t i = 0; i < c->n; ++i) {
        const clg_tensor *t = c->g->nodes[i];
        if (!c->np[i].reachable) continue;
        clg_kind k = t->base->info->kind;
        if (k == CLG_KIND_LEAF || k == CLG_KIND_SCALAR || t->is_output)
            st[t->base->id].kept = true;
        if (t->is_effect)
            for (int j = t->n_targets; j < t->n_in; ++j) st[t->in[j]->base->id].kept = true;
    }
}

static clg_status arena_storage(clg_compiler *c) {
    clg_plan *p = c->plan;
    size_t guard = (c->opts.guard_bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    p->guard_bytes = guard;
    size_t n = (size_t)c->n_sched;
    size_t *bytes = malloc((n ? n : 1) * sizeof *bytes);
    int *start = malloc((n ? n : 1) * sizeof *start), *end = malloc((n ? n : 1) * sizeof *end);
    int *arena = malloc((n ? n : 1) * sizeof *arena);
    size_t *offset = malloc((n ? n : 1) * sizeof *offset);
    clg_status st = CLG_OK;
    if (!bytes || !start || !end || !arena || !offset) {
        st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
        goto done;
    }
    const clg_device_info *dev = &c->ctx->info;
    for (size_t k = 0; k < n; ++k) {
        const clg_tensor *t = c->g->nodes[c->schedule[k]];
        size_t b = (size_t)clg_tensor_numel(t) * clg_dtype_size(t->dtype);
        if (b > dev->max_alloc_bytes || b + 2 * guard > ((size_t)1 << 31)) {
            char s[200];
            st = clg_fail(CLG_ERR_OUT_OF_MEMORY,
                          "clg_graph_compile: the result of %s, %s, needs %zu bytes, above %s "
                          "(%llu bytes on %s)",
                          t->info->name, clg_shape_str(t->ndim, t->shape, s, sizeof s), b,
                          b > dev->max_alloc_bytes
                              ? "the device's largest single allocation"
                              : "the 2 GiB that 32-bit kernel indexing can address",
                          b > dev->max_alloc_bytes ? (unsigned long long)dev->max_alloc_bytes
                                                   : 1ull << 31,
                          dev->name);
            goto done;
        }
        bytes[k] = b + 2 * guard;
        /* With guards every tensor keeps its own bytes, so a guard never overlaps another
         * tensor's data and any change to it is an out-of-bounds write. */
        bool keep = guard || p->check_finite;
        start[k] = keep ? 0 : (int)k;
        end[k] = keep ? c->n_sched : (c->np[c->schedule[k]].last_use < (int)k
                                           ? (int)k
                                           : c->np[c->schedule[k]].last_use);
    }
    size_t *arena_bytes = NULL, n_arenas = 0;
    /* Kernels index with 32-bit ints: keep every arena below 2^31 bytes. */
    size_t arena_cap = dev->max_alloc_bytes < ((size_t)1 << 31) ? (size_t)dev->max_alloc_bytes
                                                                : ((size_t)1 << 31);
    st = clg_memplan(n, bytes, start, end, arena_cap, ARENA_ALIGN, arena, offset, &arena_bytes,
                     &n_arenas);
    if (st != CLG_OK) goto done;
    p->arena_bytes = arena_bytes;
    p->arenas = calloc(n_arenas ? n_arenas : 1, sizeof *p->arenas);
    if (!p->arenas) {
        st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
        goto done;
    }
    size_t total = 0;
    for (size_t a = 0; a < n_arenas; ++a) total += arena_bytes[a];
    p->peak_bytes = total;
    st = check_device_memory(c, total, n_arenas);
    if (st != CLG_OK) goto done;
    p->n_arenas = n_arenas;
    for (size_t a = 0; a < n_arenas; ++a) {
        st = clg_buffer_create(c->ctx, arena_bytes[a], "the plan's intermediate tensors",
                               &p->arenas[a]);
        if (st != CLG_OK) goto done;
        if (guard) {
            cl_uint pattern = CLG_GUARD_PATTERN;
            cl_int err = clEnqueueFillBuffer(c->ctx->queue, p->arenas[a], &pattern,
                                             sizeof pattern, 0, arena_bytes[a], 0, NULL, NULL);
            if (err != CL_SUCCESS) {
                st = clg_fail_cl(err, "filling guard bytes");
                goto done;
            }
        }
    }
    for (size_t k = 0; k < n; ++k) {
        clg_storage *s = &p->storage[c->schedule[k]];
        s->mem = p->arenas[arena[k]];
        s->offset = (int64_t)((offset[k] + guard) / 4);
    }
done:
    free(bytes);
    free(start);
    free(end);
    free(arena);
    free(offset);
    return st;
}

/* ---- code ---- */

static clg_status emit_steps(clg_compiler *c) {
    clg_program_gen *pg = clg_program_gen_new();
    if (!pg) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    clg_status st = CLG_OK;
    for (int k = 0; k < c->n_sched && st == CLG_OK; ++k) {
        const clg_tensor *m = c->g->nodes[c->schedule[k]];
        if (c->np[m->id].epilogue_of >= 0) continue;
        if (m->info->kind == CLG_KIND_ELEMENTWISE || m->info->kind == CLG_KIND_REDUCE)
            st = clg_codegen_kernel(pg, c, m, k);
    }
    if (st == CLG_OK) st = clg_program_gen_finish(pg);
    cl_program program = NULL;
    size_t len = 0;
    const char *src = st == CLG_OK ? clg_program_gen_source(pg, &len) : NULL;
    c->plan->n_bodies = (size_t)clg_program_gen_bodies(pg);
    if (src && clg_env_flag("CLGRAD_DUMP_KERNELS"))
        fprintf(stderr, "clgrad: generated program (%zu bytes):\n%.*s\n", len, (int)len, src);
    if (src) {
        char name[64];
        snprintf(name, sizeof name, "fused kernels of a %d-step plan", c->n_sched);
        st = clg_program_get(c->ctx, name, src, len, NULL, &program);
        c->plan->program = program;
    }
    clg_lowering lw = {c};
    for (int k = 0; k < c->n_sched && st == CLG_OK; ++k) {
        clg_tensor *m = c->g->nodes[c->schedule[k]];
        const clg_node_plan *mp = &c->np[m->id];
        if (mp->epilogue_of >= 0) {
            clg_tensor *prod = c->g->nodes[mp->epilogue_of];
            clg_operand ins[8], out = clg_compiler_operand(c, m), bias;
            if (prod->n_in > 8) {
                st = clg_fail(CLG_ERR_INTERNAL, "%s: too many operands for an epilogue",
                              prod->info->name);
                break;
            }
            for (int i = 0; i < prod->n_in; ++i) ins[i] = clg_compiler_operand(c, prod->in[i]);
            /* the bias as the producer reads it (through a reshape, if any) */
            if (mp->epi.bias) {
                bias = clg_compiler_operand(c, mp->epi.bias);
                bias.ndim = mp->epi.bias_ndim;
                memcpy(bias.shape, mp->epi.bias_shape, sizeof bias.shape);
                memcpy(bias.strides, mp->epi.bias_strides, sizeof bias.strides);
            }
            st = prod->info->lower_epilogue(&lw, prod, ins, &out, &mp->epi,
                                            mp->epi.bias ? &bias : NULL);
            continue;
        }
        if (m->info->kind == CLG_KIND_ELEMENTWISE || m->info->kind == CLG_KIND_REDUCE) {
            st = clg_codegen_bind(pg, c, program, m, k);
            continue;
        }
        clg_operand in[64], out = clg_compiler_operand(c, m);
        clg_operand *ins = m->n_in <= 64 ? in : malloc((size_t)m->n_in * sizeof *ins);
        if (!ins) {
            st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "compile: out of host memory");
            break;
        }
        for (int i = 0; i < m->n_in; ++i) ins[i] = clg_compiler_operand(c, m->in[i]);
        st = m->info->lower(&lw, m, ins, &out);
        if (ins != in) free(ins);
    }
    clg_program_gen_free(pg);
    return st;
}

clg_status clg_graph_compile(clg_graph *g, const clg_compile_options *opts, clg_plan **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_graph_compile: plan is NULL");
    *out = NULL;
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_graph_compile: graph is NULL");
    if (g->error) return clg_fail(g->error, "%s", g->error_msg);
    clg_compiler c = {.g = g, .ctx = g->ctx, .n = g->n_nodes};
    if (opts) c.opts = *opts;
    /* Finite checks look at every op's own result: nothing fused, nothing reused. */
    bool check_finite = c.opts.check_finite || clg_env_flag("CLGRAD_CHECK_FINITE");
    if (check_finite) c.opts.no_fusion = true;
    c.np = calloc(c.n, sizeof *c.np);
    clg_plan *p = calloc(1, sizeof *p);
    if (p) p->storage = calloc(c.n, sizeof *p->storage);
    if (!c.np || !p || !p->storage) {
        free(c.np);
        if (p) free(p->storage);
        free(p);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_graph_compile: out of host memory");
    }
    p->ctx = g->ctx;
    p->graph = g;
    p->n_nodes = c.n;
    p->check_finite = check_finite;
    c.plan = p;
    clg_status st = clg_graph_add_dependent(g, p, clg_plan_free_owned);
    if (st != CLG_OK) {
        free(c.np);
        free(p->storage);
        free(p);
        return st;
    }
    st = find_roots(&c);
    if (st == CLG_OK) st = analyse(&c);
    if (st == CLG_OK) {
        fuse_epilogues(&c);
        st = schedule(&c);
    }
    if (st == CLG_OK && check_finite) st = list_checked(&c);
    /* arena_storage checks the plan's whole device need before it allocates */
    if (st == CLG_OK) st = arena_storage(&c);
    if (st == CLG_OK) st = leaf_storage(&c);
    if (st == CLG_OK) mark_kept(&c);
    if (st == CLG_OK) st = emit_steps(&c);
    if (st == CLG_OK) {
        cl_int err = clFinish(c.ctx->queue); /* surface upload errors now, not in run 1 */
        if (err != CL_SUCCESS) st = clg_fail_cl(err, "preparing the plan");
    }
    if (st == CLG_OK) clg_trace_nodes(g, c.schedule, c.n_sched); /* CLGRAD_LOG: each step */
    free(c.np);
    free(c.schedule);
    if (st != CLG_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", clg_last_error());
        clg_plan_free(p);
        clg_fail(st, "%s", msg);
        return st;
    }
    clg_trace("plan: %zu steps, %zu bytes of intermediates in %zu arena(s), %zu fixed bytes",
            p->n_steps, p->peak_bytes, p->n_arenas, p->fixed_bytes);
    *out = p;
    return CLG_OK;
}
