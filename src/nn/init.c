/* Parameter initialisers (torch.nn.init): fans and gains on the host, the fill on the device
 * with cl/random.cl's clg_fill_random / clg_fill_constant (Philox keyed by the seed, so a seed
 * gives the same values on every device). Kernels are queued, not waited for. */
#include <math.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/context.h"
#include "compile/lowering.h"
#include "core/program.h"
#include "graph/graph_internal.h"

enum { FILL_UNIFORM = 0, FILL_NORMAL = 1, FILL_TRUNCATED = 2 };

static clg_status check_param(const clg_param *p, const char *fn) {
    if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: parameter is NULL", fn);
    if (p->dtype != CLG_F32)
        return clg_fail(CLG_ERR_DTYPE, "%s('%s'): needs an f32 parameter, got %s", fn, p->name,
                        clg_dtype_name(p->dtype));
    return CLG_OK;
}

static clg_status launch(clg_param *p, cl_kernel k, const char *what) {
    size_t local = 64;
    while (local > p->ctx->info.max_work_group_size) local /= 2;
    size_t global = ((size_t)p->numel + local - 1) / local * local;
    cl_int err = clEnqueueNDRangeKernel(p->ctx->queue, k, 1, NULL, &global, &local, 0, NULL, NULL);
    clReleaseKernel(k);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "%s('%s')", what, p->name);
    return CLG_OK;
}

static clg_status fill_random(clg_param *p, int kind, float a, float b, uint64_t seed,
                              const char *fn) {
    cl_kernel k;
    clg_status st = clg_kernel_new(p->ctx, "random", "clg_fill_random", &k);
    if (st != CLG_OK) return st;
    clg_args args = clg_args_begin(k);
    clg_arg_mem(&args, p->buffer);
    clg_arg_int(&args, p->numel);
    clg_arg_int(&args, kind);
    clg_arg_float(&args, a);
    clg_arg_float(&args, b);
    clg_arg_uint(&args, (uint32_t)seed);
    clg_arg_uint(&args, (uint32_t)(seed >> 32));
    st = clg_args_done(&args, "clg_fill_random");
    if (st != CLG_OK) {
        clReleaseKernel(k);
        return st;
    }
    return launch(p, k, fn);
}

float clg_init_gain(clg_nonlinearity nonlinearity, float param) {
    switch (nonlinearity) {
    case CLG_NONLINEARITY_TANH:
        return 5.0f / 3.0f;
    case CLG_NONLINEARITY_RELU:
        return sqrtf(2.0f);
    case CLG_NONLINEARITY_LEAKY_RELU:
        return (float)sqrt(2.0 / (1.0 + (double)param * (double)param));
    default:
        return 1.0f;
    }
}

static clg_status fans(const clg_param *p, const char *fn, int64_t *fan_in, int64_t *fan_out) {
    if (p->ndim < 2) {
        char b[160];
        return clg_fail(CLG_ERR_SHAPE,
                        "%s('%s'): fan in and fan out of a parameter of shape %s are undefined "
                        "(it needs at least 2 dimensions: [out, in, ...])",
                        fn, p->name, clg_shape_str(p->ndim, p->shape, b, sizeof b));
    }
    int64_t receptive = clg_shape_numel(p->ndim - 2, p->shape + 2);
    *fan_in = p->shape[1] * receptive;
    *fan_out = p->shape[0] * receptive;
    return CLG_OK;
}

clg_status clg_init_fans(const clg_param *p, int64_t *fan_in, int64_t *fan_out) {
    if (!p || !fan_in || !fan_out)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_init_fans: NULL argument");
    return fans(p, "clg_init_fans", fan_in, fan_out);
}

clg_status clg_init_zeros(clg_param *p) {
    if (!p) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_init_zeros: parameter is NULL");
    const cl_uint zero = 0;
    cl_int err = clEnqueueFillBuffer(p->ctx->queue, p->buffer, &zero, sizeof zero, 0,
                                     (size_t)p->numel * clg_dtype_size(p->dtype), 0, NULL, NULL);
    if (err != CL_SUCCESS) return clg_fail_cl(err, "clg_init_zeros('%s')", p->name);
    return CLG_OK;
}

clg_status clg_init_constant(clg_param *p, float value) {
    clg_status st = check_param(p, "clg_init_constant");
    if (st != CLG_OK) return st;
    cl_kernel k;
    st = clg_kernel_new(p->ctx, "random", "clg_fill_constant", &k);
    if (st != CLG_OK) return st;
    clg_args args = clg_args_begin(k);
    clg_arg_mem(&args, p->buffer);
    clg_arg_int(&args, p->numel);
    clg_arg_float(&args, value);
    st = clg_args_done(&args, "clg_fill_constant");
    if (st != CLG_OK) {
        clReleaseKernel(k);
        return st;
    }
    return launch(p, k, "clg_init_constant");
}

