use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{relais_json, Backend, TestApp, TestDb};

both_backends!(
    the_cli_creates_tenants_and_tokens_that_the_server_accepts,
    an_unreachable_database_is_reported_at_once_with_its_cause,
);

async fn the_cli_creates_tenants_and_tokens_that_the_server_accepts(backend: Backend) {
    let db = TestDb::create(backend).await;
    let tenant = relais_json(&db.url, &["tenant", "create", "--name", "acme", "--json"]);
    let (t, p) = (
        tenant["tenantId"].as_str().unwrap(),
        tenant["projectId"].as_str().unwrap(),
    );
    let token = relais_json(
        &db.url,
        &[
            "token",
            "create",
            "--tenant",
            t,
            "--project",
            p,
            "--scopes",
            "operations:read,operations:write,workers",
            "--json",
        ],
    );
    assert_eq!(token["tenantId"], t);
    assert_eq!(
        token["scopes"],
        json!(["operations:read", "operations:write", "workers"])
    );
    let secret = token["token"].as_str().unwrap().to_owned();

    let bad = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args([
            "token",
            "create",
            "--tenant",
            t,
            "--scopes",
            "operations:delete",
        ])
        .env("RELAIS_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));

    let app = TestApp::start_on(db, |_| {}).await;
    let r = app
        .call(
            Method::POST,
            &format!("/api/{t}/{p}/async/operation"),
            Some(&secret),
            Some(&json!({"operationType": "T", "operationName": "from the cli"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let hash_only = app.store().tenants().find_principal(&secret).await.unwrap();
    assert!(
        hash_only.is_none(),
        "the secret itself is not what is stored"
    );
}

/// Runs the binary in `dir`, killing it if it outlives `limit`; its stderr and how long it ran.
fn run_bounded(
    dir: &std::path::Path,
    args: &[&str],
    url: &str,
    limit: Duration,
) -> (bool, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(args)
        .env("RELAIS_DATABASE_URL", url)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr, elapsed)
}

#[test]
fn delivery_concurrencies_out_of_range_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("relais.db").display());
    for (name, value) in [
        ("RELAIS_ENDPOINT_CONCURRENCY", "0"),
        ("RELAIS_ENDPOINT_CONCURRENCY", "18446744073709551615"),
        ("RELAIS_DELIVERY_CONCURRENCY", "100001"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("RELAIS_DATABASE_URL", &url)
            .env(name, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}={value} is refused: {stderr}");
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}

async fn an_unreachable_database_is_reported_at_once_with_its_cause(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, cause) = match backend {
        // Nothing listens on port 1.
        Backend::Postgres => (
            "postgres://postgres@127.0.0.1:1/x".to_owned(),
            "connection refused",
        ),
        Backend::Sqlite => (
            format!(
                "sqlite://{}",
                dir.path().join("missing/relais.db").display()
            ),
            "unable to open database file",
        ),
    };
    for args in [&["migrate"][..], &["serve", "--bind", "127.0.0.1:0"]] {
        let (success, stderr, elapsed) =
            run_bounded(dir.path(), args, &url, Duration::from_secs(20));
        assert!(!success, "relais {args:?} fails: {stderr}");
        let said = stderr.to_lowercase();
        assert_eq!(
            said.matches(cause).count(),
            1,
            "the cause, said once: {stderr}"
        );
        assert!(
            elapsed < Duration::from_secs(5),
            "relais {args:?} took {elapsed:?} to say: {stderr}"
        );
        assert!(
            !dir.path().join("relais.key").exists(),
            "no key file is left behind by a start that failed"
        );
    }
}
