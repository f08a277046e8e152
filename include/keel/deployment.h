/*
 * keel/deployment.h - Worker Deployments: which version of a deployment's workers new runs go to.
 *
 * A worker deployment is named by its workers (keel_worker_options.deployment_name) and made of
 * versions, one per build id, that the server registers when their workers first poll. An
 * operator makes a version current (new runs, and auto-upgrade runs at their next task, go to
 * it), or ramping (that percentage of them, by workflow id), and watches the old version drain:
 * its pinned runs close, then its workers can stop. The procedure: docs/operations.md, "Rolling
 * out new workflow code".
 *
 * Every name and build id is checked before a call (keel_deployment_version_check); the answers
 * are read with the caps written in docs/limits.md.
 */
#ifndef KEEL_DEPLOYMENT_H
#define KEEL_DEPLOYMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/client.h"
#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest deployment name or build id keel sends (docs/limits.md). */
#define KEEL_DEPLOYMENT_NAME_MAX 255

/* Versions kept from one DescribeWorkerDeployment answer; deployments from ListWorkerDeployments
 * (all pages). More is KEEL_EPROTOCOL rather than an unbounded read. */
#define KEEL_DEPLOYMENT_MAX_VERSIONS    1000
#define KEEL_DEPLOYMENT_MAX_DEPLOYMENTS 10000

/* KEEL_OK when deployment_name (if not NULL) and build_id (if not NULL) are what the server
 * takes: 1-KEEL_DEPLOYMENT_NAME_MAX (255) bytes of printable ASCII, not starting with "__", and
 * no '.' or ':' in a deployment name. KEEL_EINVAL naming the field otherwise. */
int keel_deployment_version_check(const char *deployment_name, const char *build_id,
                                  keel_error *err);

/* One version of a deployment. Strings are owned by the info that holds them. */
typedef struct keel_deployment_version {
    char *build_id;
    /* "current", "ramping", "draining", "drained", "inactive" or "created" (the server's
     * WorkerDeploymentVersionStatus), "" when the server does not say. Static storage. */
    const char *status;
    /* "draining" (pinned runs are still open on it), "drained" (none are), or "" (not
     * computed: the version is current, ramping or was never either). Static storage. */
    const char *drainage;
    int64_t create_time_ms;
    int64_t drainage_checked_ms; /* when the server last counted its open pinned runs; 0: never */
    int64_t current_since_ms;    /* 0: not current */
    int64_t ramping_since_ms;    /* 0: not ramping */
} keel_deployment_version;

typedef struct keel_deployment_info {
    char *name;
    int64_t create_time_ms;
    char *current_build_id; /* NULL: unversioned workers get new runs */
    char *ramping_build_id; /* NULL: nothing ramps */
    double ramping_percentage;
    char *last_modifier_identity;      /* "" when the server does not say */
    keel_deployment_version *versions; /* DescribeWorkerDeployment: every version; list: none */
    size_t n_versions;
} keel_deployment_info;

/* DescribeWorkerDeployment. KEEL_ENOTFOUND when there is no such deployment. Release out with
 * keel_deployment_info_dispose(). */
int keel_client_deployment_describe(keel_client *client, const char *name,
                                    keel_deployment_info *out, keel_error *err);
void keel_deployment_info_dispose(keel_deployment_info *info);

/* ListWorkerDeployments, every page: *out a new array of *n (versions not filled in). Release
 * with keel_deployment_list_free(). */
int keel_client_deployment_list(keel_client *client, keel_deployment_info **out, size_t *n,
                                keel_error *err);
void keel_deployment_list_free(keel_deployment_info *list, size_t n);

/* SetWorkerDeploymentCurrentVersion: build_id becomes current (NULL: unversioned workers take
 * new runs again). The version must have pollers on every task queue the deployment's current
 * version polls, unless ignore_missing_task_queues. */
int keel_client_deployment_set_current(keel_client *client, const char *name, const char *build_id,
                                       bool ignore_missing_task_queues, keel_error *err);

/* SetWorkerDeploymentRampingVersion: percentage (0-100) of new runs, chosen by workflow id, go to
 * build_id instead of the current version. build_id NULL ends the ramp (percentage must be 0). */
int keel_client_deployment_set_ramping(keel_client *client, const char *name, const char *build_id,
                                       double percentage, bool ignore_missing_task_queues,
                                       keel_error *err);

#ifdef __cplusplus
}
#endif

#endif
