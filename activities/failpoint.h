/*
 * activities/failpoint.h - test-only crash points.
 *
 * keel_failpoint("name") ends the process with _exit(137), the status of a SIGKILLed process,
 * when the environment variable KEEL_FAILPOINT equals "name"; otherwise it does nothing. The
 * crash tests put one right after an effect is made durable (a ledger write, a committed
 * purchase order) and before the activity reports it, where a real crash would hurt most.
 */
#ifndef KEEL_ACTIVITIES_FAILPOINT_H
#define KEEL_ACTIVITIES_FAILPOINT_H

void keel_failpoint(const char *name);

#endif
