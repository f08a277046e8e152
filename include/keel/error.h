/*
 * keel/error.h - error codes and the error object every fallible keel call fills in.
 *
 * Convention: a fallible function returns KEEL_OK (0) or a negative keel_error_code, and takes a
 * `keel_error *err` as its last argument. When it fails it fills *err (if err is not NULL) with
 * the same code, a one-line message naming what was wrong, the gRPC status when the failure came
 * from a call, and whether repeating the same call may succeed. The error object is a plain struct
 * owned by the caller; it holds no pointers and needs no freeing.
 */
#ifndef KEEL_ERROR_H
#define KEEL_ERROR_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum keel_error_code {
    KEEL_OK = 0,
    KEEL_EINVAL = -1,           /* bad input: an argument, a setting, a file, a peer's bytes */
    KEEL_ENOMEM = -2,           /* out of memory */
    KEEL_EUNAVAILABLE = -3,     /* the server could not be reached, or the connection dropped */
    KEEL_ETIMEOUT = -4,         /* the deadline passed before an answer came */
    KEEL_ENOTFOUND = -5,        /* the named namespace, workflow, ... does not exist */
    KEEL_EEXISTS = -6,          /* it exists already */
    KEEL_EDENIED = -7,          /* unauthenticated or not permitted */
    KEEL_EEXHAUSTED = -8,       /* rate limited, or a size limit was hit */
    KEEL_EPRECONDITION = -9,    /* the server refused the call in its current state */
    KEEL_EUNIMPLEMENTED = -10,  /* the server does not offer this call */
    KEEL_ECANCELLED = -11,      /* the call was cancelled */
    KEEL_EPROTOCOL = -12,       /* the peer sent something that could not be decoded */
    KEEL_EINTERNAL = -13,       /* the server failed internally, or the status was unknown */
    KEEL_EIO = -14,             /* a local file or system call failed */
    KEEL_ENONDETERMINISM = -15, /* workflow code issued commands that differ from its history */
} keel_error_code;

/* No gRPC status: the error did not come from a remote call. */
#define KEEL_NO_GRPC_STATUS (-1)

#define KEEL_ERROR_MESSAGE_MAX 1024

typedef struct keel_error {
    keel_error_code code;
    int grpc_status; /* grpc_status_code, or KEEL_NO_GRPC_STATUS */
    bool retryable;  /* the same call may succeed later (with backoff) */
    /* The type of the first typed detail the server attached to a failed call, without its
     * package ("NamespaceNotFoundFailure", "WorkflowExecutionAlreadyStartedFailure"), or "". */
    char failure_type[128];
    char message[KEEL_ERROR_MESSAGE_MAX];
} keel_error;

/* Reset *err to "no error". err may be NULL. */
void keel_error_clear(keel_error *err);

/*
 * Fill *err with a local (non-gRPC) error and return code, so that callers can write
 * `return keel_error_set(err, KEEL_EINVAL, "bad duration '%s'", s);`. err may be NULL.
 * Messages longer than the buffer end in "..." rather than being cut silently.
 */
int keel_error_set(keel_error *err, keel_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "EINVAL", "ENOTFOUND", ...; "EUNKNOWN" for a value outside the enum. Static storage. */
const char *keel_error_code_name(int code);

/* "OK", "NOT_FOUND", ... for a gRPC status code; "UNKNOWN_STATUS" otherwise. Static storage. */
const char *keel_grpc_status_name(int grpc_status);

/* The keel code a gRPC status maps to. */
keel_error_code keel_error_code_from_grpc(int grpc_status);

/*
 * Whether a call that failed with this gRPC status and message may be retried. Follows the
 * official SDKs: UNAVAILABLE, RESOURCE_EXHAUSTED (except "message larger than max"), ABORTED,
 * UNKNOWN and INTERNAL are retried; the rest are final. internal_is_final is the server's
 * `internal_error_differentiation` capability: when true, INTERNAL is final.
 */
bool keel_grpc_status_retryable(int grpc_status, const char *message, bool internal_is_final);

#ifdef __cplusplus
}
#endif

#endif
