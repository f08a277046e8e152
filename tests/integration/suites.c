/* The integration test binary: suites that talk to the dev stack's real Temporal server. */
#include "suites.h"

Suite *rpc_suite(void);
Suite *keelctl_suite(void);
Suite *tls_suite(void);
Suite *execution_suite(void);
Suite *worker_suite(void);
Suite *recovery_suite(void);
Suite *approval_suite(void);
Suite *keel_worker_suite(void);
Suite *ledger_suite(void);
Suite *procurement_tools_suite(void);
Suite *agent_suite(void);
Suite *procurement_suite(void);
Suite *agent_task_suite(void);
Suite *batch_suite(void);
Suite *hostile_suite(void);
Suite *deployment_suite(void);
Suite *local_activity_suite(void);
Suite *slots_suite(void);
Suite *eager_start_suite(void);

const keel_test_suite *keel_test_suites(void)
{
    static const keel_test_suite suites[] = {
        {"rpc", rpc_suite},
        {"keelctl", keelctl_suite},
        {"tls", tls_suite},
        {"execution", execution_suite},
        {"worker", worker_suite},
        {"recovery", recovery_suite},
        {"approval", approval_suite},
        {"keel-worker", keel_worker_suite},
        {"ledger", ledger_suite},
        {"procurement-tools", procurement_tools_suite},
        {"agent", agent_suite},
        {"procurement", procurement_suite},
        {"agent-task", agent_task_suite},
        {"batch", batch_suite},
        {"hostile", hostile_suite},
        {"deployment", deployment_suite},
        {"local-activity", local_activity_suite},
        {"slots", slots_suite},
        {"eager-start", eager_start_suite},
        {NULL, NULL},
    };
    return suites;
}
