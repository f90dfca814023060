-- Outbound for applications: tenants and their API keys, the messages they
-- send, each recipient's current state, the append-only event log, the
-- suppression list, and idempotency keys. Times are milliseconds since the
-- Unix epoch; addresses are stored lower-case.
CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Keys are 256-bit random strings: a SHA-256 of the key is enough (no
-- password stretching needed), and lets a request be checked in one lookup.
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    prefix TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- Submission users may belong to a tenant: their mail takes the outbound path.
ALTER TABLE users ADD COLUMN tenant_id INTEGER REFERENCES tenants(id);

CREATE TABLE out_messages (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    message_id TEXT,
    mail_from TEXT NOT NULL,
    subject TEXT,
    stream TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE INDEX out_messages_tenant ON out_messages (tenant_id, created_at);
CREATE INDEX out_messages_message_id ON out_messages (message_id);

CREATE TABLE out_tags (
    tenant_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tenant_id, tag, message)
) WITHOUT ROWID;

CREATE TABLE out_recipients (
    message TEXT NOT NULL,
    idx INTEGER NOT NULL,
    tenant_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (message, idx)
) WITHOUT ROWID;
CREATE INDEX out_recipients_address ON out_recipients (tenant_id, address);

-- Append-only: rows are inserted, never updated or deleted.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    message TEXT NOT NULL,
    idx INTEGER,
    address TEXT,
    type TEXT NOT NULL,
    at INTEGER NOT NULL,
    reason TEXT,
    smtp_code INTEGER,
    smtp_status TEXT,
    smtp_text TEXT,
    remote TEXT,
    tls TEXT,
    detail TEXT
);
CREATE INDEX events_address ON events (tenant_id, address, id);
CREATE INDEX events_message ON events (message, id);
CREATE INDEX events_at ON events (tenant_id, at);

CREATE TABLE suppressions (
    tenant_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (tenant_id, address)
) WITHOUT ROWID;

CREATE TABLE idempotency (
    tenant_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
