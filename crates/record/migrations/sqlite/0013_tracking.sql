-- Open and click tracking (issue 19): each tracked link of a message, by its
-- number in the message (a click's token names message, recipient and link
-- number; where it leads is read here, never from the URL).
CREATE TABLE tracked_links (
    message TEXT NOT NULL,
    link INTEGER NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (message, link)
) WITHOUT ROWID;
