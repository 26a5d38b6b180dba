/* Running a plan: queue every step on the context's in-order queue without waiting, move
 * inputs in through host staging copies, read outputs back (the one wait of a step), check
 * guard bytes, and print CLGRAD_PROFILE reports from profiling events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

#define PROFILE_PRINT_RUNS 2

/* ---- building ---- */

static clg_step *new_step(clg_plan *p, clg_step_kind kind, const char *label) {
    if (p->n_steps == p->cap_steps) {
        size_t nc = p->cap_steps ? p->cap_steps * 2 : 32;
        clg_step *ns = realloc(p->steps, nc * sizeof *ns);
        if (!ns) return NULL;
        p->steps = ns;
        p->cap_steps = nc;
    }
    clg_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->counter_arg = -1;
    snprintf(s->label, sizeof s->label, "%s", label ? label : "?");
    return s;
}

clg_status clg_plan_add_kernel(clg_plan *plan, cl_kernel kernel, cl_uint work_dim,
                               const size_t *global, const size_t *local, const char *label,
                               int counter_arg) {
    clg_step *s = new_step(plan, CLG_STEP_KERNEL, label);
    if (!s) {
        clReleaseKernel(kernel);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    }
    s->kernel = kernel;
    s->work_dim = work_dim;
    for (cl_uint d = 0; d < work_dim; ++d) {
        s->global[d] = global[d];
        if (local) s->local[d] = local[d];
    }
    s->has_local = local != NULL;
    s->counter_arg = counter_arg;
    return CLG_OK;
}

clg_status clg_plan_add_gemm(clg_plan *plan, const clg_gemm_call *call, const char *label) {
    clg_step *s = new_step(plan, CLG_STEP_GEMM, label);
    if (!s) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    s->gemm = *call;
    return CLG_OK;
}

clg_status clg_plan_add_convgemm(clg_plan *plan, const clg_convgemm_call *call, const char *label) {
    clg_step *s = new_step(plan, CLG_STEP_CONVGEMM, label);
    if (!s) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    s->conv = *call;
    return CLG_OK;
}

void clg_plan_last_step_every(clg_plan *plan, uint32_t every, uint32_t phase) {
    if (!plan->n_steps) return;
    plan->steps[plan->n_steps - 1].every = every;
    plan->steps[plan->n_steps - 1].phase = phase;
}

clg_status clg_plan_add_hook(clg_plan *plan, clg_run_hook hook, void *user, clg_free_fn free_user) {
    clg_plan_hook *nh = realloc(plan->hooks, (plan->n_hooks + 1) * sizeof *nh);
    if (!nh) {
        if (free_user) free_user(user);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    }
    plan->hooks = nh;
    plan->hooks[plan->n_hooks++] = (clg_plan_hook){hook, user, free_user};
    return CLG_OK;
}

clg_status clg_plan_own_buffer(clg_plan *plan, size_t bytes, const char *what, cl_mem *out) {
    cl_mem *no = realloc(plan->owned, (plan->n_owned + 1) * sizeof *no);
    if (!no) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    plan->owned = no;
    clg_status st = clg_buffer_create(plan->ctx, bytes, what, out);
    if (st != CLG_OK) return st;
    plan->owned[plan->n_owned++] = *out;
    plan->fixed_bytes += bytes;
    return CLG_OK;
}

const clg_storage *clg_plan_storage(const clg_plan *plan, const clg_tensor *t) {
    if ((size_t)t->base->id >= plan->n_nodes) return NULL;
    return &plan->storage[t->base->id];
}

/* ---- profiling ---- */

