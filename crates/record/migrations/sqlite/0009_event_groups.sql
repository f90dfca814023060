-- One attempt's one reply to several recipients of a message is one event
-- (issue 17: ten rows for what the downstream said once is what made the
-- front line's record cost): the row names no recipient (idx, address
-- NULL) and lists them in `rcpts` (JSON [[idx, address], ...]); an
-- address's history finds it through one narrow row per recipient.
ALTER TABLE events ADD COLUMN rcpts TEXT;
CREATE TABLE event_rcpts (
    tenant_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, address, event_id, idx)
) WITHOUT ROWID;
-- Only events that name one recipient are found by address here: a
-- message's own events (`received`) and shared ones need no entry.
DROP INDEX events_address;
CREATE INDEX events_address ON events (tenant_id, address, id) WHERE address IS NOT NULL;
