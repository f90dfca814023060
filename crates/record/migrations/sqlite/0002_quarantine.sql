-- The quarantine store: accounts own folders; folders hold messages whose
-- bytes live once in content-addressed blob files (DATA/store/blobs).
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- Default retention for the account's folders, in days.
    retention_days INTEGER NOT NULL DEFAULT 30,
    created_at INTEGER NOT NULL
);

-- Which account receives the copies of mail for a domain.
CREATE TABLE IF NOT EXISTS account_domains (
    domain TEXT PRIMARY KEY NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- RFC 3501: UIDs are unique within (folder, uidvalidity) and never reused.
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    -- Overrides the account's retention when set.
    retention_days INTEGER,
    UNIQUE (account_id, name)
);

CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    -- sha256 of the bytes, naming the blob file.
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    -- Space-separated IMAP flags and keywords.
    flags TEXT NOT NULL DEFAULT '',
    verdict TEXT,
    reason TEXT,
    original_message_id TEXT,
    mail_from TEXT,
    -- JSON array of the envelope recipients (for release).
    rcpts TEXT NOT NULL DEFAULT '[]',
    queue_id TEXT,
    UNIQUE (folder_id, uid)
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received_at);
CREATE INDEX IF NOT EXISTS messages_blob ON messages (blob);
