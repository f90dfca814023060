-- Work repeated after a crash must not be recorded twice: an event names
-- where it came from (a feedback message's queue id and target), and a
-- quarantine copy is found by the queue id it was filed from.
ALTER TABLE events ADD COLUMN source TEXT;
CREATE INDEX IF NOT EXISTS events_source ON events (source) WHERE source IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_queue_id ON messages (queue_id) WHERE queue_id IS NOT NULL;
