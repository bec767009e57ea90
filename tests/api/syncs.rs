//! Seed 004's cursor sync against a real local source: every record once, then only what
//! changed, a reset, a REST source, two runs that never overlap, and `kill -9` mid-sync.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, eventually, Backend, Response, ServeProcess, TestApp, TestDb};
use crate::receiver::{Received, Receiver};
use crate::sync_source::{sync_operation, Source};

both_backends!(
    a_sync_delivers_every_record_once_then_only_what_changed,
    a_rest_source_is_synced_with_a_header_credential,
    two_runs_of_one_sync_never_page_at_once,
    a_killed_process_resumes_the_sync_without_writing_a_page_twice,
);

const SEC: Duration = Duration::from_secs(1);

pub async fn finished(app: &TestApp, id: &str) -> Value {
    eventually(60 * SEC, || async {
        let s = app.get(&app.api(&format!("/operation/{id}"))).await;
        let status = s.body["status"].as_str().unwrap_or_default().to_owned();
        matches!(
            status.as_str(),
            "Completed" | "Failed" | "Cancelled" | "Timeout"
        )
        .then_some(s.body)
    })
    .await
}

/// The record ids of the `sync.record.changed` events received, one per distinct event.
fn record_ids(received: &[Received]) -> Vec<u64> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| r.event_type() == "sync.record.changed")
        .filter(|r| seen.insert(r.header("webhook-id").to_owned()))
        .map(|r| r.json()["data"]["recordId"].as_u64().unwrap())
        .collect()
}

async fn put_credential(app: &TestApp, name: &str, body: &Value) -> Response {
    let admin = app.token_with("admin").await;
    app.call(
        Method::PUT,
        &app.api(&format!("/credentials/{name}")),
        Some(&admin),
        Some(body),
    )
    .await
}

async fn a_sync_delivers_every_record_once_then_only_what_changed(backend: Backend) {
    const RECORDS: u64 = 3000;
    let app = TestApp::spawn(backend).await;
    let source = Source::start(RECORDS).await;
    let receiver = Receiver::start().await;
    app.register_webhook(&json!({"webhookUrl": receiver.url, "events": ["sync.record.changed"]}))
        .await;
    let put = put_credential(
        &app,
        "ds-token",
        &json!({"type": "bearer", "token": "s3cret-token"}),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    assert!(!put.text.contains("s3cret-token"), "{}", put.text);

    let mut body = sync_operation(&source, "dossiers-42", 100);
    body["parameters"]["credential"] = json!("ds-token");
    let first = app.start_operation(&body).await;
    let status = finished(&app, &first).await;
    assert_eq!(status["status"], "Completed", "{status}");
    assert_eq!(status["progress"]["processedRecords"], RECORDS);
    let received = receiver
        .wait_until(60 * SEC, |r| record_ids(r).len() >= RECORDS as usize)
        .await;
    let ids = record_ids(&received);
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), RECORDS as usize, "one event per record");
    assert_eq!(distinct, (1..=RECORDS).collect());
    // Signed like every webhook, and carrying the record as the source gave it.
    let one = received[0].json();
    assert!(received[0].header("webhook-signature").starts_with("v1,"));
    assert_eq!(one["data"]["syncName"], "dossiers-42");
    assert_eq!(one["subject"], "sync:dossiers-42");
    assert_eq!(one["data"]["record"]["state"], "en_construction");
    assert!(one["data"]["updatedAt"].is_string());
    // The seed's paging: first, after, updatedSince; the credential as a bearer token.
    let asked = source.asked();
    assert_eq!(asked.len(), (RECORDS / 100) as usize);
    assert!(asked[0].variables.get("after").is_none());
    assert_eq!(asked[0].variables["updatedSince"], "2020-02-22");
    assert_eq!(asked[0].variables["first"], 100);
    assert_eq!(asked[0].variables["demarcheNumber"], 42);
    assert!(asked[1].variables["after"].is_string());
    assert!(asked
        .iter()
        .all(|a| a.authorization.as_deref() == Some("Bearer s3cret-token")));

    let sync = app.get(&app.api("/syncs/dossiers-42")).await;
    assert_eq!(sync.status, StatusCode::OK, "{}", sync.text);
    assert_eq!(sync.body["recordsTotal"], RECORDS);
    assert_eq!(sync.body["pagesTotal"], RECORDS / 100);
    assert_eq!(sync.body["lastRun"]["operationId"], first);
    assert_eq!(sync.body["lastRun"]["status"], "Completed");
    assert_eq!(sync.body["lastRun"]["records"], RECORDS);
    assert!(sync.body["runningOperationId"].is_null());
    let cursor = sync.body["cursor"].as_str().unwrap().to_owned();

    // Changed records move to the end: the next run asks after the kept cursor and sees
    // exactly those.
    let changed = [7, 1500, 2999, 3000, 12];
    source.touch(&changed);
    let second = app.start_operation(&body).await;
    assert_eq!(finished(&app, &second).await["status"], "Completed");
    let received = receiver
        .wait_until(60 * SEC, |r| {
            record_ids(r).len() >= RECORDS as usize + changed.len()
        })
        .await;
    let mut since = record_ids(&received)[RECORDS as usize..].to_vec();
    since.sort_unstable();
    let mut expected = changed.to_vec();
    expected.sort_unstable();
    assert_eq!(since, expected, "exactly the changed records");
    assert_eq!(source.asked()[asked.len()].variables["after"], cursor);
    let sync = app.get(&app.api("/syncs/dossiers-42")).await;
    assert_eq!(sync.body["recordsTotal"], RECORDS + changed.len() as u64);
    assert_eq!(sync.body["lastRun"]["records"], changed.len());

    // A run with nothing new writes nothing and keeps the cursor.
    let idle = app.start_operation(&body).await;
    assert_eq!(finished(&app, &idle).await["status"], "Completed");
    let kept = app.get(&app.api("/syncs/dossiers-42")).await;
    assert_eq!(kept.body["lastRun"]["records"], 0);
    assert_eq!(kept.body["cursor"], sync.body["cursor"]);

    // Resetting the cursor starts the next run from updatedSince: every record again.
    let reset = app
        .delete(&app.api("/syncs/dossiers-42/cursor"), None)
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert!(reset.body["cursor"].is_null());
    let again = app.start_operation(&body).await;
    assert_eq!(finished(&app, &again).await["status"], "Completed");
    let list = app.get(&app.api("/syncs")).await;
    assert_eq!(list.body["syncs"][0]["lastRun"]["records"], RECORDS);
    assert_eq!(list.body["hasNextPage"], false);
}

