-- The procedure engine's state (src/procedures): one row per dossier, one per step, the events it
-- has taken in (each once: the table is also its inbox) and the events it has decided to publish
-- (its outbox, relayed to Kafka). A dossier's rows change only in one transaction holding the
-- dossier's advisory lock, together with the outbox rows announcing the change.
CREATE TABLE procedure_instance (
    dossier_code    TEXT PRIMARY KEY,
    procedure_group TEXT NOT NULL,
    procedure_code  TEXT NOT NULL,
    -- running, completed
    state           TEXT NOT NULL,
    -- The national portal's TrangThaiHoSo the dossier has reached (1 to 10).
    portal_status   SMALLINT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    accepted_at     TIMESTAMPTZ NOT NULL,
    -- The appointment: the whole group's deadline in working days; NULL where the calendar does
    -- not cover the year.
    due_at          TIMESTAMPTZ,
    completed_at    TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX procedure_instance_running ON procedure_instance (due_at) WHERE state = 'running';

CREATE TABLE procedure_step (
    dossier_code TEXT NOT NULL REFERENCES procedure_instance ON DELETE CASCADE,
    step         TEXT NOT NULL,
    -- waiting, running, done, failed
    state        TEXT NOT NULL,
    position     SMALLINT NOT NULL,
    started_at   TIMESTAMPTZ,
    due_at       TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    -- When the hub noticed the step past its due time (once).
    overdue_at   TIMESTAMPTZ,
    -- The documents the step produced: [{result_type, document_reference, issued_at}].
    results      JSONB NOT NULL DEFAULT '[]',
    -- Why it failed (the step-failed event's code and message), while it stays failed.
    error        TEXT,
    PRIMARY KEY (dossier_code, step)
);
CREATE INDEX procedure_step_due ON procedure_step (due_at)
    WHERE state IN ('running', 'failed') AND overdue_at IS NULL;

-- Every event the engine took in, keyed by its id so a repeat changes nothing, and the deadlines
-- it noticed; `effect` says what it did (the timeline). An event that came before its dossier
-- waits here with its payload until the dossier comes.
CREATE TABLE procedure_event (
    event_id     UUID PRIMARY KEY,
    dossier_code TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    producer     TEXT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    taken_at     TIMESTAMPTZ NOT NULL,
    effect       TEXT NOT NULL,
    -- Kept only while the event waits for its dossier.
    payload      JSONB
);
CREATE INDEX procedure_event_dossier ON procedure_event (dossier_code, taken_at);

CREATE TABLE procedure_outbox (
    id           BIGSERIAL PRIMARY KEY,
    dossier_code TEXT NOT NULL,
    event_id     UUID NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    causation_id UUID,
    payload      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ,
    -- Refused by the hub's own checks (schema, rules): a fault of the engine's, kept out of the
    -- relay's way until someone looks.
    refused_at   TIMESTAMPTZ,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX procedure_outbox_unpublished ON procedure_outbox (id)
    WHERE published_at IS NULL AND refused_at IS NULL;
CREATE INDEX procedure_outbox_dossier ON procedure_outbox (dossier_code, id);
