-- Callbacks a webhook-source connector received (owned by src/connectors): one row per
-- connector and dedupe key, so a callback the sender repeats becomes the same event once. The
-- key is kept as its SHA-256 only: it may be a payment reference. The event id is chosen on
-- first receipt, so a publish repeated after a failure carries the same id.
CREATE TABLE connector_webhook_seen (
    name         TEXT NOT NULL,
    key_sha256   BYTEA NOT NULL,
    event_id     UUID NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ,
    -- Held by the request publishing it now (its token): a simultaneous repeat waits its turn.
    publishing_until TIMESTAMPTZ,
    publishing_token UUID,
    repeats      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, key_sha256)
);
