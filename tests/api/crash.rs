//! Crash safety with real processes: `kill -9` a delivering server and restart it.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, Backend, Response, ServeProcess, TestDb};
use crate::receiver::{Receiver, Reply};

both_backends!(
    a_killed_process_loses_no_delivery,
    a_batch_survives_a_killed_process_and_runs_each_member_to_completion_once
);

const OPERATIONS: usize = 2000;
const ENDPOINT_CONCURRENCY: usize = 16;

async fn a_killed_process_loses_no_delivery(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "crash");
    let receiver = Receiver::start().await;
    // 16 at a time, 100 ms each: about 160 deliveries a second, so the kill lands mid-way.
    receiver.fallback(Reply::status(200).after(Duration::from_millis(100)));

    let concurrency = ENDPOINT_CONCURRENCY.to_string();
    let env = [
        ("RELAIS_ALLOW_PRIVATE_TARGETS", "true"),
        ("RELAIS_DELIVERY_TIMEOUT", "2"),
        ("RELAIS_ENDPOINT_CONCURRENCY", concurrency.as_str()),
    ];
    let mut server = ServeProcess::start(&db, &env).await;
    let client = reqwest::Client::new();
    let api = |base: &str, path: &str| format!("{base}/api/{t}/{p}/async{path}");
    let post = |url: String, body: Value| {
        let request = client.post(url).bearer_auth(&token).json(&body);
        async move { Response::read(request.send().await.unwrap()).await }
    };
    let r = post(
        api(&server.base, "/webhooks"),
        json!({"webhookUrl": receiver.url, "events": ["operation.started"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // Each operation leased yields one `operation.started` event.
    let mut creations = Vec::new();
    for chunk in 0..8 {
        let url = api(&server.base, "/operation");
        let client = client.clone();
        let token = token.clone();
        creations.push(tokio::spawn(async move {
            for i in 0..OPERATIONS / 8 {
                let body =
                    json!({"operationType": "Crash", "operationName": format!("c{chunk}-{i}")});
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
            }
        }));
    }
    for c in creations {
        c.await.unwrap();
    }
    let mut leased = 0;
    while leased < OPERATIONS {
        let r = post(
            api(&server.base, "/workers/lease"),
            json!({"operationTypes": ["Crash"], "max": 100}),
        )
        .await;
        leased += r.body["leases"].as_array().unwrap().len();
    }

    receiver.wait_for(300, Duration::from_secs(60)).await;
    server.kill();
    let at_kill = receiver.received().len();
    assert!(
        at_kill < OPERATIONS,
        "the kill must happen mid-delivery (got {at_kill} already)"
    );

    let _restarted = ServeProcess::start(&db, &env).await;
    let received = receiver
        .wait_until(Duration::from_secs(120), |r| {
            let mut ids: Vec<&str> = r.iter().map(|x| x.header("webhook-id")).collect();
            ids.sort();
            ids.dedup();
            ids.len() >= OPERATIONS
        })
        .await;
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *per_event
            .entry(r.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        per_event.len(),
        OPERATIONS,
        "every event reached the receiver"
    );
    let duplicates: usize = per_event.values().map(|n| n - 1).sum();
    // Only deliveries sent but not yet settled at the kill can be sent twice, and a
    // delivery holds one of its endpoint's concurrency slots until it is settled.
    assert!(
        duplicates <= ENDPOINT_CONCURRENCY,
        "{duplicates} duplicates"
    );
    eprintln!(
        "crash test: {at_kill} delivered before the kill, {duplicates} duplicates after restart"
    );
}

/// A DAG run by the built-in executor: `kill -9` mid-run, restart, and the batch still
/// completes, in dependency order, with one operation per member that completed once.
async fn a_batch_survives_a_killed_process_and_runs_each_member_to_completion_once(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "crash");
    // Leases of the killed process expire after a second, so the restart takes them back.
    let env = [("RELAIS_HEARTBEAT_TIMEOUT", "1")];
    let mut server = ServeProcess::start(&db, &env).await;
    let client = reqwest::Client::new();
    let api = |base: &str, path: &str| format!("{base}/api/{t}/{p}/async{path}");

    // Four layers of five, each member depending on two of the layer above; 0.3 s each.
    let mut members = Vec::new();
    for layer in 0..4 {
        for i in 0..5 {
            let deps: Vec<String> = if layer == 0 {
                vec![]
            } else {
                vec![
                    format!("l{}-{i}", layer - 1),
                    format!("l{}-{}", layer - 1, (i + 1) % 5),
                ]
            };
            members.push(json!({
                "operationKey": format!("l{layer}-{i}"), "operationName": format!("l{layer}-{i}"),
                "operationType": "Sleep", "dependencies": deps, "parameters": {"seconds": 0.3}
            }));
        }
    }
    let r = Response::read(
        client
            .post(api(&server.base, "/batch"))
            .bearer_auth(&token)
            .json(&json!({"batchName": "crash", "operations": members}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["batchId"].as_str().unwrap().to_owned();
    let get = |base: String| {
        let request = client
            .get(api(&base, &format!("/batch/{id}")))
            .bearer_auth(&token);
        async move { Response::read(request.send().await.unwrap()).await.body }
    };

    // Kill once the first layer is done and the second is under way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let b = get(server.base.clone()).await;
        if b["counts"]["Completed"].as_u64().unwrap_or(0) >= 5
            && b["counts"]["Running"].as_u64().unwrap_or(0) >= 1
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let server = ServeProcess::start(&db, &env).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let b = loop {
        let b = get(server.base.clone()).await;
        if b["status"] == "Completed" {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch did not complete: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ops = b["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 20);
    let by_key: HashMap<&str, &Value> = ops
        .iter()
        .map(|m| (m["operationKey"].as_str().unwrap(), m))
        .collect();
    let mut interrupted = 0;
    for m in ops {
        assert_eq!(m["status"], "Completed", "{m}");
        assert_eq!(
            m["retryOf"],
            Value::Null,
            "the member is still its first operation: {m}"
        );
        let op = Response::read(
            client
                .get(api(
                    &server.base,
                    &format!("/operation/{}", m["operationId"].as_str().unwrap()),
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await
        .body;
        interrupted += op["attempts"].as_array().map_or(0, Vec::len);
        for dep in m["dependencies"].as_array().unwrap() {
            let dep = by_key[dep.as_str().unwrap()];
            assert!(
                m["startTime"].as_str().unwrap() >= dep["endTime"].as_str().unwrap(),
                "{m} started before {dep} ended"
            );
        }
    }
    assert!(
        interrupted >= 1,
        "the kill interrupted a running member, whose lost attempt is on record"
    );
}
