-- Death registration (khai tử) in the civil-status sandbox, and the annulment of a birth or
-- death registration. A person's death is registered once while no registration of it stands.
CREATE TABLE sandbox_civil_status.death (
    idempotency_key TEXT PRIMARY KEY,
    dossier_code    TEXT NOT NULL UNIQUE,
    personal_id     TEXT NOT NULL,
    number          BIGSERIAL,
    answer          JSONB NOT NULL,
    registered_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    annulled_at     TIMESTAMPTZ,
    annulment_reason TEXT
);
CREATE UNIQUE INDEX death_standing ON sandbox_civil_status.death (personal_id)
    WHERE annulled_at IS NULL;

ALTER TABLE sandbox_civil_status.birth
    ADD COLUMN annulled_at TIMESTAMPTZ,
    ADD COLUMN annulment_reason TEXT;
