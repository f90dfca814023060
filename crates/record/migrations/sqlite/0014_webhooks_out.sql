-- Webhooks out (issue 19): a tenant's endpoints, the deliveries queued to
-- them from the event log, and the log of every attempt. Times are
-- milliseconds since the Unix epoch. `record/src/webhooks.rs` says how
-- the record is tailed (scan_*) and how deliveries are claimed (lease*).
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    url TEXT NOT NULL,
    description TEXT,
    -- JSON array of event types; [] for every type.
    events TEXT NOT NULL DEFAULT '[]',
    -- `whsec_...`; the one before a rotation signs beside it until old_secret_until.
    secret TEXT NOT NULL,
    old_secret TEXT,
    old_secret_until INTEGER,
    status TEXT NOT NULL DEFAULT 'enabled',
    disabled_reason TEXT,
    disabled_at INTEGER,
    -- The first failed attempt since the last success (auto-disable).
    failing_since INTEGER,
    batch_max INTEGER,
    batch_wait_ms INTEGER,
    created_at INTEGER NOT NULL,
    -- The tail of the event log: every event up to scan_cursor is queued;
    -- scan_head is the highest read; scan_mark (read by scan_mark_at) is
    -- where the cursor moves at the next sweep.
    scan_cursor INTEGER NOT NULL,
    scan_head INTEGER NOT NULL,
    scan_mark INTEGER NOT NULL,
    scan_mark_at INTEGER NOT NULL,
    -- When a node may scan next (a claim holds it for a while).
    scan_due INTEGER NOT NULL DEFAULT 0,
    scan_lease TEXT
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

-- One row per (endpoint, event, member): the unique key is what makes a
-- re-scan harmless. member is -1 for an event of its own, the recipient's
-- index for one of the recipients an event several share.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    member INTEGER NOT NULL,
    webhook_id TEXT NOT NULL,
    body TEXT NOT NULL,
    -- pending, delivered or failed (no retries left).
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER NOT NULL,
    -- A worker's claim, until lease_until (then anyone may take it again).
    lease_until INTEGER NOT NULL DEFAULT 0,
    lease TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (endpoint_id, event_id, member)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (updated_at) WHERE state <> 'pending';

-- Every attempt (kind 'attempt') and what happened to the endpoint
-- ('endpoint.disabled'), kept [webhooks] delivery_log_days.
CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_id INTEGER,
    webhook_id TEXT,
    attempt INTEGER,
    at INTEGER NOT NULL,
    url TEXT,
    status INTEGER,
    response TEXT,
    latency_ms INTEGER,
    error TEXT,
    outcome TEXT
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
