/* Which forward lowering a convolution shape gets on a device: clgrad's im2col + GEMM, or
 * CLBlast's convgemm. Neither wins everywhere (on pocl convgemm is far slower for every
 * MNIST-CNN shape, README's Speed section; GPU drivers may differ), so each shape is timed once per device with both
 * lowerings compiled as real plans, and the winner is cached next to the GEMM backend choices. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/graph.h"
#include "core/clock.h"
#include "core/context.h"
#include "core/error.h"
#include "gemm/gemm.h"
#include "ops/conv.h"

#define MEASURE_RUNS 3
#define MEASURE_GIVE_UP 3.0 /* a lowering this many times slower after one run has lost */

/* Median milliseconds of one forward pass through a lowering (0 im2col, 1 convgemm), after a
 * warm-up run that compiles; inputs hold a constant, so no denormals or NaNs skew it. A run
 * slower than give_up ms ends the measurement early (the lowering has lost). */
static clg_status time_lowering(clg_context *ctx, const clg_conv_geo *geo, int64_t out_channels,
                                int which, double give_up, double *ms) {
    const int64_t xs[4] = {geo->n, geo->c, geo->h, geo->w};
    const int64_t ws[4] = {out_channels, geo->c / geo->groups, geo->kh, geo->kw};
    size_t nx = (size_t)(xs[0] * xs[1] * xs[2] * xs[3]), nw = (size_t)(ws[0] * ws[1] * ws[2] * ws[3]);
    float *host = malloc((nx > nw ? nx : nw) * sizeof *host);
    clg_graph *g = clg_graph_new(ctx);
    if (!host || !g) {
        free(host);
        clg_graph_free(g);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "conv lowering measurement: out of host memory");
    }
    for (size_t i = 0; i < (nx > nw ? nx : nw); ++i)
        host[i] = 0.25f;
    clg_tensor *x = clg_input(g, "x", CLG_F32, 4, xs);
    clg_tensor *w = clg_input(g, "w", CLG_F32, 4, ws);
    clg_tensor *y = which ? clg_conv2d_convgemm(g, x, w, geo, out_channels)
                          : clg_conv2d_im2col(g, x, w, geo, out_channels, CLG_CONV_LAYOUT_AUTO,
                                              false);
    clg_status st = clg_graph_output(g, y);
    clg_plan *plan = NULL;
    if (st == CLG_OK) st = clg_graph_compile(g, NULL, &plan);
    if (st == CLG_OK) st = clg_plan_write(plan, x, host, nx * sizeof *host);
    if (st == CLG_OK) st = clg_plan_write(plan, w, host, nw * sizeof *host);
    double runs[MEASURE_RUNS];
    int n = 0;
    for (int r = -1; r < MEASURE_RUNS && st == CLG_OK; ++r) {
        double t0 = clg_now_ms();
        st = clg_plan_run(plan);
        if (st == CLG_OK) st = clg_plan_finish(plan);
        if (r < 0) continue;
        runs[n++] = clg_now_ms() - t0;
        if (runs[0] > give_up) break;
    }
    if (st == CLG_OK) *ms = clg_median(runs, n);
    clg_graph_free(g);
    free(host);
    return st;
}

bool clg_conv_prefers_convgemm(clg_context *ctx, const clg_conv_geo *geo, int64_t out_channels) {
    if (!clg_convgemm_supports(geo)) return false;
    const char *forced = clg_gemm_conv_forced(ctx);
    if (forced) return strcmp(forced, "convgemm") == 0;
    char key[96];
    snprintf(key, sizeof key, "conv-n%lld-c%lld-%lldx%lld-o%lld-k%lldx%lld-s%lldx%lld-d%lldx%lld-p%lldx%lld",
             (long long)geo->n, (long long)geo->c, (long long)geo->h, (long long)geo->w,
             (long long)out_channels, (long long)geo->kh, (long long)geo->kw,
             (long long)geo->stride_h, (long long)geo->stride_w, (long long)geo->dilation_h,
             (long long)geo->dilation_w, (long long)geo->pad_top, (long long)geo->pad_left);
    const char *winner = clg_gemm_find_choice(ctx, key);
    if (winner) return strcmp(winner, "convgemm") == 0;
    double ms[2] = {0, 0};
    if (time_lowering(ctx, geo, out_channels, 0, HUGE_VAL, &ms[0]) != CLG_OK) {
        /* im2col cannot even run here: the real plan will say why */
        clg_trace("conv %s: im2col measurement failed: %s", key, clg_last_error());
        return false;
    }
    clg_status st = time_lowering(ctx, geo, out_channels, 1, MEASURE_GIVE_UP * ms[0], &ms[1]);
    if (st == CLG_ERR_OUT_OF_MEMORY) {
        /* no room now (a memory cap, a busy device) says nothing about the device: measure
         * again next time rather than record convgemm as failed */
        clg_trace("conv %s: no memory to measure convgemm (%s): im2col", key, clg_last_error());
        return false;
    }
    if (st != CLG_OK) {
        clg_trace("conv %s: convgemm failed (%s): im2col", key, clg_last_error());
        ms[1] = -1.0; /* recorded as failed, so it is not retried on every start */
    }
    winner = ms[1] >= 0.0 && ms[1] < ms[0] ? "convgemm" : "im2col";
    clg_trace("conv %s: im2col %.3f ms, convgemm %.3f ms: %s", key, ms[0], ms[1], winner);
    if (clg_gemm_record_choice(ctx, key, winner, ms[0], ms[1]) != CLG_OK)
        clg_trace("conv %s: choice not recorded: %s", key, clg_last_error());
    return strcmp(winner, "convgemm") == 0;
}
