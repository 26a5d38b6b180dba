/* Checkpoints (clgrad/checkpoint.h): parameters and optimizer state read back from the device
 * into one safetensors file, and a loader that checks the whole file against the model
 * before it writes a single byte to the device. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/checkpoint.h"
#include "core/context.h"
#include "core/error.h"
#include "graph/graph_internal.h"
#include "io/safetensors.h"
#include "nn/checkpoint_internal.h"

/* PyTorch's per-parameter state keys: a file tensor "<tensor>.<key>" whose <tensor> is also
 * in the file is optimizer state, which a load without an optimizer skips. */
static const char *const state_keys[] = {"exp_avg", "exp_avg_sq", "momentum_buffer", "square_avg"};

/* The optimizer's state (created now where missing) must belong to ctx's parameters. */
static clg_status prepare_optimizer(clg_context *ctx, clg_optimizer *opt, const char *what) {
    if (!opt) return CLG_OK;
    clg_status st = clg_optimizer_init_state(opt);
    for (size_t i = 0; st == CLG_OK && i < clg_optimizer_state_count(opt); ++i)
        if (clg_optimizer_state_param(opt, i)->ctx != ctx)
            st = clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: the optimizer belongs to another context",
                          what);
    return st;
}

/* ---- Saving ---- */

clg_status clg_checkpoint_save(clg_context *ctx, const char *path, clg_optimizer *opt) {
    return clg_checkpoint_save_meta(ctx, path, opt, NULL, 0);
}

clg_status clg_checkpoint_save_meta(clg_context *ctx, const char *path, clg_optimizer *opt,
                                    const clg_checkpoint_entry *meta, size_t n_meta) {
    if (!ctx || !path || !*path)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_checkpoint_save: ctx and path are required");
    clg_status pst = prepare_optimizer(ctx, opt, "clg_checkpoint_save");
    if (pst != CLG_OK) return pst;
    /* The metadata first: a bad caller entry fails before anything is read or written. */
    clg_st_meta *entries = NULL;
    size_t n_entries = 0;
    pst = clg_checkpoint_meta_encode(ctx->rng_offset, opt, meta, n_meta, &entries, &n_entries);
    if (pst != CLG_OK) return pst;
    /* Persistent parameters, each once more under its alias (sharing the host copy), then
     * the optimizer's state. */
    size_t n_all = clg_param_count(ctx), n_states = opt ? clg_optimizer_state_count(opt) : 0;
    size_t cap = 2 * n_all + n_states, n = 0;
    clg_st_tensor *ts = calloc(cap ? cap : 1, sizeof *ts);
    void **bufs = calloc(cap ? cap : 1, sizeof *bufs);
    clg_status st =
        ts && bufs ? CLG_OK : clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    for (size_t i = 0; st == CLG_OK && i < n_all + n_states; ++i) {
        bool is_param = i < n_all;
        const clg_param *p =
            is_param ? clg_param_at(ctx, i) : clg_optimizer_state_param(opt, i - n_all);
        if (is_param && p->transient) continue;
        clg_dtype dt = is_param ? p->dtype : CLG_F32;
        size_t bytes = (size_t)p->numel * clg_dtype_size(dt);
        bufs[n] = malloc(bytes ? bytes : 1);
        if (!bufs[n]) {
            st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
            break;
        }
        // Blocking reads on the in-order queue: they also wait for every queued plan run.
        if (is_param) {
            st = clg_param_read(clg_param_at(ctx, i), bufs[n], bytes);
        } else {
            st = clg_optimizer_state_read(opt, i - n_all, bufs[n], bytes);
        }
        ts[n] = (clg_st_tensor){
            .name = is_param ? p->name : clg_optimizer_state_name(opt, i - n_all),
            .dtype = clg_st_dtype_of(dt),
            .ndim = p->ndim,
            .shape = p->shape,
            .data = bufs[n],
        };
        ++n;
        if (is_param && p->alias) {
            ts[n] = ts[n - 1];
            ts[n].name = p->alias;
            ++n; /* bufs[n] stays NULL: the data is the previous entry's */
        }
    }
    if (st == CLG_OK) st = clg_safetensors_save(path, ts, n, entries, n_entries);
    for (size_t i = 0; bufs && i < cap; ++i)
        free(bufs[i]);
    free(bufs);
    free(ts);
    clg_checkpoint_meta_free_encoded(entries, n_entries);
    return st;
}

/* ---- Loading: validation ---- */

typedef struct mismatches {
    char **lines;
    size_t n, cap;
    bool oom;
} mismatches;

static void add_mismatch(mismatches *m, const char *fmt, ...) CLG_PRINTF(2, 3);
static void add_mismatch(mismatches *m, const char *fmt, ...) {
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 16;
        char **nl = realloc(m->lines, nc * sizeof *nl);
        if (!nl) {
            m->oom = true;
            return;
        }
        m->lines = nl;
        m->cap = nc;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char *copy = malloc(strlen(line) + 1);
    if (!copy) {
        m->oom = true;
        return;
    }
    strcpy(copy, line);
    m->lines[m->n++] = copy;
}

