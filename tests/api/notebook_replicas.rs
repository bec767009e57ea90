//! Cron ticks across replicas (PostgreSQL, the backend replicas share): three real
//! `relais serve` processes on one database run an every-second schedule, and each tick
//! runs exactly once, even when one of them is killed mid-way.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{cli_tenant, Backend, ServeProcess, TestDb};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_each_tick_once_and_a_killed_one_loses_none() {
    let db = TestDb::create(Backend::Postgres).await;
    let (t, p, token) = cli_tenant(&db.url, "replicas");
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(ServeProcess::start(&db, &[]).await);
    }
    let client = reqwest::Client::new();
    let api = |replica: &ServeProcess, path: &str| format!("{}/api/{t}/{p}{path}", replica.base);
    let (status, notebook) = call(
        &client,
        reqwest::Method::POST,
        api(&replicas[0], "/notebook"),
        &token,
        Some(json!({"notebookName": "Every second", "schedule": "* * * * * *"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{notebook}");
    let id = notebook["notebookId"].as_str().unwrap().to_owned();
    let (status, block) = call(
        &client,
        reqwest::Method::POST,
        api(&replicas[1], &format!("/notebook/{id}/blocks")),
        &token,
        Some(json!({"blockType": "Echo", "blockTitle": "tick"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{block}");

    tokio::time::sleep(Duration::from_secs(5)).await;
    // SIGKILL mid-way: whatever it held (a claimed notebook row, an open transaction) is
    // let go by the database, and the others go on.
    replicas[1].kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, paused) = call(
        &client,
        reqwest::Method::PUT,
        api(&replicas[2], &format!("/notebook/{id}")),
        &token,
        Some(json!({"schedulePaused": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paused}");

    let (status, runs) = call(
        &client,
        reqwest::Method::GET,
        api(&replicas[0], &format!("/notebook/{id}/runs?pageSize=100")),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let mut per_tick: BTreeMap<chrono::DateTime<chrono::Utc>, usize> = BTreeMap::new();
    for run in runs["runs"].as_array().unwrap() {
        assert_eq!(run["trigger"], "schedule", "{run}");
        let tick = chrono::DateTime::parse_from_rfc3339(run["scheduledFor"].as_str().unwrap())
            .unwrap()
            .to_utc();
        *per_tick.entry(tick).or_default() += 1;
    }
    assert!(
        per_tick.values().all(|n| *n == 1),
        "each tick once: {per_tick:?}"
    );
    let ticks: Vec<_> = per_tick.keys().copied().collect();
    assert!(ticks.len() >= 8, "about ten seconds of ticks: {ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "no tick lost, before or after the kill: {ticks:?}"
        );
    }
}
