-- Per-recipient policy (issue 20): each tenant's settings at three scopes,
-- `global`, a domain (`example.net`) or an exact address
-- (`ann@example.net`), one row per key that scope sets (`record/src/policy.rs`
-- says the keys, their values and how the levels resolve). `value` is the
-- key's value as JSON (text, as SQLite keeps it). Read per message by every
-- node (one query for the recipient's three scopes, by the primary key), so
-- a change applies to the next message everywhere, without a restart.
CREATE TABLE policies (
    tenant_id BIGINT NOT NULL,
    scope TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);
