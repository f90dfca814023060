-- The first event id of each tenant's hour of event time. Event ids grow
-- in the order events are recorded, and an event's time is near the time
-- it was recorded, but not always (a provider's webhook reports an hour
-- late, a replay days late). The least `first_id` over the hours from a
-- window's start is therefore a bound no event of the window is below:
-- a text search that matches many messages walks the window's events in
-- id order from it, instead of reading every matching message
-- (`sqlite/search.rs`). A row is never lowered by a later event (a later
-- event has a larger id), and rows outlive the events retention deletes,
-- which only makes the bound looser.
CREATE TABLE event_hours (
    tenant_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, hour)
) WITHOUT ROWID;

INSERT INTO event_hours (tenant_id, hour, first_id)
    SELECT tenant_id, at / 3600000, MIN(id) FROM events GROUP BY tenant_id, at / 3600000;

CREATE TRIGGER event_hours_insert AFTER INSERT ON events BEGIN
    INSERT OR IGNORE INTO event_hours (tenant_id, hour, first_id) VALUES (new.tenant_id, new.at / 3600000, new.id);
END;