static void collect_profile(clg_plan *p) {
    if (!p->events_pending) return;
    p->events_pending = false;
    bool print = p->profiled_runs < PROFILE_PRINT_RUNS;
    double total = 0.0;
    if (print)
        fprintf(stderr, "clgrad profile: run %llu of a plan: %zu kernels\n",
                (unsigned long long)p->runs, p->n_steps);
    for (size_t i = 0; i < p->n_steps; ++i) {
        if (!p->events[i]) continue;
        cl_ulong t0 = 0, t1 = 0;
        cl_event start = p->first_events[i] ? p->first_events[i] : p->events[i];
        clGetEventProfilingInfo(start, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
        clGetEventProfilingInfo(p->events[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        clReleaseEvent(p->events[i]);
        p->events[i] = NULL;
        if (p->first_events[i]) clReleaseEvent(p->first_events[i]);
        p->first_events[i] = NULL;
        double ms = t1 > t0 ? (double)(t1 - t0) * 1e-6 : 0.0;
        p->kernel_ms[i] += ms;
        total += ms;
        if (print) fprintf(stderr, "  %4zu  %-28s %9.3f ms\n", i, p->steps[i].label, ms);
    }
    if (print) fprintf(stderr, "  total kernel time %.3f ms\n", total);
    p->profiled_runs++;
}

static void print_profile_summary(clg_plan *p) {
    if (!p->profiled_runs) return;
    double total = 0.0;
    fprintf(stderr, "clgrad profile: plan summary, mean over %llu runs, %zu kernels per run\n",
            (unsigned long long)p->profiled_runs, p->n_steps);
    for (size_t i = 0; i < p->n_steps; ++i) {
        double ms = p->kernel_ms[i] / (double)p->profiled_runs;
        total += ms;
        fprintf(stderr, "  %4zu  %-28s %9.3f ms\n", i, p->steps[i].label, ms);
    }
    fprintf(stderr, "  total kernel time %.3f ms per run\n", total);
}

/* ---- running ---- */

static clg_status wait_queue(clg_plan *p) {
    cl_int err = clFinish(p->ctx->queue);
    if (err != CL_SUCCESS)
        return clg_fail_cl(err, "running a plan on %s", p->ctx->info.name);
    if (p->events) collect_profile(p);
    return CLG_OK;
}

clg_status clg_plan_run(clg_plan *p) {
    if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_plan_run: plan is NULL");
    clg_context *ctx = p->ctx;
    if (ctx->profiling && !p->events) {
        p->events = calloc(p->n_steps ? p->n_steps : 1, sizeof *p->events);
        p->first_events = calloc(p->n_steps ? p->n_steps : 1, sizeof *p->first_events);
        p->kernel_ms = calloc(p->n_steps ? p->n_steps : 1, sizeof *p->kernel_ms);
        if (!p->events || !p->first_events || !p->kernel_ms)
            return clg_fail(CLG_ERR_OUT_OF_MEMORY, "profiling: out of host memory");
    }
    if (p->events_pending) {
        clg_status st = wait_queue(p);
        if (st != CLG_OK) return st;
    }
    if (p->uses_rng) {
        uint64_t ctr = ctx->rng_offset++;
        for (size_t i = 0; i < p->n_steps; ++i) {
            clg_step *s = &p->steps[i];
            if (s->counter_arg < 0) continue;
            cl_uint lo = (cl_uint)ctr, hi = (cl_uint)(ctr >> 32);
            cl_int e1 = clSetKernelArg(s->kernel, (cl_uint)s->counter_arg, sizeof lo, &lo);
            cl_int e2 = clSetKernelArg(s->kernel, (cl_uint)s->counter_arg + 1, sizeof hi, &hi);
            if (e1 != CL_SUCCESS || e2 != CL_SUCCESS)
                return clg_fail_cl(e1 ? e1 : e2, "setting the random counter of %s", s->label);
        }
    }
    for (size_t h = 0; h < p->n_hooks; ++h) {
        clg_status st = p->hooks[h].fn(p->runs, p->hooks[h].user);
        if (st != CLG_OK) return st;
    }
    if (p->check_finite) {
        clg_status st = clg_check_finite_before(p);
        if (st != CLG_OK) return st;
    }
    for (size_t i = 0; i < p->n_steps; ++i) {
        clg_step *s = &p->steps[i];
        if (s->every > 1 && p->runs % s->every != s->phase) continue;
        cl_event *ev = p->events ? &p->events[i] : NULL;
        cl_int err = CL_SUCCESS;
        switch (s->kind) {
        case CLG_STEP_KERNEL:
            err = clEnqueueNDRangeKernel(ctx->queue, s->kernel, s->work_dim, NULL, s->global,
                                         s->has_local ? s->local : NULL, 0, NULL, ev);
            break;
        case CLG_STEP_GEMM: {
            clg_status st = clg_gemm_enqueue(ctx, &s->gemm, ev ? &p->first_events[i] : NULL, ev);
            if (st != CLG_OK) return st;
            break;
        }
        case CLG_STEP_CONVGEMM: {
            clg_status st = clg_gemm_convgemm(ctx, &s->conv, ev);
            if (st != CLG_OK) return st;
            break;
        }
        }
        if (err != CL_SUCCESS)
            return clg_fail_cl(err, "queueing step %zu (%s) of a plan", i, s->label);
    }
    if (p->events) p->events_pending = true;
    p->runs++;
    return p->check_finite ? clg_check_finite_after(p) : CLG_OK;
}

clg_status clg_plan_finish(clg_plan *p) {
    if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_plan_finish: plan is NULL");
    return wait_queue(p);
}

static clg_plan_input *find_input(clg_plan *p, const clg_tensor *t) {
    for (size_t i = 0; i < p->n_inputs; ++i)
        if (p->inputs[i].node == t) return &p->inputs[i];
    return NULL;
}

/* How many host copies of one input may wait for the device: beyond it, a write waits for
 * the oldest (the host is that many batches ahead; memory stays bounded). */
#define MAX_STAGING_COPIES 32

/* A copy that no queued write reads any more: a finished one, a new one, or (all busy and
 * MAX_STAGING_COPIES made) the oldest, once its write is done. */
static clg_status pick_staging(clg_plan_input *in, clg_staging **out) {
    clg_staging *oldest = NULL;
    for (int i = 0; i < in->n_copies; ++i) {
        clg_staging *s = &in->copies[i];
        if (s->write) {
            cl_int status = CL_COMPLETE;
            cl_int err = clGetEventInfo(s->write, CL_EVENT_COMMAND_EXECUTION_STATUS,
                                        sizeof status, &status, NULL);
            if (err == CL_SUCCESS && status < 0) err = status;
            if (err != CL_SUCCESS) return clg_fail_cl(err, "writing input '%s'", in->node->name);
            if (status != CL_COMPLETE) {
                if (!oldest || s->seq < oldest->seq) oldest = s;
                continue;
            }
            clReleaseEvent(s->write);
            s->write = NULL;
        }
        *out = s;
        return CLG_OK;
    }
    if (in->n_copies < MAX_STAGING_COPIES) {
        clg_staging *grown = realloc(in->copies, (size_t)(in->n_copies + 1) * sizeof *grown);
        void *mem = grown ? malloc(in->bytes) : NULL;
        if (grown) in->copies = grown;
        if (mem) {
            clg_staging *s = &in->copies[in->n_copies++];
            *s = (clg_staging){.mem = mem};
            *out = s;
            return CLG_OK;
        }
        /* out of host memory: wait for the oldest copy instead */
    }
    cl_int err = clWaitForEvents(1, &oldest->write);
    clReleaseEvent(oldest->write);
    oldest->write = NULL;
    if (err != CL_SUCCESS) return clg_fail_cl(err, "writing input '%s'", in->node->name);
    *out = oldest;
    return CLG_OK;
}

clg_status clg_plan_write(clg_plan *p, const clg_tensor *input, const void *host, size_t bytes) {
    if (!p || !input || !host)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_plan_write: NULL argument");
    clg_plan_input *in = find_input(p, input);
    if (!in) {
        char b[200];
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_plan_write: %s is not an input this plan reads (is it an input of "
                        "the graph, and does an output depend on it?)",
                        clg_tensor_describe(input, b, sizeof b));
    }
    if (bytes != in->bytes) {
        char b[200];
        return clg_fail(CLG_ERR_SHAPE, "clg_plan_write: input '%s' is %s (%zu bytes), got %zu bytes",
                        in->node->name, clg_tensor_describe(in->node, b, sizeof b), in->bytes,
                        bytes);
    }
    clg_staging *slot = NULL;
    clg_status st = pick_staging(in, &slot);
    if (st != CLG_OK) return st;
    memcpy(slot->mem, host, bytes);
    in->staging = slot->mem;
    slot->seq = ++in->writes;
    cl_int err = clEnqueueWriteBuffer(p->ctx->queue, in->mem, CL_FALSE, 0, bytes, slot->mem, 0,
                                      NULL, &slot->write);
    if (err != CL_SUCCESS) {
        slot->write = NULL;
        return clg_fail_cl(err, "writing input '%s'", in->node->name);
    }
    return CLG_OK;
}

/* Intermediates hold their values to the end of a run only when the compiler kept them. */
static bool readable(const clg_plan *p, const clg_tensor *t) {
    if ((size_t)t->id >= p->n_nodes) return false;
    const clg_storage *s = &p->storage[t->base->id];
    return (s->mem || s->scalar) && s->kept;
}

clg_status clg_plan_read(clg_plan *p, const clg_tensor *t, void *host, size_t bytes) {
    if (!p || !t || !host) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_plan_read: NULL argument");
    char desc[200];
    size_t want = (size_t)clg_tensor_numel(t) * clg_dtype_size(t->dtype);
    if (bytes != want)
        return clg_fail(CLG_ERR_SHAPE, "clg_plan_read: tensor is %s (%zu bytes), got %zu bytes",
                        clg_tensor_describe(t, desc, sizeof desc), want, bytes);
    if (t->graph != p->graph || !readable(p, t))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_plan_read: %s (%s) is not kept by this plan: mark it with "
                        "clg_graph_output before compiling",
                        clg_tensor_describe(t, desc, sizeof desc), t->info->name);
    /* The blocking read below waits for the queue anyway (it is in order); a separate
     * clFinish is only needed to collect profiling events. */
    if (p->events_pending) {
        clg_status st = wait_queue(p);
        if (st != CLG_OK) return st;
    }
    const clg_storage *s = &p->storage[t->base->id];
    if (s->scalar) {
        float *out = host;
        for (int64_t i = 0; i < clg_tensor_numel(t); ++i) out[i] = s->scalar_value;
        return CLG_OK;
    }
    int64_t off = s->offset + t->offset;
    if (clg_is_contiguous(t)) {
        cl_int err = clEnqueueReadBuffer(p->ctx->queue, s->mem, CL_TRUE, (size_t)off * 4, bytes,
                                          host, 0, NULL, NULL);
        if (err != CL_SUCCESS) return clg_fail_cl(err, "reading a plan output");
        return CLG_OK;
    }
    /* A strided view: read the span it covers, then gather on the host. */
    int64_t lo = 0, hi = 0;
    for (int d = 0; d < t->ndim; ++d) {
        int64_t ext = (t->shape[d] - 1) * t->strides[d];
        if (ext < 0) lo += ext;
        else hi += ext;
    }
    size_t span = (size_t)(hi - lo + 1);
    uint32_t *tmp = malloc(span * 4);
    if (!tmp) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_plan_read: out of host memory");
    cl_int err = clEnqueueReadBuffer(p->ctx->queue, s->mem, CL_TRUE, (size_t)(off + lo) * 4,
                                     span * 4, tmp, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        free(tmp);
        return clg_fail_cl(err, "reading a plan output");
    }
    uint32_t *dst = host;
    int64_t n = clg_tensor_numel(t);
    for (int64_t i = 0; i < n; ++i) {
        int64_t r = i, o = -lo;
        for (int d = t->ndim - 1; d >= 0; --d) {
            o += (r % t->shape[d]) * t->strides[d];
            r /= t->shape[d];
        }
        dst[i] = tmp[o];
    }
    free(tmp);
    return CLG_OK;
}

clg_status clg_plan_read_grad(clg_plan *p, const clg_param *param, void *host, size_t bytes) {
    if (!p || !param || !host)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_plan_read_grad: NULL argument");
    const clg_tensor *t = clg_graph_param_node(p->graph, param);
    if (!t || !t->grad)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_plan_read_grad: parameter '%s' has no gradient in this plan's graph "
                        "(%s)",
                        param->name,
                        !t ? "the graph does not use it"
                           : !param->trainable ? "it is frozen" : "the loss does not depend on it");
    return clg_plan_read(p, t->grad, host, bytes);
}

clg_status clg_plan_check_guards(clg_plan *p) {
    if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_plan_check_guards: plan is NULL");
    if (!p->guard_bytes)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_plan_check_guards: compile with guard_bytes to use guards");
    clg_status st = wait_queue(p);
    if (st != CLG_OK) return st;
    for (size_t a = 0; a < p->n_arenas; ++a) {
        size_t n = p->arena_bytes[a] / 4;
        uint32_t *buf = malloc(n * 4);
        if (!buf) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "guard check: out of host memory");
        cl_int err = clEnqueueReadBuffer(p->ctx->queue, p->arenas[a], CL_TRUE, 0, n * 4, buf, 0,
                                         NULL, NULL);
        if (err != CL_SUCCESS) {
            free(buf);
            return clg_fail_cl(err, "reading an arena for the guard check");
        }
        /* Bytes outside every tensor's data must still hold the pattern. */
        unsigned char *inside = calloc(n, 1);
        if (!inside) {
            free(buf);
            return clg_fail(CLG_ERR_OUT_OF_MEMORY, "guard check: out of host memory");
        }
        for (size_t i = 0; i < p->n_nodes; ++i) {
            const clg_storage *s = &p->storage[i];
            const clg_tensor *t = p->graph->nodes[i];
            if (s->mem != p->arenas[a] || t->base != t) continue;
            int64_t numel = clg_tensor_numel(t);
            for (int64_t k = 0; k < numel && (size_t)(s->offset + k) < n; ++k)
                inside[s->offset + k] = 1;
        }
        for (size_t w = 0; w < n; ++w) {
            if (inside[w] || buf[w] == CLG_GUARD_PATTERN) continue;
            const char *victim = "?";
            for (size_t i = 0; i < p->n_nodes; ++i) {
                const clg_storage *s = &p->storage[i];
                if (s->mem == p->arenas[a] && (size_t)s->offset > w) {
                    victim = p->graph->nodes[i]->info->name;
                    break;
                }
            }
            free(buf);
            free(inside);
            return clg_fail(CLG_ERR_INTERNAL,
                            "guard bytes overwritten in arena %zu at byte %zu (near %s)", a,
                            w * 4, victim);
        }
        free(buf);
        free(inside);
    }
    return CLG_OK;
}

