-- Statistics (issue 19: `GET /v1/stats`, `sluice stats`), counted from the
-- event log over any window. Two partial indexes hold only the statistics'
-- events, narrow enough to read a window from (the front line's own
-- events, received, relayed, filed, ..., pay nothing for them); on the
-- partitioned table each month has its own, and goes with it.
-- `record/src/stats.rs` says the kinds the same way, which is what lets
-- PostgreSQL prove a query may use them.
--
-- events_stats: the counts, by tenant and time (type, reason and `source`,
-- which says what a provider reported, beside), hashed by type, hour and
-- reason. (SQLite's leads with the type and the hour, and is walked in
-- order.)
CREATE INDEX events_stats ON events (tenant_id, at, type, reason, source)
    WHERE type IN ('queued', 'sent', 'delivered', 'deferred', 'bounced', 'rejected', 'failed', 'complained', 'unsubscribed', 'opened', 'clicked');

-- events_engagement: opens and clicks, for the unique ones. PostgreSQL
-- hashes them by recipient, so they are read by time: only the window's
-- (SQLite's index, which it walks recipient by recipient, leads with the
-- recipient instead).
CREATE INDEX events_engagement ON events (tenant_id, type, at, message, idx, address, reason, source)
    WHERE type IN ('opened', 'clicked');
