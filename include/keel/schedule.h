/*
 * keel/schedule.h - Temporal Schedules: start a workflow on a cron expression or an interval.
 *
 * The server runs schedules itself; a schedule's runs get the workflow id with the scheduled time
 * appended, and the search attributes TemporalScheduledById / TemporalScheduledStartTime.
 * Results are caller-owned structs released with their _dispose function.
 */
#ifndef KEEL_SCHEDULE_H
#define KEEL_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/client.h"
#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_SCHEDULE_OPTIONS_VERSION 1

typedef struct keel_schedule_options {
    unsigned int version;
    const char *schedule_id; /* required */
    const char *cron;        /* a cron expression ("0 9 * * 1-5"), or */
    int64_t interval_ms;     /* a fixed interval: exactly one of the two */
    const char *workflow_id; /* base id of the runs; default: the schedule id */
    const char *workflow_type;
    const char *task_queue;
    const char *input_json; /* the runs' argument; NULL: none */
    /* What to do when a run is still open at the next time: 0 or 1 skip (the server's default),
     * 2 buffer one, 3 buffer all, 4 cancel the open run, 5 terminate it, 6 allow all. */
    int overlap_policy;
    bool paused;
    const char *note; /* shown with the schedule (why it is paused, say) */
} keel_schedule_options;

#define KEEL_SCHEDULE_OPTIONS_INIT                                                                 \
    {                                                                                              \
        .version = KEEL_SCHEDULE_OPTIONS_VERSION                                                   \
    }

int keel_schedule_options_init(keel_schedule_options *opts, unsigned int version);

/* CreateSchedule. An id in use fails with KEEL_EEXISTS. */
int keel_client_schedule_create(keel_client *client, const keel_schedule_options *opts,
                                keel_error *err);

#define KEEL_SCHEDULE_NEXT_MAX 5

typedef struct keel_schedule_info {
    char *schedule_id;
    char *workflow_type;
    char *spec; /* "cron 0 9 * * 1-5", "every 1h", ... */
    char *note;
    bool paused;
    int64_t action_count; /* runs started so far */
    size_t n_running;     /* runs it started that are still open */
    size_t n_next;
    int64_t next_ms[KEEL_SCHEDULE_NEXT_MAX]; /* the next start times, Unix ms */
} keel_schedule_info;

void keel_schedule_info_dispose(keel_schedule_info *info);

/* DescribeSchedule. An unknown id fails with KEEL_ENOTFOUND. */
int keel_client_schedule_describe(keel_client *client, const char *schedule_id,
                                  keel_schedule_info *out, keel_error *err);

typedef struct keel_schedule_list {
    size_t count;
    char **ids;
} keel_schedule_list;

void keel_schedule_list_dispose(keel_schedule_list *list);

/* ListSchedules, all pages (eventually consistent: a new schedule may take a moment). */
int keel_client_schedule_list(keel_client *client, keel_schedule_list *out, keel_error *err);

/* Pause (pause = true) or resume a schedule, with a note saying why. */
int keel_client_schedule_pause(keel_client *client, const char *schedule_id, bool pause,
                               const char *note, keel_error *err);

/* Start a run now, outside the spec. */
int keel_client_schedule_trigger(keel_client *client, const char *schedule_id, keel_error *err);

/* Delete the schedule (runs it started go on). */
int keel_client_schedule_delete(keel_client *client, const char *schedule_id, keel_error *err);

#ifdef __cplusplus
}
#endif

#endif
