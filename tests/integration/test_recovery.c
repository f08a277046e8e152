/*
 * A worker process killed with SIGKILL mid-run, and a new one started: the run completes from
 * its history. Uses the interop worker binary ($INTEROP_WORKER) as the worker process.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keel/keel.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Start the worker on queue; returns its pid once it says it is ready. *out_fd is the read end
 * of its stdout, to close after it exited (closing sooner would kill it with SIGPIPE when it
 * prints its summary). */
static pid_t spawn_worker(const char *queue, int *out_fd)
{
    const char *bin = getenv("INTEROP_WORKER");
    ck_assert_msg(bin != NULL, "INTEROP_WORKER is not set (make test-integration sets it)");
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(bin, bin, queue, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[512] = "";
    size_t len = 0;
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    for (int64_t until = now_ms() + 30000; !strstr(buf, "ready") && now_ms() < until;) {
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t n = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
    }
    *out_fd = fds[0];
    ck_assert_msg(strstr(buf, "ready") != NULL, "worker did not get ready: %s", buf);
    return pid;
}

START_TEST(a_worker_killed_mid_run_is_replaced_and_the_run_completes)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    keel_client *c;
    ck_assert_int_eq(keel_client_new(&c, &o, &err), KEEL_OK);
    char queue[96], id[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(queue, sizeof queue, "keel-recovery-%ld-%ld", (long)getpid(), (long)ts.tv_nsec);
    snprintf(id, sizeof id, "%s-run", queue);

    int first_out, second_out;
    pid_t first = spawn_worker(queue, &first_out);
    keel_workflow_start_options so;
    keel_workflow_start_options_init(&so, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    so.workflow_id = id;
    so.workflow_type = "InteropGreeting";
    so.task_queue = queue;
    so.input_json = "{\"name\":\"Kim\"}";
    ck_assert_msg(keel_client_workflow_start(c, &so, NULL, &err) == KEEL_OK, "%s", err.message);
    /* The first worker has run the workflow up to its wait. */
    char *stage = NULL;
    for (int64_t until = now_ms() + 15000; now_ms() < until; usleep(100 * 1000)) {
        free(stage);
        stage = NULL;
        if (keel_client_workflow_query(c, id, NULL, "stage", NULL, &stage, &err) == KEEL_OK)
            break;
    }
    ck_assert_msg(stage != NULL, "%s", err.message);
    ck_assert_str_eq(stage, "\"waiting for approval\"");
    free(stage);

    /* No goodbye: its sticky queue is left behind, its cache lost. */
    ck_assert_int_eq(kill(first, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(first, &status, 0), first);
    ck_assert(WIFSIGNALED(status));
    close(first_out);

    pid_t second = spawn_worker(queue, &second_out);
    ck_assert_int_eq(keel_client_workflow_signal(c, id, NULL, "approve", "{\"by\":\"ops\"}", &err),
                     KEEL_OK);
    keel_workflow_outcome out;
    ck_assert_msg(keel_client_workflow_result(c, id, NULL, 60000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s",
                  out.failure_message ? out.failure_message : "");
    ck_assert_ptr_nonnull(strstr(out.result_json, "Hello, Kim!"));
    ck_assert_ptr_nonnull(strstr(out.result_json, "\"approvedBy\":\"ops\""));
    keel_workflow_outcome_dispose(&out);

    ck_assert_int_eq(kill(second, SIGTERM), 0);
    ck_assert_int_eq(waitpid(second, &status, 0), second);
    close(second_out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "second worker: status %d",
                  status);
    keel_client_free(c);
}
END_TEST

Suite *recovery_suite(void)
{
    Suite *s = suite_create("recovery");
    TCase *tc = tcase_create("process");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_worker_killed_mid_run_is_replaced_and_the_run_completes);
    suite_add_tcase(s, tc);
    return s;
}
