//! Access: which member system is calling. Every gRPC call carries `authorization: Bearer
//! <token>`; [`AuthLayer`] (a tower layer in front of every service) resolves it to a [`Caller`]
//! that handlers read from the request's extensions. Tokens are stored only as SHA-256 hashes.
//! Rights per event type and purpose come later and will live here too.

mod credentials;
mod layer;

pub use credentials::{AccessError, Caller, Credentials, IssuedToken, MemberSystem, bearer_token};
pub use layer::AuthLayer;
