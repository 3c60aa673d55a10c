-- The civil-status officer's verification of a late birth registration without the health
-- facility's certificate (Decree 123/2015/ND-CP, art. 26): one per dossier, concluded when its
-- due time passes (the sandbox's officer confirms), listed for the hub in the order concluded.
CREATE TABLE sandbox_civil_status.verification (
    id              BIGSERIAL PRIMARY KEY,
    dossier_code    TEXT NOT NULL UNIQUE,
    agency_code     TEXT NOT NULL,
    requested_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    due_at          TIMESTAMPTZ NOT NULL,
    outcome         TEXT CHECK (outcome IN ('CONFIRMED', 'NOT_CONFIRMED')),
    reason_code     TEXT,
    verified_at     TIMESTAMPTZ,
    -- The order in which verifications were concluded: the hub reads them after a cursor.
    concluded       BIGINT UNIQUE
);
CREATE SEQUENCE sandbox_civil_status.verification_concluded;
