-- Refused events hold personal data: the request is kept sealed (XChaCha20-Poly1305) under a
-- named key, no longer as plain JSON (owned by src/events). Who read a sealed request, and when,
-- is recorded.
ALTER TABLE quarantine
    ADD COLUMN sealed BYTEA,
    ADD COLUMN key_id TEXT,
    ALTER COLUMN request DROP NOT NULL;
UPDATE quarantine SET request = NULL;

CREATE TABLE quarantine_read (
    id            BIGSERIAL PRIMARY KEY,
    quarantine_id BIGINT NOT NULL,
    read_by       TEXT NOT NULL,
    read_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
