-- The national population database sandbox (CSDLQG về dân cư): citizens, the personal ID
-- numbers it assigned (one per request key, never one number twice), and every read with who
-- asked and why.
CREATE SCHEMA sandbox_population;

CREATE TABLE sandbox_population.citizen (
    personal_id        TEXT PRIMARY KEY CHECK (personal_id ~ '^\d{12}$'),
    full_name          TEXT NOT NULL,
    -- YYYY-MM-DD, or YYYY-MM / YYYY where only part of the date is known (older citizens).
    birth_date         TEXT NOT NULL CHECK (birth_date ~ '^\d{4}(-\d{2}(-\d{2})?)?$'),
    sex                TEXT NOT NULL CHECK (sex IN ('MALE', 'FEMALE')),
    ethnicity_code     TEXT,
    nationality        TEXT NOT NULL DEFAULT 'VN',
    province_code      TEXT NOT NULL,
    commune_code       TEXT,
    address            TEXT,
    household_id       TEXT,
    -- The relationship to the household head ('head' for the head).
    relationship       TEXT,
    deceased_at        DATE,
    death_reference    TEXT,
    death_recorded_at  TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX citizen_household ON sandbox_population.citizen (household_id);

CREATE TABLE sandbox_population.assignment (
    request_key  TEXT PRIMARY KEY,
    personal_id  TEXT NOT NULL UNIQUE REFERENCES sandbox_population.citizen (personal_id),
    answer       JSONB NOT NULL,
    assigned_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_population.read_log (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    caller       TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    personal_id  TEXT NOT NULL,
    what         TEXT NOT NULL
);
