/*
 * harness - what the integration suites share: unique names, the offline model server's
 * counters, keel-worker as a child process (for the crash tests), and recording histories for
 * the replay tests. Every function asserts (Check) instead of returning errors.
 */
#ifndef KEEL_TESTS_HARNESS_H
#define KEEL_TESTS_HARNESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "keel/keel.h"

/* Wall-clock milliseconds since the epoch. */
int64_t keel_test_now_ms(void);

/* "prefix-pid-time-counter": unique across tests, forks and runs. */
void keel_test_unique(char *out, size_t n, const char *prefix);

/* $KEEL_MODEL_SERVER_URL (the Makefile starts one), or the test fails saying so. */
const char *keel_test_model_server(void);

/* GET path from the model server as JSON (a new object, caller deletes). */
cJSON *keel_test_model_server_json(const char *path);

/* How many chat requests carrying [[keel:tag=TAG]] the model server has counted. */
int keel_test_requests_tagged(const char *tag);

/* Start $KEEL_WORKER polling `queue`, with KEEL_FAILPOINT=failpoint (NULL: none) and stderr
 * appended to log. The caller stops it (kill, keel_test_wait_exit). */
pid_t keel_test_spawn_worker(const char *queue, const char *failpoint, const char *log);

/* Wait up to `seconds` for pid to exit: its exit status, 128 + signal, or -1 after killing it
 * when it did not exit in time. */
int keel_test_wait_exit(pid_t pid, int seconds);

/* Replay the history of run (NULL: the latest) of workflow id through `type`: today's code must
 * issue every command the history recorded. With KEEL_RECORD_HISTORIES=DIR and a scenario, keep
 * the history as DIR/<type>/<scenario>.json for the replay unit tests (tests/replay/README.md). */
void keel_test_replay_and_record(keel_client *client, const keel_workflow_type *type,
                                 const char *id, const char *run, const char *scenario);

/* A worker on `queue` with these workflow types and activities, started (the caller frees it
 * with keel_worker_free). A stopping worker hands running activities back after 500 ms. */
keel_worker *keel_test_start_worker(keel_client *client, const char *queue,
                                    const keel_workflow_type *const *types, size_t n_types,
                                    const keel_activity_type *activities, size_t n_activities);

/* Query `name` of workflow id until the answer holds `text` (the worker may not have seen the
 * latest signal yet), for at most timeout_ms; the answer (caller frees). */
char *keel_test_query_until(keel_client *client, const char *id, const char *name, const char *text,
                            int64_t timeout_ms);

/* Start a run of `type` on `queue` with input (JSON text, may be NULL); its id is unique, made
 * from prefix, into id[n]; its run id into *run (may be NULL; caller frees). */
void keel_test_start_run(keel_client *client, const char *type, const char *queue,
                         const char *prefix, const char *input, char *id, size_t n, char **run);

/* Check that keel's client refuses to start `type` with input before it reaches the server, with
 * an error that contains `part`. */
void keel_test_start_refused(keel_client *client, const char *type, const char *queue,
                             const char *input, const char *part);

/* Wait up to timeout_ms for workflow id (run: NULL for the latest, following continue-as-new)
 * to close, check it closed with `status`, then keel_test_replay_and_record() the run that
 * closed. The outcome is the caller's to dispose. */
keel_workflow_outcome keel_test_finish(keel_client *client, const keel_workflow_type *type,
                                       const char *id, const char *run, int status,
                                       const char *scenario, int64_t timeout_ms);

/* Run keelctl (the binary $KEELCTL names) with args; its exit status, stdout and stderr into
 * out[n]. */
int keel_test_keelctl(const char *args, char *out, size_t n);

/* The scenario a run id names: the part of id after prefix, up to the next '-'. */
void keel_test_scenario(const char *id, const char *prefix, char *out, size_t n);

#endif
