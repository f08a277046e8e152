-- keel: temporary cloud sandboxes, the resources of the sandbox-request example of the agent
-- workflow (activities/sandbox.c, docs/workflows/agent-task.md).
--
-- Conventions (as in 002_procurement.sql): money is numeric(14,2) in US dollars and travels as
-- text; every sandbox is created once per idempotency key (the tool activity's identity) under a
-- unique constraint.

-- The regions sandboxes can run in. at_capacity: the region takes no new sandboxes for now
-- (deploy_sandbox answers deployed:false, reason capacity, and names the alternatives).
CREATE TABLE sandbox_regions (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z]{2}-[a-z]+-[0-9]$'), -- 'eu-west-1'
    name        text NOT NULL,
    at_capacity boolean NOT NULL DEFAULT false
);

-- What a cost centre's sandboxes must respect: the regions they may run in, the tags every
-- sandbox must carry (keys), the largest budget cap one sandbox may have and its longest life.
CREATE TABLE sandbox_policies (
    cost_center        text PRIMARY KEY REFERENCES cost_centers (id),
    allowed_regions    text[] NOT NULL,
    required_tags      text[] NOT NULL DEFAULT '{}',
    max_budget_cap_usd numeric(14, 2) NOT NULL CHECK (max_budget_cap_usd > 0),
    max_ttl_hours      integer NOT NULL CHECK (max_ttl_hours BETWEEN 1 AND 720)
);

-- How much the budget caps of a cost centre's live sandboxes may add up to. What is committed is
-- not a counter: it is the sum of the caps of its sandboxes that have not expired yet, so an
-- expired sandbox gives its money back by itself.
CREATE TABLE sandbox_budgets (
    cost_center text PRIMARY KEY REFERENCES cost_centers (id),
    amount_usd  numeric(14, 2) NOT NULL CHECK (amount_usd >= 0)
);

CREATE SEQUENCE sandbox_number_seq;

-- Sandboxes: one per idempotency key. tags is a JSON object {"key": "value"}.
CREATE TABLE sandboxes (
    id              text PRIMARY KEY DEFAULT proc_doc_number('SBX-', nextval('sandbox_number_seq')),
    idempotency_key text NOT NULL UNIQUE,
    cost_center     text NOT NULL REFERENCES cost_centers (id),
    owner           text NOT NULL,
    purpose         text NOT NULL,
    region          text NOT NULL REFERENCES sandbox_regions (id),
    budget_cap_usd  numeric(14, 2) NOT NULL CHECK (budget_cap_usd > 0),
    ttl_hours       integer NOT NULL CHECK (ttl_hours > 0),
    tags            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX sandboxes_live ON sandboxes (cost_center, expires_at);
