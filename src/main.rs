//! The `lienthong` binary: parses the command line and hands over to `lienthong::cli`.
#![forbid(unsafe_code)]

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = lienthong::cli::Cli::parse();
    lienthong::cli::run(cli)
}
