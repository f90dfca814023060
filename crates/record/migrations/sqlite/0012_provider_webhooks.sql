-- Provider webhooks in (issue 19). Which of our messages (by the
-- Message-ID it was sent with) a provider's own id names: learnt when one of its events names both that id and our
-- Message-ID, so its later events that carry only its id (SendGrid's opens
-- and clicks, Postmark's, SparkPost's) find the message too.
CREATE TABLE provider_messages (
    provider TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    tenant_id INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, provider_id)
) WITHOUT ROWID;

-- One-time tokens a provider signs with each post (Mailgun's `token`): a
-- post whose token was seen is a replay and refused. Kept as long as a
-- post's timestamp is accepted, then forgotten.
CREATE TABLE webhook_nonces (
    provider TEXT NOT NULL,
    nonce TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (provider, nonce)
) WITHOUT ROWID;
CREATE INDEX webhook_nonces_at ON webhook_nonces (at);
