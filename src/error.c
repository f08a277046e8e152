/* Error objects and the gRPC status table. */
#include "keel/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* gRPC status codes, as numbered by the gRPC protocol (grpc/status.h). */
static const char *const grpc_status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

enum {
    ST_OK = 0,
    ST_CANCELLED,
    ST_UNKNOWN,
    ST_INVALID_ARGUMENT,
    ST_DEADLINE_EXCEEDED,
    ST_NOT_FOUND,
    ST_ALREADY_EXISTS,
    ST_PERMISSION_DENIED,
    ST_RESOURCE_EXHAUSTED,
    ST_FAILED_PRECONDITION,
    ST_ABORTED,
    ST_OUT_OF_RANGE,
    ST_UNIMPLEMENTED,
    ST_INTERNAL,
    ST_UNAVAILABLE,
    ST_DATA_LOSS,
    ST_UNAUTHENTICATED,
    ST_COUNT
};

void keel_error_clear(keel_error *err)
{
    if (err == NULL)
        return;
    err->code = KEEL_OK;
    err->grpc_status = KEEL_NO_GRPC_STATUS;
    err->retryable = false;
    err->failure_type[0] = '\0';
    err->message[0] = '\0';
}

int keel_error_set(keel_error *err, keel_error_code code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    keel_error_clear(err);
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof err->message)
        memcpy(err->message + sizeof err->message - 4, "...", 4);
    return code;
}

const char *keel_error_code_name(int code)
{
    static const char *const names[] = {
        "OK",        "EINVAL",    "ENOMEM",     "EUNAVAILABLE",    "ETIMEOUT",       "ENOTFOUND",
        "EEXISTS",   "EDENIED",   "EEXHAUSTED", "EPRECONDITION",   "EUNIMPLEMENTED", "ECANCELLED",
        "EPROTOCOL", "EINTERNAL", "EIO",        "ENONDETERMINISM",
    };
    if (code > 0 || code <= -(int)(sizeof names / sizeof names[0]))
        return "EUNKNOWN";
    return names[-code];
}

const char *keel_grpc_status_name(int grpc_status)
{
    if (grpc_status < 0 || grpc_status >= ST_COUNT)
        return "UNKNOWN_STATUS";
    return grpc_status_names[grpc_status];
}

keel_error_code keel_error_code_from_grpc(int grpc_status)
{
    switch (grpc_status) {
    case ST_OK:
        return KEEL_OK;
    case ST_CANCELLED:
        return KEEL_ECANCELLED;
    case ST_INVALID_ARGUMENT:
    case ST_OUT_OF_RANGE:
        return KEEL_EINVAL;
    case ST_DEADLINE_EXCEEDED:
        return KEEL_ETIMEOUT;
    case ST_NOT_FOUND:
        return KEEL_ENOTFOUND;
    case ST_ALREADY_EXISTS:
        return KEEL_EEXISTS;
    case ST_PERMISSION_DENIED:
    case ST_UNAUTHENTICATED:
        return KEEL_EDENIED;
    case ST_RESOURCE_EXHAUSTED:
        return KEEL_EEXHAUSTED;
    case ST_FAILED_PRECONDITION:
    case ST_ABORTED:
        return KEEL_EPRECONDITION;
    case ST_UNIMPLEMENTED:
        return KEEL_EUNIMPLEMENTED;
    case ST_UNAVAILABLE:
        return KEEL_EUNAVAILABLE;
    case ST_DATA_LOSS:
        return KEEL_EPROTOCOL;
    default: /* UNKNOWN, INTERNAL, and codes from the future */
        return KEEL_EINTERNAL;
    }
}

bool keel_grpc_status_retryable(int grpc_status, const char *message, bool internal_is_final)
{
    switch (grpc_status) {
    case ST_UNAVAILABLE:
    case ST_ABORTED:
    case ST_UNKNOWN:
        return true;
    case ST_RESOURCE_EXHAUSTED:
        /* A request over the server's size limit fails the same way every time. */
        return message == NULL || strstr(message, "message larger than max") == NULL;
    case ST_INTERNAL:
        return !internal_is_final;
    default:
        return false;
    }
}
