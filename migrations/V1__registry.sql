-- The schema registry (owned by src/registry). Schema ids are global and stable: the same schema
-- text (normalised) always keeps the id it first got, as in Confluent Schema Registry.
CREATE TABLE registry_schema (
    id          SERIAL PRIMARY KEY,
    schema_type TEXT NOT NULL DEFAULT 'AVRO',
    schema_text TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE registry_subject_version (
    subject    TEXT NOT NULL,
    version    INT  NOT NULL CHECK (version >= 1),
    schema_id  INT  NOT NULL REFERENCES registry_schema (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, version),
    UNIQUE (subject, schema_id)
);
