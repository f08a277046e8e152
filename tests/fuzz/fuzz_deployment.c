/*
 * fuzz_deployment - the Worker Deployment answers keel reads (src/client/deployment.h), from the
 * response bytes on: keel_transport_decode (depth check, unpack) and then keel's reader, as
 * keelctl deployment describe and list run them.
 *
 * Input: one selector byte, then the body. selector % 2: 0 a DescribeWorkerDeploymentResponse,
 * 1 a ListWorkerDeploymentsResponse page (read twice into one list, as two pages would be).
 *
 * Properties: what is read stays within the caps (names and build ids at most
 * KEEL_DEPLOYMENT_NAME_MAX bytes, at most KEEL_DEPLOYMENT_MAX_VERSIONS versions), a status and a
 * drainage are one of the words keel/deployment.h lists, a ramp percentage is 0 without a
 * ramping version, and a failed read leaves nothing behind.
 */
#include <stdlib.h>
#include <string.h>

#include "client/deployment.h"
#include "fuzz.h"
#include "transport/transport.h"

#define MAX_LEN (256 * 1024)

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

static void check_text(const char *what, const char *s, bool may_be_null)
{
    if (s == NULL) {
        if (!may_be_null)
            fuzz_fail("%s is NULL", what);
        return;
    }
    if (strlen(s) > KEEL_DEPLOYMENT_NAME_MAX)
        fuzz_fail("%s is %zu bytes, over the cap", what, strlen(s));
}

static void check_word(const char *what, const char *s, const char *const *words)
{
    for (const char *const *w = words; *w; w++)
        if (s && strcmp(s, *w) == 0)
            return;
    fuzz_fail("%s '%s' is not one of keel's words", what, s ? s : "(null)");
}

static void check_info(const keel_deployment_info *d)
{
    static const char *const statuses[] = {"",        "current",  "ramping", "draining",
                                           "drained", "inactive", "created", NULL};
    static const char *const drainages[] = {"", "draining", "drained", NULL};
    check_text("the name", d->name, false);
    check_text("the last modifier", d->last_modifier_identity, false);
    check_text("the current build id", d->current_build_id, true);
    check_text("the ramping build id", d->ramping_build_id, true);
    if (d->ramping_build_id == NULL && d->ramping_percentage != 0)
        fuzz_fail("a ramp of %g%% without a ramping version", d->ramping_percentage);
    if (d->n_versions > KEEL_DEPLOYMENT_MAX_VERSIONS)
        fuzz_fail("%zu versions kept", d->n_versions);
    for (size_t i = 0; i < d->n_versions; i++) {
        check_text("a version's build id", d->versions[i].build_id, false);
        check_word("a version's status", d->versions[i].status, statuses);
        check_word("a version's drainage", d->versions[i].drainage, drainages);
    }
}

static void describe(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL, *partial = NULL;
    keel_error err;
    memset(&err, 0, sizeof err);
    if (keel_transport_decode(
            data, size,
            &temporal__api__workflowservice__v1__describe_worker_deployment_response__descriptor,
            &m, &partial, "DescribeWorkerDeployment", &err) != KEEL_OK) {
        if (partial)
            FREE_PB(partial);
        return;
    }
    keel_deployment_info d;
    int rc = keel_deployment_read_describe(
        (const Temporal__Api__Workflowservice__V1__DescribeWorkerDeploymentResponse *)m, &d, &err);
    if (rc == KEEL_OK) {
        check_info(&d);
        keel_deployment_info_dispose(&d);
    } else if (d.name || d.versions || d.n_versions || d.current_build_id) {
        fuzz_fail("a failed read (%s) left a deployment behind", err.message);
    }
    FREE_PB(m);
}

static void list(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL, *partial = NULL;
    keel_error err;
    memset(&err, 0, sizeof err);
    if (keel_transport_decode(
            data, size,
            &temporal__api__workflowservice__v1__list_worker_deployments_response__descriptor, &m,
            &partial, "ListWorkerDeployments", &err) != KEEL_OK) {
        if (partial)
            FREE_PB(partial);
        return;
    }
    const Temporal__Api__Workflowservice__V1__ListWorkerDeploymentsResponse *r = (const void *)m;
    keel_deployment_info *items = NULL;
    size_t n = 0;
    int rc = keel_deployment_read_list_page(r, &items, &n, &err);
    if (rc == KEEL_OK)
        rc = keel_deployment_read_list_page(r, &items, &n, &err);
    if (rc == KEEL_OK) {
        if (n != 2 * r->n_worker_deployments)
            fuzz_fail("two pages of %zu gave %zu deployments", r->n_worker_deployments, n);
        for (size_t i = 0; i < n; i++)
            check_info(&items[i]);
    }
    keel_deployment_list_free(items, n);
    FREE_PB(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_LEN)
        return 0;
    if (data[0] % 2 == 0)
        describe(data + 1, size - 1);
    else
        list(data + 1, size - 1);
    return 0;
}
