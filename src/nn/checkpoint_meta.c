/* Checkpoint metadata (nn/checkpoint_internal.h): clgrad's entries written as strings that
 * read back exactly (floats with 9 significant digits round-trip through strtof), decoded
 * strictly, and clg_checkpoint_info for programs that need a file's record before they build
 * a model. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"
#include "nn/checkpoint_internal.h"

static const char *const kind_names[CLG_OPT_KIND_COUNT] = {
    [CLG_OPT_SGD] = "sgd",
    [CLG_OPT_ADAM] = "adam",
    [CLG_OPT_ADAMW] = "adamw",
    [CLG_OPT_RMSPROP] = "rmsprop",
};

static const char *const schedule_names[CLG_LR_SCHEDULE_COUNT] = {
    [CLG_LR_CONSTANT] = "constant",
    [CLG_LR_STEP] = "step",
    [CLG_LR_COSINE] = "cosine",
};

const char *clg_checkpoint_kind_name(clg_optimizer_kind kind) {
    return (int)kind >= 0 && kind < CLG_OPT_KIND_COUNT ? kind_names[kind] : "?";
}

/* Every hyper-parameter of clg_optimizer_config, by field. */
typedef enum field_type { FIELD_FLOAT, FIELD_INT, FIELD_BOOL, FIELD_SCHEDULE } field_type;

typedef struct field {
    const char *name;
    field_type type;
    size_t offset;
} field;

#define FIELD(name, type) {#name, type, offsetof(clg_optimizer_config, name)}
static const field fields[] = {
    FIELD(lr, FIELD_FLOAT),           FIELD(momentum, FIELD_FLOAT),
    FIELD(nesterov, FIELD_BOOL),      FIELD(beta1, FIELD_FLOAT),
    FIELD(beta2, FIELD_FLOAT),        FIELD(eps, FIELD_FLOAT),
    FIELD(alpha, FIELD_FLOAT),        FIELD(weight_decay, FIELD_FLOAT),
    FIELD(clip_norm, FIELD_FLOAT),    FIELD(schedule, FIELD_SCHEDULE),
    FIELD(warmup_steps, FIELD_INT),   FIELD(total_steps, FIELD_INT),
    FIELD(min_lr, FIELD_FLOAT),       FIELD(step_size, FIELD_INT),
    FIELD(gamma, FIELD_FLOAT),
};
#undef FIELD
#define N_FIELDS (sizeof fields / sizeof *fields)

static void field_text(const field *f, const clg_optimizer_config *c, char *out, size_t size) {
    const char *p = (const char *)c + f->offset;
    switch (f->type) {
    case FIELD_FLOAT: {
        float v;
        memcpy(&v, p, sizeof v);
        snprintf(out, size, "%.9g", (double)v);
        break;
    }
    case FIELD_INT: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        snprintf(out, size, "%" PRId64, v);
        break;
    }
    case FIELD_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        snprintf(out, size, "%s", v ? "true" : "false");
        break;
    }
    case FIELD_SCHEDULE: {
        clg_lr_schedule v;
        memcpy(&v, p, sizeof v);
        snprintf(out, size, "%s",
                 (int)v >= 0 && v < CLG_LR_SCHEDULE_COUNT ? schedule_names[v] : "?");
        break;
    }
    }
}

static bool parse_int64(const char *s, int64_t *out) {
    if (!s || !((*s >= '0' && *s <= '9') || *s == '-')) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = (uint64_t)v;
    return true;
}

/* false: the text is not a value of the field's type. */
static bool field_parse(const field *f, const char *s, clg_optimizer_config *c) {
    char *p = (char *)c + f->offset;
    switch (f->type) {
    case FIELD_FLOAT: {
        /* An overflow is infinite and refused. An underflow is the nearest float, subnormal
         * or 0: what "%.9g" of a subnormal value reads back to, although strtof sets ERANGE. */
        char *end;
        float v = strtof(s, &end);
        if (end == s || *end || !isfinite(v)) return false;
        memcpy(p, &v, sizeof v);
        return true;
    }
    case FIELD_INT: {
        int64_t v;
        if (!parse_int64(s, &v)) return false;
        memcpy(p, &v, sizeof v);
        return true;
    }
    case FIELD_BOOL: {
        bool v = strcmp(s, "true") == 0;
        if (!v && strcmp(s, "false") != 0) return false;
        memcpy(p, &v, sizeof v);
        return true;
    }
    case FIELD_SCHEDULE:
        for (int k = 0; k < CLG_LR_SCHEDULE_COUNT; ++k)
            if (strcmp(s, schedule_names[k]) == 0) {
                clg_lr_schedule v = (clg_lr_schedule)k;
                memcpy(p, &v, sizeof v);
                return true;
            }
        return false;
    }
    return false;
}

