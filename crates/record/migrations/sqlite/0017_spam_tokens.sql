-- Each user's own spam-filter counts (issue 20): what the user taught the
-- filter by moving mail into or out of Spam over IMAP, trained on errors
-- (`route/src/filter.rs`). `scope` is the user's address. The global model
-- is trained from folders (`sluice spam train`) into a file.
CREATE TABLE spam_tokens (
    scope TEXT NOT NULL,
    token INTEGER NOT NULL,
    ham INTEGER NOT NULL DEFAULT 0,
    spam INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, token)
) WITHOUT ROWID;
CREATE TABLE spam_totals (
    scope TEXT PRIMARY KEY,
    ham INTEGER NOT NULL DEFAULT 0,
    spam INTEGER NOT NULL DEFAULT 0
);
-- Which messages a scope was trained with, and as what: a message moved
-- back and forth is counted once, as its last move says.
CREATE TABLE spam_trained (
    scope TEXT NOT NULL,
    hash TEXT NOT NULL,
    is_spam INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (scope, hash)
);
