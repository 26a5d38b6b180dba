/* State shared by the GEMM dispatcher (gemm.c) and its backends (gemm_cpu.c). */
#ifndef CLG_GEMM_INTERNAL_H
#define CLG_GEMM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "gemm/gemm.h"

/* One measured choice between two implementations: a GEMM shape class's backend, or a
 * convolution shape's lowering (conv_choice.c). */
typedef struct clg_gemm_choice {
    char key[96];    /* shape class */
    char winner[16]; /* "clblast", "cpu"; "im2col", "convgemm" */
    double ms[2];    /* measured medians of the two candidates, in the key's order */
} clg_gemm_choice;

struct clg_gemm_state {
    clg_context *ctx;
    cl_mem temp; /* CLBlast's scratch for its indirect path */
    size_t temp_bytes;
    cl_mem cpu_scratch; /* packed panels of the CPU backend */
    size_t cpu_scratch_bytes;
    cl_mem *old_scratch; /* outgrown scratch buffers still named by prepared calls */
    size_t n_old_scratch;
    int forced; /* CLGRAD_GEMM: a backend, or -1 */
    const char *conv_forced; /* CLGRAD_CONV: "im2col" or "convgemm", or NULL */
    clg_gemm_choice *choices;
    size_t n_choices, cap_choices;
    char choices_path[4200]; /* "" when there is no disk cache */
};

/* How the CPU backend runs one call: whether it computes C^T = op(B)^T op(A)^T instead (swap),
 * which of its operands it packs into panels first (the kernel's scalar operand S: op(A), or
 * op(B)^T when swapped; its vector operand V: op(B), or op(A)^T), and how many 6 x 16 tiles
 * of the product it computes each work-item takes (mb down its rows, nb across). */
typedef struct clg_gemm_cpu_plan {
    bool swap;
    bool pack_s, pack_v;
    int mb, nb;
} clg_gemm_cpu_plan;

/* The plan clg_gemm_cpu_prepare follows for call on a device with compute_units and
 * loop_limit (0: none); only the call's shape, transposes, leading dimensions and batch
 * strides matter. tools/bench-gemm-cpu times it; the measurements behind it are in
 * tools/gemm-cpu-notes.md. */
clg_gemm_cpu_plan clg_gemm_cpu_choose(const clg_gemm_call *call, unsigned compute_units,
                                      uint32_t loop_limit);
clg_status clg_gemm_cpu_prepare(clg_context *ctx, clg_gemm_call *call);
/* Whether the CPU kernel can run this call on ctx's device (its loop limit, if any). */
bool clg_gemm_cpu_fits(const clg_context *ctx, const clg_gemm_call *call);

/* CLBlast tuning (written by tools/clgrad-tune): the file for this device in dir, and one
 * line of it applied ("<kernel> NAME=value ..."). */
void clg_gemm_tuning_path(const clg_context *ctx, const char *dir, char *out, size_t size);
clg_status clg_gemm_apply_tuning_line(clg_context *ctx, const char *line);
/* Path of the backend-choice cache ("" when there is none). */
const char *clg_gemm_choices_path(clg_context *ctx);
/* Prepare a call for one backend, bypassing the measured choice. */
clg_status clg_gemm_prepare_backend(clg_context *ctx, clg_gemm_call *call, clg_gemm_backend b);
clg_status clg_gemm_cpu_enqueue(clg_context *ctx, const clg_gemm_call *call, cl_event *first,
                                cl_event *last);

#endif
