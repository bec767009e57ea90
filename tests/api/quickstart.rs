//! The README's "First steps" block, run as a newcomer would paste it: in an empty
//! directory, with the `relais` binary under test in place of the release build, on free
//! ports. It must end with verified webhooks printed by `relais listen`.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::common::{Backend, TestDb};

both_backends!(the_readme_first_steps_end_with_verified_webhooks);

fn first_steps() -> String {
    let readme = include_str!("../../README.md");
    let marker = readme
        .find("<!-- first-steps")
        .expect("README marks its first steps");
    let block = &readme[marker..];
    let start = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = block[start..].find("\n```").expect("the block ends") + start;
    block[start..end].to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn the_readme_first_steps_end_with_verified_webhooks(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let script = first_steps()
        // The binary under test is already built.
        .replace("cargo build --release\n", "")
        .replace("8080", &free_port().to_string())
        .replace("9000", &free_port().to_string());
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_relais"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the service and the listener it leaves running
        // in the background are stopped with it.
        .process_group(0);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("RELAIS_")) {
        command.env_remove(name);
    }
    if backend == Backend::Postgres {
        command.env("RELAIS_DATABASE_URL", &db.url);
    }
    let mut child = command.spawn().expect("bash runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(90) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let group = child.id().to_string();
    let _ = Command::new("kill")
        .args(["-s", "TERM", "--", &format!("-{group}")])
        .status();
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let log = std::fs::read_to_string(dir.path().join("relais.log")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "the first steps failed or hung:\n{stdout}\n{stderr}\nservice log:\n{log}"
    );
    for event in [
        "operation.started",
        "operation.progress",
        "operation.completed",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("{event} op-")) && l.ends_with(" verified")),
            "{event} verified:\n{stdout}"
        );
    }
    assert!(stdout.contains("\"status\":\"Completed\""), "{stdout}");
}
