/* Checkpoint metadata shared by saving, loading and clg_checkpoint_info: the "clgrad.*"
 * entries (format, random counter, optimizer kind, steps and hyper-parameters) written as
 * strings and read back strictly, with no device involved (so a fuzzer can drive it). */
#ifndef CLG_NN_CHECKPOINT_INTERNAL_H
#define CLG_NN_CHECKPOINT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "clgrad/checkpoint.h"
#include "io/safetensors.h"

#define CLG_CKPT_FORMAT_KEY "clgrad.format"
#define CLG_CKPT_FORMAT_V1 "clgrad checkpoint v1"
#define CLG_CKPT_RNG_KEY "clgrad.rng_offset"
#define CLG_CKPT_OPT_KEY "clgrad.optimizer"
#define CLG_CKPT_STEPS_KEY "clgrad.optimizer_steps"
/* Hyper-parameters are "clgrad.optimizer.<field>" (lr, beta1, total_steps, ...) for group 0
 * and "clgrad.optimizer.group<g>.<field>" for group g >= 1, whose parameters are
 * "clgrad.optimizer.group<g>.params", a JSON list of names; "clgrad.optimizer.groups" counts
 * the groups when there is more than one. */
#define CLG_CKPT_OPT_PREFIX "clgrad.optimizer."
#define CLG_CKPT_GROUPS_KEY "clgrad.optimizer.groups"

typedef struct clg_ckpt_group {
    clg_optimizer_config config;
    char **params; /* group >= 1: its parameters' names */
    size_t n_params;
} clg_ckpt_group;

/* What the clgrad entries of a file say. Absent entries leave has_* false. */
typedef struct clg_ckpt_meta {
    bool has_rng, has_kind, has_steps, has_config;
    uint64_t rng;
    int64_t steps;
    clg_optimizer_kind kind;
    /* has_config: every hyper-parameter entry is present, of every group */
    size_t n_groups; /* 1 unless the file says more */
    clg_ckpt_group *groups;
} clg_ckpt_meta;

/* Validate every "clgrad.*" entry of st (unknown keys, malformed numbers, an unknown format,
 * optimizer or schedule name, hyper-parameters without a kind or only some of them, groups the
 * count does not have) and decode them into *out (may be NULL; clear it with
 * clg_checkpoint_meta_clear). CLG_ERR_FORMAT names path and the entry. */
clg_status clg_checkpoint_meta_decode(const clg_safetensors *st, const char *path,
                                      clg_ckpt_meta *out);
void clg_checkpoint_meta_clear(clg_ckpt_meta *meta);
/* The same, as the fuzz harness calls it. */
clg_status clg_checkpoint_meta_check(const clg_safetensors *st, const char *path);

/* The clgrad entries for saving ctx's random counter and opt (NULL: none; every group),
 * followed by copies of the caller's entries (checked: non-empty, not reserved). Free the
 * result with clg_checkpoint_meta_free_encoded. */
clg_status clg_checkpoint_meta_encode(uint64_t rng, const clg_optimizer *opt,
                                      const clg_checkpoint_entry *meta, size_t n_meta,
                                      clg_st_meta **out, size_t *n_out);
void clg_checkpoint_meta_free_encoded(clg_st_meta *meta, size_t n);

/* Kind names as files store them ("sgd", "adam", ...). */
const char *clg_checkpoint_kind_name(clg_optimizer_kind kind);

/* One line per hyper-parameter where model and file differ ("<label> lr: 0.001 in model,
 * 0.003 in file"), through add(line, user). */
void clg_checkpoint_config_diff(const char *label, const clg_optimizer_config *model,
                                const clg_optimizer_config *file,
                                void (*add)(const char *line, void *user), void *user);

#endif
