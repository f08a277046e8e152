-- keel: the procurement system the business tools act on (activities/procurement.c).
--
-- Conventions:
-- * Money is numeric(14,2) in US dollars; the tools pass it as text and never through floats.
-- * Budget periods are calendar quarters in UTC, spelled '2026-Q4' (a yearly budget may be
--   spelled 'FY2026'); "the current period" is proc_current_period() by the database clock.
-- * Documents get human-readable numbers from sequences (REQ-000123, PO-2026-000042, Q-000007).
--   A number is never reused; gaps (a rolled-back or conflicting insert) are acceptable.
-- * Every write a tool makes is keyed by the activity's idempotency key under a unique
--   constraint, so a retried or duplicated activity finds its first effect instead of repeating it.

-- Document numbers: the prefix and at least six digits, never truncated (lpad alone would cut a
-- seven-digit number and produce duplicates).
CREATE FUNCTION proc_doc_number(prefix text, n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT prefix || lpad(n::text, greatest(6, length(n::text)), '0') $$;

-- The budget period that contains a moment: its calendar quarter in UTC.
CREATE FUNCTION proc_period_of(at timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT
    AS $$ SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-"Q"Q') $$;

CREATE FUNCTION proc_current_period() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT proc_period_of(now()) $$;

-- Money as people read it: 'USD 12,400.00' (',' and '.' are literal here, not the locale's).
CREATE FUNCTION proc_usd(amount numeric) RETURNS text
    LANGUAGE sql STABLE STRICT
    AS $$ SELECT 'USD ' || to_char(amount, 'FM999,999,999,999,990.00') $$;

-- Order lines as the tools store them: [{description, quantity, unit_price_usd}] in, the same
-- with line_total_usd = quantity x unit price (both rounded to cents) out. Totals are computed
-- here from the lines, never taken from a model.
CREATE FUNCTION proc_priced_lines(lines jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'description', l ->> 'description',
               'quantity', (l ->> 'quantity')::integer,
               'unit_price_usd', round((l ->> 'unit_price_usd')::numeric, 2),
               'line_total_usd',
               round((l ->> 'quantity')::integer * round((l ->> 'unit_price_usd')::numeric, 2), 2))
               ORDER BY ord), '[]'::jsonb)
    FROM jsonb_array_elements(lines) WITH ORDINALITY AS t(l, ord)
    $$;

CREATE FUNCTION proc_lines_total(priced jsonb) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
    SELECT coalesce(sum((l ->> 'line_total_usd')::numeric), 0)::numeric(14, 2)
    FROM jsonb_array_elements(priced) AS l
    $$;

-- Cost centres: the organisational units that own budgets and pay for what they order.
CREATE TABLE cost_centers (
    id    text PRIMARY KEY CHECK (id <> ''), -- 'CC-1001'
    name  text NOT NULL,                     -- 'Engineering'
    owner text NOT NULL                      -- the budget owner's person id (an email)
);

-- Budgets: how much a cost centre may spend in a period (amount_usd) and how much purchase
-- orders have already committed against it (committed_usd, the encumbrance). Available is
-- amount - committed. committed_usd only ever grows through create_purchase_order.
CREATE TABLE budgets (
    cost_center   text NOT NULL REFERENCES cost_centers (id),
    period        text NOT NULL CHECK (period ~ '^([0-9]{4}-Q[1-4]|FY[0-9]{4})$'),
    amount_usd    numeric(14, 2) NOT NULL CHECK (amount_usd >= 0),
    committed_usd numeric(14, 2) NOT NULL DEFAULT 0 CHECK (committed_usd >= 0),
    PRIMARY KEY (cost_center, period)
);

-- Purchasing categories and the certifications a vendor must hold to supply them (e.g. IT
-- hardware touches company data, so its suppliers need ISO27001).
CREATE TABLE categories (
    id                      text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]+$'), -- 'it-hardware'
    name                    text NOT NULL,
    required_certifications text[] NOT NULL DEFAULT '{}'
);

-- The vendor master, including the approved vendor list: only status 'approved' vendors may be
-- quoted or ordered from. quote_notes is vendor-supplied free text copied into every quote the
-- vendor gives: untrusted data for the tools and the model, never instructions.
CREATE TABLE vendors (
    id             text PRIMARY KEY CHECK (id <> ''), -- 'V-ACME'
    name           text NOT NULL,
    status         text NOT NULL CHECK (status IN ('approved', 'suspended', 'pending')),
    certifications text[] NOT NULL DEFAULT '{}', -- 'ISO9001', 'ISO27001', 'SOC2', ...
    categories     text[] NOT NULL DEFAULT '{}', -- category ids the vendor is approved for
    quote_notes    text NOT NULL DEFAULT ''
);

