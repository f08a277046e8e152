/*
 * keel-worker - the worker process.
 *
 * At this stage it connects to the Temporal frontend named by the TEMPORAL_* environment, prints
 * the server's version, and idles until SIGINT or SIGTERM. Polling comes with the worker core.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "keel/keel.h"

int main(void)
{
    /* Block the stop signals first so that none is lost between connecting and waiting. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop, NULL) != 0) {
        perror("keel-worker: sigprocmask");
        return 1;
    }

    keel_connect_options opts;
    keel_error err;
    keel_connect_options_init(&opts, KEEL_CONNECT_OPTIONS_VERSION);
    if (keel_connect_options_from_env(&opts, &err) != KEEL_OK ||
        keel_connect_options_validate(&opts, &err) != KEEL_OK) {
        fprintf(stderr, "keel-worker: %s\n", err.message);
        return 2;
    }
    const char *task_queue = getenv("KEEL_TASK_QUEUE");
    if (task_queue == NULL || task_queue[0] == '\0')
        task_queue = "keel";

    keel_client *client;
    if (keel_client_new(&client, &opts, &err) != KEEL_OK) {
        fprintf(stderr, "keel-worker: %s\n", err.message);
        return 1;
    }
    keel_system_info info;
    if (keel_client_system_info(client, &info, &err) != KEEL_OK) {
        fprintf(stderr, "keel-worker: %s\n", err.message);
        keel_client_free(client);
        return 1;
    }
    printf("keel-worker %s: connected to %s, Temporal server %s; namespace %s, task queue %s\n",
           KEEL_VERSION, keel_client_address(client), info.server_version,
           keel_client_namespace(client), task_queue);
    printf("keel-worker: idle until SIGINT or SIGTERM\n");
    fflush(stdout);
    keel_system_info_dispose(&info);

    int sig = 0;
    if (sigwait(&stop, &sig) != 0)
        sig = SIGTERM;
    printf("keel-worker: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    keel_client_free(client);
    return 0;
}
