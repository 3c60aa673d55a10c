-- The social insurance sandbox (BHXH Việt Nam): children's health-insurance cards (group TE)
-- and death benefits (funeral allowance, survivor lump sum) decided, paid or cancelled.
CREATE SCHEMA sandbox_social_insurance;

CREATE SEQUENCE sandbox_social_insurance.insurance_number;

CREATE TABLE sandbox_social_insurance.child_card (
    personal_id  TEXT PRIMARY KEY CHECK (personal_id ~ '^\d{12}$'),
    request_key  TEXT NOT NULL UNIQUE,
    card_number  TEXT NOT NULL UNIQUE,
    answer       JSONB NOT NULL,
    issued_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_social_insurance.death_benefit (
    decision_id          BIGSERIAL PRIMARY KEY,
    deceased_personal_id TEXT NOT NULL UNIQUE,
    request_key          TEXT NOT NULL UNIQUE,
    beneficiary          JSONB NOT NULL,
    funeral_allowance    BIGINT NOT NULL,
    survivor_lump_sum    BIGINT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'DECIDED'
                         CHECK (status IN ('DECIDED', 'PAID', 'CANCELLED')),
    payment_reference    TEXT,
    decided_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at           TIMESTAMPTZ
);
