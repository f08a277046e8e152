/*
 * keelctl activity - answer for an activity left open for someone outside the worker
 * (keel_activity_complete_async): complete it with a result, or fail it.
 */
#include <stdio.h>

#include "keel/completion.h"
#include "keelctl.h"

static int need_activity(const cli *c, const char *verb)
{
    if (c->nargs > 2) {
        fprintf(stderr, "keelctl: activity %s takes options only\n", verb);
        return EXIT_USAGE;
    }
    if (c->workflow_id == NULL || c->activity_id == NULL) {
        fprintf(stderr, "keelctl: activity %s needs --id WORKFLOW-ID and --activity-id ID\n", verb);
        return EXIT_USAGE;
    }
    return 0;
}

int keelctl_activity_complete(keel_client *client, const cli *c)
{
    int rc = need_activity(c, "complete");
    if (rc != 0)
        return rc;
    keel_activity_ref ref = {
        .workflow_id = c->workflow_id, .run_id = c->run_id, .activity_id = c->activity_id};
    keel_error err;
    if (keel_client_activity_complete(client, &ref, c->input, &err) != KEEL_OK)
        return fail(&err);
    fprintf(stderr, "Activity %s of workflow %s completed.\n", c->activity_id, c->workflow_id);
    return 0;
}

int keelctl_activity_fail(keel_client *client, const cli *c)
{
    int rc = need_activity(c, "fail");
    if (rc != 0)
        return rc;
    if (c->reason == NULL) {
        fprintf(stderr, "keelctl: activity fail needs --reason TEXT\n");
        return EXIT_USAGE;
    }
    keel_activity_ref ref = {
        .workflow_id = c->workflow_id, .run_id = c->run_id, .activity_id = c->activity_id};
    keel_activity_failure f = {.type = c->type ? c->type : "ActivityFailed",
                               .message = c->reason,
                               .non_retryable = c->non_retryable,
                               .details_json = c->input};
    keel_error err;
    if (keel_client_activity_fail(client, &ref, &f, &err) != KEEL_OK)
        return fail(&err);
    fprintf(stderr, "Activity %s of workflow %s failed%s.\n", c->activity_id, c->workflow_id,
            c->non_retryable ? " for good" : "; its retry policy decides what follows");
    return 0;
}
