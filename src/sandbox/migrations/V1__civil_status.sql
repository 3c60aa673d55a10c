-- The civil-status sandbox (hộ tịch). IF NOT EXISTS: sandboxes started before these
-- migrations existed created the same table themselves.
CREATE SCHEMA IF NOT EXISTS sandbox_civil_status;
CREATE TABLE IF NOT EXISTS sandbox_civil_status.birth (
    idempotency_key TEXT PRIMARY KEY,
    dossier_code    TEXT NOT NULL UNIQUE,
    personal_id     TEXT NOT NULL UNIQUE,
    number          BIGSERIAL,
    answer          JSONB NOT NULL,
    registered_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
