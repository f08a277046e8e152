/* keelctl as a user runs it: exit codes, text and JSON output, error messages. $KEELCTL names
 * the binary (the Makefile sets it). */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* What keelctl printed: stdout and stderr apart, so that JSON is parsed from stdout alone. */
typedef struct {
    char out[65536];
    char err[8192];
} output;

static void slurp(FILE *f, char *buf, size_t n)
{
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
}

/* Run keelctl with args after `env` arguments (NULL: none); return its exit status. */
static int keelctl_env(const char *env, const char *args, output *o);

static int keelctl(const char *args, output *o)
{
    return keelctl_env(NULL, args, o);
}

static int keelctl_env(const char *env, const char *args, output *o)
{
    const char *bin = getenv("KEELCTL");
    ck_assert_msg(bin != NULL, "KEELCTL is not set");
    char errpath[] = "/tmp/keelctl-stderr-XXXXXX";
    int fd = mkstemp(errpath);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s%s%s%s %s 2>%s", env ? "env " : "", env ? env : "", env ? " " : "",
             bin, args, errpath);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    slurp(p, o->out, sizeof o->out);
    int st = pclose(p);
    FILE *e = fopen(errpath, "r");
    ck_assert_ptr_nonnull(e);
    slurp(e, o->err, sizeof o->err);
    fclose(e);
    unlink(errpath);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

START_TEST(system_info_json_names_the_version)
{
    output o;
    ck_assert_int_eq(keelctl("--json system-info", &o), 0);
    cJSON *j = cJSON_Parse(o.out);
    ck_assert_msg(j != NULL, "not JSON: %s", o.out);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "serverVersion");
    ck_assert(cJSON_IsString(v) && strlen(v->valuestring) >= 5);
    cJSON *caps = cJSON_GetObjectItemCaseSensitive(j, "capabilities");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(caps, "supportsSchedules")));
    cJSON_Delete(j);

    ck_assert_int_eq(keelctl("system-info", &o), 0);
    ck_assert_ptr_nonnull(strstr(o.out, "Server version"));
}
END_TEST

START_TEST(namespace_describe_default)
{
    output o;
    ck_assert_int_eq(keelctl("namespace describe default", &o), 0);
    ck_assert_ptr_nonnull(strstr(o.out, "Name            default"));
    ck_assert_ptr_nonnull(strstr(o.out, "Registered"));

    ck_assert_int_eq(keelctl("--json namespace describe default", &o), 0);
    cJSON *j = cJSON_Parse(o.out);
    ck_assert_msg(j != NULL, "not JSON: %s", o.out);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring, "default");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "state")->valuestring, "Registered");
    cJSON_Delete(j);
}
END_TEST

START_TEST(errors_name_address_rpc_and_status)
{
    output o;
    ck_assert_int_eq(keelctl("namespace describe keel-no-such-namespace", &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "DescribeNamespace"));
    ck_assert_ptr_nonnull(strstr(o.err, "NOT_FOUND"));
    /* the server's address (TEMPORAL_ADDRESS; the default stack's 127.0.0.1:7233 without it) */
    const char *address = getenv("TEMPORAL_ADDRESS");
    const char *port = strrchr(address && address[0] ? address : "127.0.0.1:7233", ':');
    ck_assert_ptr_nonnull(port);
    ck_assert_ptr_nonnull(strstr(o.err, port));

    ck_assert_int_eq(keelctl("--address 127.0.0.1:1 --timeout 1s system-info", &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "127.0.0.1:1"));
    ck_assert_ptr_nonnull(strstr(o.err, "UNAVAILABLE"));
}
END_TEST

START_TEST(usage_errors_exit_2)
{
    output o;
    ck_assert_int_eq(keelctl("", &o), 2);
    ck_assert_int_eq(keelctl("frobnicate", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "unknown command 'frobnicate'"));
    ck_assert_int_eq(keelctl("namspace list", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "unknown command 'namspace'"));
    ck_assert_int_eq(keelctl("namespace lst", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "unknown subcommand 'lst'"));
    ck_assert_int_eq(keelctl("namespace", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "needs a subcommand"));
    ck_assert_int_eq(keelctl("--address 127.0.0.1:abc system-info", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "127.0.0.1:abc"));
    ck_assert_int_eq(keelctl("--timeout 0.1ms system-info", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "--timeout"));
    ck_assert_int_eq(keelctl("--bogus system-info", &o), 2);
    ck_assert_int_eq(keelctl("namespace register", &o), 2);
    ck_assert_int_eq(keelctl("namespace register x --retention 5parsecs", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "5parsecs"));
    ck_assert_int_eq(keelctl("search-attribute add --name X --type Money", &o), 2);
    ck_assert_int_eq(keelctl("--timeout soon system-info", &o), 2);
    ck_assert_int_eq(keelctl("--help >/dev/full", &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "could not write"));
    ck_assert_int_eq(keelctl("--help", &o), 0);
    ck_assert_ptr_nonnull(strstr(o.out, "usage: keelctl"));
}
END_TEST

