/* CLGRAD_CHECK_FINITE: find the first op whose output holds NaN or Inf. Such a plan is
 * compiled unfused with every buffer kept to the end of the run (one op, one materialised
 * result), and each run is checked on the host in schedule order: the parameters and inputs
 * it starts from, then every op's result, then the parameters its updates wrote. The first
 * non-finite value names the op that produced it from finite operands. Slow by design: one
 * wait and a read of every buffer per run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

/* First non-finite element of n floats, and how many there are; -1 when all are finite. */
static int64_t first_bad(const float *x, int64_t n, int64_t *count) {
    int64_t first = -1, bad = 0;
    for (int64_t i = 0; i < n; ++i)
        if (!isfinite(x[i])) {
            if (first < 0) first = i;
            bad++;
        }
    *count = bad;
    return first;
}

static const char *kind_of(float v) {
    return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

/* Read numel floats of mem at element offset into *buf (grown as needed). */
static clg_status read_floats(clg_plan *p, cl_mem mem, int64_t offset, int64_t numel, float **buf,
                              size_t *cap, const char *what) {
    size_t bytes = (size_t)numel * sizeof(float);
    if (bytes > *cap) {
        float *nb = realloc(*buf, bytes);
        if (!nb) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "CLGRAD_CHECK_FINITE: out of host memory");
        *buf = nb;
        *cap = bytes;
    }
    cl_int err = clEnqueueReadBuffer(p->ctx->queue, mem, CL_TRUE, (size_t)offset * sizeof(float),
                                     bytes, *buf, 0, NULL, NULL);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "CLGRAD_CHECK_FINITE: reading %s", what);
    return CLG_OK;
}

/* Every f32 parameter the plan reads or updates; false at the end. */
static bool next_param(const clg_plan *p, size_t *i, clg_param **out) {
    for (; *i < p->n_nodes; ++*i) {
        const clg_tensor *t = p->graph->nodes[*i];
        if (t->info == &clg_op_param && t->dtype == CLG_F32 && p->storage[*i].mem) {
            *out = t->param;
            ++*i;
            return true;
        }
    }
    return false;
}

static clg_status check_params(clg_plan *p, bool after, float **buf, size_t *cap) {
    size_t i = 0;
    clg_param *prm;
    while (next_param(p, &i, &prm)) {
        char what[320];
        snprintf(what, sizeof what, "parameter '%s'", prm->name);
        clg_status st = read_floats(p, prm->buffer, 0, prm->numel, buf, cap, what);
        if (st != CLG_OK) return st;
        int64_t bad, at = first_bad(*buf, prm->numel, &bad);
        if (at < 0) continue;
        if (!after)
            return clg_fail(CLG_ERR_NOT_FINITE,
                            "CLGRAD_CHECK_FINITE: run %llu of a plan: parameter '%s' already "
                            "holds %s at element %lld (%lld of %lld not finite) before the run "
                            "starts: it was written so (clg_param_write, a checkpoint, an "
                            "initialiser) or by a plan that was not checked",
                            (unsigned long long)p->runs + 1, prm->name, kind_of((*buf)[at]),
                            (long long)at, (long long)bad, (long long)prm->numel);
        return clg_fail(CLG_ERR_NOT_FINITE,
                        "CLGRAD_CHECK_FINITE: run %llu of a plan: parameter '%s' holds %s at "
                        "element %lld (%lld of %lld not finite) after the run, while every op's "
                        "result was finite: the optimizer's update (or a clg_assign) wrote it",
                        (unsigned long long)p->runs, prm->name, kind_of((*buf)[at]), (long long)at,
                        (long long)bad, (long long)prm->numel);
    }
    return CLG_OK;
}

clg_status clg_check_finite_before(clg_plan *p) {
    for (size_t i = 0; i < p->n_inputs; ++i) {
        const clg_plan_input *in = &p->inputs[i];
        if (in->node->dtype != CLG_F32) continue;
        int64_t n = (int64_t)(in->bytes / sizeof(float)), bad;
        int64_t at = first_bad(in->staging, n, &bad);
        if (at >= 0)
            return clg_fail(CLG_ERR_NOT_FINITE,
                            "CLGRAD_CHECK_FINITE: run %llu of a plan: input '%s' holds %s at "
                            "element %lld (%lld of %lld not finite), as clg_plan_write gave it",
                            (unsigned long long)p->runs + 1, in->node->name,
                            kind_of(((const float *)in->staging)[at]), (long long)at,
                            (long long)bad, (long long)n);
    }
    float *buf = NULL;
    size_t cap = 0;
    clg_status st = check_params(p, false, &buf, &cap);
    free(buf);
    return st;
}

/* "'relu' [128, 64] f32, parameter 'fc3.weight' [10, 64] f32" */
static void describe_inputs(const clg_tensor *t, char *out, size_t size) {
    size_t len = 0;
    out[0] = '\0';
    for (int k = 0; k < t->n_in && len + 1 < size; ++k) {
        char d[160];
        const clg_tensor *x = t->in[k];
        const char *what = x->param ? "parameter " : x->info == &clg_op_input ? "input " : "";
        const char *name = x->param ? x->param->name
                           : x->info == &clg_op_input && x->name ? x->name
                                                                 : x->info->name;
        int n = snprintf(out + len, size - len, "%s%s'%s' %s", k ? ", " : "", what, name,
                         clg_tensor_describe(x, d, sizeof d));
        if (n < 0) break;
        len += (size_t)n;
    }
}

clg_status clg_check_finite_after(clg_plan *p) {
    cl_int err = clFinish(p->ctx->queue);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "running a plan on %s", p->ctx->info.name);
    float *buf = NULL;
    size_t cap = 0;
    clg_status st = CLG_OK;
    for (size_t k = 0; k < p->n_checked && st == CLG_OK; ++k) {
        const clg_tensor *t = p->checked[k];
        const clg_storage *s = &p->storage[t->id];
        if (t->dtype != CLG_F32 || !s->mem || t->is_effect) continue; /* an effect writes its target */
        int64_t numel = clg_tensor_numel(t);
        st = read_floats(p, s->mem, s->offset, numel, &buf, &cap, t->info->name);
        if (st != CLG_OK) break;
        int64_t bad, at = first_bad(buf, numel, &bad);
        if (at < 0) continue;
        char shape[160], attrs[512], ins[1024];
        describe_inputs(t, ins, sizeof ins);
        clg_attrs_describe(&t->attrs, attrs, sizeof attrs);
        st = clg_fail(CLG_ERR_NOT_FINITE,
                      "CLGRAD_CHECK_FINITE: run %llu of a plan: op '%s' (node %d, %s%s%s) produced "
                      "%s at element %lld (%lld of %lld not finite) from finite operands: %s",
                      (unsigned long long)p->runs, t->info->name, t->id,
                      clg_tensor_describe(t, shape, sizeof shape), attrs[0] ? ", " : "", attrs,
                      kind_of(buf[at]), (long long)at, (long long)bad, (long long)numel,
                      ins[0] ? ins : "(none)");
    }
    if (st == CLG_OK) st = check_params(p, true, &buf, &cap);
    free(buf);
    return st;
}
