-- Statistics (issue 19: `GET /v1/stats`, `sluice stats`), counted from the
-- event log over any window. Two partial indexes, so that a query walks
-- only the statistics' events, in an order it can aggregate in as it goes
-- (no sort of a million events, and no read of the table):
--
-- events_stats: the counts, by tenant, type, hour and reason (with
-- `source`, which says what a provider reported). `record/src/stats.rs`
-- says the hour and the kinds the same way, which is what makes the index
-- serve it. Only the statistics' kinds are in it: the front line's
-- own events (received, relayed, filed, ...) pay nothing for it.
CREATE INDEX events_stats ON events (
    tenant_id,
    type,
    (at / 3600000),
    reason,
    at,
    source
) WHERE type IN ('queued', 'sent', 'delivered', 'deferred', 'bounced', 'rejected', 'failed', 'complained', 'unsubscribed', 'opened', 'clicked');

-- events_engagement: opens and clicks by recipient (message, index,
-- address), for the unique ones: each recipient's events are together, and
-- SQLite counts them as it walks (PostgreSQL's leads with the time, and
-- hashes).
CREATE INDEX events_engagement ON events (tenant_id, type, message, idx, address, at, reason, source)
    WHERE type IN ('opened', 'clicked');

-- A message's tags, for `group_by=tag` (each event's message looked up;
-- the primary key leads with the tag). PostgreSQL hashes the join and
-- needs none.
CREATE INDEX out_tags_message ON out_tags (tenant_id, message);
