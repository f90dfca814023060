-- Each user's own spam-filter counts (issue 20): what the user taught the
-- filter by moving mail into or out of Spam over IMAP, trained on errors
-- (`route/src/filter.rs`). `scope` is the user's address. The global model
-- is trained from folders (`sluice spam train`) into a file.
CREATE TABLE spam_tokens (
    scope TEXT COLLATE "C" NOT NULL,
    token BIGINT NOT NULL,
    ham BIGINT NOT NULL DEFAULT 0,
    spam BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, token)
);
CREATE TABLE spam_totals (
    scope TEXT COLLATE "C" PRIMARY KEY,
    ham BIGINT NOT NULL DEFAULT 0,
    spam BIGINT NOT NULL DEFAULT 0
);
-- Which messages a scope was trained with, and as what: a message moved
-- back and forth is counted once, as its last move says.
CREATE TABLE spam_trained (
    scope TEXT COLLATE "C" NOT NULL,
    hash TEXT COLLATE "C" NOT NULL,
    is_spam BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (scope, hash)
);
