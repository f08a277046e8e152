/*
 * failure - Temporal Failure protos: reading them for people and workflows, and building the
 * application failures keel reports.
 */
#ifndef KEEL_CONVERTER_FAILURE_H
#define KEEL_CONVERTER_FAILURE_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/error.h"
#include "temporal/api/failure/v1/message.pb-c.h"

typedef Temporal__Api__Failure__V1__Failure keel_pb_failure;

/* Causes deeper than this are not followed: a chain comes off the wire and may be hostile. */
#define KEEL_FAILURE_MAX_DEPTH 32

/* "message: cause's message: ..." down the cause chain, in a new string (NULL: out of memory).
 * A NULL failure reads "(no failure details)". Long chains end in "...". */
char *keel_failure_text(const keel_pb_failure *f);

/* What kind of failure: the application failure's type, "Timeout:<type>" (e.g.
 * "Timeout:START_TO_CLOSE") for timeouts, "Canceled", "Terminated", or "" when none applies.
 * New string (NULL: out of memory). */
char *keel_failure_type(const keel_pb_failure *f);

/* An application failure with source "keel", on the heap in unpack layout (free with
 * protobuf_c_message_free_unpacked). NULL with err set when out of memory. */
keel_pb_failure *keel_failure_new_application(const char *type, const char *message,
                                              bool non_retryable, keel_error *err);

/* The same with details (JSON, NULL: none; bad JSON is an error naming it) and a delay before
 * the next retry (0: none). */
keel_pb_failure *keel_failure_new_application_with(const char *type, const char *message,
                                                   bool non_retryable, const char *details_json,
                                                   int64_t next_retry_delay_ms, keel_error *err);

#endif