-- Vendor catalog prices: what request_quotes prices lines from.
CREATE TABLE catalog_items (
    vendor_id      text NOT NULL REFERENCES vendors (id),
    sku            text NOT NULL,
    category       text NOT NULL REFERENCES categories (id),
    description    text NOT NULL,
    unit_price_usd numeric(14, 2) NOT NULL CHECK (unit_price_usd >= 0),
    lead_time_days integer NOT NULL CHECK (lead_time_days >= 0),
    PRIMARY KEY (vendor_id, sku)
);
CREATE INDEX catalog_items_category ON catalog_items (category);

CREATE SEQUENCE quote_number_seq;

-- Quotes: one per vendor per request_quotes call, kept so that a retried call returns the same
-- quotes (unique per idempotency key and vendor). notes is copied from vendors.quote_notes.
CREATE TABLE quotes (
    id              text PRIMARY KEY DEFAULT proc_doc_number('Q-', nextval('quote_number_seq')),
    idempotency_key text NOT NULL,
    vendor_id       text NOT NULL REFERENCES vendors (id),
    category        text NOT NULL REFERENCES categories (id),
    items           jsonb NOT NULL, -- priced lines, each with the sku it was priced from
    total_usd       numeric(14, 2) NOT NULL CHECK (total_usd >= 0),
    lead_time_days  integer NOT NULL,
    valid_until     date NOT NULL,
    notes           text NOT NULL DEFAULT '', -- vendor-supplied free text, verbatim
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (idempotency_key, vendor_id)
);

CREATE SEQUENCE requisition_number_seq;

-- Purchase requisitions: what someone asked to buy. The batch workflow picks up the pending
-- ones; the procurement workflow moves them through in_progress to approved or rejected, and
-- create_purchase_order marks them ordered (a final status).
CREATE TABLE requisitions (
    id              text PRIMARY KEY
                    DEFAULT proc_doc_number('REQ-', nextval('requisition_number_seq')),
    idempotency_key text NOT NULL UNIQUE,
    requester       text NOT NULL,
    cost_center     text NOT NULL REFERENCES cost_centers (id),
    category        text NOT NULL REFERENCES categories (id),
    items           jsonb NOT NULL, -- priced lines (proc_priced_lines)
    total_usd       numeric(14, 2) NOT NULL CHECK (total_usd >= 0),
    needed_by       date NOT NULL,
    justification   text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress',
                    'approved', 'rejected', 'ordered', 'failed')),
    status_note     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX requisitions_pending ON requisitions (created_at, id) WHERE status = 'pending';

CREATE SEQUENCE purchase_order_number_seq;

-- Purchase orders: money committed to a vendor. The number carries the year the PO was created
-- (UTC) and a company-wide sequence: PO-2026-000042. One PO per idempotency key, and at most
-- one per requisition; budget_period is the period whose budget the PO committed.
CREATE TABLE purchase_orders (
    po_number       text PRIMARY KEY DEFAULT proc_doc_number(
                        'PO-' || to_char(now() AT TIME ZONE 'UTC', 'YYYY') || '-',
                        nextval('purchase_order_number_seq')),
    idempotency_key text NOT NULL UNIQUE,
    requisition_id  text REFERENCES requisitions (id),
    vendor_id       text NOT NULL REFERENCES vendors (id),
    cost_center     text NOT NULL REFERENCES cost_centers (id),
    budget_period   text NOT NULL,
    items           jsonb NOT NULL, -- priced lines (proc_priced_lines)
    total_usd       numeric(14, 2) NOT NULL CHECK (total_usd >= 0),
    approvers       text[] NOT NULL DEFAULT '{}', -- who approved it, in order
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX purchase_orders_one_per_requisition ON purchase_orders (requisition_id)
    WHERE requisition_id IS NOT NULL;

-- The delegation-of-authority directory: who may approve how much for which cost centre. A
-- company-wide role (the CFO) has no cost centre. An inactive approver (on leave) is replaced by
-- their delegate, who decides within the absent approver's limit.
CREATE TABLE approvers (
    person      text PRIMARY KEY CHECK (person <> ''), -- 'maria.manager@example.com'
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('manager', 'director', 'cfo')),
    cost_center text REFERENCES cost_centers (id),
    limit_usd   numeric(14, 2) NOT NULL CHECK (limit_usd >= 0),
    delegate    text REFERENCES approvers (person) DEFERRABLE INITIALLY DEFERRED,
    active      boolean NOT NULL DEFAULT true,
    CHECK (delegate IS DISTINCT FROM person),
    CHECK ((role = 'cfo') = (cost_center IS NULL))
);
CREATE INDEX approvers_cost_center ON approvers (cost_center);
