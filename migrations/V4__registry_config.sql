-- Compatibility levels of the schema registry (owned by src/registry). The row with subject ''
-- is the global level; a subject without a row uses it.
CREATE TABLE registry_config (
    subject       TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
