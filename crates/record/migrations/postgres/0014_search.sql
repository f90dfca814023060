-- Text search over messages' subjects and senders (the dashboard's and
-- `GET /v1/events?q=`): trigram indexes (pg_trgm, which ships with
-- PostgreSQL and is a trusted extension a database owner may create), so
-- "LOWER(subject) LIKE '%text%'" is answered from an index instead of a scan
-- of every message of the window. Where the extension cannot be created
-- (no privilege, not installed) search still works, by scanning; the
-- warning says so.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
    RAISE WARNING 'sluice: pg_trgm unavailable (%), text search will scan messages', SQLERRM;
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX out_messages_subject_trgm ON out_messages USING gin (LOWER(subject) gin_trgm_ops);
        CREATE INDEX out_messages_from_trgm ON out_messages USING gin (LOWER(mail_from) gin_trgm_ops);
    END IF;
END $$;
