-- The audit log and the transfer ledger (owned by src/audit).
--
-- audit_log is append-only evidence: every transfer of data across a boundary and every change
-- an administrator makes, in one sequence. Each entry's body is JSON text hashed exactly as
-- stored (digest = SHA-256 of the body); the digests are the leaves of a Merkle tree in the
-- style of RFC 6962, whose roots are signed at intervals (audit_checkpoint). Each body also
-- names its own position and the previous entry's digest, so a changed, deleted, inserted or
-- reordered row is named by `lienthong audit verify` even before the next checkpoint.
--
-- Every append takes the same transaction-scoped advisory lock (7361029482213) before it reads
-- the last entry, so entries from every hub process and every administrator's transaction get
-- positions in the order they commit, with no gap a later commit could fill. Two writers follow
-- that protocol: audit_append() below (triggers, auditors' questions), and the hub's ledger
-- writer, which appends a whole batch of transfers in one statement (src/audit/ledger.rs).
CREATE TABLE audit_log (
    position BIGINT PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('transfer', 'admin')),
    body     TEXT NOT NULL,
    digest   BYTEA NOT NULL
);

-- Append-only, as far as PostgreSQL can say it: an update, delete or truncate is refused. The
-- tables' owner can still disable this (tests/audit.rs does, as an attacker would), which is
-- why the log is also chained and signed.
CREATE FUNCTION audit_refuse_change() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Signed tree heads: the tree of the first tree_size entries has this root. note is the
-- checkpoint as published (C2SP signed-note format, Ed25519); frontier holds the roots of the
-- tree's perfect subtrees, largest first, so the next checkpoint hashes only what came after.
CREATE TABLE audit_checkpoint (
    tree_size BIGINT PRIMARY KEY CHECK (tree_size > 0),
    root      BYTEA NOT NULL,
    frontier  BYTEA NOT NULL,
    signed_at TIMESTAMPTZ NOT NULL,
    note      TEXT NOT NULL
);
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();

-- The transfer ledger: the queryable side of each transfer entry (auditor queries and the
-- citizen's report read it; the evidence is the audit_log row at the same position, which the
-- ledger writer inserts in the same transaction). Subjects
-- are pseudonymous references (keyed hashes of personal IDs, `key_id:hex`), never the IDs.
CREATE TABLE audit_transfer (
    position       BIGINT PRIMARY KEY,
    recorded_at    TIMESTAMPTZ NOT NULL,
    channel        TEXT NOT NULL,
    source_system  TEXT NOT NULL,
    target_system  TEXT NOT NULL,
    event_id       UUID,
    -- The event this one answers or follows from (its envelope's causation id): field
    -- provenance walks these links upstream.
    causation_id   UUID,
    event_type     TEXT,
    schema_subject TEXT,
    schema_version INT,
    fields         TEXT[] NOT NULL,
    classification TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    legal_basis    TEXT NOT NULL,
    dossier_code   TEXT,
    subject_refs   TEXT[] NOT NULL,
    trace_id       TEXT
);
CREATE INDEX audit_transfer_dossier ON audit_transfer (dossier_code, position);
CREATE INDEX audit_transfer_subjects ON audit_transfer USING GIN (subject_refs);
CREATE INDEX audit_transfer_event ON audit_transfer (event_id);
CREATE INDEX audit_transfer_time ON audit_transfer (recorded_at);

-- Appends one entry; returns its position. Callers run in READ COMMITTED (PostgreSQL's
-- default), so the read after the lock sees the entry committed last. `entry` gains kind,
-- position, previous (the prior entry's digest in hex, '' for the first) and recorded_at, and is
-- stored as jsonb's text (keys in a fixed order), which is what its digest covers.
CREATE FUNCTION audit_append(entry_kind TEXT, entry JSONB) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    last_position BIGINT;
    last_digest   BYTEA;
    next_position BIGINT;
    next_body     TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(7361029482213);
    SELECT position, digest INTO last_position, last_digest
    FROM audit_log ORDER BY position DESC LIMIT 1;
    next_position := coalesce(last_position + 1, 0);
    next_body := (entry || jsonb_build_object(
        'kind', entry_kind,
        'position', next_position,
        'previous', coalesce(encode(last_digest, 'hex'), ''),
        'recorded_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    ))::TEXT;
    INSERT INTO audit_log (position, kind, body, digest)
    VALUES (next_position, entry_kind, next_body, sha256(convert_to(next_body, 'UTF8')));
    RETURN next_position;
END
$$;

-- Every change to what administrators manage is an entry, whoever makes it: the hub, its CLI,
-- or someone at a psql prompt. Token hashes stay out of the log.
CREATE FUNCTION audit_admin_change() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    before_row JSONB;
    after_row  JSONB;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        before_row := to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        after_row := to_jsonb(NEW);
    END IF;
    IF TG_TABLE_NAME = 'system_credential' THEN
        before_row := CASE WHEN before_row->>'kind' = 'token' THEN before_row - 'token_hash' ELSE before_row END;
        after_row := CASE WHEN after_row->>'kind' = 'token' THEN after_row - 'token_hash' ELSE after_row END;
    END IF;
    PERFORM audit_append('admin', jsonb_build_object(
        'table', TG_TABLE_NAME,
        'operation', lower(TG_OP),
        'before', before_row,
        'after', after_row,
        'database_user', current_user,
        'application', current_setting('application_name', true)
    ));
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_admin AFTER INSERT OR UPDATE OR DELETE ON member_system
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
CREATE TRIGGER audit_admin AFTER INSERT OR UPDATE OR DELETE ON system_credential
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
CREATE TRIGGER audit_admin AFTER INSERT OR UPDATE OR DELETE ON access_right
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
CREATE TRIGGER audit_admin AFTER INSERT OR UPDATE OR DELETE ON registry_subject_version
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
CREATE TRIGGER audit_admin AFTER INSERT OR UPDATE OR DELETE ON registry_config
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
CREATE TRIGGER audit_admin AFTER INSERT OR UPDATE OR DELETE ON connector_state
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
CREATE TRIGGER audit_admin AFTER INSERT ON connector_action
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
CREATE TRIGGER audit_admin AFTER INSERT ON quarantine_read
    FOR EACH ROW EXECUTE FUNCTION audit_admin_change();
