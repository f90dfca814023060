-- The record of every message, both directions (the SQLite schema's tables
-- of the same names): messages, their tags, an application's recipients
-- with their current state, the append-only event log, and idempotency
-- keys. Times are milliseconds since the Unix epoch.
CREATE TABLE out_messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    direction TEXT NOT NULL DEFAULT 'outbound',
    message_id TEXT,
    mail_from TEXT NOT NULL,
    subject TEXT,
    stream TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE INDEX out_messages_tenant ON out_messages (tenant_id, created_at);
CREATE INDEX out_messages_message_id ON out_messages (message_id);

CREATE TABLE out_tags (
    tenant_id BIGINT NOT NULL,
    tag TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tenant_id, tag, message)
);

CREATE TABLE out_recipients (
    message TEXT COLLATE "C" NOT NULL,
    idx BIGINT NOT NULL,
    tenant_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (message, idx)
);
CREATE INDEX out_recipients_address ON out_recipients (tenant_id, address);

-- Append-only, and partitioned by time (`at`): a month a partition,
-- created ahead of need (`sluice_event_partitions`); the default
-- partition takes what none covers, so a write never fails for want of
-- one. Retention of old events is dropping a month's partition.
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    tenant_id BIGINT NOT NULL,
    message TEXT COLLATE "C" NOT NULL,
    idx BIGINT,
    address TEXT,
    type TEXT NOT NULL,
    at BIGINT NOT NULL,
    reason TEXT,
    smtp_code BIGINT,
    smtp_status TEXT,
    smtp_text TEXT,
    remote TEXT,
    tls TEXT,
    detail TEXT,
    source TEXT,
    -- A shared event's recipients (JSON [[idx, address], ...]).
    rcpts TEXT,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_address ON events (tenant_id, address, id) WHERE address IS NOT NULL;
CREATE INDEX events_message ON events (message, id);
CREATE INDEX events_at ON events USING BRIN (at);
CREATE INDEX events_tenant_id ON events (tenant_id, id);
CREATE INDEX events_source ON events (source) WHERE source IS NOT NULL;

-- A shared event's recipients, by address.
CREATE TABLE event_rcpts (
    tenant_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, address, event_id, idx)
);

CREATE TABLE idempotency (
    tenant_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- The month partitions from `from_ms`'s month through `months` more;
-- those that exist are left alone. Rows already in the default partition
-- for a new month would make its creation fail: the writer calls this
-- ahead of need, so none are.
CREATE FUNCTION sluice_event_partitions(from_ms BIGINT, months INT) RETURNS VOID AS $$
DECLARE
    first DATE := date_trunc('month', to_timestamp(from_ms / 1000.0) AT TIME ZONE 'UTC')::date;
    m DATE;
BEGIN
    -- Nodes doing this at once would race to create the same table.
    PERFORM pg_advisory_xact_lock(332239);
    FOR i IN 0..months LOOP
        m := (first + make_interval(months => i))::date;
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',
            'events_' || to_char(m, 'YYYY_MM'),
            (extract(epoch FROM m::timestamp AT TIME ZONE 'UTC') * 1000)::bigint,
            (extract(epoch FROM (m + interval '1 month')::timestamp AT TIME ZONE 'UTC') * 1000)::bigint);
    END LOOP;
END
$$ LANGUAGE plpgsql;
