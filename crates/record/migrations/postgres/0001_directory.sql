-- Who is who, shared by every node: tenants and their API keys, submission
-- users, store accounts (and which tenant each belongs to), and each
-- tenant's suppression list. Times are milliseconds since the Unix epoch;
-- addresses are stored lower-case. (The SQLite schema's tables of the same
-- names, in one step.)
CREATE TABLE tenants (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Keys are 256-bit random strings: a SHA-256 of the key is enough.
CREATE TABLE api_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    prefix TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Submission users: name and an argon2id PHC hash. Passwords are never stored.
CREATE TABLE users (
    name TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    tenant_id BIGINT REFERENCES tenants(id)
);

-- The quarantine store's accounts (their folders and copies are the
-- store's own tables).
CREATE TABLE accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    retention_days BIGINT NOT NULL DEFAULT 30,
    created_at BIGINT NOT NULL,
    tenant_id BIGINT REFERENCES tenants(id)
);

-- Listed in address order byte by byte, as on SQLite (collation "C").
CREATE TABLE suppressions (
    tenant_id BIGINT NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (tenant_id, address)
);
