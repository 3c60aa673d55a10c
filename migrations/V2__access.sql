-- Member systems and their credentials (owned by src/access). Only a SHA-256 hash of each bearer
-- token is stored: the token itself is shown once, when it is created.
CREATE TABLE member_system (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE system_credential (
    id         BIGSERIAL PRIMARY KEY,
    system_id  TEXT NOT NULL REFERENCES member_system (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);
