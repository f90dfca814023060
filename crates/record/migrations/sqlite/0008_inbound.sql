-- The front line's mail is recorded beside the applications' (issue 17):
-- a message says which way it came, and a store account may belong to a
-- tenant, whose inbound mail it then is (the default tenant owns the rest).
ALTER TABLE out_messages ADD COLUMN direction TEXT NOT NULL DEFAULT 'outbound';
ALTER TABLE accounts ADD COLUMN tenant_id INTEGER REFERENCES tenants(id);