START_TEST(if_not_exists_makes_registration_idempotent)
{
    output o;
    ck_assert_int_eq(keelctl("namespace register default --if-not-exists", &o), 0);
    ck_assert_ptr_nonnull(strstr(o.out, "already exists"));
    ck_assert_int_eq(keelctl("-- namespace register default", &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "ALREADY_EXISTS"));
    ck_assert_int_eq(keelctl("--namespace default search-attribute add --name ProcurementStage "
                             "--type Keyword --if-not-exists",
                             &o),
                     0);
    ck_assert_ptr_nonnull(strstr(o.out, "already exists"));
    /* Same name, other type: an error even with --if-not-exists. */
    ck_assert_int_eq(keelctl("--namespace default search-attribute add --name ProcurementStage "
                             "--type Int --if-not-exists",
                             &o),
                     1);
    ck_assert_ptr_nonnull(strstr(o.err, "Keyword"));
}
END_TEST

START_TEST(workflow_commands_round_trip)
{
    output o;
    char args[512], id[96];
    snprintf(id, sizeof id, "keelctl-wf-%ld", (long)getpid());
    snprintf(args, sizeof args,
             "--json workflow start --id %s --type Procurement --task-queue keelctl-q "
             "--input '{\"item\":\"desk\"}' --memo 'note=\"hi\"' "
             "--search-attribute 'ProcurementStage=\"intake\"' --id-conflict-policy fail",
             id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    cJSON *j = cJSON_Parse(o.out);
    ck_assert_msg(j != NULL, "not JSON: %s", o.out);
    char run[64];
    snprintf(run, sizeof run, "%s", cJSON_GetObjectItemCaseSensitive(j, "runId")->valuestring);
    cJSON_Delete(j);

    snprintf(args, sizeof args, "workflow signal --id %s --name approve --input '{\"ok\":true}'",
             id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    snprintf(args, sizeof args, "--json workflow describe --id %s", id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    j = cJSON_Parse(o.out);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "runId")->valuestring, run);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "status")->valuestring, "Running");
    cJSON *memo = cJSON_GetObjectItemCaseSensitive(j, "memo");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(memo, "note")->valuestring, "hi");
    cJSON_Delete(j);

    snprintf(args, sizeof args, "workflow terminate --id %s --reason 'cli test'", id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    /* Its history, as JSON with the events in order, and as a binary file. */
    snprintf(args, sizeof args, "workflow history --id %s", id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    j = cJSON_Parse(o.out);
    ck_assert_msg(j != NULL, "history is not JSON: %.200s", o.out);
    cJSON *events = cJSON_GetObjectItemCaseSensitive(j, "events");
    ck_assert_int_ge(cJSON_GetArraySize(events), 3);
    ck_assert_str_eq(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(events, 0), "eventType")->valuestring,
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED");
    cJSON_Delete(j);
    char path[] = "/tmp/keelctl-history-XXXXXX";
    close(mkstemp(path));
    snprintf(args, sizeof args, "workflow history --id %s --binary --output %s", id, path);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    ck_assert_ptr_nonnull(strstr(o.err, "written to"));
    unlink(path);
    snprintf(args, sizeof args, "workflow history --id %s --binary", id);
    ck_assert_int_eq(keelctl(args, &o), 2);

    /* The result of a run that did not complete: exit 1, the reason on stderr. */
    snprintf(args, sizeof args, "workflow result --id %s", id);
    ck_assert_int_eq(keelctl(args, &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "Terminated: cli test"));
}
END_TEST

START_TEST(workflow_usage_errors)
{
    output o;
    ck_assert_int_eq(keelctl("workflow start --type T --task-queue q", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "--id"));
    ck_assert_int_eq(keelctl("workflow start --id x --task-queue q", &o), 2);
    ck_assert_int_eq(keelctl("workflow start --id x --type T --task-queue q --input '{bad'", &o),
                     1);
    ck_assert_ptr_nonnull(strstr(o.err, "not valid JSON"));
    ck_assert_int_eq(
        keelctl("workflow start --id x --type T --task-queue q --id-reuse-policy sometimes", &o),
        2);
    ck_assert_ptr_nonnull(strstr(o.err, "reject-duplicate"));
    ck_assert_int_eq(
        keelctl("workflow start --id x --type T --task-queue q --search-attribute Nope=1", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "'Nope' is not registered"));
    ck_assert_int_eq(keelctl("workflow start --id x --type T --task-queue q --memo novalue", &o),
                     2);
    ck_assert_int_eq(keelctl("workflow signal --id x", &o), 2);
    ck_assert_int_eq(keelctl("workflow query --id x", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "__stack_trace"));
    ck_assert_int_eq(keelctl("workflow signal-with-start --id x --type T --task-queue q", &o), 2);
    ck_assert_int_eq(keelctl("workflow query --id keel-no-such-workflow --name status", &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "NOT_FOUND"));
    ck_assert_int_eq(keelctl("workflow list --limit lots", &o), 2);
    ck_assert_int_eq(keelctl("workflow update --id x", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "--name"));
    ck_assert_int_eq(keelctl("workflow update --id keel-no-such-workflow --name decide", &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "NOT_FOUND"));
    ck_assert_int_eq(keelctl("activity complete --id x", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "--activity-id"));
    ck_assert_int_eq(keelctl("activity fail --id x --activity-id 1", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "--reason"));
    ck_assert_int_eq(keelctl("activity complete --id keel-no-such-workflow --activity-id 1", &o),
                     1);
}
END_TEST

/* Offline schema validation: exit 0 valid, 1 invalid (one line per error), 2 unusable input. */
START_TEST(schema_validate_reports_each_error)
{
    output o;
    char schema[] = "/tmp/keelctl-schema-XXXXXX", good[] = "/tmp/keelctl-good-XXXXXX",
         bad[] = "/tmp/keelctl-bad-XXXXXX", args[512];
    const char *texts[] = {"{\"type\":\"object\",\"properties\":{\"qty\":{\"type\":"
                           "\"integer\",\"minimum\":1}},\"required\":[\"qty\"],"
                           "\"additionalProperties\":false}",
                           "{\"qty\":3}", "{\"qty\":0,\"x\":1}"};
    char *paths[] = {schema, good, bad};
    for (int i = 0; i < 3; i++) {
        int fd = mkstemp(paths[i]);
        ck_assert_int_eq(write(fd, texts[i], strlen(texts[i])), (ssize_t)strlen(texts[i]));
        close(fd);
    }
    snprintf(args, sizeof args, "schema validate --schema %s --instance %s", schema, good);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    snprintf(args, sizeof args, "schema validate --schema %s --instance %s", schema, bad);
    ck_assert_int_eq(keelctl(args, &o), 1);
    ck_assert_msg(strstr(o.out, "/qty: 0 is less than the minimum 1") != NULL, "%s", o.out);
    ck_assert_msg(strstr(o.out, "/x: property 'x' is not allowed") != NULL, "%s", o.out);
    /* The schema as an instance of itself is fine; an instance file that is not JSON is not. */
    snprintf(args, sizeof args, "schema validate --schema %s --instance /nonexistent.json", schema);
    ck_assert_int_eq(keelctl(args, &o), 2);
    snprintf(args, sizeof args, "schema validate --schema %s --instance %s", bad, good);
    ck_assert_int_eq(keelctl(args, &o), 0); /* unknown keywords are ignored */
    ck_assert_int_eq(keelctl("schema validate", &o), 2);
    for (int i = 0; i < 3; i++)
        unlink(paths[i]);
}
END_TEST

/* Offline replay: no server involved; recorded histories of keel's workflows. */
START_TEST(agent_commands_migrate_list_tools_and_show_conversations)
{
    output o;
    ck_assert_msg(keelctl("db migrate", &o) == 0, "%s", o.err);
    ck_assert_ptr_nonnull(strstr(o.out, "applied"));
    ck_assert_msg(keelctl("db seed", &o) == 0, "%s", o.err);
    ck_assert_ptr_nonnull(strstr(o.out, "demo data loaded"));
    ck_assert_int_eq(keelctl("db drop", &o), 2);

    ck_assert_msg(keelctl("--json tool list", &o) == 0, "%s", o.err);
    cJSON *tools = cJSON_Parse(o.out);
    ck_assert_msg(cJSON_IsArray(tools), "%s", o.out);
    bool po_seen = false;
    cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
        ck_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(t, "parameters")));
        if (strcmp(name, "create_purchase_order") == 0) {
            po_seen = true;
            ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "risk")),
                             "high-impact");
        }
    }
    cJSON_Delete(tools);
    ck_assert(po_seen);

    /* An unknown conversation is empty, not an error. */
    ck_assert_msg(keelctl("conversation show --id no-such-conversation", &o) == 0, "%s", o.err);
    ck_assert_ptr_nonnull(strstr(o.out, "[]"));
    ck_assert_int_eq(keelctl("conversation show", &o), 2);
}
END_TEST

