-- The national public service portal sandbox: dossiers synced by provinces, and their
-- progress updates with the 1–10 status codes (the timeline anyone may look up).
CREATE SCHEMA sandbox_portal;

CREATE TABLE sandbox_portal.dossier (
    dossier_code   TEXT PRIMARY KEY,
    procedure_code TEXT NOT NULL,
    agency_code    TEXT NOT NULL,
    status         INTEGER NOT NULL CHECK (status BETWEEN 1 AND 10),
    synced         JSONB NOT NULL,
    synced_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_portal.progress (
    id              BIGSERIAL PRIMARY KEY,
    dossier_code    TEXT NOT NULL REFERENCES sandbox_portal.dossier (dossier_code),
    status          INTEGER NOT NULL CHECK (status BETWEEN 1 AND 10),
    note            TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (dossier_code, idempotency_key)
);
