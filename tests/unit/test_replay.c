/*
 * Recorded histories of every workflow in workflows/ replay through today's code
 * (tests/replay/<workflow type>/, .json or .bin files recorded with `keelctl workflow history`),
 * and a deliberately changed copy of each workflow is caught as non-deterministic on every one of
 * them. A registered workflow without a recorded history fails the suite: new workflows come
 * with their histories (tests/replay/README.md says how to record one).
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "keel/replayer.h"
#include "workflows/registry.h"

static const char *replay_dir(void)
{
    const char *d = getenv("KEEL_REPLAY_DIR");
    return d && d[0] ? d : "tests/replay";
}

/* The changed copy: the same workflow, but it starts a timer before anything else it does. */
static const keel_workflow_type *original;

static int changed_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    if (keel_workflow_timer(ctx, 1000) == 0)
        return KEEL_EINVAL;
    return original->start(ctx, state, input);
}

static bool is_history(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".json") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".bin") == 0);
}

/* Replay every history of `type`; returns how many there were. */
static int replay_all(const keel_workflow_type *type)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", replay_dir(), type->name);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "workflow %s has no recorded histories in %s", type->name, dir);
    keel_workflow_type changed = *type;
    changed.start = changed_start;
    original = type;
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (!is_history(de->d_name))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        keel_error err;
        ck_assert_msg(keel_replay_file(type, path, &err) == KEEL_OK, "%s: %s", path, err.message);
        int rc = keel_replay_file(&changed, path, &err);
        ck_assert_msg(rc == KEEL_ENONDETERMINISM, "%s: the changed %s was not caught (%s)", path,
                      type->name, rc == KEEL_OK ? "it replayed" : err.message);
        ck_assert_ptr_nonnull(strstr(err.message, "[TMPRL1100]"));
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(every_workflow_replays_its_recorded_histories)
{
    size_t n;
    const keel_workflow_type *const *types = keel_workflow_registry(&n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(replay_all(types[i]) > 0, "workflow %s has no recorded history",
                      types[i]->name);
}
END_TEST

START_TEST(the_registry_finds_its_types_by_name)
{
    size_t n;
    const keel_workflow_type *const *types = keel_workflow_registry(&n);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_eq(keel_workflow_registry_find(types[i]->name), types[i]);
    ck_assert_ptr_null(keel_workflow_registry_find("NoSuchWorkflow"));
    ck_assert_ptr_null(keel_workflow_registry_find(NULL));
}
END_TEST

/* Whether the history at path scheduled tool.check_budget and tool.list_vendors in the same
 * workflow task (false when it listed no vendors). */
static bool budget_and_vendors_together(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    cJSON *h = cJSON_Parse(text);
    ck_assert_msg(h != NULL, "%s is not JSON", path);
    const char *budget[8] = {0}, *vendors[8] = {0};
    int nb = 0, nv = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(h, "events"))
    {
        const cJSON *a =
            cJSON_GetObjectItemCaseSensitive(e, "activityTaskScheduledEventAttributes");
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(a, "activityType"), "name"));
        const char *task = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(a, "workflowTaskCompletedEventId"));
        if (type && task && strcmp(type, "tool.check_budget") == 0 && nb < 8)
            budget[nb++] = task;
        if (type && task && strcmp(type, "tool.list_vendors") == 0 && nv < 8)
            vendors[nv++] = task;
    }
    bool together = false;
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < nv; j++)
            together = together || strcmp(budget[i], vendors[j]) == 0;
    ck_assert_msg(nb > 0, "%s checks no budget", path); /* no vendors: rejected by the budget */
    cJSON_Delete(h);
    return together;
}

/* keel.Procurement's histories from before the change "procurement.parallel-steps" (one step at
 * a time: sequential-*.json, recorded by the code before it) and after (parallel-*.json): both
 * replay (every_workflow_replays_its_recorded_histories), and they are what they say. */
