-- The supplement a dossier waits for (portal status 5), while it waits:
-- {requested_at, due_at, items, overdue_at} (src/procedures/instance.rs, `Supplement`).
ALTER TABLE procedure_instance ADD COLUMN supplement JSONB;
CREATE INDEX procedure_instance_supplement ON procedure_instance (((supplement->>'due_at')))
    WHERE supplement IS NOT NULL;
