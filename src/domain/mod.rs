//! Domain identifiers, parsed once at the edge ("parse, don't validate"), and the reference data
//! (administrative codes valid by date, ethnicities, countries, status transitions) they are
//! checked against, and the working-day calendar deadlines are counted in. A `PersonalId` masks
//! itself when printed: it never reaches a log whole.

pub mod calendar;
pub mod clock;
mod dossier_code;
pub mod fees;
mod personal_id;
pub mod reference;
mod sex;
mod system_id;
pub mod text;

pub use calendar::WorkingCalendar;
pub use clock::{Clock, ManualClock, SystemClock, system_clock};
pub use dossier_code::{DossierCode, DossierCodeError};
pub use fees::FeeSchedule;
pub use personal_id::{PersonalId, PersonalIdError};
pub use reference::{ReferenceData, ReferenceError};
pub use sex::Sex;
pub use system_id::{SystemId, SystemIdError};

/// Viet Nam's offset from UTC (Asia/Ho_Chi_Minh, +07:00, no daylight-saving time): calendar
/// dates of events, deadlines and the national portal are all in this offset.
pub fn vietnam() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(7 * 3600).expect("+07:00 is a valid offset")
}
