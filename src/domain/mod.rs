//! Domain identifiers, parsed once at the edge ("parse, don't validate"), and the reference data
//! (administrative codes valid by date, ethnicities, countries, status transitions) they are
//! checked against. A `PersonalId` masks itself when printed: it never reaches a log whole.

mod dossier_code;
mod personal_id;
pub mod reference;
mod sex;
mod system_id;

pub use dossier_code::{DossierCode, DossierCodeError};
pub use personal_id::{PersonalId, PersonalIdError};
pub use reference::{ReferenceData, ReferenceError};
pub use sex::Sex;
pub use system_id::{SystemId, SystemIdError};
