-- The connector runtime's shared state (owned by src/connectors). Every hub process runs every
-- connector it has a manifest for; what operators set here (paused, stopped) takes effect on
-- all of them within seconds. Rows are never deleted by the runtime: they are the history.

-- What operators want each connector to do; no row means running.
CREATE TABLE connector_state (
    name        TEXT PRIMARY KEY,
    desired     TEXT NOT NULL CHECK (desired IN ('running', 'paused', 'stopped')),
    changed_by  TEXT NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason      TEXT
);

-- Every operator action on a connector: who, what, when.
CREATE TABLE connector_action (
    id       BIGSERIAL PRIMARY KEY,
    name     TEXT NOT NULL,
    action   TEXT NOT NULL,
    actor    TEXT NOT NULL,
    detail   TEXT,
    acted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX connector_action_name ON connector_action (name, acted_at DESC);

-- What each process's worker of a connector reports, refreshed every few seconds: status
-- joins these so one view shows every process.
CREATE TABLE connector_worker (
    name            TEXT NOT NULL,
    process         TEXT NOT NULL,
    state           TEXT NOT NULL,
    partitions      TEXT NOT NULL DEFAULT '',
    delivered       BIGINT NOT NULL DEFAULT 0,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    dead_lettered   BIGINT NOT NULL DEFAULT 0,
    restarts        INTEGER NOT NULL DEFAULT 0,
    breaker         TEXT NOT NULL DEFAULT 'closed',
    last_success_at TIMESTAMPTZ,
    last_failure_at TIMESTAMPTZ,
    last_error      TEXT,
    latency_p50_ms  DOUBLE PRECISION,
    latency_p99_ms  DOUBLE PRECISION,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (name, process)
);

-- Events a connector gave up on, also on its dead-letter topic (which holds the record itself;
-- this table holds no payload).
CREATE TABLE connector_dead_letter (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL,
    event_id         UUID,
    event_type       TEXT NOT NULL,
    source_topic     TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset    BIGINT NOT NULL,
    dlq_topic        TEXT NOT NULL,
    dlq_partition    INTEGER NOT NULL,
    dlq_offset       BIGINT NOT NULL,
    error_class      TEXT NOT NULL,
    error_message    TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    first_failure_at TIMESTAMPTZ NOT NULL,
    last_failure_at  TIMESTAMPTZ NOT NULL,
    replayed_at      TIMESTAMPTZ,
    replayed_by      TEXT
);
CREATE INDEX connector_dead_letter_name ON connector_dead_letter (name, id);