void clg_checkpoint_config_diff(const char *label, const clg_optimizer_config *model,
                                const clg_optimizer_config *file,
                                void (*add)(const char *line, void *user), void *user) {
    for (size_t i = 0; i < N_FIELDS; ++i) {
        char a[64], b[64], line[300];
        field_text(&fields[i], model, a, sizeof a);
        field_text(&fields[i], file, b, sizeof b);
        if (strcmp(a, b) == 0) continue;
        snprintf(line, sizeof line, "%s %s: %s in model, %s in file", label, fields[i].name, a, b);
        add(line, user);
    }
}

/* ---- decoding ---- */

void clg_checkpoint_meta_clear(clg_ckpt_meta *m) {
    for (size_t g = 0; m->groups && g < m->n_groups; ++g) {
        for (size_t i = 0; i < m->groups[g].n_params; ++i) free(m->groups[g].params[i]);
        free(m->groups[g].params);
    }
    free(m->groups);
    memset(m, 0, sizeof *m);
}

static const char *field_kind(field_type t) {
    return t == FIELD_FLOAT  ? "finite number"
           : t == FIELD_INT  ? "whole number"
           : t == FIELD_BOOL ? "true/false"
                             : "schedule (constant, step, cosine)";
}

/* "<field>" of group 0 ("clgrad.optimizer.lr") or "group<g>.<field>" of group g >= 1. */
static bool split_group_key(const char *rest, size_t *group, const char **field_name) {
    *group = 0;
    *field_name = rest;
    if (strncmp(rest, "group", 5) != 0 || rest[5] < '1' || rest[5] > '9') return true;
    const char *q = rest + 5;
    size_t g = 0;
    for (; *q >= '0' && *q <= '9'; ++q) {
        if (g > 100000) return false;
        g = g * 10 + (size_t)(*q - '0');
    }
    if (*q != '.') return false;
    *group = g;
    *field_name = q + 1;
    return true;
}

/* A JSON array of parameter names into group->params. */
static clg_status parse_params(const char *path, const char *key, const char *v, clg_ckpt_group *g) {
    clg_json *j = NULL;
    clg_status st = clg_json_parse(v, strlen(v), key, &j);
    if (st != CLG_OK) return clg_fail(CLG_ERR_FORMAT, "%s: metadata %s: %s", path, key, clg_last_error());
    if (j->kind != CLG_JSON_ARRAY || j->length == 0) {
        clg_json_free(j);
        return clg_fail(CLG_ERR_FORMAT, "%s: metadata %s must be a non-empty list of names", path,
                        key);
    }
    g->params = calloc(j->length, sizeof *g->params);
    if (!g->params) st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    for (size_t i = 0; st == CLG_OK && i < j->length; ++i) {
        if (j->items[i].kind != CLG_JSON_STRING || !j->items[i].string[0]) {
            st = clg_fail(CLG_ERR_FORMAT, "%s: metadata %s: item %zu is not a name", path, key, i);
            break;
        }
        g->params[i] = malloc(strlen(j->items[i].string) + 1);
        if (!g->params[i]) {
            st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
            break;
        }
        strcpy(g->params[i], j->items[i].string);
        g->n_params = i + 1;
    }
    clg_json_free(j);
    return st;
}

