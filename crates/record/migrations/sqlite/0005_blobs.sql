-- The bytes of quarantined copies, once per distinct content, named by their
-- sha256 (lower-case hex, as messages.blob). They used to be one file each
-- under DATA/store/blobs; creating an inode per message cost more than the
-- rest of storing it, and a file needed its own flush before the row could
-- point at it. In the database the bytes commit in the same transaction as
-- the row that refers to them. Copies stored before this step keep their
-- files and are read from there (see quarantine.rs).
-- A rowid table, not WITHOUT ROWID: rows are a whole message each, far
-- bigger than the small rows WITHOUT ROWID suits.
CREATE TABLE blobs (
    hash TEXT PRIMARY KEY NOT NULL,
    bytes BLOB NOT NULL
);