size_t clg_plan_peak_bytes(const clg_plan *p) {
    return p ? p->peak_bytes : 0;
}

size_t clg_plan_fixed_bytes(const clg_plan *p) {
    return p ? p->fixed_bytes : 0;
}

size_t clg_plan_kernel_count(const clg_plan *p) {
    return p ? p->n_steps : 0;
}

void clg_plan_free(clg_plan *p) {
    if (!p) return;
    clFinish(p->ctx->queue);
    if (p->events) {
        collect_profile(p);
        print_profile_summary(p);
    }
    /* Newest first: pocl keeps a program's kernels in a list with the newest at its head and
     * unlinks a released kernel by walking from there, so releasing oldest first costs time
     * quadratic in the kernels (18 s for the 62,000 of a T = 4096 RNN). */
    for (size_t i = p->n_steps; i-- > 0;) {
        if (p->steps[i].kind == CLG_STEP_GEMM) clg_gemm_release(&p->steps[i].gemm);
        if (p->steps[i].kernel) clReleaseKernel(p->steps[i].kernel);
    }
    free(p->steps);
    for (size_t a = 0; a < p->n_arenas; ++a)
        clg_buffer_release(p->ctx, p->arenas[a]);
    free(p->arenas);
    free(p->arena_bytes);
    for (size_t i = 0; i < p->n_owned; ++i) clg_buffer_release(p->ctx, p->owned[i]);
    free(p->owned);
    for (size_t i = 0; i < p->n_inputs; ++i) {
        clg_plan_input *in = &p->inputs[i];
        for (int k = 0; k < in->n_copies; ++k) {
            if (in->copies[k].write) clReleaseEvent(in->copies[k].write);
            free(in->copies[k].mem);
        }
        free(in->copies);
        clg_buffer_release(p->ctx, in->mem);
    }
    free(p->inputs);
    free(p->storage);
    for (size_t h = 0; h < p->n_hooks; ++h)
        if (p->hooks[h].free_user) p->hooks[h].free_user(p->hooks[h].user);
    free(p->hooks);
    free(p->checked);
    free(p->events);
    free(p->first_events);
    free(p->kernel_ms);
    clg_graph_remove_dependent(p->graph, p);
    free(p);
}

void clg_plan_free_owned(void *plan) {
    clg_plan_free(plan);
}