START_TEST(replay_checks_a_history_against_the_code)
{
    output o;
    ck_assert_int_eq(keelctl("replay", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "--history FILE and --workflow TYPE"));
    ck_assert_int_eq(keelctl("replay --history /dev/null --workflow NoSuchType", &o), 2);
    ck_assert_ptr_nonnull(strstr(o.err, "keel.Approval"));
    ck_assert_int_eq(keelctl("replay --history /nonexistent.json --workflow keel.Approval", &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "/nonexistent.json"));
    ck_assert_int_eq(keelctl("replay --history tests/replay/keel.Approval/signal.json "
                             "--workflow keel.Approval",
                             &o),
                     0);
    ck_assert_ptr_nonnull(strstr(o.out, "every command matches"));
}
END_TEST

START_TEST(schedule_commands)
{
    output o;
    char args[512], id[96];
    snprintf(id, sizeof id, "keelctl-sched-%ld", (long)getpid());
    snprintf(args, sizeof args,
             "schedule create --id %s --every 2h --type Procurement --task-queue q --paused "
             "--note 'not yet' --overlap buffer-one",
             id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    snprintf(args, sizeof args, "--json schedule describe --id %s", id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    cJSON *j = cJSON_Parse(o.out);
    ck_assert_msg(j != NULL, "not JSON: %s", o.out);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "spec")->valuestring, "every 2h");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "paused")));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "note")->valuestring, "not yet");
    cJSON_Delete(j);
    snprintf(args, sizeof args, "schedule unpause --id %s", id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    snprintf(args, sizeof args, "schedule delete --id %s", id);
    ck_assert_msg(keelctl(args, &o) == 0, "%s", o.err);
    snprintf(args, sizeof args, "schedule describe --id %s", id);
    ck_assert_int_eq(keelctl(args, &o), 1);
    ck_assert_ptr_nonnull(strstr(o.err, "NOT_FOUND"));
    ck_assert_int_eq(keelctl("schedule create --id x --type T --task-queue q", &o), 2);
    ck_assert_int_eq(
        keelctl("schedule create --id x --every 1h --type T --task-queue q --overlap never", &o),
        2);
    ck_assert_ptr_nonnull(strstr(o.err, "buffer-one"));
    ck_assert_int_eq(keelctl("schedule trigger", &o), 2);
}
END_TEST

