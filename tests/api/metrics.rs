//! `GET /metrics` of a real `relais serve` process (its own recorder) after a known
//! workload: ten operations run and their ten `operation.completed` webhooks delivered.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::common::{cli_tenant, eventually, Backend, Response, ServeProcess, TestDb};
use crate::receiver::Receiver;

both_backends!(the_metrics_count_a_known_workload);

/// The value of the one sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn the_metrics_count_a_known_workload(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "metrics");
    let receiver = Receiver::start().await;
    let server = ServeProcess::start(&db, &[("RELAIS_ALLOW_PRIVATE_TARGETS", "true")]).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/{t}/{p}/async{path}", server.base);
    let r = client
        .post(api("/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for i in 0..10 {
        let r = client
            .post(api("/operation"))
            .bearer_auth(&token)
            .json(&json!({"operationType": "Echo", "operationName": format!("m{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    receiver.wait_for(10, Duration::from_secs(30)).await;

    let scrape = || async {
        let r = Response::read(
            client
                .get(format!("{}/metrics", server.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        r.text
    };
    // Outcomes are counted once recorded, a moment after the receiver answered.
    let text = eventually(Duration::from_secs(10), || async {
        let text = scrape().await;
        (sample(
            &text,
            "relais_deliveries_total",
            &["channel=\"webhook\"", "outcome=\"delivered\""],
        ) == Some(10.0))
        .then_some(text)
    })
    .await;
    let echo = "operation_type=\"Echo\"";
    assert_eq!(
        sample(
            &text,
            "relais_operations_ended_total",
            &[echo, "status=\"Completed\""]
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "relais_operations_started_total", &[echo]),
        Some(10.0)
    );
    assert_eq!(
        sample(&text, "relais_leases_granted_total", &[]),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &text,
            "relais_delivery_attempts_total",
            &["channel=\"webhook\"", "result=\"succeeded\""]
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &text,
            "relais_delivery_latency_seconds_count",
            &["channel=\"webhook\""]
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &text,
            "relais_http_requests_total",
            &[
                "method=\"POST\"",
                "route=\"/api/{tenantId}/{projectId}/async/operation\"",
                "status=\"202\""
            ]
        ),
        Some(10.0)
    );
    assert!(sample(
        &text,
        "relais_http_request_duration_seconds_bucket",
        &["le=\"0.005\""]
    )
    .is_some());
    assert_eq!(
        sample(
            &text,
            "relais_events_total",
            &["type=\"operation.completed\""]
        ),
        Some(10.0)
    );
    assert!(sample(&text, "relais_outbox_due", &[]).is_some(), "{text}");
    assert!(sample(&text, "relais_outbox_oldest_due_age_seconds", &[]).is_some());
    assert!(sample(&text, "relais_db_pool_connections", &["state=\"idle\""]).is_some());
    // No tenant's id or text ever becomes a label.
    assert!(!text.contains(&t) && !text.contains(&p) && !text.contains("m3"));
}
