-- 001_ledger.sql - keel's idempotency ledger, conversation store and once-only effects.
--
-- Applied once by keel_ledger_migrate (activities/ledger.c) inside a transaction, and recorded in
-- keel_schema_migrations with this file's SHA-256: never edit this file once it has shipped, add
-- 002_... instead (keel refuses to start against a database where an applied file has changed).
--
-- JSON is stored as text, not jsonb: keel hands back exactly the bytes it was given, so a retried
-- activity returns byte-for-byte what the first attempt returned and a provider's key order stays
-- as the provider sent it (jsonb would reorder keys, drop duplicates and rewrite whitespace). The
-- CHECK constraints parse the text as json, so a column never holds anything but valid JSON, and
-- `response::jsonb` still works for anyone who wants to query inside it.

-- One model response per activity of a run: an LLM activity stores the response here before it
-- returns it, so a retry after a crash (or a lost completion) reuses the paid-for answer instead
-- of asking the model again. request_hash identifies the request the response answers: a retry
-- that sends a different request under the same activity is an error, never a silent reuse.
CREATE TABLE keel_llm_responses (
    namespace    text NOT NULL,
    workflow_id  text NOT NULL,
    run_id       text NOT NULL,
    activity_id  text NOT NULL,
    request_hash text NOT NULL,
    model        text,
    response     text NOT NULL CHECK (response::json IS NOT NULL),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, workflow_id, run_id, activity_id)
);

-- Agent transcripts (claim check): workflows pass a conversation id instead of carrying the whole
-- transcript through their history. Each append is one activity's messages under its append_key
-- (the activity's identity), message idx its position within the append: the primary key makes a
-- retried append a no-op. seq records arrival order; a transcript reads appends in the order they
-- first arrived and each append's messages by idx.
CREATE TABLE keel_conversation_messages (
    conversation_id text NOT NULL,
    append_key      text NOT NULL,
    idx             int NOT NULL CHECK (idx >= 0),
    seq             bigserial NOT NULL,
    message         text NOT NULL CHECK (message::json IS NOT NULL),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, append_key, idx)
);

-- Loading a transcript scans one conversation in arrival order.
CREATE INDEX keel_conversation_messages_by_seq ON keel_conversation_messages (conversation_id, seq);

-- Side effects outside the database (a webhook post, an e-mail) that must happen once. An attempt
-- claims the key before acting and marks it done with the outcome afterwards; a claim whose holder
-- went quiet for longer than the caller's lease is taken over (claimed_at is the lease's start).
CREATE TABLE keel_effects (
    key        text PRIMARY KEY,
    kind       text NOT NULL,
    state      text NOT NULL CHECK (state IN ('claimed', 'done')),
    claimed_at timestamptz NOT NULL,
    done_at    timestamptz,
    result     text CHECK (result IS NULL OR result::json IS NOT NULL),
    CHECK ((state = 'done') = (done_at IS NOT NULL))
);
