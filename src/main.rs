use std::process::ExitCode;

use clap::Parser;
use relais::cli::{self, Cli, Command};

// The service allocates many short-lived buffers (rows, JSON, HTTP bodies) across threads;
// glibc's allocator spent a fifth of the process's time consolidating and unlinking them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    cli::init_logging(cli.log_format, level);
    match cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", cli::describe_error(&error));
            ExitCode::FAILURE
        }
    }
}
