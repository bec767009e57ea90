use clap::Parser;
use relais::cli::{self, Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    cli::init_logging(cli.log_format, level);
    cli::run(cli).await
}
