-- The identity authority issues ID cards (căn cước) from the population database: a child's,
-- since Decree 301/2026, within the birth group. One card per citizen in this sandbox (a
-- renewal is not a procedure of the hub's), one per request key.
CREATE TABLE sandbox_population.id_card (
    personal_id  TEXT PRIMARY KEY REFERENCES sandbox_population.citizen (personal_id),
    request_key  TEXT NOT NULL UNIQUE,
    answer       JSONB NOT NULL,
    issued_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
