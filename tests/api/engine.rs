use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(
    a_retry_resumes_after_a_failure_at_phase_three_of_four,
    retries_are_refused_for_unfinished_operations_and_bad_bodies,
    a_thousand_queued_operations_are_handed_out_by_priority_then_age,
    a_claim_of_several_types_follows_priority_then_age_across_them,
    aging_lifts_long_waiting_low_priority_work_above_newer_urgent_work,
    retries_wait_out_the_policy_delays_on_the_configured_time_base,
);

async fn report(app: &TestApp, id: &str, lease: &Value, body: Value) {
    let mut body = body;
    body["leaseToken"] = lease["leaseToken"].clone();
    let r = app
        .post(&app.api(&format!("/operation/{id}/progress")), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn a_retry_resumes_after_a_failure_at_phase_three_of_four(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "Pipeline", "operationName": "four phases",
                                 "parameters": {"dataset": "d1", "settings": {"mode": "fast", "depth": 2}}}))
        .await;
    let lease = app
        .lease(&json!({"operationTypes": ["Pipeline"]}))
        .await
        .remove(0);
    for phase in ["extract", "clean"] {
        report(&app, &id, &lease, json!({"totalPhases": 4, "processedRecords": 500, "percentage": 50,
            "phase": {"phaseName": phase, "status": "Completed", "results": {"rows": phase.len()}, "checkpoint": {"after": phase}}}))
        .await;
    }
    report(
        &app,
        &id,
        &lease,
        json!({"phase": {"phaseName": "analyse", "status": "Running"}}),
    )
    .await;
    let r = app
        .post(&app.api(&format!("/operation/{id}/fail")), &json!({"leaseToken": lease["leaseToken"], "error": {"code": "OOM", "message": "out of memory"}}))
        .await;
    assert_eq!(r.body["status"], "Failed");

    let retried = app
        .post(
            &app.api(&format!("/operation/{id}/retry")),
            &json!({"retryMode": "resume", "retryReason": "Infrastructure issue resolved", "modifyParameters": true,
                    "updatedParameters": {"settings": {"mode": "careful"}}, "retryPolicy": {"maxRetries": 2, "retryDelay": 180, "backoffMultiplier": 1.5},
                    "newTimeout": 10800, "preserveOriginalResults": true}),
        )
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.text);
    let b = &retried.body;
    assert_eq!(b["originalOperationId"], id);
    assert_eq!(b["retryMode"], "resume");
    assert_eq!(b["retryNumber"], 1);
    assert_eq!(b["resumeFromPhase"], "analyse");
    assert_eq!(b["status"], "Initiated");
    assert_eq!(
        b["preservedResults"],
        json!({"phasesPreserved": 2, "recordsProcessed": 500, "progressSaved": 50.0})
    );
    assert!(b["retryAttemptDate"].is_string());
    let new_id = b["newOperationId"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);

    let status = app.get(&app.api(&format!("/operation/{new_id}"))).await;
    assert_eq!(status.body["retryOf"], id);
    assert_eq!(status.body["execution"]["maxAttempts"], 3);
    assert_eq!(
        status.body["parameters"],
        json!({"dataset": "d1", "settings": {"mode": "careful", "depth": 2}})
    );
    let created =
        chrono::DateTime::parse_from_rfc3339(status.body["dateCreated"].as_str().unwrap()).unwrap();
    let timeout_at =
        chrono::DateTime::parse_from_rfc3339(status.body["timeoutAt"].as_str().unwrap()).unwrap();
    assert_eq!((timeout_at - created).num_seconds(), 10800);

    let resumed = app
        .lease(&json!({"operationTypes": ["Pipeline"]}))
        .await
        .remove(0);
    assert_eq!(resumed["operationId"], new_id);
    assert_eq!(resumed["resumeFromPhase"], "analyse");
    assert_eq!(
        resumed["checkpoints"],
        json!({"extract": {"after": "extract"}, "clean": {"after": "clean"}})
    );
    let kept: Vec<_> = resumed["completedPhases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phaseName"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["extract", "clean"]);
    assert_eq!(resumed["completedPhases"][1]["results"]["rows"], 5);
    let done = app
        .post(
            &app.api(&format!("/operation/{new_id}/complete")),
            &json!({"leaseToken": resumed["leaseToken"]}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);

    // A restart of the original keeps nothing; the original itself is untouched.
    let restart = app
        .post(
            &app.api(&format!("/operation/{id}/retry")),
            &json!({"retryMode": "restart"}),
        )
        .await;
    assert_eq!(restart.status, StatusCode::ACCEPTED, "{}", restart.text);
    assert!(restart.body["resumeFromPhase"].is_null());
    assert_eq!(restart.body["preservedResults"]["phasesPreserved"], 0);
    let fresh = app
        .lease(&json!({"operationTypes": ["Pipeline"]}))
        .await
        .remove(0);
    assert_eq!(fresh["checkpoints"], json!({}));
    let original = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(original.body["status"], "Failed");
}

