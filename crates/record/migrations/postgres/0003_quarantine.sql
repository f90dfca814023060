-- The quarantine store, shared by every node, bytes and all: any node
-- serves any copy over IMAP. (The SQLite schema's tables of the same
-- names; `accounts` is the directory's.) A copy's bytes are stored once
-- per distinct content, named by their SHA-256.
CREATE TABLE account_domains (
    domain TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
);

CREATE TABLE folders (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    -- RFC 3501: UIDs are unique within (folder, uidvalidity) and never reused.
    uidvalidity BIGINT NOT NULL,
    uidnext BIGINT NOT NULL DEFAULT 1,
    retention_days BIGINT,
    modseq BIGINT NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);

CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);

-- A message keeps its blob (the foreign key): a sweep that finds a blob
-- unused cannot delete it under a copy being filed with the same bytes.
CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    folder_id BIGINT NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid BIGINT NOT NULL,
    blob TEXT NOT NULL REFERENCES blobs(hash),
    size BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    verdict TEXT,
    reason TEXT,
    original_message_id TEXT,
    mail_from TEXT,
    rcpts TEXT NOT NULL DEFAULT '[]',
    queue_id TEXT,
    UNIQUE (folder_id, uid)
);
CREATE INDEX messages_blob ON messages (blob);
CREATE INDEX messages_folder_received ON messages (folder_id, received_at);
CREATE INDEX messages_queue_id ON messages (queue_id) WHERE queue_id IS NOT NULL;
