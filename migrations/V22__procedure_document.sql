-- Documents issued before their dossier (the health facility's birth certificate, the death
-- notice) are published keyed by their own number (owned by src/procedures). A submission names
-- the number; the engine records that here when it opens the dossier, so a document that comes
-- later finds its dossier even once the dossier is completed and its submission forgotten.
-- A document that comes first waits in procedure_event under "<event type>#<number>" until a
-- submission names it.
CREATE TABLE procedure_document (
    event_type   TEXT NOT NULL,
    number       TEXT NOT NULL,
    -- Checked at commit: the engine names the documents in the transaction that opens the
    -- dossier, before the instance's row is written.
    dossier_code TEXT NOT NULL REFERENCES procedure_instance ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (event_type, number, dossier_code)
);
