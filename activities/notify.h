/*
 * activities/notify.h - the `notify` tool: a message to a Slack-compatible incoming webhook
 * (POST {"text": ...}), delivered once per idempotency key.
 *
 * A webhook is outside the database, so "once" comes from the ledger's effect claims: the first
 * attempt claims the key, posts, and records the answer; a retry after that returns the record
 * without posting. An attempt that dies between its post and the record, or whose post got no
 * answer (a timeout), leaves a claim that a later attempt takes over after the lease (30 s): the
 * message may then arrive twice, and otherwise arrives once. A post the webhook answered with an
 * error releases the claim, so that a retry can post again.
 */
#ifndef KEEL_ACTIVITIES_NOTIFY_H
#define KEEL_ACTIVITIES_NOTIFY_H

#include "activities/tools.h"

extern const keel_tool keel_notify_tool;

#endif
