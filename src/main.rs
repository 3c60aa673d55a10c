//! The `lienthong` binary: parses the command line and hands over to `lienthong::cli`.
#![forbid(unsafe_code)]

use clap::Parser as _;

/// jemalloc rather than glibc's malloc for the hub's own allocations (librdkafka keeps
/// glibc's): profiling the hub under load (2 000 birth dossiers through the demo's connectors)
/// put a quarter of its CPU in glibc's `malloc`, `free` and `malloc_consolidate`, most of it
/// for the many small, short-lived values each event makes on tokio's threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The exit status of a process ended by SIGPIPE, as shells report it.
const BROKEN_PIPE_STATUS: i32 = 128 + 13;

/// Rust ignores SIGPIPE, so `println!` panics when the reader of our output has gone
/// (`lienthong connectors list | head -1`). Restoring the signal would need unsafe code; this
/// hook ends such a process quietly with the status a shell expects, and leaves every other
/// panic to the default hook.
fn end_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        default(info);
    }));
}

fn main() -> std::process::ExitCode {
    end_quietly_on_broken_pipe();
    let cli = lienthong::cli::Cli::parse();
    lienthong::cli::run(cli)
}
