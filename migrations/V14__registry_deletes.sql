-- Confluent's deletes (owned by src/registry): a soft delete hides a version (or every version
-- of a subject) from listings and compatibility checks, keeping its schema id resolvable; a
-- permanent delete, allowed only after a soft one, removes the row. A soft-deleted version keeps
-- its number, and its schema may be registered under the subject again (as a new version).
ALTER TABLE registry_subject_version ADD COLUMN deleted_at TIMESTAMPTZ;
ALTER TABLE registry_subject_version DROP CONSTRAINT registry_subject_version_subject_schema_id_key;
CREATE UNIQUE INDEX registry_subject_version_live
    ON registry_subject_version (subject, schema_id) WHERE deleted_at IS NULL;
