-- Submission users: name and an argon2id PHC hash. Passwords are never stored.
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
