-- The engine forgets, every deadline interval, the payloads of events and documents that waited
-- longer than `procedures.waiting_retention_days` for a dossier (owned by src/procedures): this
-- keeps that sweep off the whole timeline.
CREATE INDEX procedure_event_waiting ON procedure_event (taken_at) WHERE payload IS NOT NULL;
