-- Dashboard operators (issue 21): a name, an argon2id PHC hash, and either
-- every tenant (`all_tenants` = 1) or the tenants granted in
-- `operator_tenants`. Sessions are kept by the SHA-256 of their random
-- token (hex), never the token itself, with the CSRF secret of the forms
-- they are shown and when they end; shared, so any node answers a session.
CREATE TABLE operators (
    name TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    all_tenants BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE operator_tenants (
    operator TEXT COLLATE "C" NOT NULL REFERENCES operators(name) ON DELETE CASCADE,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    PRIMARY KEY (operator, tenant_id)
);
CREATE TABLE operator_sessions (
    token_hash TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    operator TEXT COLLATE "C" NOT NULL REFERENCES operators(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at);
