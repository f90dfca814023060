-- DKIM signing keys, kept with the state every node shares (not in a
-- node's data directory): the PKCS#8 or PKCS#1 PEM of each selector.
CREATE TABLE dkim_keys (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    pem TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (domain, selector)
);

-- Every change to what a running node keeps in memory (store accounts and
-- their domains and tenants, API keys, DKIM keys), whoever makes it, is
-- announced on `sluice_directory` with the table's name when it commits:
-- every node reloads (and forgets the API keys it knew) within a moment.
CREATE FUNCTION sluice_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sluice_directory', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_directory_changed();
CREATE TRIGGER account_domains_changed AFTER INSERT OR UPDATE OR DELETE ON account_domains
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_directory_changed();
CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_directory_changed();
CREATE TRIGGER dkim_keys_changed AFTER INSERT OR UPDATE OR DELETE ON dkim_keys
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_directory_changed();
