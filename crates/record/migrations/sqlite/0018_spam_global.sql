-- The global spam model moves into the record (issue 20): `sluice spam
-- train` adds to scope 'global', and every node reads it again when its
-- `changed_at` (Unix ms of the last training) moves.
ALTER TABLE spam_totals ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0;
