-- How much of a dossier's form the one-stop system filled in from national data, as its
-- submission said ({from_national_data, fields_on_form}; src/procedures/instance.rs, `Prefill`):
-- the pre-fill ratio officials report per dossier and on average.
ALTER TABLE procedure_instance ADD COLUMN prefill JSONB;
