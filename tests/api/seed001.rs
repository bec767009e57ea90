//! Seed 001 as it shows the operation's status, results and cancellation: what a client
//! written from it reads, field by field.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

both_backends!(status_callbacks_count_what_happened_to_the_operations_callbacks);

/// Leases the only operation of `operation_type` and returns its id and lease token.
async fn leased(app: &TestApp, operation_type: &str) -> (String, String) {
    let lease = app
        .lease(&json!({"operationTypes": [operation_type], "max": 1}))
        .await
        .remove(0);
    (
        lease["operationId"].as_str().unwrap().to_owned(),
        lease["leaseToken"].as_str().unwrap().to_owned(),
    )
}

async fn report(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app
        .post(&app.api(&format!("/operation/{id}/progress")), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.text);
    r.body
}

async fn status_callbacks_count_what_happened_to_the_operations_callbacks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let progress = Receiver::start().await;
    let completion = Receiver::start().await;
    // Gone: the completion callback fails for good at its first attempt.
    completion.fallback(Reply::status(410));
    let callbacks = json!({"onProgress": progress.url, "onCompletion": completion.url});
    app.start_operation(
        &json!({"operationType": "Counted", "operationName": "n", "callbacks": callbacks}),
    )
    .await;
    let (id, token) = leased(&app, "Counted").await;
    let before = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(before.body["callbackUrls"], callbacks, "{}", before.text);
    for p in [30, 60] {
        report(&app, &id, json!({"leaseToken": token, "percentage": p})).await;
    }
    let r = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": token}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    progress.wait_for(3, Duration::from_secs(20)).await;
    completion.wait_for(1, Duration::from_secs(20)).await;

    let callbacks = eventually(Duration::from_secs(20), || async {
        let status = app.get(&app.api(&format!("/operation/{id}"))).await;
        let c = status.body["callbacks"].clone();
        (c["callbacksFailed"] == 1 && c["callbacksSuccessful"] == 3).then_some(c)
    })
    .await;
    assert_eq!(callbacks["progressCallbacksSent"], 3, "{callbacks}");
    assert_eq!(callbacks["callbacksPending"], 0, "{callbacks}");
    let last = callbacks["lastProgressCallback"].as_str().expect("a time");
    assert!(chrono::DateTime::parse_from_rfc3339(last).is_ok(), "{last}");

    // Another operation's callbacks are not counted here.
    let quiet = app
        .start_operation(&json!({"operationType": "Quiet", "operationName": "q"}))
        .await;
    let status = app.get(&app.api(&format!("/operation/{quiet}"))).await;
    assert_eq!(
        status.body["callbacks"],
        json!({"progressCallbacksSent": 0, "lastProgressCallback": null, "callbacksSuccessful": 0, "callbacksFailed": 0, "callbacksPending": 0})
    );
    assert_eq!(status.body["callbackUrls"], json!({}));
}
