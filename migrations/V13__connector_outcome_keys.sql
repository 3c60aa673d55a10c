-- The event id a connector gave the reply about one thing (a PayGov transaction), owned by
-- src/connectors/worker. Two events can cause the same reply (a payment callback and the query
-- made when no callback came): the first to get here fixes the id, and every later reply about
-- the same key carries it, so consumers record the payment once.
CREATE TABLE connector_outcome_key (
    connector  TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, key)
);
