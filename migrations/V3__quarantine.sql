-- Rejected publishes (owned by src/events). Kept so that an operator can find what a system
-- tried to send, why it was refused and who sent it.
CREATE TABLE quarantine (
    id             BIGSERIAL PRIMARY KEY,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    system_id      TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    reason         TEXT NOT NULL,
    violations     JSONB NOT NULL,
    request        JSONB NOT NULL
);

CREATE INDEX quarantine_received_at ON quarantine (received_at DESC);
CREATE INDEX quarantine_correlation_id ON quarantine (correlation_id);