static clg_status decode(const clg_safetensors *st, const char *path, clg_ckpt_meta *m) {
    const size_t plen = strlen(CLG_CKPT_OPT_PREFIX);
    /* the group count first: the groups' entries are checked against it */
    const char *ng = clg_safetensors_meta_get(st, CLG_CKPT_GROUPS_KEY);
    int64_t n_groups = 1;
    if (ng && (!parse_int64(ng, &n_groups) || n_groups < 1 || n_groups > 4096))
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: metadata " CLG_CKPT_GROUPS_KEY " = \"%s\" is not a group count", path,
                        ng);
    m->n_groups = (size_t)n_groups;
    m->groups = calloc(m->n_groups, sizeof *m->groups);
    size_t *n_config = calloc(m->n_groups, sizeof *n_config);
    if (!m->groups || !n_config) {
        free(n_config);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    }
    clg_status status = CLG_OK;
    for (size_t i = 0; status == CLG_OK && i < clg_safetensors_meta_count(st); ++i) {
        const clg_st_meta *e = clg_safetensors_meta_at(st, i);
        const char *k = e->key, *v = e->value;
        if (strncmp(k, "clgrad.", 7) != 0) continue; /* "format" and the caller's entries */
        if (strcmp(k, CLG_CKPT_FORMAT_KEY) == 0) {
            if (strcmp(v, CLG_CKPT_FORMAT_V1) != 0)
                status = clg_fail(CLG_ERR_FORMAT,
                                  "%s: unsupported checkpoint format \"%s\" (this clgrad reads "
                                  "\"" CLG_CKPT_FORMAT_V1 "\")",
                                  path, v);
        } else if (strcmp(k, CLG_CKPT_RNG_KEY) == 0) {
            if (!parse_u64(v, &m->rng))
                status = clg_fail(CLG_ERR_FORMAT,
                                  "%s: metadata " CLG_CKPT_RNG_KEY " = \"%s\" is not a counter",
                                  path, v);
            m->has_rng = true;
        } else if (strcmp(k, CLG_CKPT_STEPS_KEY) == 0) {
            if (!parse_int64(v, &m->steps) || m->steps < 0)
                status = clg_fail(CLG_ERR_FORMAT,
                                  "%s: metadata " CLG_CKPT_STEPS_KEY " = \"%s\" is not a step "
                                  "count",
                                  path, v);
            m->has_steps = true;
        } else if (strcmp(k, CLG_CKPT_OPT_KEY) == 0) {
            int kind = -1;
            for (int j = 0; j < CLG_OPT_KIND_COUNT; ++j)
                if (strcmp(v, kind_names[j]) == 0) kind = j;
            if (kind < 0)
                status = clg_fail(CLG_ERR_FORMAT,
                                  "%s: metadata " CLG_CKPT_OPT_KEY " = \"%s\" is not an "
                                  "optimizer clgrad knows (sgd, adam, adamw, rmsprop)",
                                  path, v);
            m->kind = (clg_optimizer_kind)kind;
            m->has_kind = true;
        } else if (strcmp(k, CLG_CKPT_GROUPS_KEY) == 0) {
            /* read above */
        } else if (strncmp(k, CLG_CKPT_OPT_PREFIX, plen) == 0) {
            size_t g;
            const char *name;
            if (!split_group_key(k + plen, &g, &name) || g >= m->n_groups) {
                status = clg_fail(CLG_ERR_FORMAT,
                                  "%s: metadata entry \"%s\" names a group the file does not "
                                  "have (" CLG_CKPT_GROUPS_KEY " = %zu)",
                                  path, k, m->n_groups);
                break;
            }
            if (g > 0 && strcmp(name, "params") == 0) {
                status = parse_params(path, k, v, &m->groups[g]);
                continue;
            }
            const field *f = NULL;
            for (size_t j = 0; j < N_FIELDS; ++j)
                if (strcmp(name, fields[j].name) == 0) f = &fields[j];
            if (!f)
                status = clg_fail(CLG_ERR_FORMAT, "%s: unknown metadata entry \"%s\"", path, k);
            else if (!field_parse(f, v, &m->groups[g].config))
                status = clg_fail(CLG_ERR_FORMAT, "%s: metadata %s = \"%s\" is not a valid %s",
                                  path, k, v, field_kind(f->type));
            n_config[g]++; /* safetensors refuses repeated keys, so each field counts once */
        } else {
            status = clg_fail(CLG_ERR_FORMAT, "%s: unknown metadata entry \"%s\"", path, k);
        }
    }
    for (size_t g = 0; status == CLG_OK && g < m->n_groups; ++g) {
        if ((g > 0 || n_config[g]) && n_config[g] != N_FIELDS)
            status = clg_fail(CLG_ERR_FORMAT,
                              "%s: the metadata holds %zu of the %zu hyper-parameters of "
                              "optimizer group %zu: the file was cut or edited",
                              path, n_config[g], N_FIELDS, g);
        else if (g > 0 && !m->groups[g].n_params)
            status = clg_fail(CLG_ERR_FORMAT, "%s: optimizer group %zu lists no parameters", path,
                              g);
        m->groups[g].config.kind = m->kind;
    }
    bool any = n_config[0] || m->has_steps || m->n_groups > 1;
    m->has_config = n_config[0] == N_FIELDS;
    free(n_config);
    if (status != CLG_OK) return status;
    if (any && !m->has_kind)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: the metadata has optimizer entries but no " CLG_CKPT_OPT_KEY, path);
    if (m->n_groups > 1 && !m->has_config)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: the metadata has optimizer groups but not group 0's hyper-parameters",
                        path);
    return CLG_OK;
}

