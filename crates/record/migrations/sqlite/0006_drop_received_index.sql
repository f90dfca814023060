-- Nothing reads messages by received_at across folders: the sweeper and
-- SEARCH go folder by folder (messages_folder_received). Every stored copy
-- still paid for this index: one more B-tree insert and page in the WAL.
DROP INDEX IF EXISTS messages_received;
