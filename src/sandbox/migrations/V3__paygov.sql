-- The PayGov sandbox (Nền tảng thanh toán trực tuyến): transactions created by a merchant (the
-- hub's payment connector), paid or cancelled on the payment page, their server-to-server
-- callbacks (every attempt kept, duplicates included) and receipts.
CREATE SCHEMA sandbox_paygov;

CREATE SEQUENCE sandbox_paygov.transaction_number;
CREATE SEQUENCE sandbox_paygov.receipt_number;

CREATE TABLE sandbox_paygov.transaction (
    transaction_id TEXT PRIMARY KEY,
    -- The merchant's reference: one transaction per order, however often it is created.
    order_id       TEXT NOT NULL UNIQUE,
    dossier_code   TEXT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    fee_lines      JSONB NOT NULL,
    beneficiary    JSONB NOT NULL,
    order_info     TEXT NOT NULL,
    callback_url   TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'PENDING'
                   CHECK (status IN ('PENDING', 'PAID', 'CANCELLED')),
    bank_code      TEXT,
    paid_at        TIMESTAMPTZ,
    receipt_number BIGINT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_paygov.callback (
    id             BIGSERIAL PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES sandbox_paygov.transaction (transaction_id),
    duplicate      BOOLEAN NOT NULL,
    status         INTEGER,
    error          TEXT,
    sent_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
