/*
 * activities/notify.h - the `notify` tool: a message to a Slack-compatible incoming webhook
 * (POST {"text": ...}), delivered once per idempotency key.
 *
 * A webhook is outside the database, so "once" comes from the ledger's effect claims
 * (activities/ledger.h): an attempt claims the key for a lease of 30 s (longer than the
 * start-to-close timeout keel.Procurement gives tool.notify), recording who it is, its attempt
 * and the message; posts only within that lease (the post ends 5 s before it at the latest); and
 * records the answer. A retry after that returns the record without posting. A webhook that
 * answers with an error gets the claim released with its answer as the reason, so that a retry
 * may post again. An attempt that dies between its claim and its record, or whose post got no
 * answer, leaves a claim that a later attempt of the same activity takes over once the lease has
 * run out (until then it fails retryably, naming the holder); if no later attempt comes (the run
 * closed), keel-worker's sweep marks the claim abandoned. So a message is posted once if its
 * worker survives; after a crash between the post and the record it may be posted twice (at least
 * once while the activity is retried); and a claim is never left `claimed` past its lease.
 * Failpoint `notify.after_claim` (activities/failpoint.h) ends the process right after a claim.
 */
#ifndef KEEL_ACTIVITIES_NOTIFY_H
#define KEEL_ACTIVITIES_NOTIFY_H

#include "activities/tools.h"

extern const keel_tool keel_notify_tool;

#endif
