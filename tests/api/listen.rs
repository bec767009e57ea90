//! `relais listen`, run as the real binary: it verifies and prints what it receives, and
//! with `--register` it subscribes itself to a project's events.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use relais::outbound::signing::{generate_secret, SigningKey};
use serde_json::json;

use crate::both_backends;
use crate::common::{Backend, TestApp};

/// A running `relais listen` and the lines it prints.
struct Listen {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Listen {
    fn start(args: &[&str]) -> (Self, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_relais"))
            .arg("listen")
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("relais listen starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listen = Listen { child, lines };
        let first = listen.next_line();
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first}"))
            .to_owned();
        (listen, url)
    }

    fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("relais listen printed a line in time")
    }

    /// The next line that mentions `needle`.
    fn line_with(&mut self, needle: &str) -> String {
        loop {
            let line = self.next_line();
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn interrupt(&mut self) {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn signed_requests_are_printed_verified_and_forged_ones_refused() {
    let secret = generate_secret();
    let (mut listen, url) = Listen::start(&["--secret", &secret]);
    let client = reqwest::Client::new();
    let body = json!({"type": "operation.completed", "subject": "op-1", "sequence": 3}).to_string();
    let now = chrono::Utc::now().timestamp();
    for (key, expected_status) in [
        (SigningKey::from_secret(&secret), 200),
        (SigningKey::from_secret(&generate_secret()), 401),
    ] {
        let answer = client
            .post(&url)
            .header("webhook-id", "evt_1")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", key.sign("evt_1", now, body.as_bytes()))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), expected_status);
    }
    let verified = listen.next_line();
    assert!(
        verified.contains("operation.completed op-1 #3 verified"),
        "{verified}"
    );
    let forged = listen.next_line();
    assert!(
        forged.contains("refused: no `v1` signature in the header matches"),
        "{forged}"
    );
    let unsigned = client.post(&url).body(body).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    assert!(listen.next_line().contains("refused: missing webhook-id"));
}

both_backends!(a_registered_listener_prints_a_projects_events_verified);

async fn a_registered_listener_prints_a_projects_events_verified(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, project) = (app.tenant.to_string(), app.project.to_string());
    let (mut listen, _) = Listen::start(&[
        "--register",
        "--api",
        &app.base,
        "--tenant",
        &tenant,
        "--project",
        &project,
        "--token",
        &app.token,
    ]);
    let registered = listen.line_with("registered as webhook");
    let op = app
        .start_operation(&json!({"operationType": "Listened", "operationName": "seen"}))
        .await;
    app.lease(&json!({"operationTypes": ["Listened"], "max": 1, "waitSeconds": 0}))
        .await;
    let line = listen.line_with("operation.started");
    assert!(
        line.contains(&format!("operation.started {op} #1 verified")),
        "{line}"
    );

    listen.interrupt();
    assert_eq!(listen.line_with("unregistered"), "unregistered");
    let webhooks = app.get(&app.api("/webhooks")).await;
    assert_eq!(
        webhooks.body["webhooks"],
        json!([]),
        "{registered}: removed on exit"
    );
}
