/* Kernel-argument errors (kernel_args.h). */
#include "core/error.h"
#include "core/kernel_args.h"

clg_status clg_args_done(const clg_args *a, const char *label) {
    if (a->err == CL_SUCCESS) return CLG_OK;
    return clg_fail_cl(a->err, "setting argument %u of kernel %s", (unsigned)a->failed_at, label);
}
