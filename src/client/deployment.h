/* deployment (internal) - reading Worker Deployment answers, for the client and the fuzz target. */
#ifndef KEEL_CLIENT_DEPLOYMENT_H
#define KEEL_CLIENT_DEPLOYMENT_H

#include "keel/deployment.h"
#include "proto/proto.h"

/* A DescribeWorkerDeployment answer into out, within the caps of keel/deployment.h
 * (KEEL_EPROTOCOL past them). out is left empty on failure; release it with
 * keel_deployment_info_dispose() on success. */
int keel_deployment_read_describe(
    const Temporal__Api__Workflowservice__V1__DescribeWorkerDeploymentResponse *r,
    keel_deployment_info *out, keel_error *err);

/* Append one ListWorkerDeployments page to *list (*n entries, grown with realloc), within
 * KEEL_DEPLOYMENT_MAX_DEPLOYMENTS. On failure the entries read so far stay in *list (*n counts
 * them): the caller frees them with keel_deployment_list_free(). */
int keel_deployment_read_list_page(
    const Temporal__Api__Workflowservice__V1__ListWorkerDeploymentsResponse *r,
    keel_deployment_info **list, size_t *n, keel_error *err);

#endif
