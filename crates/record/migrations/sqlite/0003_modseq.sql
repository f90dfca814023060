-- Every change to a folder's messages (arrival, flags, copy, expunge, sweep)
-- bumps its modseq, so a reader can tell cheaply whether what it holds is
-- still current, across processes.
ALTER TABLE folders ADD COLUMN modseq INTEGER NOT NULL DEFAULT 0;
-- Retention sweeps walk one folder at a time by age.
CREATE INDEX IF NOT EXISTS messages_folder_received ON messages (folder_id, received_at);
