-- The OpenLineage feed (src/lineage): for each sink (the lineage topic, the HTTP receiver), the
-- audit log position of the last transfer it took. A round sends what follows and moves the
-- positions in one transaction, under an advisory lock: one hub process feeds at a time.
CREATE TABLE lineage_feed (
    name       TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO lineage_feed (name, position) VALUES ('openlineage', -1), ('openlineage-http', -1);
