/* clgrad status codes and the per-thread last-error message.
 * Every fallible function returns a clg_status (or NULL for constructors); the message that
 * says what failed and where is read with clg_last_error() on the same thread. */
#ifndef CLGRAD_STATUS_H
#define CLGRAD_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum clg_status {
    CLG_OK = 0,
    CLG_ERR_INVALID_ARGUMENT,  /* NULL or out-of-range argument */
    CLG_ERR_SHAPE,             /* shapes that an op cannot combine */
    CLG_ERR_DTYPE,             /* a dtype an op does not accept */
    CLG_ERR_GRAPH,             /* graph misuse: foreign tensor, second backward, ... */
    CLG_ERR_NO_PLATFORM,       /* no OpenCL platform or device on this machine */
    CLG_ERR_DEVICE_NOT_FOUND,  /* the device spec matches no device */
    CLG_ERR_DEVICE_SPEC,       /* the device spec cannot be parsed */
    CLG_ERR_OPENCL,            /* an OpenCL call failed; the message names it */
    CLG_ERR_BUILD,             /* a program failed to build; the message has the log */
    CLG_ERR_OUT_OF_MEMORY,     /* host or device memory exhausted, or a buffer too large */
    CLG_ERR_IO,                /* a file could not be opened, read or written */
    CLG_ERR_FORMAT,            /* a file's content is malformed */
    CLG_ERR_MISMATCH,          /* a checkpoint does not fit the model */
    CLG_ERR_UNSUPPORTED,       /* valid request the device or build cannot serve */
    CLG_ERR_INTERNAL,          /* a bug in clgrad */
    CLG_ERR_NOT_FINITE,        /* a value became NaN or infinite (CLGRAD_CHECK_FINITE) */
    CLG_STATUS_COUNT
} clg_status;

/* Short constant name of a status, e.g. "CLG_ERR_SHAPE". Never NULL. */
const char *clg_status_name(clg_status status);

/* Message of the last failure on the calling thread ("" if none). The pointer stays valid
 * until the next clgrad call on this thread. */
const char *clg_last_error(void);

/* Forget the last error message of the calling thread. */
void clg_clear_error(void);

#ifdef __cplusplus
}
#endif

#endif
