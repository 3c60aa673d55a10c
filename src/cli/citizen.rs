//! `lienthong citizen report PERSONAL_ID`: every disclosure of one citizen's data the hub
//! carried, in Vietnamese, for the citizen (through the national portal) or an official
//! answering them: who received which fields, when, from whom, why and on which legal basis.
//! The question is recorded in the audit log like an auditor's.

use anyhow::Context as _;
use clap::Subcommand;

use super::connectors::Output;
use super::text::printable;
use crate::audit;
use crate::config::Config;
use crate::domain::PersonalId;

#[derive(Debug, Subcommand)]
pub enum CitizenCommand {
    /// Who used this citizen's data: every transfer, oldest first.
    Report {
        /// The citizen's personal ID (hashed with the subject keys; never stored).
        personal_id: String,
        /// Who asks (recorded), e.g. the official's name or the portal's request id.
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// One transfer in a sentence: who gave the data to whom.
fn who_vi(row: &audit::TransferRow) -> String {
    let source = printable(&row.source_system);
    let target = printable(&row.target_system);
    match row.channel.as_str() {
        "publish" => format!("{source} gửi dữ liệu vào hệ thống liên thông"),
        "delivery" => format!("{target} nhận dữ liệu qua hệ thống liên thông (do {source} gửi)"),
        "connector-call" => format!("{source} chuyển dữ liệu sang hệ thống {target}"),
        _ => format!("{source} trao đổi dữ liệu với {target}"),
    }
}

pub async fn run(command: CitizenCommand, config: Config) -> anyhow::Result<()> {
    let CitizenCommand::Report {
        personal_id,
        by,
        output,
    } = command;
    let references = super::audit::references(&config, &personal_id)?;
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    let rows = audit::subject_history(&pool, &references, "citizen-report", &by).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let shown = PersonalId::parse(personal_id.trim())
        .map(|id| id.to_string())
        .unwrap_or_default();
    println!("BÁO CÁO SỬ DỤNG DỮ LIỆU CÁ NHÂN — công dân số định danh {shown}");
    println!("(Who used my data: every transfer of this citizen's data through the hub)");
    if rows.is_empty() {
        println!("Chưa có lần trao đổi dữ liệu nào của công dân này.");
        return Ok(());
    }
    for row in &rows {
        let at = row
            .recorded_at
            .with_timezone(&crate::domain::vietnam())
            .format("%d/%m/%Y %H:%M:%S");
        println!();
        println!("{at} (giờ Việt Nam) — {}", who_vi(row));
        if let Some(event_type) = &row.event_type {
            println!("    loại dữ liệu: {}", printable(event_type));
        }
        if let Some(code) = &row.dossier_code {
            println!("    hồ sơ: {}", printable(code));
        }
        println!("    các trường: {}", row.fields.join(", "));
        println!(
            "    mục đích: {}; căn cứ pháp lý: {}",
            printable(&row.purpose),
            printable(&row.legal_basis)
        );
        println!(
            "    mức phân loại: {}; bằng chứng: mục nhật ký số {}",
            row.classification, row.position
        );
    }
    println!();
    println!("Tổng cộng {} lần trao đổi.", rows.len());
    Ok(())
}