clg_status clg_checkpoint_meta_decode(const clg_safetensors *st, const char *path,
                                      clg_ckpt_meta *out) {
    clg_ckpt_meta m;
    memset(&m, 0, sizeof m);
    clg_status status = decode(st, path, &m);
    if (status != CLG_OK || !out)
        clg_checkpoint_meta_clear(&m);
    else
        *out = m;
    return status;
}

clg_status clg_checkpoint_meta_check(const clg_safetensors *st, const char *path) {
    return clg_checkpoint_meta_decode(st, path, NULL);
}

/* ---- encoding ---- */

void clg_checkpoint_meta_free_encoded(clg_st_meta *meta, size_t n) {
    for (size_t i = 0; meta && i < n; ++i) {
        free((char *)meta[i].key);
        free((char *)meta[i].value);
    }
    free(meta);
}

static char *text(const char *fmt, ...) CLG_PRINTF(1, 2);
static char *text(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A group's parameter names as a JSON array (names escaped as JSON strings). */
static char *params_json(const clg_optimizer *opt, size_t g) {
    clg_json_buf b = {0};
    clg_json_buf_puts(&b, "[");
    for (size_t i = 0; i < clg_optimizer_group_size(opt, g); ++i) {
        if (i) clg_json_buf_puts(&b, ",");
        clg_json_buf_string(&b, clg_param_name(clg_optimizer_group_param(opt, g, i)));
    }
    clg_json_buf_puts(&b, "]");
    if (b.oom) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

clg_status clg_checkpoint_meta_encode(uint64_t rng, const clg_optimizer *opt,
                                      const clg_checkpoint_entry *meta, size_t n_meta,
                                      clg_st_meta **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (n_meta && !meta)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "checkpoint metadata: entries are NULL");
    for (size_t i = 0; i < n_meta; ++i) {
        const char *k = meta[i].key;
        if (!k || !*k || !meta[i].value)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "checkpoint metadata: entry %zu has no key or no value", i);
        if (strcmp(k, "format") == 0 || strncmp(k, "clgrad.", 7) == 0)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "checkpoint metadata: key \"%s\" is reserved for clgrad's own "
                            "entries",
                            k);
    }
    size_t n_groups = opt ? clg_optimizer_group_count(opt) : 0;
    size_t cap = 3 + n_meta + (opt ? 3 + n_groups * (N_FIELDS + 1) : 0), n = 0;
    clg_st_meta *m = calloc(cap, sizeof *m);
    if (!m) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "checkpoint metadata: out of host memory");
    bool oom = false;
#define ADD(k, v)                                                                              \
    do {                                                                                       \
        char *k_ = (k), *v_ = (v);                                                             \
        m[n++] = (clg_st_meta){k_, v_};                                                        \
        oom = oom || !k_ || !v_;                                                               \
    } while (0)
    ADD(text("format"), text("pt")); /* what PyTorch-side loaders (transformers) look for */
    ADD(text(CLG_CKPT_FORMAT_KEY), text(CLG_CKPT_FORMAT_V1));
    ADD(text(CLG_CKPT_RNG_KEY), text("%" PRIu64, rng));
    if (opt) {
        const clg_optimizer_config *c0 = clg_optimizer_get_config(opt);
        ADD(text(CLG_CKPT_OPT_KEY), text("%s", kind_names[c0->kind]));
        ADD(text(CLG_CKPT_STEPS_KEY), text("%" PRId64, clg_optimizer_steps(opt)));
        if (n_groups > 1) ADD(text(CLG_CKPT_GROUPS_KEY), text("%zu", n_groups));
        for (size_t g = 0; g < n_groups; ++g) {
            const clg_optimizer_config *c = clg_optimizer_group_config(opt, g);
            char group[32] = "";
            if (g) snprintf(group, sizeof group, "group%zu.", g);
            for (size_t i = 0; i < N_FIELDS; ++i) {
                char v[64];
                field_text(&fields[i], c, v, sizeof v);
                ADD(text(CLG_CKPT_OPT_PREFIX "%s%s", group, fields[i].name), text("%s", v));
            }
            if (g) ADD(text(CLG_CKPT_OPT_PREFIX "%sparams", group), params_json(opt, g));
        }
    }
    for (size_t i = 0; i < n_meta; ++i) ADD(text("%s", meta[i].key), text("%s", meta[i].value));
