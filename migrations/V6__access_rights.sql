-- Access rights and the member lifecycle (owned by src/access). Default deny: a member system may
-- publish or subscribe an event type only under a right that names it, the direction and the
-- purposes it covers. Rights are never deleted, only revoked, so the history of who could see
-- what stays readable for auditors.
CREATE TABLE access_right (
    id            BIGSERIAL PRIMARY KEY,
    system_id     TEXT NOT NULL REFERENCES member_system (id),
    direction     TEXT NOT NULL CHECK (direction IN ('publish', 'subscribe')),
    -- An event type ("birth.dossier-submitted") or a whole topic ("lienthong.birth").
    resource_kind TEXT NOT NULL CHECK (resource_kind IN ('event_type', 'topic')),
    resource      TEXT NOT NULL,
    purposes      TEXT[] NOT NULL CHECK (cardinality(purposes) > 0),
    -- The data provider on whose behalf the right was granted, and the person who granted it.
    owner         TEXT NOT NULL,
    granted_by    TEXT NOT NULL,
    granted_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    note          TEXT NOT NULL DEFAULT '',
    revoked_at    TIMESTAMPTZ,
    revoked_by    TEXT
);

CREATE INDEX access_right_system ON access_right (system_id) WHERE revoked_at IS NULL;
-- One right in force per system, direction, resource, owner and purpose set (the hub stores
-- purposes sorted and without duplicates), so repeating a grant, even concurrently, is harmless.
CREATE UNIQUE INDEX access_right_in_force
    ON access_right (system_id, direction, resource_kind, resource, owner, purposes)
    WHERE revoked_at IS NULL;

-- Every refused attempt: who tried what, when, and why it was refused.
CREATE TABLE access_denial (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    system_id  TEXT NOT NULL,
    action     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    reason     TEXT NOT NULL
);

CREATE INDEX access_denial_at ON access_denial (at DESC);
CREATE INDEX access_denial_system ON access_denial (system_id, at DESC);

ALTER TABLE member_system ADD COLUMN disabled_at TIMESTAMPTZ;
ALTER TABLE system_credential ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE system_credential ADD COLUMN revoked_by TEXT;

-- One counter that moves whenever systems, credentials or rights change, whoever changes them
-- (the CLI, another hub process, an operator's SQL, even a TRUNCATE). Every hub process polls it
-- and reloads its in-memory view when it moves, so a revocation takes effect everywhere within
-- seconds without a query per call.
CREATE TABLE access_generation (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    generation BIGINT NOT NULL
);
INSERT INTO access_generation (generation) VALUES (1);

CREATE FUNCTION bump_access_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_generation SET generation = generation + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER member_system_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON member_system
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_generation();
CREATE TRIGGER system_credential_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON system_credential
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_generation();
CREATE TRIGGER access_right_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON access_right
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_generation();
