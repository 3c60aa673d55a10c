-- Tell Us Once receipts (owned by src/audit/receipts.rs). For the event types a procedure tells
-- every entitled agency (the death's registration), one row per event and recipient system:
-- when the hub first handed it over, how many times it did, and when the recipient
-- acknowledged it. The transfer ledger already proves each delivery; this table answers, per
-- dossier, who has been told and who has confirmed, without scanning the audit log.
CREATE TABLE delivery_receipt (
    event_id          UUID NOT NULL,
    recipient         TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    dossier_code      TEXT NOT NULL,
    -- Where the record is, so an acknowledgement (by partition and offset) finds its row.
    topic             TEXT NOT NULL,
    partition         INT NOT NULL,
    "offset"          BIGINT NOT NULL,
    first_delivered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deliveries        INT NOT NULL DEFAULT 1,
    acknowledged_at   TIMESTAMPTZ,
    PRIMARY KEY (event_id, recipient)
);

CREATE INDEX delivery_receipt_dossier ON delivery_receipt (dossier_code);
CREATE INDEX delivery_receipt_waiting ON delivery_receipt (recipient, topic, partition, "offset")
    WHERE acknowledged_at IS NULL;
