-- What a running dossier's commands are built from (src/procedures/definition.rs, `Inputs`): the
-- submission and the event that ended each step, as the engine received them (minimised for its
-- purpose). The engine empties it when the dossier completes, so the personal data a command
-- needs is kept no longer than the procedure runs. Dossiers opened before this migration have
-- none: a command built for them lacks what it needs and is set aside by the relay, visibly.
ALTER TABLE procedure_instance ADD COLUMN inputs JSONB NOT NULL DEFAULT '{}';
