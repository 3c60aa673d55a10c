//! Domain identifiers, parsed once at the edge ("parse, don't validate"): past the API, code
//! holds these types, never raw strings. Personal ID numbers never appear here as keys or in
//! logs; see `registry` for the rules on payload fields.

mod dossier_code;
mod system_id;

pub use dossier_code::{DossierCode, DossierCodeError};
pub use system_id::{SystemId, SystemIdError};
