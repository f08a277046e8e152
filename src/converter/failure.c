/* Failures: text for people, type for code, and application failures to send. */
#include "converter/failure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"
#include "proto/proto.h"
#include "temporal/api/enums/v1/workflow.pb-c.h"

#define TEXT_MAX 4096

char *keel_failure_text(const keel_pb_failure *f)
{
    if (f == NULL)
        return strdup("(no failure details)");
    char buf[TEXT_MAX] = "";
    size_t len = 0;
    for (int depth = 0; f && len < sizeof buf - 1; f = f->cause, depth++) {
        if (depth == KEEL_FAILURE_MAX_DEPTH) {
            len = sizeof buf; /* say it was cut */
            break;
        }
        int n = snprintf(buf + len, sizeof buf - len, "%s%s", depth ? ": " : "",
                         f->message && f->message[0] ? f->message : "(no message)");
        if (n < 0)
            break;
        len += (size_t)n;
    }
    if (len >= sizeof buf - 1)
        memcpy(buf + sizeof buf - 4, "...", 4);
    return strdup(buf);
}

char *keel_failure_type(const keel_pb_failure *f)
{
    if (f == NULL)
        return strdup("");
    switch (f->failure_info_case) {
    case TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO:
        return keel_proto_strdup(f->application_failure_info->type);
    case TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_TIMEOUT_FAILURE_INFO: {
        const char *name = keel_proto_enum_name(&temporal__api__enums__v1__timeout_type__descriptor,
                                                (int)f->timeout_failure_info->timeout_type);
        const char *prefix = "TIMEOUT_TYPE_";
        if (name && strncmp(name, prefix, strlen(prefix)) == 0)
            name += strlen(prefix);
        char buf[64];
        snprintf(buf, sizeof buf, "Timeout:%s", name ? name : "UNKNOWN");
        return strdup(buf);
    }
    case TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_CANCELED_FAILURE_INFO:
        return strdup("Canceled");
    case TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_TERMINATED_FAILURE_INFO:
        return strdup("Terminated");
    default:
        return strdup("");
    }
}

keel_pb_failure *keel_failure_new_application(const char *type, const char *message,
                                              bool non_retryable, keel_error *err)
{
    keel_pb_failure *f = malloc(sizeof *f);
    Temporal__Api__Failure__V1__ApplicationFailureInfo *info = malloc(sizeof *info);
    if (f == NULL || info == NULL) {
        free(f);
        free(info);
        keel_error_set(err, KEEL_ENOMEM, "out of memory building a failure");
        return NULL;
    }
    temporal__api__failure__v1__failure__init(f);
    temporal__api__failure__v1__application_failure_info__init(info);
    f->failure_info_case =
        TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO;
    f->application_failure_info = info;
    f->message = strdup(message ? message : "");
    f->source = strdup("keel");
    info->type = strdup(type ? type : "");
    info->non_retryable = non_retryable;
    if (!f->message || !f->source || !info->type) {
        protobuf_c_message_free_unpacked(&f->base, NULL);
        keel_error_set(err, KEEL_ENOMEM, "out of memory building a failure");
        return NULL;
    }
    return f;
}

keel_pb_failure *keel_failure_new_application_with(const char *type, const char *message,
                                                   bool non_retryable, const char *details_json,
                                                   int64_t next_retry_delay_ms, keel_error *err)
{
    keel_pb_failure *f = keel_failure_new_application(type, message, non_retryable, err);
    if (f == NULL)
        return NULL;
    Temporal__Api__Failure__V1__ApplicationFailureInfo *info = f->application_failure_info;
    if (details_json &&
        keel_payloads_new_json(details_json, "failure details", &info->details, err) != KEEL_OK) {
        protobuf_c_message_free_unpacked(&f->base, NULL);
        return NULL;
    }
    if (next_retry_delay_ms > 0) {
        if ((info->next_retry_delay = malloc(sizeof *info->next_retry_delay)) == NULL) {
            protobuf_c_message_free_unpacked(&f->base, NULL);
            keel_error_set(err, KEEL_ENOMEM, "out of memory building a failure");
            return NULL;
        }
        keel_proto_duration_set(info->next_retry_delay, next_retry_delay_ms);
    }
    return f;
}
