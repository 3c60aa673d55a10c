-- A transaction may expire: the merchant says when (`expires_at` in the create request; the
-- hub sends its payment step's due time). After it a PENDING transaction reads EXPIRED and its
-- payment page refuses to take a payment. Transactions created without it never expire, as
-- before.
ALTER TABLE sandbox_paygov.transaction ADD COLUMN expires_at TIMESTAMPTZ;
