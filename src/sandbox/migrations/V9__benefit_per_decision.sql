-- Social insurance decides each death benefit on its own (the funeral allowance and the survivor
-- lump sum are two decisions, each decided, refused, paid or cancelled by itself), from the
-- contribution history it holds rather than one the caller sends.
DROP TABLE sandbox_social_insurance.death_benefit;

-- What the deceased contributed, as the agency's own records hold it (seeded with the
-- population, or set through the sandbox's control endpoint).
CREATE TABLE sandbox_social_insurance.contribution (
    personal_id                TEXT PRIMARY KEY CHECK (personal_id ~ '^\d{12}$'),
    months_before_2014         INTEGER NOT NULL CHECK (months_before_2014 BETWEEN 0 AND 600),
    months_from_2014           INTEGER NOT NULL CHECK (months_from_2014 BETWEEN 0 AND 600),
    average_monthly_salary_vnd BIGINT NOT NULL CHECK (average_monthly_salary_vnd > 0)
);

CREATE TABLE sandbox_social_insurance.benefit_decision (
    decision_id          BIGSERIAL PRIMARY KEY,
    deceased_personal_id TEXT NOT NULL,
    benefit_type         TEXT NOT NULL CHECK (benefit_type IN ('FUNERAL_ALLOWANCE', 'SURVIVOR_LUMP_SUM')),
    request_key          TEXT NOT NULL UNIQUE,
    beneficiary          JSONB NOT NULL,
    amount_vnd           BIGINT NOT NULL CHECK (amount_vnd >= 0),
    status               TEXT NOT NULL
                         CHECK (status IN ('DECIDED', 'REFUSED', 'PAID', 'CANCELLED')),
    reason_code          TEXT,
    payment_reference    TEXT,
    decided_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at           TIMESTAMPTZ,
    -- Once per death and benefit, whoever asks.
    UNIQUE (deceased_personal_id, benefit_type)
);
