//! The API contract as a client written from the seeds sees it: strict bodies (an unknown
//! field, a `null` or a wrong type is a 400 naming the field), 405 with `Allow` for a known
//! path asked with another method.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{Backend, Response, TestApp};

both_backends!(
    unknown_fields_nulls_and_wrong_types_are_refused_naming_the_field,
    a_known_path_asked_with_another_method_is_405_with_allow,
);

fn assert_refused(r: &Response, field: &str, context: &Value) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{context}: {}", r.text);
    assert_eq!(r.body["code"], "VALIDATION_ERROR", "{context}: {}", r.text);
    assert_eq!(r.body["field"], field, "{context}: {}", r.text);
}

async fn unknown_fields_nulls_and_wrong_types_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let base = || json!({"operationType": "T", "operationName": "n"});
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    for (body, field) in [
        (with("priorty", json!("High")), "priorty"),
        (
            with("retryPolicy", json!({"maxRetry": 3})),
            "retryPolicy.maxRetry",
        ),
        (
            with("callbacks", json!({"onComplete": "https://a.io/c"})),
            "callbacks.onComplete",
        ),
        (with("priority", Value::Null), "priority"),
        (
            with("operationDescription", Value::Null),
            "operationDescription",
        ),
        (with("parameters", Value::Null), "parameters"),
        (with("timeout", Value::Null), "timeout"),
        (with("priority", json!(5)), "priority"),
        (with("priority", json!("Urgent")), "priority"),
        (with("timeout", json!("soon")), "timeout"),
        (
            with("retryPolicy", json!({"maxRetries": null})),
            "retryPolicy.maxRetries",
        ),
    ] {
        let r = app.post(&app.api("/operation"), &body).await;
        assert_refused(&r, field, &body);
        assert!(r.body["message"].is_string());
    }
    let r = app
        .post(&app.api("/operation"), &with("priority", json!(5)))
        .await;
    assert_ne!(r.body["message"], "the body is not valid JSON");

    let member =
        |key: &str| json!({"operationKey": key, "operationType": "T", "operationName": key});
    let mut batch =
        json!({"batchName": "b", "operations": [member("a"), member("b"), member("c")]});
    batch["operations"][2]["priority"] = json!(5);
    assert_refused(
        &app.post(&app.api("/batch"), &batch).await,
        "operations[2].priority",
        &batch,
    );
    batch["operations"][2]["priority"] = json!("High");
    batch["operations"][1]["dependsOn"] = json!(["a"]);
    assert_refused(
        &app.post(&app.api("/batch"), &batch).await,
        "operations[1].dependsOn",
        &batch,
    );
    let webhook = json!({"webhookUrl": "https://a.io/h", "filters": {"priority": ["High"]}});
    assert_refused(
        &app.post(&app.api("/webhooks"), &webhook).await,
        "filters.priority",
        &webhook,
    );
    let webhook = json!({"webhookUrl": "https://a.io/h", "webhookName": null});
    assert_refused(
        &app.post(&app.api("/webhooks"), &webhook).await,
        "webhookName",
        &webhook,
    );

    // The worker protocol is as strict.
    app.start_operation(&json!({"operationType": "Strict", "operationName": "w"}))
        .await;
    let lease = app
        .lease(&json!({"operationTypes": ["Strict"], "max": 1}))
        .await;
    let id = lease[0]["operationId"].as_str().unwrap();
    let token = lease[0]["leaseToken"].as_str().unwrap();
    let report = json!({"leaseToken": token, "percent": 50});
    assert_refused(
        &app.post(&app.api(&format!("/operation/{id}/progress")), &report)
            .await,
        "percent",
        &report,
    );
    let report = json!({"leaseToken": token, "phase": {"phaseName": "p", "status": "Done"}});
    assert_refused(
        &app.post(&app.api(&format!("/operation/{id}/progress")), &report)
            .await,
        "phase.status",
        &report,
    );
    let failure =
        json!({"leaseToken": token, "error": {"code": "c", "message": "m", "retry": true}});
    assert_refused(
        &app.post(&app.api(&format!("/operation/{id}/fail")), &failure)
            .await,
        "error.retry",
        &failure,
    );
    let cancel = json!({"reason": "r", "force": true});
    assert_refused(
        &app.delete(&app.api(&format!("/operation/{id}")), Some(&cancel))
            .await,
        "force",
        &cancel,
    );

    let list = app.get(&app.api("/operations")).await;
    assert_eq!(
        list.body["summary"]["totalOperations"], 1,
        "no refused request started anything: {}",
        list.text
    );
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["status"], "Running", "nothing was cancelled");
}

async fn a_known_path_asked_with_another_method_is_405_with_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    for (method, path, allow) in [
        (
            Method::PUT,
            app.api(&format!("/operation/{id}")),
            "GET, DELETE",
        ),
        (Method::GET, app.api("/operation"), "POST"),
        (Method::DELETE, app.api("/operations"), "GET"),
        (Method::GET, app.api("/workers/lease"), "POST"),
        (Method::PATCH, app.api("/webhooks"), "POST, GET"),
        (Method::POST, "/healthz".to_owned(), "GET"),
        (Method::POST, "/api/breakout/jobs".to_owned(), "GET"),
        (Method::GET, "/api/breakout/start".to_owned(), "POST"),
        (
            Method::PUT,
            "/api/breakout/tables/EVAL_DICT".to_owned(),
            "GET, DELETE",
        ),
    ] {
        let r = app
            .call(method.clone(), &path, Some(&app.token), None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            r.text
        );
        assert_eq!(r.headers["allow"], allow, "{method} {path}");
        assert_eq!(r.body["code"], "METHOD_NOT_ALLOWED", "{method} {path}");
        assert!(r.body["requestId"].is_string());
        assert!(r.body["message"].as_str().unwrap().contains(allow));
    }
    let r = app.get(&app.api("/no-such-route")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(r.status, StatusCode::OK, "the right method still works");
}
