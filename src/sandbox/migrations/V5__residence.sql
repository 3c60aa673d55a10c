-- The residence database sandbox (Cơ sở dữ liệu về cư trú): permanent residences, one per
-- citizen, deleted on death and restored when the death registration is annulled.
CREATE SCHEMA sandbox_residence;

CREATE TABLE sandbox_residence.permanent (
    personal_id     TEXT PRIMARY KEY CHECK (personal_id ~ '^\d{12}$'),
    request_key     TEXT NOT NULL UNIQUE,
    household_id    TEXT NOT NULL,
    head_personal_id TEXT NOT NULL,
    relationship    TEXT NOT NULL,
    commune_code    TEXT NOT NULL,
    address         TEXT NOT NULL,
    consent         JSONB,
    answer          JSONB NOT NULL,
    registered_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at      TIMESTAMPTZ,
    deletion_reference TEXT,
    reverted_at     TIMESTAMPTZ,
    -- The registration whose deletion was reverted: a late repeat of it deletes nothing.
    reverted_reference TEXT
);
