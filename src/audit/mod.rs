//! Lineage and evidence: the transfer ledger (who received which fields of whose data, when,
//! why, under which schema version), the tamper-evident audit log over it and over every
//! administrator's change (a Merkle tree in the style of RFC 6962 with Ed25519-signed
//! checkpoints), the proofs an outside party checks without our database, and the auditors'
//! questions.
//!
//! `ledger` is what the publish, delivery and connector paths call (and `receipts`, for the
//! events every entitled agency is told once, who acknowledged them); `log` reads the log and
//! signs checkpoints; `verify` and `proof` are the auditor's tools; `queries` answers per
//! dossier, per citizen and per field; `rights_check` judges transfers against the rights.
//! Administrators' changes reach the log by PostgreSQL triggers (migration V20), so one made at
//! a psql prompt is logged as surely as one made through the hub.

mod checkpoint;
mod citizen_report;
mod keys;
mod ledger;
mod log;
mod merkle;
mod proof;
mod queries;
mod receipts;
mod rights_check;
mod verify;

pub use checkpoint::{Checkpoint, NoteError, Verifier, Verifiers, verifier_key};
pub use citizen_report::citizen_report;
pub use keys::{KeyError, Signer, SubjectKeys};
pub use ledger::{Channel, Crossing, EventRef, Ledger, LedgerError, Transfer, trace_id_of};
pub use log::{CheckpointError, Checkpointed, keep_checkpointing, make_checkpoint};
pub use proof::{CheckError, Proof, ProveError, check, prove};
pub use queries::{
    TransferRow, Upstream, dossier_trace, field_provenance, subject_history, transfer_rows_after,
};
pub use receipts::{Handed, Receipts, Told, told};
pub use rights_check::{BlastRadius, ConnectorTypes, Uncovered, blast_radius, purpose_check};
pub use verify::{Problem, Report, verify};
