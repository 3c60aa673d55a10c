//! Access: who is calling and what it may do. Every gRPC call carries `authorization: Bearer
//! <token>`, a registered client certificate over mutual TLS, or both; [`AuthLayer`] (a tower
//! layer in front of every service) resolves them to a [`Caller`] that handlers read from the
//! request's extensions. What a caller may publish or subscribe is
//! decided by its rights (default deny): each names an event type or topic, a direction and the
//! purposes it covers, granted by an operator on behalf of the data's owner.
//!
//! What a subscriber receives is limited to the fields its purpose may see (`disclosure`).
//!
//! `credentials` and `rights` are the operator's side (stored in PostgreSQL); `catalogue`,
//! `purposes` and `disclosure` read the policy's data files in `schemas/access/`; `policy` is the
//! decision logic over one snapshot; `enforce` keeps the snapshot current in a running hub.
//! Tokens are stored only as SHA-256 hashes.

mod catalogue;
mod credentials;
mod denials;
mod disclosure;
mod enforce;
mod layer;
mod limits;
mod load;
mod policy;
mod policy_file;
mod purposes;
mod rights;

pub use catalogue::{AccessCatalogue, EventTypeInfo};
pub use credentials::{
    AccessError, CredentialInfo, Credentials, IssuedToken, MemberSystem, bearer_token,
};
pub use denials::DenialRecorder;
pub use disclosure::{Disclosures, FieldSet};
pub use enforce::{Access, AccessSettings, Withdrawn};
pub use layer::AuthLayer;
pub use limits::{SystemLimits, Throttled};
pub use policy::{AuthFailure, Caller, Denied, Direction, Resource};
pub use policy_file::PolicyFileError;
pub use purposes::{MAX_LEGAL_BASIS, Purpose, Purposes, is_legal_basis, is_purpose_code};
pub use rights::{DenialRecord, Grant, Granted, RightRecord, Rights, subscribers};
