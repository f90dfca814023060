-- DKIM signing keys, kept with the state every node shares (not in a
-- node's data directory): the PKCS#8 or PKCS#1 PEM of each selector.
CREATE TABLE dkim_keys (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (domain, selector)
) WITHOUT ROWID;

-- A counter that moves with every change to what a running server keeps
-- in memory (store accounts and their domains and tenants, API keys, DKIM
-- keys), whoever makes it: the server polls it and reloads when it moved.
CREATE TABLE directory_changes (n INTEGER NOT NULL);
INSERT INTO directory_changes (n) VALUES (0);

CREATE TRIGGER accounts_changed_i AFTER INSERT ON accounts BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER accounts_changed_u AFTER UPDATE ON accounts BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER accounts_changed_d AFTER DELETE ON accounts BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER account_domains_changed_i AFTER INSERT ON account_domains BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER account_domains_changed_u AFTER UPDATE ON account_domains BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER account_domains_changed_d AFTER DELETE ON account_domains BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER api_keys_changed_u AFTER UPDATE ON api_keys BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER api_keys_changed_d AFTER DELETE ON api_keys BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER dkim_keys_changed_i AFTER INSERT ON dkim_keys BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER dkim_keys_changed_u AFTER UPDATE ON dkim_keys BEGIN UPDATE directory_changes SET n = n + 1; END;
CREATE TRIGGER dkim_keys_changed_d AFTER DELETE ON dkim_keys BEGIN UPDATE directory_changes SET n = n + 1; END;
