-- Secrets every node must agree on (the VERP/token HMAC key), kept with
-- the state they protect: the first node to ask decides the value.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
