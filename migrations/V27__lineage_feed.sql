-- The OpenLineage feed (src/lineage): the audit log position of the last transfer it sent to
-- the lineage topic (and HTTP receiver). A round sends what follows and moves the position in
-- one transaction, under an advisory lock: one hub process feeds at a time.
CREATE TABLE lineage_feed (
    name       TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO lineage_feed (name, position) VALUES ('openlineage', -1);