static void free_mismatches(mismatches *m) {
    for (size_t i = 0; i < m->n; ++i)
        free(m->lines[i]);
    free(m->lines);
}

/* Compare a model tensor (dtype, shape) with the file's; one line per difference. */
static void check_tensor(mismatches *m, const char *name, clg_dtype dtype, int ndim,
                         const int64_t *shape, const clg_st_view *v) {
    if (!v) {
        add_mismatch(m, "%s: missing from file", name);
        return;
    }
    clg_st_dtype want = clg_st_dtype_of(dtype);
    bool same_shape = v->ndim == ndim;
    for (int d = 0; same_shape && d < ndim; ++d)
        same_shape = v->shape[d] == shape[d];
    if (v->dtype != want && !same_shape) {
        char a[200], b[200];
        add_mismatch(m, "%s: dtype %s in model, %s in file; shape %s in model, %s in file", name,
                     clg_st_dtype_name(want), clg_st_dtype_name(v->dtype),
                     clg_shape_str(ndim, shape, a, sizeof a),
                     clg_shape_str(v->ndim, v->shape, b, sizeof b));
    } else if (v->dtype != want) {
        add_mismatch(m, "%s: dtype %s in model, %s in file", name, clg_st_dtype_name(want),
                     clg_st_dtype_name(v->dtype));
    } else if (!same_shape) {
        char a[200], b[200];
        add_mismatch(m, "%s: shape %s in model, %s in file", name,
                     clg_shape_str(ndim, shape, a, sizeof a),
                     clg_shape_str(v->ndim, v->shape, b, sizeof b));
    }
}

/* "<tensor of the file>.<PyTorch state key>" */
static bool is_state_name(const clg_safetensors *st, const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return false;
    bool key = false;
    for (size_t i = 0; i < sizeof state_keys / sizeof *state_keys; ++i)
        key = key || strcmp(dot + 1, state_keys[i]) == 0;
    if (!key) return false;
    size_t len = (size_t)(dot - name);
    char *base = malloc(len + 1);
    if (!base) return false;
    memcpy(base, name, len);
    base[len] = '\0';
    bool found = clg_safetensors_find(st, base) != NULL;
    free(base);
    return found;
}

/* What the loader will write once everything checked out. */
typedef struct load_plan {
    const clg_st_view **params; /* per context parameter */
    const clg_st_view **states; /* per optimizer state index */
    clg_ckpt_meta meta;
} load_plan;

static void add_line(const char *line, void *user) {
    add_mismatch(user, "%s", line);
}

/* "a, b, c" (cut to size). */
static void join_names(char *out, size_t size, size_t n, const char *(*name)(size_t, const void *),
                       const void *user) {
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len + 1 < size; ++i) {
        int w = snprintf(out + len, size - len, "%s%s", i ? ", " : "", name(i, user));
        if (w < 0) break;
        len += (size_t)w;
    }
}

typedef struct group_ref {
    const clg_optimizer *opt;
    size_t group;
} group_ref;

static const char *model_name(size_t i, const void *user) {
    const group_ref *r = user;
    return clg_param_name(clg_optimizer_group_param(r->opt, r->group, i));
}

static const char *file_name(size_t i, const void *user) {
    return ((const clg_ckpt_group *)user)->params[i];
}

/* The optimizer's groups as the file records them: as many, with the same parameters and
 * settings (another schedule's totals would silently continue a different run). */
static void check_groups(mismatches *m, const clg_optimizer *opt, const clg_ckpt_meta *fm) {
    size_t ng = clg_optimizer_group_count(opt);
    if (ng != fm->n_groups) {
        add_mismatch(m, "optimizer groups: %zu in model, %zu in file", ng, fm->n_groups);
        return;
    }
    for (size_t g = 0; g < ng; ++g) {
        char label[64];
        snprintf(label, sizeof label, g ? "optimizer group %zu" : "optimizer", g);
        clg_checkpoint_config_diff(label, clg_optimizer_group_config(opt, g), &fm->groups[g].config,
                                   add_line, m);
        if (!g) continue;
        size_t n = clg_optimizer_group_size(opt, g);
        bool same = n == fm->groups[g].n_params;
        for (size_t i = 0; same && i < n; ++i) {
            bool found = false;
            for (size_t j = 0; !found && j < n; ++j)
                found = strcmp(clg_param_name(clg_optimizer_group_param(opt, g, i)),
                               fm->groups[g].params[j]) == 0;
            same = found;
        }
        if (same) continue;
        char a[600], b[600];
        group_ref r = {opt, g};
        join_names(a, sizeof a, n, model_name, &r);
        join_names(b, sizeof b, fm->groups[g].n_params, file_name, &fm->groups[g]);
        add_mismatch(m, "optimizer group %zu: parameters [%s] in model, [%s] in file", g, a, b);
    }
}

