//! Hostile bodies for every route that takes one: each field of a valid body replaced in
//! turn by a wrong type, a huge or negative number, a NUL, a long string, deep nesting or
//! a private address or a device path; unknown fields; and bodies that are not JSON
//! objects at all. Every answer must come promptly and be a 4xx or a success, never a
//! 5xx, and the server must still answer.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(no_body_makes_the_server_fail);

/// Values that are wrong in some way for nearly any field.
fn hostile_values() -> Vec<Value> {
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!({ "d": [deep] });
    }
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(i64::MIN),
        json!(u64::MAX),
        // Beyond every integer type, and beyond f64 once parsed as text.
        serde_json::from_str("-9223372036854775809").unwrap(),
        serde_json::from_str("18446744073709551616").unwrap(),
        json!(1e308),
        json!(""),
        json!(" "),
        json!("\u{0}"),
        json!("x".repeat(100_000)),
        json!("💥\u{202e}\u{feff}"),
        json!("../../../etc/passwd"),
        json!("/dev/zero"),
        json!("http://[::ffff:127.0.0.1]:9/x"),
        json!("op-00000000-0000-0000-0000-000000000000"),
        json!([]),
        json!([null, 1, "a"]),
        json!({}),
        json!({"unexpected": 1}),
        deep,
    ]
}

/// Bodies that are no JSON object, or no JSON at all.
pub(crate) fn garbage() -> Vec<Vec<u8>> {
    let mut nested = "[".repeat(5_000);
    nested.push_str(&"]".repeat(5_000));
    [
        "",
        "{",
        "}",
        "{\"a\":}",
        "[1,2",
        "null",
        "\"text\"",
        "12345678901234567890123456789",
        "[]",
        "{}",
        "{\"a\": 1} trailing",
        "{\"a\": \"\\ud800\"}",
        "{\"a\": NaN}",
        nested.as_str(),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"a\": \"\xc3\x28\"}".to_vec(),
    ])
    .collect()
}

/// Every variant of `body` with one value (at any depth) replaced by each hostile value,
/// plus an unknown field added to each object.
pub(crate) fn mutations(body: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut paths = Vec::new();
    collect_paths(body, &mut Vec::new(), &mut paths);
    for path in &paths {
        for value in hostile_values() {
            let mut variant = body.clone();
            *pointer_mut(&mut variant, path) = value;
            out.push(variant);
        }
    }
    let mut objects = vec![Vec::new()];
    objects.extend(
        paths
            .iter()
            .filter(|p| pointer(body, p).is_object())
            .cloned(),
    );
    for path in objects {
        let mut variant = body.clone();
        if let Some(map) = pointer_mut(&mut variant, &path).as_object_mut() {
            map.insert("unknownFieldFromFuzz".into(), json!("?"));
            out.push(variant);
        }
    }
    out
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn collect_paths(value: &Value, at: &mut Vec<Step>, paths: &mut Vec<Vec<Step>>) {
    let children: Vec<(Step, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Step::Index(i), v))
            .collect(),
        _ => Vec::new(),
    };
    for (step, child) in children {
        at.push(step);
        paths.push(at.clone());
        collect_paths(child, at, paths);
        at.pop();
    }
}

