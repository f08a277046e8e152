/*
 * keelctl replay - run a recorded history offline through one of keel's workflow types: the
 * check to make before deploying changed workflow code. No server is involved.
 */
#include <stdio.h>
#include <string.h>

#include "keel/replayer.h"
#include "keelctl.h"
#include "workflows/registry.h"

static void list_types(FILE *f)
{
    size_t n;
    const keel_workflow_type *const *t = keel_workflow_registry(&n);
    fprintf(f, "keelctl: the workflow types keel has:");
    for (size_t i = 0; i < n; i++)
        fprintf(f, " %s", t[i]->name);
    fprintf(f, "%s\n", n ? "" : " (none)");
}

int keelctl_replay(const cli *c)
{
    if (c->nargs > 1)
        return usage_error("%s", "replay takes --history FILE --workflow TYPE, no arguments");
    if (c->history == NULL || c->workflow_type == NULL)
        return usage_error("%s", "replay needs --history FILE and --workflow TYPE");
    const keel_workflow_type *type = keel_workflow_registry_find(c->workflow_type);
    if (type == NULL) {
        fprintf(stderr, "keelctl: no workflow type '%s'\n", c->workflow_type);
        list_types(stderr);
        return EXIT_USAGE;
    }
    keel_error err;
    int rc = keel_replay_file(type, c->history, &err);
    if (rc != KEEL_OK) {
        fprintf(stderr, "keelctl: replay of %s through %s failed: %s\n", c->history, type->name,
                err.message);
        return EXIT_CALL;
    }
    printf("%s replays through %s: every command matches its history.\n", c->history, type->name);
    return 0;
}
