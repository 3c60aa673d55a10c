-- Operators replay dead letters and restart connectors (owned by src/connectors). A replay is
-- requested here and claimed by whichever process runs the connector (FOR UPDATE SKIP LOCKED):
-- one process replays each dead letter, and a claim left by a process that died is taken again
-- after a while. A restart is a counter every process watches.
ALTER TABLE connector_dead_letter
    ADD COLUMN replay_requested_at TIMESTAMPTZ,
    ADD COLUMN replay_claimed_by   TEXT,
    ADD COLUMN replay_claimed_at   TIMESTAMPTZ,
    ADD COLUMN replay_outcome      TEXT;
CREATE INDEX connector_dead_letter_replay ON connector_dead_letter (name, id)
    WHERE replay_requested_at IS NOT NULL AND replayed_at IS NULL;

ALTER TABLE connector_state
    ADD COLUMN restarts_requested BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN restart_only_failed BOOLEAN NOT NULL DEFAULT false;
