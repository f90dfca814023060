-- Per-recipient policy (issue 20): each tenant's settings at three scopes,
-- `global`, a domain (`example.net`) or an exact address
-- (`ann@example.net`), one row per key that scope sets (`record/src/policy.rs`
-- says the keys, their values and how the levels resolve). `value` is the
-- key's value as JSON. Read per message (one query for the recipient's
-- three scopes, by the primary key), so a change applies to the next
-- message on every node.
CREATE TABLE policies (
    tenant_id INTEGER NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);
