//! `lienthong config check`: load the configuration as `serve` would and print it, secrets
//! redacted, with the effective security settings and warnings for what should not reach
//! production; a bad value fails with the field's name.

use std::path::Path;

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file + environment), secrets redacted.
    Check,
}

pub fn run(command: ConfigCommand, file: Option<&Path>) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check => {
            let config = Config::load(file)?;
            print!("{}", config.redacted());
            eprintln!("security:");
            for line in config.security_summary() {
                eprintln!("  {line}");
            }
            for warning in config.security_warnings() {
                eprintln!("warning: {warning}");
            }
            eprintln!("configuration ok");
            Ok(())
        }
    }
}
