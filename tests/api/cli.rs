use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{relais_json, Backend, TestApp, TestDb};

both_backends!(the_cli_creates_tenants_and_tokens_that_the_server_accepts);

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
