use std::process::ExitCode;

use clap::Parser;
use relais::cli::{self, Cli, Command};

// The service allocates many short-lived buffers (rows, JSON, HTTP bodies) across threads;
// glibc's allocator spent a fifth of the process's time consolidating and unlinking them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    let level = if serving { "info" } else { "warn" };
    // Before the runtime starts its threads: setting up traces may change the environment.
    let traces = cli::init_logging(cli.log_format, level, serving);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let outcome = runtime.block_on(cli::run(cli));
    drop(runtime);
    // Once the server has stopped, so its last spans go out too.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", cli::describe_error(&error));
            ExitCode::FAILURE
        }
    }
}
