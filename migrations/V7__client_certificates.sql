-- Client certificates as credentials (owned by src/access). Over mutual TLS a member system is
-- identified by its certificate: registered here by the SHA-256 fingerprint of its DER encoding
-- (kept in token_hash, which is unique across both kinds), with its expiry in expires_at, and
-- revoked like a token.
ALTER TABLE system_credential
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'token' CHECK (kind IN ('token', 'certificate')),
    ADD COLUMN subject TEXT;
