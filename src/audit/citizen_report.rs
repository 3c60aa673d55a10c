//! The citizen's "who used my data" report, in Vietnamese: every transfer that concerned them,
//! oldest first, with who received which fields, when, from whom, why, on which legal basis,
//! and the audit log entry that proves it. `lienthong citizen report` prints it; the national
//! portal gets it from `AuditService.CitizenReport`.

use std::fmt::Write as _;

use super::TransferRow;
use crate::domain::text::printable;

/// One transfer in a sentence: who gave the data to whom.
fn who(row: &TransferRow) -> String {
    let source = printable(&row.source_system);
    let target = printable(&row.target_system);
    match row.channel.as_str() {
        "publish" => format!("{source} gửi dữ liệu vào hệ thống liên thông"),
        "delivery" => format!("{target} nhận dữ liệu qua hệ thống liên thông (do {source} gửi)"),
        "connector-call" => format!("{source} chuyển dữ liệu sang hệ thống {target}"),
        _ => format!("{source} trao đổi dữ liệu với {target}"),
    }
}

/// The report on `rows` for the citizen whose ID is shown (masked) as `shown_id`.
pub fn citizen_report(shown_id: &str, rows: &[TransferRow]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "BÁO CÁO SỬ DỤNG DỮ LIỆU CÁ NHÂN — công dân số định danh {shown_id}"
    );
    let _ = writeln!(
        out,
        "(Who used my data: every transfer of this citizen's data through the hub)"
    );
    if rows.is_empty() {
        let _ = writeln!(out, "Chưa có lần trao đổi dữ liệu nào của công dân này.");
        return out;
    }
    for row in rows {
        let at = row
            .recorded_at
            .with_timezone(&crate::domain::vietnam())
            .format("%d/%m/%Y %H:%M:%S");
        let _ = writeln!(out);
        let _ = writeln!(out, "{at} (giờ Việt Nam) — {}", who(row));
        if let Some(event_type) = &row.event_type {
            let _ = writeln!(out, "    loại dữ liệu: {}", printable(event_type));
        }
        if let Some(code) = &row.dossier_code {
            let _ = writeln!(out, "    hồ sơ: {}", printable(code));
        }
        let _ = writeln!(out, "    các trường: {}", row.fields.join(", "));
        let _ = writeln!(
            out,
            "    mục đích: {}; căn cứ pháp lý: {}",
            printable(&row.purpose),
            printable(&row.legal_basis)
        );
        let _ = writeln!(
            out,
            "    mức phân loại: {}; bằng chứng: mục nhật ký số {}",
            row.classification, row.position
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Tổng cộng {} lần trao đổi.", rows.len());
    out
}
