-- The pre-fill as the hub counts it (issue 19): the fields of a dossier's form that hold what
-- national data told through the hub (the population database's answers, the health
-- facility's certificate), by path, and the fields on the form. The values themselves are not
-- kept here: the submission they were compared with is forgotten when the dossier completes.
ALTER TABLE procedure_instance ADD COLUMN filled JSONB;
