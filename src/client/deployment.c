/*
 * deployment - Worker Deployment calls: describe, list, set the current and the ramping version.
 *
 * Requests name the version by deployment name + build id (the fields server 1.31 reads; the
 * "deployment.build" version strings are deprecated). Answers are read with caps
 * (keel/deployment.h); unversioned ("__unversioned__" or empty) current/ramping versions read
 * as NULL.
 */
#include "keel/deployment.h"

#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "client/deployment.h"
#include "proto/proto.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define MSG(m)     ((ProtobufCMessage *)(m))
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

typedef Temporal__Api__Deployment__V1__WorkerDeploymentInfo__WorkerDeploymentVersionSummary
    version_summary;

static int check_field(const char *what, const char *v, bool is_name, keel_error *err)
{
    size_t n = strlen(v);
    if (n == 0 || n > KEEL_DEPLOYMENT_NAME_MAX)
        return keel_error_set(err, KEEL_EINVAL, "%s must be 1-%d bytes", what,
                              KEEL_DEPLOYMENT_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return keel_error_set(err, KEEL_EINVAL, "%s must be printable ASCII (byte %zu is not)",
                                  what, i + 1);
    if (strncmp(v, "__", 2) == 0)
        return keel_error_set(err, KEEL_EINVAL, "%s must not start with \"__\" (the server's)",
                              what);
    if (is_name && strpbrk(v, ".:") != NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s '%s' must not contain '.' or ':'", what, v);
    return KEEL_OK;
}

int keel_deployment_version_check(const char *deployment_name, const char *build_id,
                                  keel_error *err)
{
    int rc = deployment_name ? check_field("deployment name", deployment_name, true, err) : KEEL_OK;
    if (rc == KEEL_OK && build_id)
        rc = check_field("build id", build_id, false, err);
    return rc;
}

/* ---- reading answers ---- */

static const char *version_status(int s)
{
    switch (s) {
    case TEMPORAL__API__ENUMS__V1__WORKER_DEPLOYMENT_VERSION_STATUS__WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE:
        return "inactive";
    case TEMPORAL__API__ENUMS__V1__WORKER_DEPLOYMENT_VERSION_STATUS__WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT:
        return "current";
    case TEMPORAL__API__ENUMS__V1__WORKER_DEPLOYMENT_VERSION_STATUS__WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING:
        return "ramping";
    case TEMPORAL__API__ENUMS__V1__WORKER_DEPLOYMENT_VERSION_STATUS__WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING:
        return "draining";
    case TEMPORAL__API__ENUMS__V1__WORKER_DEPLOYMENT_VERSION_STATUS__WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED:
        return "drained";
    case TEMPORAL__API__ENUMS__V1__WORKER_DEPLOYMENT_VERSION_STATUS__WORKER_DEPLOYMENT_VERSION_STATUS_CREATED:
        return "created";
    default:
        return "";
    }
}

static const char *drainage_status(int s)
{
    switch (s) {
    case TEMPORAL__API__ENUMS__V1__VERSION_DRAINAGE_STATUS__VERSION_DRAINAGE_STATUS_DRAINING:
        return "draining";
    case TEMPORAL__API__ENUMS__V1__VERSION_DRAINAGE_STATUS__VERSION_DRAINAGE_STATUS_DRAINED:
        return "drained";
    default:
        return "";
    }
}

/* A version's build id, or NULL for none / the unversioned pseudo-version. */
static int version_build_id(const Temporal__Api__Deployment__V1__WorkerDeploymentVersion *v,
                            char **out, keel_error *err)
{
    *out = NULL;
    if (v == NULL || v->build_id == NULL || v->build_id[0] == '\0' ||
        strncmp(v->build_id, "__", 2) == 0)
        return KEEL_OK;
    if (strlen(v->build_id) > KEEL_DEPLOYMENT_NAME_MAX)
        return keel_error_set(err, KEEL_EPROTOCOL, "the server sent a build id over %d bytes",
                              KEEL_DEPLOYMENT_NAME_MAX);
    if ((*out = strdup(v->build_id)) == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    return KEEL_OK;
}

static int read_routing(const Temporal__Api__Deployment__V1__RoutingConfig *r,
                        keel_deployment_info *out, keel_error *err)
{
    if (r == NULL)
        return KEEL_OK;
    int rc = version_build_id(r->current_deployment_version, &out->current_build_id, err);
    if (rc == KEEL_OK)
        rc = version_build_id(r->ramping_deployment_version, &out->ramping_build_id, err);
    out->ramping_percentage = out->ramping_build_id ? r->ramping_version_percentage : 0;
    return rc;
}

static int read_version(const version_summary *s, keel_deployment_version *v, keel_error *err)
{
    memset(v, 0, sizeof *v);
    int rc = version_build_id(s->deployment_version, &v->build_id, err);
    if (rc == KEEL_OK && v->build_id == NULL && (v->build_id = strdup("")) == NULL)
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
    v->status = version_status(s->status);
    int drainage = s->drainage_info ? (int)s->drainage_info->status : (int)s->drainage_status;
    v->drainage = drainage_status(drainage);
    v->create_time_ms = keel_proto_timestamp_ms(s->create_time);
    v->drainage_checked_ms =
        s->drainage_info ? keel_proto_timestamp_ms(s->drainage_info->last_checked_time) : 0;
    v->current_since_ms = keel_proto_timestamp_ms(s->current_since_time);
    v->ramping_since_ms = keel_proto_timestamp_ms(s->ramping_since_time);
    return rc;
}

static int read_name(const char *name, char **out, keel_error *err)
{
    if (name && strlen(name) > KEEL_DEPLOYMENT_NAME_MAX)
        return keel_error_set(err, KEEL_EPROTOCOL,
                              "the server sent a deployment name over %d bytes",
                              KEEL_DEPLOYMENT_NAME_MAX);
    if ((*out = keel_proto_strdup(name)) == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    return KEEL_OK;
}

void keel_deployment_info_dispose(keel_deployment_info *info)
{
    if (info == NULL)
        return;
    for (size_t i = 0; i < info->n_versions; i++)
        free(info->versions[i].build_id);
    free(info->versions);
    free(info->name);
    free(info->current_build_id);
    free(info->ramping_build_id);
    free(info->last_modifier_identity);
    memset(info, 0, sizeof *info);
}

static int read_info(const Temporal__Api__Deployment__V1__WorkerDeploymentInfo *d,
                     keel_deployment_info *out, keel_error *err)
{
    if (d == NULL)
        return keel_error_set(err, KEEL_EPROTOCOL,
                              "DescribeWorkerDeployment answered without the deployment");
    if (d->n_version_summaries > KEEL_DEPLOYMENT_MAX_VERSIONS)
        return keel_error_set(err, KEEL_EPROTOCOL,
                              "the deployment has %zu versions, more than keel reads (%d)",
                              d->n_version_summaries, KEEL_DEPLOYMENT_MAX_VERSIONS);
    int rc = read_name(d->name, &out->name, err);
    if (rc == KEEL_OK)
        rc = read_name(d->last_modifier_identity, &out->last_modifier_identity, err);
    out->create_time_ms = keel_proto_timestamp_ms(d->create_time);
    if (rc == KEEL_OK)
        rc = read_routing(d->routing_config, out, err);
    if (rc == KEEL_OK && d->n_version_summaries > 0 &&
        (out->versions = calloc(d->n_version_summaries, sizeof *out->versions)) == NULL)
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
    for (size_t i = 0; rc == KEEL_OK && i < d->n_version_summaries; i++) {
        rc = read_version(d->version_summaries[i], &out->versions[i], err);
        out->n_versions = i + 1;
    }
    return rc;
}

int keel_client_deployment_describe(keel_client *client, const char *name,
                                    keel_deployment_info *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = name ? keel_deployment_version_check(name, NULL, err)
                  : keel_error_set(err, KEEL_EINVAL, "describe needs a deployment name");
    if (rc != KEEL_OK)
        return rc;
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__DescribeWorkerDeploymentRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_WORKER_DEPLOYMENT_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.deployment_name = (char *)name;
    Temporal__Api__Workflowservice__V1__DescribeWorkerDeploymentResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    rc = keel_transport_call(
        t, WF("DescribeWorkerDeployment"), MSG(&req),
        &temporal__api__workflowservice__v1__describe_worker_deployment_response__descriptor,
        (ProtobufCMessage **)&resp, &co, err);
    if (rc != KEEL_OK)
        return rc;
    rc = keel_deployment_read_describe(resp, out, err);
    FREE_PB(resp);
    return rc;
}

int keel_deployment_read_describe(
    const Temporal__Api__Workflowservice__V1__DescribeWorkerDeploymentResponse *r,
    keel_deployment_info *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = read_info(r->worker_deployment_info, out, err);
    if (rc != KEEL_OK)
        keel_deployment_info_dispose(out);
    return rc;
}

void keel_deployment_list_free(keel_deployment_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        keel_deployment_info_dispose(&list[i]);
    free(list);
}

typedef Temporal__Api__Workflowservice__V1__ListWorkerDeploymentsResponse__WorkerDeploymentSummary
    deployment_summary;

int keel_deployment_read_list_page(
    const Temporal__Api__Workflowservice__V1__ListWorkerDeploymentsResponse *r,
    keel_deployment_info **list, size_t *n, keel_error *err)
{
    if (r->n_worker_deployments == 0)
        return KEEL_OK;
    if (r->n_worker_deployments > KEEL_DEPLOYMENT_MAX_DEPLOYMENTS - *n)
        return keel_error_set(err, KEEL_EPROTOCOL, "more than %d worker deployments",
                              KEEL_DEPLOYMENT_MAX_DEPLOYMENTS);
    keel_deployment_info *grown = realloc(*list, (*n + r->n_worker_deployments) * sizeof **list);
    if (grown == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    *list = grown;
    for (size_t i = 0; i < r->n_worker_deployments; i++) {
        const deployment_summary *s = r->worker_deployments[i];
        keel_deployment_info *d = &grown[(*n)++];
        memset(d, 0, sizeof *d);
        d->create_time_ms = keel_proto_timestamp_ms(s->create_time);
        int rc = read_name(s->name, &d->name, err);
        if (rc == KEEL_OK)
            rc = read_name("", &d->last_modifier_identity, err);
        if (rc == KEEL_OK)
            rc = read_routing(s->routing_config, d, err);
        if (rc != KEEL_OK)
            return rc;
    }
    return KEEL_OK;
}

int keel_client_deployment_list(keel_client *client, keel_deployment_info **out, size_t *n,
                                keel_error *err)
{
    *out = NULL;
    *n = 0;
    keel_transport *t = keel_client_transport(client);
    keel_page_token token = {0};
    int rc = KEEL_OK;
    do {
        Temporal__Api__Workflowservice__V1__ListWorkerDeploymentsRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__LIST_WORKER_DEPLOYMENTS_REQUEST__INIT;
        req.namespace_ = (char *)keel_transport_namespace(t);
        req.page_size = 100;
        req.next_page_token = keel_page_token_get(&token);
        Temporal__Api__Workflowservice__V1__ListWorkerDeploymentsResponse *resp = NULL;
        keel_call_options co = {.retry = true, .namespace = req.namespace_};
        rc = keel_transport_call(
            t, WF("ListWorkerDeployments"), MSG(&req),
            &temporal__api__workflowservice__v1__list_worker_deployments_response__descriptor,
            (ProtobufCMessage **)&resp, &co, err);
        if (rc != KEEL_OK)
            break;
        rc = keel_deployment_read_list_page(resp, out, n, err);
        if (rc == KEEL_OK)
            rc = keel_page_token_next(&token, &resp->next_page_token, "ListWorkerDeployments", err);
        FREE_PB(resp);
    } while (rc == KEEL_OK && token.len > 0);
    keel_page_token_free(&token);
    if (rc != KEEL_OK) {
        keel_deployment_list_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int keel_client_deployment_set_current(keel_client *client, const char *name, const char *build_id,
                                       bool ignore_missing_task_queues, keel_error *err)
{
    int rc = name ? keel_deployment_version_check(name, build_id, err)
                  : keel_error_set(err, KEEL_EINVAL, "set-current needs a deployment name");
    if (rc != KEEL_OK)
        return rc;
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__SetWorkerDeploymentCurrentVersionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__SET_WORKER_DEPLOYMENT_CURRENT_VERSION_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.deployment_name = (char *)name;
    req.build_id = (char *)(build_id ? build_id : ""); /* "": unversioned */
    req.identity = (char *)keel_transport_identity(t);
    req.ignore_missing_task_queues = ignore_missing_task_queues;
    ProtobufCMessage *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    rc = keel_transport_call(
        t, WF("SetWorkerDeploymentCurrentVersion"), MSG(&req),
        &temporal__api__workflowservice__v1__set_worker_deployment_current_version_response__descriptor,
        &resp, &co, err);
    if (resp)
        FREE_PB(resp);
    return rc;
}

int keel_client_deployment_set_ramping(keel_client *client, const char *name, const char *build_id,
                                       double percentage, bool ignore_missing_task_queues,
                                       keel_error *err)
{
    int rc = name ? keel_deployment_version_check(name, build_id, err)
                  : keel_error_set(err, KEEL_EINVAL, "set-ramping needs a deployment name");
    if (rc != KEEL_OK)
        return rc;
    if (!(percentage >= 0 && percentage <= 100))
        return keel_error_set(err, KEEL_EINVAL, "a ramp percentage is from 0 to 100");
    if (build_id == NULL && percentage != 0)
        return keel_error_set(err, KEEL_EINVAL, "ending a ramp takes percentage 0");
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__SetWorkerDeploymentRampingVersionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__SET_WORKER_DEPLOYMENT_RAMPING_VERSION_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.deployment_name = (char *)name;
    req.build_id = (char *)(build_id ? build_id : ""); /* "": no ramping version */
    req.percentage = (float)percentage;
    req.identity = (char *)keel_transport_identity(t);
    req.ignore_missing_task_queues = ignore_missing_task_queues;
    ProtobufCMessage *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    rc = keel_transport_call(
        t, WF("SetWorkerDeploymentRampingVersion"), MSG(&req),
        &temporal__api__workflowservice__v1__set_worker_deployment_ramping_version_response__descriptor,
        &resp, &co, err);
    if (resp)
        FREE_PB(resp);
    return rc;
}
