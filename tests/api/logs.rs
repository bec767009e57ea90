//! One request id finds a request in the JSON logs of a real `relais serve`: the line of
//! the request itself and the dispatcher's line for the delivery its change caused, even
//! though the change was written by the group commit and sent by the dispatcher, both in
//! tasks of their own.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, Backend, Response, ServeProcess, TestDb};
use crate::receiver::Receiver;

both_backends!(one_request_id_finds_the_request_and_the_delivery_it_caused);

/// The logged lines that name `request_id`, each parsed.
fn lines_naming(server: &ServeProcess, request_id: &str) -> Vec<Value> {
    server
        .logs()
        .iter()
        .filter(|line| line.contains(request_id))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

async fn one_request_id_finds_the_request_and_the_delivery_it_caused(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (tenant, project, token) = cli_tenant(&db.url, "logs");
    let receiver = Receiver::start().await;
    let server = ServeProcess::logged(
        &db,
        &[
            ("RELAIS_ALLOW_PRIVATE_TARGETS", "true"),
            ("RELAIS_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value, request_id: Option<&str>| {
        let url = format!("{}/api/{tenant}/{project}/async{path}", server.base);
        let mut request = client.post(url).bearer_auth(&token).json(&body);
        if let Some(id) = request_id {
            request = request.header("X-Request-Id", id);
        }
        async move { Response::read(request.send().await.unwrap()).await }
    };

    let r = post(
        "/webhooks",
        json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = post(
        "/operation",
        json!({"operationType": "Traced", "operationName": "traced"}),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let operation = r.body["operationId"].as_str().unwrap().to_owned();
    let r = post(
        "/workers/lease",
        json!({"operationTypes": ["Traced"]}),
        None,
    )
    .await;
    let lease = r.body["leases"][0]["leaseToken"].clone();
    assert!(lease.is_string(), "{}", r.text);

    let request_id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let r = post(
        &format!("/operation/{operation}/complete"),
        json!({"leaseToken": lease}),
        Some(&request_id),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["x-request-id"], request_id.as_str());

    let received = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(received[0].event_type(), "operation.completed");
    let event_id = received[0].header("webhook-id").to_owned();

    // The dispatcher logs a send once the receiver has answered, and the request's own
    // line is written once its answer is sent: either may come first.
    let started = Instant::now();
    let sent = |lines: &[Value]| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == "delivery sent")
            .cloned()
    };
    let answered = |lines: &[Value]| lines.iter().any(|l| l["fields"]["message"] == "request");
    let lines = loop {
        let lines = lines_naming(&server, &request_id);
        if (sent(&lines).is_some() && answered(&lines))
            || started.elapsed() > Duration::from_secs(20)
        {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dump = || {
        lines
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };

    let handler = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request")
        .unwrap_or_else(|| panic!("the request's own line:\n{}", dump()));
    assert_eq!(handler["span"]["request_id"], request_id.as_str());
    assert_eq!(
        handler["span"]["path"],
        format!("/api/{tenant}/{project}/async/operation/{operation}/complete")
    );
    assert_eq!(handler["span"]["operation_id"], operation.as_str());
    assert_eq!(handler["fields"]["status"], 200);

    let delivery = sent(&lines).unwrap_or_else(|| panic!("the dispatcher's line:\n{}", dump()));
    let span = &delivery["span"];
    assert_eq!(span["request_id"], request_id.as_str());
    assert_eq!(span["event_id"], event_id.as_str(), "{delivery}");
    assert_eq!(span["tenant_id"], tenant.as_str(), "{delivery}");
    assert!(
        span["delivery_id"]
            .as_str()
            .is_some_and(|d| d.starts_with("dlv-")),
        "{delivery}"
    );
    assert_eq!(delivery["fields"]["status_code"], 200, "{delivery}");

    // Only this request's lines name it: not the lease before it, nor other deliveries.
    for line in &lines {
        assert_eq!(
            line["span"]["request_id"],
            request_id.as_str(),
            "a line that names the request id elsewhere: {line}"
        );
    }
}