async fn a_rest_source_is_synced_with_a_header_credential(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let source = Source::start(250).await;
    let receiver = Receiver::start().await;
    app.register_webhook(&json!({"webhookUrl": receiver.url, "events": ["sync.record.changed"]}))
        .await;
    let origin = source.rest_url.clone();
    let put = put_credential(
        &app,
        "items-key",
        &json!({"type": "header", "header": "X-Api-Key", "value": "k-123", "origins": [origin]}),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    let listed = app.get(&app.api("/credentials")).await;
    assert_eq!(
        listed.body["credentials"][0],
        json!({"name": "items-key", "type": "header", "header": "X-Api-Key",
               "origins": [origin], "createdAt": put.body["createdAt"], "updatedAt": put.body["updatedAt"]})
    );
    let id = app
        .start_operation(&json!({
            "operationType": "CursorSync",
            "operationName": "items",
            "parameters": {
                "syncName": "items", "kind": "rest", "endpoint": source.rest_url, "path": "/items",
                "firstParam": "limit", "afterParam": "cursor", "updatedSinceParam": "since",
                "pageSize": 40, "nodesPath": "items", "pageInfoPath": "page", "idPath": "number",
                "credential": "items-key"
            }
        }))
        .await;
    let status = finished(&app, &id).await;
    assert_eq!(status["status"], "Completed", "{status}");
    let received = receiver
        .wait_until(30 * SEC, |r| record_ids(r).len() >= 250)
        .await;
    let ids: HashSet<u64> = record_ids(&received).into_iter().collect();
    assert_eq!(ids, (1..=250).collect());
    let asked = source.asked();
    assert_eq!(asked.len(), 7, "250 records, 40 a page");
    assert_eq!(asked[0].variables["limit"], "40");
    assert!(asked[0].variables["cursor"].is_null());
    assert!(asked[1].variables["cursor"].is_string());
    assert!(asked
        .iter()
        .all(|a| a.authorization.as_deref() == Some("k-123")));

    // The credential is refused to another origin, without the source being called.
    let asked_before = source.asked().len();
    let elsewhere = source.url.replace("127.0.0.1", "localhost");
    let id = app
        .start_operation(&json!({
            "operationType": "CursorSync",
            "operationName": "elsewhere",
            "parameters": {
                "syncName": "elsewhere", "kind": "rest", "endpoint": elsewhere,
                "nodesPath": "items", "pageInfoPath": "page", "idPath": "number",
                "credential": "items-key"
            }
        }))
        .await;
    let status = finished(&app, &id).await;
    assert_eq!(status["status"], "Failed", "{status}");
    assert_eq!(status["error"]["code"], "CREDENTIAL_ORIGIN", "{status}");
    assert_eq!(source.asked().len(), asked_before);
}

async fn two_runs_of_one_sync_never_page_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let source = Source::start(400).await;
    source.slow(Duration::from_millis(100));
    let receiver = Receiver::start().await;
    app.register_webhook(&json!({"webhookUrl": receiver.url, "events": ["sync.record.changed"]}))
        .await;
    let body = sync_operation(&source, "shared", 50);
    let first = app.start_operation(&body).await;
    eventually(10 * SEC, || async {
        (source.pages_served() >= 1).then_some(())
    })
    .await;
    let second = app.start_operation(&body).await;
    // The second says what it waits for; the cursor cannot be reset under the first.
    let waiting = eventually(10 * SEC, || async {
        let s = app.get(&app.api(&format!("/operation/{second}"))).await;
        let activity = s.body["phases"][0]["currentActivity"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        activity
            .contains("waiting for operation")
            .then_some(activity)
    })
    .await;
    assert!(waiting.contains(&first), "{waiting}");
    let refused = app.delete(&app.api("/syncs/shared/cursor"), None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.body["code"], "SYNC_RUNNING");
    assert_eq!(
        app.get(&app.api("/syncs/shared")).await.body["runningOperationId"],
        first
    );

    assert_eq!(finished(&app, &first).await["status"], "Completed");
    let status = finished(&app, &second).await;
    assert_eq!(status["status"], "Completed", "{status}");
    assert_eq!(source.most_in_flight(), 1, "the runs never asked at once");
    // The second started where the first ended: nothing new, nothing twice.
    let received = receiver
        .wait_until(30 * SEC, |r| record_ids(r).len() >= 400)
        .await;
    tokio::time::sleep(SEC / 2).await;
    assert_eq!(record_ids(&receiver.received()).len(), 400);
    assert_eq!(record_ids(&received).len(), 400);
    let results = app
        .get(&app.api(&format!("/operation/{second}/results")))
        .await;
    assert_eq!(results.body["summary"]["records"], 0, "{}", results.text);
}

/// `kill -9` of a real `relais serve` mid-sync, and a restart: every record reaches the
/// receiver, and the event log holds each record's event once (no page written twice).
async fn a_killed_process_resumes_the_sync_without_writing_a_page_twice(backend: Backend) {
    const RECORDS: u64 = 2000;
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "sync-crash");
    let source = Source::start(RECORDS).await;
    source.slow(Duration::from_millis(40));
    let receiver = Receiver::start().await;
    let env = [
        ("RELAIS_ALLOW_PRIVATE_TARGETS", "true"),
        ("RELAIS_HEARTBEAT_TIMEOUT", "1"),
        ("RELAIS_RETRY_TIME_SCALE", "0.01"),
    ];
    let mut server = ServeProcess::start(&db, &env).await;
    let client = reqwest::Client::new();
    let api = |base: &str, path: &str| format!("{base}/api/{t}/{p}/async{path}");
    let call = |method: Method, url: String, body: Option<Value>| {
        let mut request = client.request(method, url).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { Response::read(request.send().await.unwrap()).await }
    };
    let r = call(
        Method::POST,
        api(&server.base, "/webhooks"),
        Some(json!({"webhookUrl": receiver.url, "events": ["sync.record.changed"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = call(
        Method::POST,
        api(&server.base, "/operation"),
        Some(sync_operation(&source, "crashing", 50)),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["operationId"].as_str().unwrap().to_owned();

    eventually(30 * SEC, || async {
        (source.pages_served() >= 10).then_some(())
    })
    .await;
    server.kill();
    let served_at_kill = source.pages_served();
    assert!(
        served_at_kill < (RECORDS / 50) as usize,
        "the kill must land mid-sync ({served_at_kill} pages served)"
    );

    let restarted = ServeProcess::start(&db, &env).await;
    let status = eventually(90 * SEC, || async {
        let s = call(
            Method::GET,
            api(&restarted.base, &format!("/operation/{id}")),
            None,
        )
        .await;
        matches!(s.body["status"].as_str(), Some("Completed" | "Failed")).then_some(s.body)
    })
    .await;
    assert_eq!(status["status"], "Completed", "{status}");
    let received = receiver
        .wait_until(90 * SEC, |r| {
            record_ids(r).iter().collect::<HashSet<_>>().len() >= RECORDS as usize
        })
        .await;
    // Each event reached the receiver (a delivery in flight at the kill may come twice,
    // with the same webhook-id), and each record has exactly one event.
    let ids = record_ids(&received);
    let mut per_record: HashMap<u64, usize> = HashMap::new();
    for id in &ids {
        *per_record.entry(*id).or_default() += 1;
    }
    assert_eq!(per_record.len(), RECORDS as usize);
    let twice: Vec<_> = per_record.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "records written as events twice: {twice:?}"
    );
    let sync = call(Method::GET, api(&restarted.base, "/syncs/crashing"), None).await;
    assert_eq!(sync.body["recordsTotal"], RECORDS, "{}", sync.text);
    assert_eq!(sync.body["pagesTotal"], RECORDS / 50);
    // At most the page in flight at the kill was asked again.
    let asked = source.asked().len();
    assert!(
        asked <= (RECORDS / 50) as usize + 1,
        "{asked} pages asked for {} pages",
        RECORDS / 50
    );
    eprintln!(
        "sync crash test: {served_at_kill} pages served before the kill, {asked} asked in all"
    );
}