/* keelctl with the connection from a profile file only (TEMPORAL_ADDRESS and
 * TEMPORAL_NAMESPACE unset, HOME under build/, never the real ~/.config), the environment over
 * the file and the flags over both. */
#define PROFILE_DIR "build/tests/profile-it"
#define ONLY_FILE                                                                                  \
    "-u TEMPORAL_ADDRESS -u TEMPORAL_NAMESPACE -u XDG_CONFIG_HOME -u TEMPORAL_PROFILE "            \
    "HOME=" PROFILE_DIR "/home TEMPORAL_CONFIG_FILE=" PROFILE_DIR "/keelctl.toml"

START_TEST(keelctl_connects_with_only_a_profile_file)
{
    const char *address = getenv("TEMPORAL_ADDRESS");
    ck_assert_msg(address != NULL, "TEMPORAL_ADDRESS is not set (the dev stack's env)");
    mkdir("build/tests", 0755);
    mkdir(PROFILE_DIR, 0755);
    FILE *f = fopen(PROFILE_DIR "/keelctl.toml", "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "[profile.default]\naddress = \"%s\"\nnamespace = \"default\"\n"
            "[profile.nowhere]\naddress = \"127.0.0.1:1\"\n"
            "[profile.missing_ns]\naddress = \"%s\"\nnamespace = \"clientconfig-no-such-ns\"\n",
            address, address);
    fclose(f);
    output o;
    /* The default profile of the file named by TEMPORAL_CONFIG_FILE. */
    ck_assert_msg(keelctl_env(ONLY_FILE, "namespace describe default", &o) == 0, "%s", o.err);
    ck_assert_ptr_nonnull(strstr(o.out, "Name            default"));
    /* The file's address is the one used: a profile that points nowhere fails ... */
    ck_assert_int_eq(keelctl_env(ONLY_FILE, "--profile nowhere --timeout 2s system-info", &o), 1);
    ck_assert_msg(strstr(o.err, "127.0.0.1:1") != NULL, "%s", o.err);
    ck_assert_int_eq(
        keelctl_env(ONLY_FILE " TEMPORAL_PROFILE=nowhere", "--timeout 2s system-info", &o), 1);
    /* ... until a flag overrides it, */
    char args[512];
    snprintf(args, sizeof args, "--profile nowhere --address %s system-info", address);
    ck_assert_msg(keelctl_env(ONLY_FILE, args, &o) == 0, "%s", o.err);
    /* and the environment overrides the file. */
    char env[1024];
    snprintf(env, sizeof env, ONLY_FILE " TEMPORAL_ADDRESS=%s", address);
    ck_assert_msg(keelctl_env(env, "--profile nowhere system-info", &o) == 0, "%s", o.err);
    ck_assert_int_eq(
        keelctl_env(ONLY_FILE " TEMPORAL_ADDRESS=127.0.0.1:1", "--timeout 2s system-info", &o), 1);
    /* The namespace comes from the profile too. */
    ck_assert_int_eq(keelctl_env(ONLY_FILE, "--profile missing_ns search-attribute list", &o), 1);
    ck_assert_msg(strstr(o.err, "clientconfig-no-such-ns") != NULL, "%s", o.err);
    /* --config-file over TEMPORAL_CONFIG_FILE; --disable-config-file reads none. */
    ck_assert_int_eq(
        keelctl_env(ONLY_FILE, "--config-file " PROFILE_DIR "/absent.toml system-info", &o), 2);
    ck_assert_msg(strstr(o.err, "absent.toml' (named by the options) does not exist") != NULL, "%s",
                  o.err);
    ck_assert_int_eq(keelctl_env(ONLY_FILE, "--profile staging system-info", &o), 2);
    ck_assert_msg(strstr(o.err, "the client profile 'staging' is not in") != NULL, "%s", o.err);
    ck_assert_int_eq(keelctl_env(ONLY_FILE,
                                 "--disable-config-file --profile staging --timeout 2s "
                                 "--address 127.0.0.1:1 system-info",
                                 &o),
                     1);
    /* Strict TOML: a broken file is refused with its line and column. */
    f = fopen(PROFILE_DIR "/broken.toml", "w");
    ck_assert_ptr_nonnull(f);
    fputs("[profile.default]\naddress = [\"a\"]\n", f);
    fclose(f);
    ck_assert_int_eq(
        keelctl_env(ONLY_FILE, "--config-file " PROFILE_DIR "/broken.toml system-info", &o), 2);
    ck_assert_msg(strstr(o.err, "broken.toml: line 2, column 11: arrays are not supported") != NULL,
                  "%s", o.err);
}
END_TEST

Suite *keelctl_suite(void)
{
    Suite *s = suite_create("keelctl");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, system_info_json_names_the_version);
    tcase_add_test(tc, namespace_describe_default);
    tcase_add_test(tc, errors_name_address_rpc_and_status);
    tcase_add_test(tc, usage_errors_exit_2);
    tcase_add_test(tc, if_not_exists_makes_registration_idempotent);
    tcase_add_test(tc, workflow_commands_round_trip);
    tcase_add_test(tc, workflow_usage_errors);
    tcase_add_test(tc, replay_checks_a_history_against_the_code);
    tcase_add_test(tc, schema_validate_reports_each_error);
    tcase_add_test(tc, agent_commands_migrate_list_tools_and_show_conversations);
    tcase_add_test(tc, schedule_commands);
    tcase_add_test(tc, keelctl_connects_with_only_a_profile_file);
    suite_add_tcase(s, tc);
    return s;
}
