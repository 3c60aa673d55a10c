//! The command line: one thin module per subcommand. Each parses, calls a part and prints a
//! table or text; errors reach the user with their cause chain and exit code 1.

mod audit;
mod bench;
mod bench_chart;
mod bench_latency;
mod bench_procedures;
mod citizen;
mod config_check;
mod connectors;
mod demo;
mod demo_death;
mod demo_fee;
mod demo_prefill;
mod demo_supplement;
mod dossiers;
mod dossiers_load;
mod hub_client;
mod quarantine;
mod sandbox;
mod schemas;
mod serve;
mod systems;
use crate::domain::text;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "lienthong",
    version,
    about = "Liên thông: the life-event integration hub"
)]
pub struct Cli {
    /// Configuration file (TOML); LIENTHONG_* environment variables override it.
    #[arg(long, short, global = true, env = "LIENTHONG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: gRPC API, HTTP health and metrics.
    Serve,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Manage member systems and their credentials.
    #[command(subcommand)]
    Systems(systems::SystemsCommand),
    /// Operate the connectors: list, status, pause, resume, stop, dead letters, mapping tests.
    #[command(subcommand)]
    Connectors(connectors::ConnectorsCommand),
    /// Follow life-event dossiers through their procedures: steps, due times, results.
    #[command(subcommand)]
    Dossiers(dossiers::DossiersCommand),
    /// Audit: verify the tamper-evident log, prove entries, trace dossiers and citizens.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// A citizen's report, in Vietnamese: who used their data, when, why, which fields.
    #[command(subcommand)]
    Citizen(citizen::CitizenCommand),
    /// Look at refused events.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Check the schema catalogue and write its data dictionary.
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
    /// Run the national systems' stand-ins (sandboxes).
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Run the end-to-end scenario against a running hub, as a member system would.
    Demo(demo::DemoArgs),
    /// Measure validation, raw produce and validated publish in one run; print a table.
    Bench(bench::BenchArgs),
}

pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = cli.config.as_deref();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve::run(Config::load(config)?).await,
            Command::Config(command) => config_check::run(command, config),
            Command::Systems(command) => systems::run(command, Config::load(config)?).await,
            Command::Connectors(command) => connectors::run(command, Config::load(config)?).await,
            Command::Dossiers(command) => dossiers::run(command, Config::load(config)?).await,
            Command::Audit(command) => audit::run(command, Config::load(config)?).await,
            Command::Citizen(command) => citizen::run(command, Config::load(config)?).await,
            Command::Quarantine(command) => quarantine::run(command, Config::load(config)?).await,
            Command::Schemas(command) => schemas::run(command, Config::load(config)?).await,
            Command::Sandbox(command) => sandbox::run(command, Config::load(config)?).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args, Config::load(config)?).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many of the hub's errors already
/// quote their cause in their own message.
fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition only when it is parsed, and only in debug builds:
    /// every subcommand is checked here, so a clash (two arguments with one name) fails a test
    /// rather than an operator's command.
    #[test]
    fn every_command_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
