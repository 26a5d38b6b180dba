/* Internal error reporting: set the thread's last-error message and return a status,
 * plus OpenCL error names and the CLGRAD_LOG logger. */
#ifndef CLG_CORE_ERROR_H
#define CLG_CORE_ERROR_H

#include <stdbool.h>

#include <CL/cl.h>

#include "clgrad/status.h"

#if defined(__GNUC__)
#define CLG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLG_PRINTF(a, b)
#endif

/* Set the last error to the formatted message and return status. */
clg_status clg_fail(clg_status status, const char *fmt, ...) CLG_PRINTF(2, 3);
/* Append a line to the last error message (for lists of devices or mismatches). */
void clg_error_append(const char *fmt, ...) CLG_PRINTF(1, 2);
/* Status for an OpenCL error code: allocation failures map to CLG_ERR_OUT_OF_MEMORY. */
clg_status clg_status_from_cl(cl_int err);
/* "CL_OUT_OF_RESOURCES" etc. */
const char *clg_cl_error_name(cl_int err);
/* clg_fail with "<what>: <CL error name> (<code>)". */
clg_status clg_fail_cl(cl_int err, const char *fmt, ...) CLG_PRINTF(2, 3);

/* True when the environment variable is set to something other than "", "0" or "off". */
bool clg_env_flag(const char *name);
/* Print to stderr when CLGRAD_LOG is on. */
void clg_trace(const char *fmt, ...) CLG_PRINTF(1, 2);
bool clg_trace_enabled(void);

#endif