#undef ADD
    if (oom) {
        clg_checkpoint_meta_free_encoded(m, n);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "checkpoint metadata: out of host memory");
    }
    *out = m;
    *n_out = n;
    return CLG_OK;
}

/* ---- clg_checkpoint_info ---- */

struct clg_checkpoint_info {
    clg_checkpoint_entry *entries;
    size_t n;
    clg_ckpt_meta meta;
};

void clg_checkpoint_info_free(clg_checkpoint_info *info) {
    if (!info) return;
    clg_checkpoint_meta_clear(&info->meta);
    for (size_t i = 0; i < info->n; ++i) {
        free((char *)info->entries[i].key);
        free((char *)info->entries[i].value);
    }
    free(info->entries);
    free(info);
}

static char *dup_text(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

clg_status clg_checkpoint_info_read(const char *path, clg_checkpoint_info **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_checkpoint_info_read: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_checkpoint_info_read: empty path");
    clg_safetensors *st = NULL;
    clg_status s = clg_safetensors_load(path, &st);
    clg_checkpoint_info *info = NULL;
    if (s == CLG_OK) {
        info = calloc(1, sizeof *info);
        if (!info) s = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    }
    if (s == CLG_OK) s = clg_checkpoint_meta_decode(st, path, &info->meta);
    size_t n = s == CLG_OK ? clg_safetensors_meta_count(st) : 0;
    if (s == CLG_OK) {
        info->entries = calloc(n ? n : 1, sizeof *info->entries);
        if (!info->entries) s = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    }
    for (size_t i = 0; s == CLG_OK && i < n; ++i) {
        const clg_st_meta *e = clg_safetensors_meta_at(st, i);
        info->entries[i].key = dup_text(e->key);
        info->entries[i].value = dup_text(e->value);
        info->n = i + 1;
        if (!info->entries[i].key || !info->entries[i].value)
            s = clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    }
    clg_safetensors_free(st);
    if (s != CLG_OK) {
        clg_checkpoint_info_free(info);
        return s;
    }
    *out = info;
    return CLG_OK;
}

size_t clg_checkpoint_info_count(const clg_checkpoint_info *info) {
    return info ? info->n : 0;
}

const clg_checkpoint_entry *clg_checkpoint_info_at(const clg_checkpoint_info *info, size_t index) {
    return info && index < info->n ? &info->entries[index] : NULL;
}

const char *clg_checkpoint_info_get(const clg_checkpoint_info *info, const char *key) {
    for (size_t i = 0; info && key && i < info->n; ++i)
        if (strcmp(info->entries[i].key, key) == 0) return info->entries[i].value;
    return NULL;
}

clg_status clg_checkpoint_info_optimizer(const clg_checkpoint_info *info,
                                         clg_optimizer_config *config, int64_t *steps) {
    if (!info || !config)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_checkpoint_info_optimizer: NULL argument");
    if (!info->meta.has_kind)
        return clg_fail(CLG_ERR_MISMATCH, "the checkpoint holds no optimizer state");
    if (!info->meta.has_config)
        return clg_fail(CLG_ERR_MISMATCH,
                        "the checkpoint records the optimizer's kind (%s) but not its "
                        "hyper-parameters (written by an older clgrad)",
                        kind_names[info->meta.kind]);
    *config = info->meta.groups[0].config;
    if (steps) *steps = info->meta.has_steps ? info->meta.steps : 0;
    return CLG_OK;
}
