use std::time::Duration;

use relais::outbound::signing::{verify, SigningKey};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, Backend, Response, TestApp};
use crate::receiver::{Received, Receiver, Reply};

both_backends!(
    a_synchronous_push_worker_answers_with_the_result,
    an_asynchronous_push_worker_reports_with_its_callback_token,
    a_push_worker_never_holds_more_than_its_max_concurrency,
    a_failing_push_worker_is_retried_and_a_cancel_reaches_it,
    bad_push_worker_registrations_are_refused,
);

const SEC: Duration = Duration::from_secs(1);

async fn register(app: &TestApp, receiver: &Receiver, types: &[&str], max: u32) -> Value {
    let r = app
        .post(&app.api("/workers"), &json!({"url": receiver.url, "name": "w", "operationTypes": types, "maxConcurrency": max}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

/// Whether `r` carries a valid signature made with `secret`.
pub fn signed_by(secret: &str, r: &Received) -> bool {
    verify(
        &SigningKey::from_secret(secret),
        r.header("webhook-id"),
        r.header("webhook-timestamp").parse().unwrap(),
        r.body.as_bytes(),
        r.header("webhook-signature"),
        chrono::Utc::now().timestamp(),
        300,
    )
    .is_ok()
}

async fn status_of(app: &TestApp, id: &str, wanted: &str) -> Value {
    eventually(15 * SEC, || async {
        let s = app.get(&app.api(&format!("/operation/{id}"))).await;
        (s.body["status"] == wanted).then_some(s.body)
    })
    .await
}

/// The worker's side: report to the task's callback URL with its callback token.
async fn callback(app: &TestApp, task: &Value, what: &str, body: Value) -> Response {
    let mut body = body;
    body["leaseToken"] = task["leaseToken"].clone();
    let request = app
        .client
        .post(format!(
            "{}/{what}",
            task["callbackBaseUrl"].as_str().unwrap()
        ))
        .bearer_auth(task["callbackToken"].as_str().unwrap())
        .json(&body);
    Response::read(request.send().await.unwrap()).await
}

async fn a_synchronous_push_worker_answers_with_the_result(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.fallback(
        Reply::status(200)
            .json(json!({"summary": {"rows": 42}, "artifacts": [{"name": "out.csv"}]})),
    );
    let worker = register(&app, &receiver, &["Pushed"], 4).await;
    assert!(worker["workerId"].as_str().unwrap().starts_with("wkr-"));
    let secret = worker["secret"].as_str().unwrap();
    let id = app
        .start_operation(
            &json!({"operationType": "Pushed", "operationName": "n", "parameters": {"x": 1}}),
        )
        .await;
    assert!(
        app.lease(&json!({"operationTypes": ["Pushed"]}))
            .await
            .is_empty(),
        "pull workers do not get push types"
    );

    let task = receiver.wait_for(1, 10 * SEC).await.remove(0);
    assert!(
        signed_by(secret, &task),
        "tasks are signed with the worker's secret"
    );
    let body = task.json();
    assert_eq!(body["type"], "operation.task");
    assert_eq!(body["operationId"], id);
    assert_eq!(body["parameters"]["x"], 1);
    assert_eq!(body["attempt"], 1);
    assert!(body["callbackToken"]
        .as_str()
        .unwrap()
        .starts_with("rlscb_"));
    assert!(body["callbackBaseUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/operation/{id}")));

    status_of(&app, &id, "Completed").await;
    let results = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(results.body["summary"]["rows"], 42);
    assert_eq!(results.body["artifacts"][0]["name"], "out.csv");
}

async fn an_asynchronous_push_worker_reports_with_its_callback_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.fallback(Reply::status(202));
    register(&app, &receiver, &["Async"], 4).await;
    let id = app
        .start_operation(&json!({"operationType": "Async", "operationName": "n"}))
        .await;
    let other = app
        .start_operation(&json!({"operationType": "Plain", "operationName": "not the worker's"}))
        .await;
    let task = receiver.wait_for(1, 10 * SEC).await.remove(0).json();

    let r = callback(
        &app,
        &task,
        "progress",
        json!({"percentage": 50, "phase": {"phaseName": "p", "status": "Completed"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["cancelRequested"], false);
    // The token reaches its own operation only, and cannot lease or read.
    let mut elsewhere = task.clone();
    elsewhere["callbackBaseUrl"] = json!(task["callbackBaseUrl"]
        .as_str()
        .unwrap()
        .replace(&id, &other));
    assert_eq!(
        callback(&app, &elsewhere, "complete", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let token = task["callbackToken"].as_str().unwrap();
    let lease = app
        .call(
            Method::POST,
            &app.api("/workers/lease"),
            Some(token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(lease.status, StatusCode::FORBIDDEN);
    let read = app
        .call(
            Method::GET,
            &app.api(&format!("/operation/{id}")),
            Some(token),
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);

    let done = callback(&app, &task, "complete", json!({"summary": {"ok": true}})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let status = status_of(&app, &id, "Completed").await;
    assert_eq!(status["phases"][0]["phaseName"], "p");
}

async fn a_push_worker_never_holds_more_than_its_max_concurrency(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.fallback(Reply::status(202));
    let worker = register(&app, &receiver, &["Capped"], 2).await;
    let wid = worker["workerId"].as_str().unwrap();
    for i in 0..6 {
        app.start_operation(&json!({"operationType": "Capped", "operationName": format!("c{i}")}))
            .await;
    }
    let mut finished = 0;
    while finished < 6 {
        let tasks = receiver.wait_for(finished + 1, 10 * SEC).await;
        // Give the engine every chance to overshoot before looking.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = app.get(&app.api(&format!("/workers/{wid}"))).await.body["inFlight"]
            .as_i64()
            .unwrap();
        assert!(held <= 2, "{held} operations held by a worker limited to 2");
        assert!(
            receiver.received().len() <= finished + 2,
            "more tasks sent than the limit allows"
        );
        let task = tasks[finished].json();
        let r = callback(&app, &task, "complete", json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        finished += 1;
    }
    let list = app.get(&app.api("/operations?status=Completed")).await;
    assert_eq!(list.body["summary"]["totalOperations"], 6);
}

async fn a_failing_push_worker_is_retried_and_a_cancel_reaches_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.script([
        Reply::status(503),
        Reply::status(200).json(json!({"summary": {"second": true}})),
    ]);
    let worker = register(&app, &receiver, &["Flaky"], 4).await;
    let secret = worker["secret"].as_str().unwrap().to_owned();
    let id = app
        .start_operation(&json!({"operationType": "Flaky", "operationName": "n", "retryPolicy": {"maxRetries": 2, "retryDelay": 0.1}}))
        .await;
    let status = status_of(&app, &id, "Completed").await;
    assert_eq!(status["execution"]["attempt"], 2);
    assert_eq!(status["attempts"][0]["error"]["code"], "PUSH_WORKER_ERROR");

    // A worker holding a task asynchronously is told when it is cancelled.
    receiver.fallback(Reply::status(202));
    let held = app
        .start_operation(&json!({"operationType": "Flaky", "operationName": "to cancel"}))
        .await;
    receiver
        .wait_until(10 * SEC, |r| {
            r.iter().any(|x| x.json()["operationId"] == held)
        })
        .await;
    app.delete(
        &app.api(&format!("/operation/{held}")),
        Some(&json!({"reason": "not needed"})),
    )
    .await;
    let got = receiver
        .wait_until(10 * SEC, |r| {
            r.iter().any(|x| x.json()["type"] == "operation.cancelled")
        })
        .await;
    let notice = got
        .iter()
        .find(|x| x.json()["type"] == "operation.cancelled")
        .unwrap();
    assert_eq!(notice.json()["subject"], held);
    assert_eq!(
        notice.json()["data"]["cancellation"]["reason"],
        "not needed"
    );
    assert!(signed_by(&secret, notice));
}

async fn bad_push_worker_registrations_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (body, field) in [
        (json!({"url": "nope", "operationTypes": ["A"]}), "url"),
        (
            json!({"url": "https://w.example", "operationTypes": []}),
            "operationTypes",
        ),
        (
            json!({"url": "https://w.example", "operationTypes": ["A"], "maxConcurrency": 0}),
            "maxConcurrency",
        ),
        (
            json!({"url": "https://w.example", "operationTypes": ["Sleep"]}),
            "operationTypes",
        ),
    ] {
        let r = app.post(&app.api("/workers"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    let strict = TestApp::spawn_with(backend, |c| c.delivery.allow_private_targets = false).await;
    let r = strict
        .post(
            &strict.api("/workers"),
            &json!({"url": "http://127.0.0.1:9/run", "operationTypes": ["A"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["field"], "url");
    let listed = app.get(&app.api("/workers")).await;
    assert_eq!(listed.body["workers"], json!([]));
    let missing = app
        .get(&app.api(&format!("/workers/wkr-{}", uuid::Uuid::new_v4())))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