START_TEST(procurement_has_histories_of_both_step_orders)
{
    static const char *const files[][2] = {
        {"sequential-auto.json", "0"},   {"sequential-manager.json", "0"},
        {"sequential-budget.json", "0"}, {"parallel-auto.json", "1"},
        {"parallel-manager.json", "1"},  {"parallel-budget.json", "1"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/keel.Procurement/%s", replay_dir(), files[i][0]);
        bool want = files[i][1][0] == '1';
        ck_assert_msg(budget_and_vendors_together(path) == want,
                      "%s: the budget check and the vendor list went out %s", path,
                      want ? "one after the other" : "together");
    }
}
END_TEST

/* keel.Procurement's histories from after the change "procurement.local-reads" (local-*.json):
 * the reads are core_local_activity markers, never scheduled activities; the effects are. */
START_TEST(procurement_has_histories_with_local_reads)
{
    static const char *const files[] = {"local-auto.json", "local-manager.json",
                                        "local-budget.json"};
    static const char *const reads[] = {"tool.check_budget", "tool.get_budget", "tool.list_vendors",
                                        "tool.get_catalog_prices", "tool.get_approvers"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/keel.Procurement/%s", replay_dir(), files[i]);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot read %s", path);
        static char text[1 << 20];
        size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        cJSON *h = cJSON_Parse(text);
        ck_assert_msg(h != NULL, "%s is not JSON", path);
        int markers = 0, effects = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(h, "events"))
        {
            const char *marker = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(e, "markerRecordedEventAttributes"),
                "markerName"));
            markers += marker && strcmp(marker, "core_local_activity") == 0;
            const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(e, "activityTaskScheduledEventAttributes"),
                    "activityType"),
                "name"));
            if (type == NULL)
                continue;
            effects++;
            for (size_t r = 0; r < sizeof reads / sizeof reads[0]; r++)
                ck_assert_msg(strcmp(type, reads[r]) != 0, "%s schedules %s", path, type);
        }
        /* The budget check and the vendor list at least; tool.create_requisition at least. */
        ck_assert_msg(markers >= 2, "%s: %d local activity markers", path, markers);
        ck_assert_msg(effects >= 1, "%s schedules no activity", path);
        cJSON_Delete(h);
    }
}
END_TEST

/* Hostile histories (tests/fixtures/hostile/, inputs that broke keel): replaying one is an
 * error naming what is wrong, never a crash. */
static void replay_refused(const char *type_name, const char *file, const char *want)
{
    const keel_workflow_type *type = keel_workflow_registry_find(type_name);
    ck_assert_ptr_nonnull(type);
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/hostile/%s", file);
    keel_error err;
    int rc = keel_replay_file(type, path, &err);
    ck_assert_msg(rc == KEEL_EINVAL, "%s: %s (%s)", path, keel_error_code_name(rc),
                  rc == KEEL_OK ? "it replayed" : err.message);
    ck_assert_msg(strstr(err.message, want) != NULL, "%s: %s", path, err.message);
}

START_TEST(a_failure_nested_10000_deep_is_refused_naming_the_limit)
{
    /* A binary history whose started event's continued failure has 10,000 nested causes:
     * protobuf-c would recurse once per cause and overflow the stack. */
    replay_refused("keel.Procurement", "deep-failure-10000.bin",
                   "temporal.api.history.v1.History nested deeper than 100 messages (at "
                   "events[0].workflow_execution_started_event_attributes.continued_failure."
                   "cause.cause");
}
END_TEST

START_TEST(an_event_with_another_events_attributes_is_refused)
{
    /* WorkflowTaskStarted carrying a timer's attributes: reading its suggest_continue_as_new
     * would read past them. From JSON and from binary. */
    replay_refused("keel.Procurement", "oob-started.json",
                   "history event 3 (WORKFLOW_TASK_STARTED) carries timer_fired attributes");
    replay_refused("keel.BatchProcurement", "oob-started.bin",
                   "history event 9 (WORKFLOW_TASK_STARTED) carries workflow_execution_timed_out "
                   "attributes");
}
END_TEST

Suite *replay_suite(void)
{
    Suite *s = suite_create("replay");
    TCase *tc = tcase_create("recorded");
    tcase_add_test(tc, every_workflow_replays_its_recorded_histories);
    tcase_add_test(tc, the_registry_finds_its_types_by_name);
    tcase_add_test(tc, procurement_has_histories_of_both_step_orders);
    tcase_add_test(tc, procurement_has_histories_with_local_reads);
    suite_add_tcase(s, tc);
    TCase *hostile = tcase_create("hostile");
    tcase_add_test(hostile, a_failure_nested_10000_deep_is_refused_naming_the_limit);
    tcase_add_test(hostile, an_event_with_another_events_attributes_is_refused);
    suite_add_tcase(s, hostile);
    return s;
}