clg_status clg_init_uniform(clg_param *p, float lo, float hi, uint64_t seed) {
    clg_status st = check_param(p, "clg_init_uniform");
    if (st != CLG_OK) return st;
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_init_uniform('%s'): need finite lo <= hi, got [%g, %g)", p->name,
                        (double)lo, (double)hi);
    return fill_random(p, FILL_UNIFORM, lo, hi, seed, "clg_init_uniform");
}

static clg_status normal_like(clg_param *p, int kind, float mean, float std, uint64_t seed,
                              const char *fn) {
    clg_status st = check_param(p, fn);
    if (st != CLG_OK) return st;
    if (!(std >= 0.0f) || !isfinite(std) || !isfinite(mean))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "%s('%s'): need a finite mean and std >= 0, got mean %g std %g", fn,
                        p->name, (double)mean, (double)std);
    return fill_random(p, kind, mean, std, seed, fn);
}

clg_status clg_init_normal(clg_param *p, float mean, float std, uint64_t seed) {
    return normal_like(p, FILL_NORMAL, mean, std, seed, "clg_init_normal");
}

clg_status clg_init_truncated_normal(clg_param *p, float mean, float std, uint64_t seed) {
    return normal_like(p, FILL_TRUNCATED, mean, std, seed, "clg_init_truncated_normal");
}

static clg_status xavier(clg_param *p, float gain, int kind, uint64_t seed, const char *fn) {
    clg_status st = check_param(p, fn);
    if (st != CLG_OK) return st;
    int64_t fi = 0, fo = 0;
    if ((st = fans(p, fn, &fi, &fo)) != CLG_OK) return st;
    if (!(gain >= 0.0f) || !isfinite(gain))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s('%s'): gain %g must be >= 0", fn, p->name,
                        (double)gain);
    double std = gain * sqrt(2.0 / (double)(fi + fo));
    if (kind == FILL_UNIFORM) {
        float b = (float)(std * sqrt(3.0));
        return fill_random(p, FILL_UNIFORM, -b, b, seed, fn);
    }
    return fill_random(p, FILL_NORMAL, 0.0f, (float)std, seed, fn);
}

clg_status clg_init_xavier_uniform(clg_param *p, float gain, uint64_t seed) {
    return xavier(p, gain, FILL_UNIFORM, seed, "clg_init_xavier_uniform");
}

clg_status clg_init_xavier_normal(clg_param *p, float gain, uint64_t seed) {
    return xavier(p, gain, FILL_NORMAL, seed, "clg_init_xavier_normal");
}

static clg_status kaiming(clg_param *p, float a, clg_fan_mode mode, clg_nonlinearity nl,
                          int kind, uint64_t seed, const char *fn) {
    clg_status st = check_param(p, fn);
    if (st != CLG_OK) return st;
    if ((int)mode < 0 || mode >= CLG_FAN_MODE_COUNT)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s('%s'): unknown fan mode %d", fn, p->name,
                        (int)mode);
    if ((int)nl < 0 || nl >= CLG_NONLINEARITY_COUNT)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s('%s'): unknown nonlinearity %d", fn,
                        p->name, (int)nl);
    if (!isfinite(a))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s('%s'): slope a = %g", fn, p->name,
                        (double)a);
    int64_t fi = 0, fo = 0;
    if ((st = fans(p, fn, &fi, &fo)) != CLG_OK) return st;
    double fan = (double)(mode == CLG_FAN_MODE_IN ? fi : fo);
    double std = clg_init_gain(nl, a) / sqrt(fan);
    if (kind == FILL_UNIFORM) {
        float b = (float)(std * sqrt(3.0));
        return fill_random(p, FILL_UNIFORM, -b, b, seed, fn);
    }
    return fill_random(p, FILL_NORMAL, 0.0f, (float)std, seed, fn);
}

clg_status clg_init_kaiming_uniform(clg_param *p, float a, clg_fan_mode mode,
                                    clg_nonlinearity nonlinearity, uint64_t seed) {
    return kaiming(p, a, mode, nonlinearity, FILL_UNIFORM, seed, "clg_init_kaiming_uniform");
}

clg_status clg_init_kaiming_normal(clg_param *p, float a, clg_fan_mode mode,
                                   clg_nonlinearity nonlinearity, uint64_t seed) {
    return kaiming(p, a, mode, nonlinearity, FILL_NORMAL, seed, "clg_init_kaiming_normal");
}
