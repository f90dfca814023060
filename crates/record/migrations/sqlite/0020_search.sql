-- Text search over messages' subjects and senders (the dashboard's and
-- `GET /v1/events?q=`): an FTS5 index with the trigram tokenizer, which
-- answers "contains this text, in any case" from the index instead of a
-- LIKE over every message of the window. External content: the text stays
-- in `out_messages`, the index only points at its rows, kept in step by
-- the triggers below.
CREATE VIRTUAL TABLE out_messages_text USING fts5(
    subject, mail_from, content = 'out_messages', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO out_messages_text (out_messages_text) VALUES ('rebuild');

CREATE TRIGGER out_messages_text_insert AFTER INSERT ON out_messages BEGIN
    INSERT INTO out_messages_text (rowid, subject, mail_from) VALUES (new.rowid, new.subject, new.mail_from);
END;
CREATE TRIGGER out_messages_text_delete AFTER DELETE ON out_messages BEGIN
    INSERT INTO out_messages_text (out_messages_text, rowid, subject, mail_from)
        VALUES ('delete', old.rowid, old.subject, old.mail_from);
END;
CREATE TRIGGER out_messages_text_update AFTER UPDATE OF subject, mail_from ON out_messages BEGIN
    INSERT INTO out_messages_text (out_messages_text, rowid, subject, mail_from)
        VALUES ('delete', old.rowid, old.subject, old.mail_from);
    INSERT INTO out_messages_text (rowid, subject, mail_from) VALUES (new.rowid, new.subject, new.mail_from);
END;

-- A message's events, with what the event page filters on (tenant, time)
-- in the index itself: a search that matches many messages checks each of
-- their events without reading its row (the index it replaces had only
-- message and id).
DROP INDEX events_message;
CREATE INDEX events_message ON events (message, id, tenant_id, at);