fn pointer<'a>(value: &'a Value, path: &[Step]) -> &'a Value {
    path.iter().fold(value, |v, step| match step {
        Step::Key(k) => &v[k.as_str()],
        Step::Index(i) => &v[*i],
    })
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(value, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

async fn send(
    app: &TestApp,
    token: &str,
    method: &Method,
    path: &str,
    body: Vec<u8>,
) -> StatusCode {
    app.client
        .request(method.clone(), format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers")
        .status()
}

async fn no_body_makes_the_server_fail(backend: Backend) {
    // Able to send mail and Slack messages, so that bodies asking for them are valid.
    let (app, _mail, _slack) = TestApp::spawn_notifying(backend).await;
    let op = app
        .start_operation(&json!({"operationType": "Fuzzed", "operationName": "target"}))
        .await;
    let leased = app
        .lease(&json!({"operationTypes": ["Fuzzed"], "max": 1, "waitSeconds": 0}))
        .await;
    let token = leased[0]["leaseToken"].as_str().unwrap().to_owned();
    let webhook = app
        .register_webhook(&json!({"webhookUrl": "http://127.0.0.1:9/h", "webhookName": "w", "events": ["operation.completed"]}))
        .await["webhookId"]
        .as_str()
        .unwrap()
        .to_owned();
    let callback = json!({"onProgress": "http://127.0.0.1:9/p", "onCompletion": "http://127.0.0.1:9/c", "onError": "http://127.0.0.1:9/e"});
    let retry_policy =
        json!({"maxRetries": 1, "retryDelay": 1, "backoffMultiplier": 2.0, "maxDelay": 10});
    let webhook_body = json!({
        "webhookUrl": "http://127.0.0.1:9/h", "webhookName": "w", "events": ["operation.completed", "operation.progress"],
        "filters": {"operationTypes": ["T"], "priorities": ["High"], "minProgressIncrement": 10},
        "authentication": {"type": "hmac-sha256", "secret": "a-long-enough-secret"},
        "retryPolicy": retry_policy, "headers": {"X-Team": "a"}
    });
    let routes: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            app.api("/operation"),
            json!({
                "operationType": "T", "operationName": "n", "operationDescription": "d", "priority": "High",
                "parameters": {"a": [1, {"b": "c"}]}, "callbacks": callback,
                "notifications": {"email": ["a@example.com"], "slack": {"channel": "#c", "mentionUsers": ["@u"]}},
                "timeout": 60, "retryPolicy": retry_policy
            }),
        ),
        (
            Method::POST,
            app.api("/batch"),
            json!({
                "batchName": "b", "batchDescription": "d",
                "operations": [
                    {"operationKey": "a", "operationType": "T", "operationName": "a", "callbacks": callback},
                    {"operationKey": "b", "operationType": "T", "operationName": "b", "dependencies": ["a"], "priority": "Low", "parameters": {}, "timeout": 10}
                ],
                "batchCallbacks": {"onBatchStart": "http://127.0.0.1:9/s", "onOperationComplete": "http://127.0.0.1:9/o", "onBatchComplete": "http://127.0.0.1:9/e"},
                "failurePolicy": {"stopOnFirstFailure": false, "continueIndependentOperations": true, "retryFailedOperations": true},
                "retryPolicy": retry_policy
            }),
        ),
        (
            Method::POST,
            app.api(&format!("/operation/{op}/progress")),
            json!({
                "leaseToken": token, "percentage": 50, "currentPhase": "p", "totalPhases": 2,
                "processedRecords": 1, "totalRecords": 2,
                "phase": {"phaseName": "p", "status": "Running", "results": {}, "checkpoint": {"at": 1},
                          "progress": 40, "currentActivity": "a", "counters": {"done": 1, "left": 2.5}}
            }),
        ),
        (
            Method::POST,
            app.api("/workers/lease"),
            json!({"operationTypes": ["Nothing"], "max": 1, "waitSeconds": 0, "workerId": "w"}),
        ),
        (
            Method::POST,
            app.api("/workers"),
            json!({"url": "http://127.0.0.1:9/w", "name": "w", "operationTypes": ["PushOnly"], "maxConcurrency": 2, "secret": "a-long-enough-secret"}),
        ),
        (Method::POST, app.api("/webhooks"), webhook_body.clone()),
        (
            Method::PUT,
            app.api(&format!("/webhooks/{webhook}")),
            webhook_body,
        ),
        (
            Method::POST,
            app.api(&format!("/webhooks/{webhook}/rotate-secret")),
            json!({"secret": "another-long-secret", "overlapSeconds": 60}),
        ),
        (
            Method::POST,
            app.api(&format!("/webhooks/{webhook}/recover")),
            json!({"since": "2026-01-01T00:00:00Z"}),
        ),
        (
            Method::POST,
            app.api("/callbacks/secret/rotate"),
            json!({"secret": "another-long-secret", "overlapSeconds": 60}),
        ),
        (
            Method::DELETE,
            app.api(&format!("/operation/{op}")),
            json!({"reason": "r", "preservePartialResults": true, "forceTermination": false, "notifyCallbacks": true}),
        ),
        (
            Method::POST,
            app.api(&format!("/operation/{op}/retry")),
            json!({"retryMode": "resume", "retryReason": "r", "modifyParameters": true, "updatedParameters": {"a": 2}, "newTimeout": 30, "retryPolicy": retry_policy, "preserveOriginalResults": true}),
        ),
        (
            Method::POST,
            app.api(&format!("/operation/{op}/fail")),
            json!({"leaseToken": token, "error": {"code": "c", "message": "m", "details": {}}, "retryable": true}),
        ),
        (
            Method::POST,
            app.api(&format!("/operation/{op}/complete")),
            json!({"leaseToken": token, "summary": {"s": 1}, "phaseResults": [{"p": 1}], "artifacts": [{"a": 1}],
                   "performance": {"efficiency": 87.2}, "recommendations": [{"priority": "High"}]}),
        ),
    ];
    let mut routes: Vec<(Method, String, Value, String)> = routes
        .into_iter()
        .map(|(method, path, body)| (method, path, body, app.token.clone()))
        .collect();
    // The breakout facade: server paths (admin scope, as they are read with the server's
    // rights) and a job over a registered dictionary.
    let fixture = |name: &str| format!("{}/fixtures/cspro/{name}", env!("CARGO_MANIFEST_DIR"));
    let admin = app.token_with("admin").await;
    let register = json!({
        "dictionaryPath": fixture("jhandley_PopstanCensus_CEN2000.dcf"),
        "dataPath": fixture("jhandley_PopstanCensus.dat"),
    });
    let status = send(
        &app,
        &admin,
        &Method::POST,
        "/api/breakout/dictionaries",
        register.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    routes.push((
        Method::POST,
        "/api/breakout/dictionaries".into(),
        register,
        admin,
    ));
    routes.push((
        Method::POST,
        "/api/breakout/start".into(),
        json!({"dictionaries": ["CEN2000"], "threads": 2, "overwrite": true, "strict": false,
               "incremental": false, "chunk_size": 100}),
        app.token.clone(),
    ));
    let mut sent = 0;
    for (method, path, body, token) in &routes {
        let mut bodies: Vec<Vec<u8>> = garbage();
        bodies.extend(mutations(body).iter().map(|b| b.to_string().into_bytes()));
        for bytes in bodies {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            let status = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                send(&app, token, method, path, bytes),
            )
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within 30 s to {shown}"));
            assert!(
                !status.is_server_error(),
                "{method} {path} answered {status} to {shown}"
            );
            sent += 1;
        }
    }
    assert!(sent > 1_000, "the corpus is not empty: {sent} requests");
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
}
