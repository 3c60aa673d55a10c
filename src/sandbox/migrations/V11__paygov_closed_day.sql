-- PayGov closes each day's statement after the day ends (Vietnam time); the sandbox also lets a
-- day be closed at once (POST /paygov/v1/reconciliation/{date}/close), so the demo and the
-- tests need not wait for midnight. A closed statement is final: nothing paid is added to it.
CREATE TABLE sandbox_paygov.closed_day (
    day       DATE PRIMARY KEY,
    closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