static clg_status validate(clg_context *ctx, const char *path, clg_optimizer *opt,
                           const clg_safetensors *st, load_plan *lp) {
    // Metadata first: a malformed or newer file is a format error, not a list of mismatches.
    clg_status status = clg_checkpoint_meta_decode(st, path, &lp->meta);
    if (status != CLG_OK) return status;
    const clg_ckpt_meta *fm = &lp->meta;

    mismatches m = {0};
    for (size_t i = 0; i < clg_param_count(ctx); ++i) {
        const clg_param *p = clg_param_at(ctx, i);
        if (p->transient) continue;
        lp->params[i] = clg_safetensors_find(st, p->name);
        const clg_st_view *alias = p->alias ? clg_safetensors_find(st, p->alias) : NULL;
        /* A tied weight may come under either key (PyTorch writes both); each must fit. */
        if (lp->params[i] && alias)
            check_tensor(&m, p->alias, p->dtype, p->ndim, p->shape, alias);
        if (!lp->params[i] && alias) {
            lp->params[i] = alias;
            check_tensor(&m, p->alias, p->dtype, p->ndim, p->shape, alias);
        } else {
            check_tensor(&m, p->name, p->dtype, p->ndim, p->shape, lp->params[i]);
        }
    }
    size_t n_states = opt ? clg_optimizer_state_count(opt) : 0;
    if (opt) {
        const clg_optimizer_config *cfg = clg_optimizer_get_config(opt);
        if (!fm->has_kind) {
            add_mismatch(&m, "optimizer state: missing from file (it was saved without an "
                             "optimizer; load it without one to start the optimizer afresh)");
        } else if (fm->kind != cfg->kind) {
            add_mismatch(&m, "optimizer: %s in model, %s in file",
                         clg_checkpoint_kind_name(cfg->kind), clg_checkpoint_kind_name(fm->kind));
        } else if (!fm->has_steps) {
            add_mismatch(&m, "optimizer step count: missing from file (" CLG_CKPT_STEPS_KEY ")");
        }
        /* Other hyper-parameters (another schedule's totals, say) would silently continue a
         * different run than the one saved. */
        if (fm->has_config && fm->kind == cfg->kind) check_groups(&m, opt, fm);
        for (size_t i = 0; i < n_states; ++i) {
            const clg_param *p = clg_optimizer_state_param(opt, i);
            const char *name = clg_optimizer_state_name(opt, i);
            lp->states[i] = clg_safetensors_find(st, name);
            check_tensor(&m, name, CLG_F32, p->ndim, p->shape, lp->states[i]);
        }
    }
    for (size_t i = 0; i < clg_safetensors_count(st); ++i) {
        const char *name = clg_safetensors_at(st, i)->name;
        bool known = clg_param_find(ctx, name) || clg_param_alias_owner(ctx, name);
        for (size_t k = 0; !known && k < n_states; ++k)
            known = strcmp(clg_optimizer_state_name(opt, k), name) == 0;
        if (!known && !opt && is_state_name(st, name)) known = true; /* skipped */
        if (!known) add_mismatch(&m, "%s: not in model", name);
    }
    if (m.oom) {
        status = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    } else if (m.n) {
        status = clg_fail(CLG_ERR_MISMATCH,
                          "%s: the checkpoint does not fit the model "
                          "(%zu mismatch%s; nothing was loaded):",
                          path, m.n, m.n == 1 ? "" : "es");
        for (size_t i = 0; i < m.n; ++i)
            clg_error_append("  %s", m.lines[i]);
    }
    free_mismatches(&m);
    return status;
}

/* ---- Loading ---- */

clg_status clg_checkpoint_load(clg_context *ctx, const char *path, clg_optimizer *opt) {
    if (!ctx || !path || !*path)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_checkpoint_load: ctx and path are required");
    clg_safetensors *st = NULL;
    clg_status status = clg_safetensors_load(path, &st);
    if (status != CLG_OK) return status;
    // The optimizer's zero state (what compiling a plan creates) gives the names to expect.
    status = prepare_optimizer(ctx, opt, "clg_checkpoint_load");
    size_t n_states = opt ? clg_optimizer_state_count(opt) : 0;
    load_plan lp = {
        .params = calloc(clg_param_count(ctx) ? clg_param_count(ctx) : 1, sizeof *lp.params),
        .states = calloc(n_states ? n_states : 1, sizeof *lp.states),
    };
    if (status == CLG_OK && (!lp.params || !lp.states))
        status = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    if (status == CLG_OK) status = validate(ctx, path, opt, st, &lp);

    for (size_t i = 0; status == CLG_OK && i < clg_param_count(ctx); ++i)
        if (lp.params[i])
            status =
                clg_param_write(clg_param_at(ctx, i), lp.params[i]->data, lp.params[i]->nbytes);
    for (size_t i = 0; status == CLG_OK && i < n_states; ++i)
        status = clg_optimizer_state_write(opt, i, lp.states[i]->data, lp.states[i]->nbytes);
    if (status == CLG_OK && opt) status = clg_optimizer_set_steps(opt, lp.meta.steps);
    if (status == CLG_OK && lp.meta.has_rng) ctx->rng_offset = lp.meta.rng;
    clg_checkpoint_meta_clear(&lp.meta);

    free(lp.params);
    free(lp.states);
    clg_safetensors_free(st);
    return status;
}
