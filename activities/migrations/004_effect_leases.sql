-- 004_effect_leases.sql - effect claims end: each claim has an owner and a lease, and a claim
-- whose owner did not finish within its lease is marked abandoned instead of staying claimed.
--
-- keel_effects (001_ledger.sql) guards side effects outside the database (the notify webhook).
-- A claim used to be (key, claimed_at) only: when the worker holding it died and no later attempt
-- of the same activity came (the run had closed), the row stayed 'claimed' forever and nobody
-- could tell that a message was never sent. Now:
--
--   claimed   an activity attempt (owner, attempt) holds the effect until claimed_at + lease_ms;
--             it makes the effect only within that lease (activities/notify.c).
--   done      the effect happened; result is what the holder recorded.
--   released  the holder learned the effect did not happen (the webhook refused it); reason says
--             why. A later attempt may claim it again.
--   abandoned the holder did not finish within its lease: it died or hung between its claim and
--             its record, so whether the effect happened is unknown; reason says who and when.
--             keel-worker's sweep sets it (keel_ledger_effect_sweep). A later attempt of the same
--             activity may still take it over; a late holder's record still turns it into done.
--
-- `keelctl effects list` shows what is released, abandoned or claimed past its lease: the
-- effects that may not have happened, with the payload they carried.
--
-- Compatible with workers from before this file (a rolling upgrade): their inserts get the
-- default lease and no owner, and their takeovers move claimed_at, which moves the lease's end.

ALTER TABLE keel_effects
    ADD COLUMN lease_ms     bigint NOT NULL DEFAULT 30000 CHECK (lease_ms >= 0),
    ADD COLUMN owner        text,
    ADD COLUMN attempt      integer,
    ADD COLUMN payload      text CHECK (payload IS NULL OR payload::json IS NOT NULL),
    ADD COLUMN takeovers    integer NOT NULL DEFAULT 0,
    ADD COLUMN reason       text,
    ADD COLUMN released_at  timestamptz,
    ADD COLUMN abandoned_at timestamptz;

-- 001 named its checks after the table (PostgreSQL's defaults): replace the list of states.
ALTER TABLE keel_effects DROP CONSTRAINT keel_effects_state_check;
ALTER TABLE keel_effects
    ADD CONSTRAINT keel_effects_state_check
        CHECK (state IN ('claimed', 'done', 'released', 'abandoned')),
    ADD CONSTRAINT keel_effects_released_check CHECK ((state = 'released') = (released_at IS NOT NULL)),
    ADD CONSTRAINT keel_effects_abandoned_check
        CHECK ((state = 'abandoned') = (abandoned_at IS NOT NULL));

-- The sweep reads the claims (few at any time), oldest first.
CREATE INDEX keel_effects_claimed ON keel_effects (claimed_at) WHERE state = 'claimed';
-- Operators list what may not have happened.
CREATE INDEX keel_effects_unsent ON keel_effects (claimed_at) WHERE state IN ('released', 'abandoned');
