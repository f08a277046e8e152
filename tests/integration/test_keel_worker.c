/*
 * keel-worker as operators run it ($KEEL_WORKER, set by the Makefile): it serves keel's
 * workflows on KEEL_TASK_QUEUE, logs one logfmt record per line, stops cleanly on SIGTERM, and
 * refuses bad settings with exit 2 naming the variable.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keel/keel.h"

/* Start keel-worker with `name=value` in its environment (name NULL: none), stderr to log. */
static pid_t spawn(const char *queue, const char *name, const char *value, const char *log)
{
    const char *bin = getenv("KEEL_WORKER");
    ck_assert_msg(bin != NULL, "KEEL_WORKER is not set (make test-integration sets it)");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("KEEL_TASK_QUEUE", queue, 1);
        setenv("KEEL_SHUTDOWN_GRACE", "2s", 1);
        if (name)
            setenv(name, value, 1);
        if (freopen(log, "w", stderr) == NULL)
            _exit(126);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The log so far, in a static buffer. */
static const char *read_log(const char *log)
{
    static char buf[65536];
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    for (int i = 0; i < 300; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    ck_abort_msg("keel-worker did not exit within 15 s");
    return -1;
}

START_TEST(keel_worker_serves_the_registry_and_stops_on_sigterm)
{
    char queue[96], id[128], log[] = "/tmp/keel-worker-log-XXXXXX";
    close(mkstemp(log));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(queue, sizeof queue, "keel-process-%ld-%ld", (long)getpid(), (long)ts.tv_nsec);
    snprintf(id, sizeof id, "%s-approval", queue);
    pid_t pid = spawn(queue, NULL, NULL, log);
    for (int i = 0; i < 600 && !strstr(read_log(log), "msg=polling"); i++)
        usleep(50 * 1000);
    ck_assert_msg(strstr(read_log(log), "msg=polling") != NULL, "not polling: %s", read_log(log));
    ck_assert_ptr_nonnull(strstr(read_log(log), "workflows=keel.Approval"));

    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    keel_client *c;
    ck_assert_int_eq(keel_client_new(&c, &o, &err), KEEL_OK);
    keel_workflow_start_options so;
    keel_workflow_start_options_init(&so, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    so.workflow_id = id;
    so.workflow_type = "keel.Approval";
    so.task_queue = queue;
    so.input_json = "{\"subject\":\"3 desks\",\"requester\":\"rita\",\"approvers\":[\"ana\"]}";
    ck_assert_msg(keel_client_workflow_start(c, &so, NULL, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_workflow_signal(c, id, NULL, "approve",
                                              "{\"approver\":\"ana\",\"comment\":\"fine\"}",
                                              &err) == KEEL_OK,
                  "%s", err.message);
    keel_workflow_outcome out;
    ck_assert_msg(keel_client_workflow_result(c, id, NULL, 30000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_ptr_nonnull(strstr(out.result_json, "\"approved\""));
    keel_workflow_outcome_dispose(&out);
    keel_client_free(c);

    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(wait_exit(pid), 0);
    const char *text = read_log(log);
    ck_assert_msg(strstr(text, "msg=\"shutting down\" signal=SIGTERM") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "msg=stopped workflow_tasks_completed=") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "workflow_tasks_failed=0") != NULL, "%s", text);
    /* One record per line, each a logfmt record. */
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        ck_assert_msg(strncmp(line, "ts=", 3) == 0, "not a log record: %.200s", line);
        ck_assert_ptr_nonnull(strchr(line, '\n'));
    }
    unlink(log);
}
END_TEST

START_TEST(keel_worker_refuses_bad_settings)
{
    char log[] = "/tmp/keel-worker-log-XXXXXX";
    close(mkstemp(log));
    pid_t pid = spawn("q", "KEEL_MAX_CONCURRENT_ACTIVITIES", "lots", log);
    ck_assert_int_eq(wait_exit(pid), 2);
    ck_assert_msg(strstr(read_log(log), "setting=KEEL_MAX_CONCURRENT_ACTIVITIES") != NULL, "%s",
                  read_log(log));
    pid = spawn("q", "KEEL_SHUTDOWN_GRACE", "soon", log);
    ck_assert_int_eq(wait_exit(pid), 2);
    ck_assert_ptr_nonnull(strstr(read_log(log), "'soon'"));
    unlink(log);
}
END_TEST

/* Start keel-worker with the connection from a profile file only: no TEMPORAL_ADDRESS or
 * TEMPORAL_NAMESPACE, HOME and XDG_CONFIG_HOME pointing under build/ (never the real
 * ~/.config). */
static pid_t spawn_with_profile(const char *queue, const char *file, const char *profile,
                                const char *log)
{
    const char *bin = getenv("KEEL_WORKER");
    ck_assert_msg(bin != NULL, "KEEL_WORKER is not set (make test-integration sets it)");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        unsetenv("TEMPORAL_ADDRESS");
        unsetenv("TEMPORAL_NAMESPACE");
        unsetenv("XDG_CONFIG_HOME");
        setenv("HOME", "build/tests/profile-it/home", 1);
        setenv("TEMPORAL_CONFIG_FILE", file, 1);
        setenv("TEMPORAL_PROFILE", profile, 1);
        setenv("KEEL_TASK_QUEUE", queue, 1);
        setenv("KEEL_SHUTDOWN_GRACE", "2s", 1);
        if (freopen(log, "w", stderr) == NULL)
            _exit(126);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    return pid;
}

START_TEST(keel_worker_connects_with_only_a_profile_file)
{
    const char *address = getenv("TEMPORAL_ADDRESS");
    const char *ns = getenv("TEMPORAL_NAMESPACE");
    ck_assert_msg(address != NULL, "TEMPORAL_ADDRESS is not set (the dev stack's env)");
    mkdir("build/tests", 0755);
    mkdir("build/tests/profile-it", 0755);
    const char *file = "build/tests/profile-it/keel-worker.toml";
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "# written by the keel-worker integration suite\n"
            "[profile.default]\naddress = \"127.0.0.1:1\"  # nothing listens: not this one\n"
            "[profile.clientconfig]\naddress = \"%s\"\nnamespace = \"%s\"\n"
            "[profile.clientconfig.grpc_meta]\nx_keel_profile_test = \"1\"\n"
            "[profile.unreachable]\naddress = \"127.0.0.1:1\"\n",
            address, ns ? ns : "default");
    fclose(f);

    char queue[96], id[128], log[] = "build/tests/profile-it/keel-worker-log-XXXXXX";
    close(mkstemp(log));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(queue, sizeof queue, "clientconfig-profile-%ld-%ld", (long)getpid(), (long)ts.tv_nsec);
    snprintf(id, sizeof id, "%s-approval", queue);

    /* The profile that points nowhere: the worker cannot reach the server, so the address
     * really comes from the file. */
    pid_t pid = spawn_with_profile(queue, file, "unreachable", log);
    ck_assert_int_ne(wait_exit(pid), 0);
    ck_assert_msg(strstr(read_log(log), "127.0.0.1:1") != NULL, "%s", read_log(log));
    /* A profile the file does not have: exit 2, naming it. */
    pid = spawn_with_profile(queue, file, "staging", log);
    ck_assert_int_eq(wait_exit(pid), 2);
    ck_assert_msg(strstr(read_log(log), "the client profile 'staging' is not in") != NULL, "%s",
                  read_log(log));

    pid = spawn_with_profile(queue, file, "clientconfig", log);
    for (int i = 0; i < 600 && !strstr(read_log(log), "msg=polling"); i++)
        usleep(50 * 1000);
    ck_assert_msg(strstr(read_log(log), "msg=polling") != NULL, "not polling: %s", read_log(log));
    ck_assert_msg(strstr(read_log(log), "msg=\"client profile\"") != NULL, "%s", read_log(log));
    ck_assert_ptr_nonnull(strstr(read_log(log), "profile=clientconfig"));

    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    keel_client *c;
    ck_assert_int_eq(keel_client_new(&c, &o, &err), KEEL_OK);
    keel_workflow_start_options so;
    keel_workflow_start_options_init(&so, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    so.workflow_id = id;
    so.workflow_type = "keel.Approval";
    so.task_queue = queue;
    so.input_json = "{\"subject\":\"a profile\",\"requester\":\"rita\",\"approvers\":[\"ana\"]}";
    ck_assert_msg(keel_client_workflow_start(c, &so, NULL, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_workflow_signal(c, id, NULL, "approve",
                                              "{\"approver\":\"ana\",\"comment\":\"ok\"}",
                                              &err) == KEEL_OK,
                  "%s", err.message);
    keel_workflow_outcome out;
    ck_assert_msg(keel_client_workflow_result(c, id, NULL, 30000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);
    keel_client_free(c);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(wait_exit(pid), 0);
    unlink(log);
}
END_TEST

Suite *keel_worker_suite(void)
{
    Suite *s = suite_create("keel-worker");
    TCase *tc = tcase_create("process");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, keel_worker_serves_the_registry_and_stops_on_sigterm);
    tcase_add_test(tc, keel_worker_refuses_bad_settings);
    tcase_add_test(tc, keel_worker_connects_with_only_a_profile_file);
    suite_add_tcase(s, tc);
    return s;
}