async fn retries_are_refused_for_unfinished_operations_and_bad_bodies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    let r = app
        .post(&app.api(&format!("/operation/{id}/retry")), &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["code"], "OPERATION_NOT_RETRYABLE");
    app.delete(&app.api(&format!("/operation/{id}")), None)
        .await;
    for (body, field) in [
        (json!({"retryMode": "sideways"}), "retryMode"),
        (json!({"newTimeout": -1}), "newTimeout"),
        (json!({"updatedParameters": [1]}), "updatedParameters"),
        (
            json!({"retryPolicy": {"retryDelay": -1}}),
            "retryPolicy.retryDelay",
        ),
    ] {
        let r = app
            .post(&app.api(&format!("/operation/{id}/retry")), &body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    let second = app
        .post(&app.api(&format!("/operation/{id}/retry")), &json!({}))
        .await;
    assert_eq!(
        second.status,
        StatusCode::ACCEPTED,
        "a cancelled operation can be retried: {}",
        second.text
    );
    let chained_from = second.body["newOperationId"].as_str().unwrap().to_owned();
    app.delete(&app.api(&format!("/operation/{chained_from}")), None)
        .await;
    let third = app
        .post(
            &app.api(&format!("/operation/{chained_from}/retry")),
            &json!({}),
        )
        .await;
    assert_eq!(
        third.body["retryNumber"], 2,
        "retry numbers count along the chain"
    );
    let missing = app
        .post(
            &app.api(&format!("/operation/op-{}/retry", uuid::Uuid::new_v4())),
            &json!({}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn a_thousand_queued_operations_are_handed_out_by_priority_then_age(backend: Backend) {
    // No aging while it runs: on a busy machine queueing a thousand operations can take
    // longer than the default interval, and the first Low ones would rightly rank higher.
    let app = TestApp::spawn_with(backend, |c| c.priority_aging = Duration::from_secs(3600)).await;
    let priorities = ["Low", "Normal", "High", "Critical"];
    let mut expected: Vec<(usize, usize, String)> = Vec::new();
    for i in 0..1000 {
        // A spread that is not sorted by creation: 7 is coprime with 4.
        let p = (i * 7 + i / 3) % 4;
        let id = app
            .start_operation(&json!({"operationType": "Queue", "operationName": format!("q{i}"), "priority": priorities[p]}))
            .await;
        expected.push((3 - p, i, id));
    }
    expected.sort();
    let mut got = Vec::new();
    while got.len() < 1000 {
        let leases = app
            .lease(&json!({"operationTypes": ["Queue"], "max": 100}))
            .await;
        assert!(!leases.is_empty());
        got.extend(
            leases
                .into_iter()
                .map(|l| l["operationId"].as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = expected.into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(got.len(), expected.len());
    let first_difference = got.iter().zip(&expected).position(|(g, e)| g != e);
    assert_eq!(
        first_difference, None,
        "Critical, High, Normal, Low; oldest first within each"
    );
}

async fn a_claim_of_several_types_follows_priority_then_age_across_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Each type is picked on its own and the picks merged: the merge must keep the one
    // order across types, and take no more than asked.
    let mut expected: Vec<(usize, usize, String)> = Vec::new();
    let priorities = ["Low", "Normal", "High", "Critical"];
    for i in 0..24 {
        let kind = ["Red", "Green", "Blue"][i % 3];
        let p = (i * 5 + 1) % 4;
        let id = app
            .start_operation(&json!({"operationType": kind, "operationName": format!("o{i}"), "priority": priorities[p]}))
            .await;
        expected.push((3 - p, i, id));
    }
    expected.sort();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let leases = app
            // A type listed twice is still one type: each operation is handed out once.
            .lease(&json!({"operationTypes": ["Red", "Green", "Blue", "Red"], "max": 5}))
            .await;
        assert!(!leases.is_empty() && leases.len() <= 5, "{leases:?}");
        got.extend(
            leases
                .into_iter()
                .map(|l| l["operationId"].as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = expected.into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(
        got, expected,
        "by priority, then oldest first, whatever the type"
    );
}

async fn aging_lifts_long_waiting_low_priority_work_above_newer_urgent_work(backend: Backend) {
    let aging = Duration::from_millis(300);
    let app = TestApp::spawn_with(backend, |c| c.priority_aging = aging).await;
    let low_created = tokio::time::Instant::now();
    let low = app
        .start_operation(&json!({"operationType": "A", "operationName": "low", "priority": "Low"}))
        .await;
    let first_high = app
        .start_operation(&json!({"operationType": "A", "operationName": "h0", "priority": "High"}))
        .await;
    // Straight away the urgent work goes first. (Unless the machine was so slow that the
    // Low operation had waited an aging interval already, when it may rank High and,
    // older, go first: then the ranking below is still checked.)
    let now = app.lease(&json!({"operationTypes": ["A"]})).await.remove(0);
    if low_created.elapsed() < aging {
        assert_eq!(now["operationId"], first_high);
    } else if now["operationId"] == low {
        eprintln!(
            "aging: the first lease came after an aging interval; the Low operation went first"
        );
        return;
    }
    // A steady stream of High work keeps arriving; after waiting four aging intervals the
    // Low operation ranks Critical, and being older it goes before every newer High.
    for i in 1..=5 {
        app.start_operation(
            &json!({"operationType": "A", "operationName": format!("h{i}"), "priority": "High"}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let next = app.lease(&json!({"operationTypes": ["A"]})).await.remove(0);
    assert_eq!(next["operationId"], low, "the Low operation is not starved");
}

async fn retries_wait_out_the_policy_delays_on_the_configured_time_base(backend: Backend) {
    // Tests run retry delays at 1/100 scale: 100 s, doubling, becomes 1 s then 2 s.
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "Timed", "operationName": "n",
                                 "retryPolicy": {"maxRetries": 2, "retryDelay": 100, "backoffMultiplier": 2.0}}))
        .await;
    let mut lease = app
        .lease(&json!({"operationTypes": ["Timed"]}))
        .await
        .remove(0);
    let mut gaps = Vec::new();
    for _ in 0..2 {
        let failed_at = tokio::time::Instant::now();
        let r = app
            .post(&app.api(&format!("/operation/{id}/fail")), &json!({"leaseToken": lease["leaseToken"], "error": {"code": "E", "message": "again"}, "retryable": true}))
            .await;
        assert_eq!(r.body["status"], "Running", "{}", r.text);
        assert!(r.body["nextAttemptAt"].is_string());
        lease = app
            .lease(&json!({"operationTypes": ["Timed"], "waitSeconds": 10}))
            .await
            .remove(0);
        gaps.push(failed_at.elapsed());
    }
    assert!(
        gaps[0] >= Duration::from_millis(850) && gaps[0] < Duration::from_millis(1700),
        "{gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1750) && gaps[1] < Duration::from_millis(2800),
        "{gaps:?}"
    );
    assert_eq!(lease["attempt"], 3);
    let last = app
        .post(&app.api(&format!("/operation/{id}/fail")), &json!({"leaseToken": lease["leaseToken"], "error": {"code": "E", "message": "last"}, "retryable": true}))
        .await;
    assert_eq!(last.body["status"], "Failed", "the last attempt ends it");
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(status.body["error"]["message"], "last");
}

/// An idle server asks its database one question per period (a second), however many
/// loops wait for work: the engine's clock looks for all of them at once. PostgreSQL
/// only: with SQLite there is no server to wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_asks_its_database_about_once_a_second() {
    let db = crate::common::TestDb::create(Backend::Postgres).await;
    let proxy = crate::common::TcpProxy::start(crate::common::postgres_addr()).await;
    let proxied = proxy.url_of(&db);
    let app = TestApp::start_on(db, |c| c.database_url = proxied).await;
    // A webhook, a push worker and a finished operation: the loops that serve them are
    // idle, not absent.
    let receiver = crate::receiver::Receiver::start().await;
    app.register_webhook(&json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}))
        .await;
    let id = app
        .start_operation(&json!({"operationType": "Idle", "operationName": "done"}))
        .await;
    let lease = app
        .lease(&json!({"operationTypes": ["Idle"]}))
        .await
        .remove(0);
    let done = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": lease["leaseToken"], "summary": {"done": true}}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proxy.requests();
    let window = 8;
    tokio::time::sleep(Duration::from_secs(window)).await;
    let asked = proxy.requests() - before;
    // One look a second, give or take a period at each end; loops that polled for
    // themselves asked five to ten times as often.
    assert!(
        asked <= window + 4,
        "an idle server sent {asked} requests in {window} s"
    );
    drop(app);
}
