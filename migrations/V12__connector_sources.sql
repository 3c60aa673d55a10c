-- Where each polling source connector (http-poll-source, postgres-outbox-source) has read to,
-- owned by src/connectors/source. One hub process leads a source at a time: it holds the lease
-- (owner, lease_until) and renews it while it works; every write below is fenced by the lease,
-- so a process that lost it can never move the position. A process that dies lets the lease
-- lapse and another takes over from the stored position.
CREATE TABLE connector_source_position (
    name        TEXT PRIMARY KEY,
    -- The origin's position after the last record published: an outbox row's id, or the
    -- cursor an HTTP API gave. NULL: nothing read yet.
    cursor      TEXT,
    -- Records of the page at `cursor` already published (an API whose cursor moves per page).
    skip        INTEGER NOT NULL DEFAULT 0,
    owner       TEXT,
    lease_until TIMESTAMPTZ,
    -- The record being published now and the event id it was given: a publish repeated after
    -- a crash carries the same id, which consumers drop.
    pending_sha256   BYTEA,
    pending_event_id UUID,
    published   BIGINT NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- `restart --only-failed` gets a counter of its own: a full restart followed within a poll
-- interval by an only-failed one must still restart every worker.
ALTER TABLE connector_state ADD COLUMN failed_restarts_requested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connector_state DROP COLUMN restart_only_failed;

-- The manifest each process's worker runs (the start of its SHA-256), so `connectors reload`
-- can tell when every process has picked a change up.
ALTER TABLE connector_worker ADD COLUMN manifest_version TEXT NOT NULL DEFAULT '';
