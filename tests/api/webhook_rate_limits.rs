//! A webhook's `rateLimit`: its receiver never gets more than that many deliveries in any
//! second, however many replicas send them (three real processes on PostgreSQL, the
//! backend replicas share; one on SQLite); deliveries held back wait, pending, and are
//! neither failed nor counted as attempts.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, eventually, Backend, Response, ServeProcess, TestApp, TestDb};
use crate::receiver::Receiver;

both_backends!(
    a_rate_limited_webhook_gets_at_most_its_rate_from_every_replica,
    a_rate_limit_is_checked_shown_and_removed
);

const RATE: usize = 20;
const EVENTS: usize = 120;

async fn a_rate_limited_webhook_gets_at_most_its_rate_from_every_replica(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "rate");
    let receiver = Receiver::start().await;
    let env = [("RELAIS_ALLOW_PRIVATE_TARGETS", "true")];
    let replicas = match backend {
        Backend::Postgres => 3,
        Backend::Sqlite => 1,
    };
    let mut servers = Vec::new();
    for _ in 0..replicas {
        servers.push(ServeProcess::start(&db, &env).await);
    }
    // Idle connections are dropped before the server's keep-alive (5 s) closes them: the
    // test waits longer than that between calls, and a request sent on a connection the
    // server is closing fails.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let api =
        |server: &ServeProcess, path: &str| format!("{}/api/{t}/{p}/async{path}", server.base);
    let call = |method: Method, url: String, body: Option<Value>| {
        let mut request = client.request(method, url).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { Response::read(request.send().await.unwrap()).await }
    };
    let r = call(
        Method::POST,
        api(&servers[0], "/webhooks"),
        Some(json!({"webhookUrl": receiver.url, "events": ["operation.completed"], "rateLimit": RATE})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["rateLimit"], RATE);
    let webhook = r.body["webhookId"].as_str().unwrap().to_owned();

    // Echo completes at once: the completions arrive far faster than the limit, on every
    // replica, each of which has its own dispatcher.
    let mut creations = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        let url = api(server, "/operation");
        let client = client.clone();
        let token = token.clone();
        creations.push(tokio::spawn(async move {
            for i in (n..EVENTS).step_by(replicas) {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"operationType": "Echo", "operationName": format!("e{i}")}))
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

    let received = receiver.wait_for(EVENTS, Duration::from_secs(60)).await;
    let ids: HashSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), EVENTS, "every event, once");
    assert_eq!(received.len(), EVENTS, "no duplicates");
    let mut arrivals: Vec<_> = received.iter().map(|r| r.at).collect();
    arrivals.sort();
    // Sends are spaced by 1/RATE; a send late by a busy machine next to one on time may
    // bring two closer, so a window may hold a few more than the rate, never a burst
    // (without the limit, the 120 arrive within a fraction of a second).
    let busiest = arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|at| **at >= *start && **at < *start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= RATE + RATE / 4,
        "{busiest} deliveries within one second, for a limit of {RATE}"
    );
    let spread = arrivals[EVENTS - 1] - arrivals[0];
    let rate = (EVENTS - 1) as f64 / spread.as_secs_f64();
    assert!(
        rate <= RATE as f64 * 1.1,
        "{rate:.1} deliveries a second over {spread:?}"
    );
    eprintln!("rate limit: {busiest} in the busiest second, {rate:.1}/s over {spread:?}");

    // Held back is not failed: one attempt per delivery, none failed (the last outcome
    // may still be on its way to the database).
    let r = eventually(Duration::from_secs(10), || async {
        let r = call(
            Method::GET,
            api(&servers[0], &format!("/webhooks/{webhook}")),
            None,
        )
        .await;
        (r.body["deliveryStats"]["pendingDeliveries"] == 0).then_some(r)
    })
    .await;
    let stats = &r.body["deliveryStats"];
    assert_eq!(stats["successfulDeliveries"], EVENTS, "{}", r.text);
    assert_eq!(stats["failedDeliveries"], 0, "{}", r.text);
    let mut attempts = 0;
    for page in 1..=2 {
        let r = call(
            Method::GET,
            api(
                &servers[0],
                &format!("/webhooks/{webhook}/deliveries?pageSize=100&page={page}"),
            ),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        attempts += r.body["deliveries"].as_array().unwrap().len();
    }
    assert_eq!(attempts, EVENTS, "one attempt each");
}

async fn a_rate_limit_is_checked_shown_and_removed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for bad in [
        json!(0),
        json!(-1),
        json!(10_001),
        json!("20"),
        json!(2.5),
        json!(1e30),
    ] {
        let r = app
            .post(
                &app.api("/webhooks"),
                &json!({"webhookUrl": "https://example.com/hook", "rateLimit": bad}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(r.body["field"], "rateLimit", "{bad}: {}", r.text);
    }
    let created = app
        .register_webhook(&json!({"webhookUrl": "https://example.com/hook", "rateLimit": 5}))
        .await;
    assert_eq!(created["rateLimit"], 5);
    let id = created["webhookId"].as_str().unwrap();
    let r = app.get(&app.api(&format!("/webhooks/{id}"))).await;
    assert_eq!(r.body["rateLimit"], 5, "{}", r.text);
    // A PUT replaces the whole configuration: without `rateLimit`, no limit.
    let r = app
        .call(
            Method::PUT,
            &app.api(&format!("/webhooks/{id}")),
            Some(&app.token),
            Some(&json!({"webhookUrl": "https://example.com/hook"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["rateLimit"], Value::Null, "{}", r.text);
    let r = app.get(&app.api("/webhooks")).await;
    assert_eq!(
        r.body["webhooks"][0]["rateLimit"],
        Value::Null,
        "{}",
        r.text
    );
}
