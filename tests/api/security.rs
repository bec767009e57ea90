use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(
    requests_without_a_valid_token_are_unauthorized,
    another_tenants_token_sees_nothing,
    a_project_bound_token_sees_only_its_project,
    missing_scopes_are_forbidden,
    bad_input_gets_a_4xx_naming_the_field_and_creates_nothing,
    oversized_bodies_are_refused,
    worker_reports_are_checked,
    special_purpose_targets_are_refused_at_registration,
);

async fn requests_without_a_valid_token_are_unauthorized(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for token in [None, Some("rls_not-a-real-token")] {
        let r = app
            .call(Method::GET, &app.api("/operations"), token, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "UNAUTHORIZED");
        assert!(r.body["requestId"].is_string());
        let r = app.call(Method::GET, &app.api("/ping"), token, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

/// Every route, with a body where it needs one.
fn routes(
    app: &TestApp,
    tenant: &str,
    project: &str,
    op: &str,
) -> Vec<(Method, String, Option<Value>)> {
    let base = format!("/api/{tenant}/{project}/async");
    vec![
        (Method::GET, format!("{base}/ping"), None),
        (
            Method::POST,
            format!("{base}/operation"),
            Some(json!({"operationType": "T", "operationName": "n"})),
        ),
        (Method::GET, format!("{base}/operations"), None),
        (Method::GET, format!("{base}/operation/{op}"), None),
        (Method::DELETE, format!("{base}/operation/{op}"), None),
        (Method::GET, format!("{base}/operation/{op}/results"), None),
        (
            Method::POST,
            format!("{base}/operation/{op}/progress"),
            Some(json!({"leaseToken": "x"})),
        ),
        (
            Method::POST,
            format!("{base}/operation/{op}/complete"),
            Some(json!({"leaseToken": "x"})),
        ),
        (
            Method::POST,
            format!("{base}/operation/{op}/fail"),
            Some(json!({"leaseToken": "x", "error": {"code": "c", "message": "m"}})),
        ),
        (
            Method::POST,
            format!("{base}/workers/lease"),
            Some(json!({})),
        ),
    ]
    .into_iter()
    .map(|(m, p, b)| {
        let _ = app;
        (m, p, b)
    })
    .collect()
}

async fn another_tenants_token_sees_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let op = app
        .start_operation(&json!({"operationType": "T", "operationName": "secret"}))
        .await;
    let (_, _, intruder) = app.other_tenant().await;
    for (method, path, body) in routes(&app, &app.tenant.to_string(), &app.project.to_string(), &op)
    {
        let r = app
            .call(method.clone(), &path, Some(&intruder), body.as_ref())
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
        assert!(!r.text.contains("secret"));
    }
    let status = app.get(&app.api(&format!("/operation/{op}"))).await;
    assert_eq!(
        status.body["status"], "Initiated",
        "the intruder changed nothing"
    );
    let list = app.get(&app.api("/operations")).await;
    assert_eq!(list.body["summary"]["totalOperations"], 1);
}

async fn a_project_bound_token_sees_only_its_project(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (other_tenant, other_project, other_token) = app.other_tenant().await;
    let op = {
        let r = app
            .call(
                Method::POST,
                &format!("/api/{other_tenant}/{other_project}/async/operation"),
                Some(&other_token),
                Some(&json!({"operationType": "T", "operationName": "n"})),
            )
            .await;
        r.body["operationId"].as_str().unwrap().to_owned()
    };
    // Our token, their ids: tenant mismatch. Our tenant, a project that is not ours: unknown.
    let unknown_project = uuid::Uuid::new_v4().to_string();
    for (tenant, project) in [
        (other_tenant.to_string(), other_project.to_string()),
        (app.tenant.to_string(), unknown_project),
        (app.tenant.to_string(), other_project.to_string()),
    ] {
        let r = app
            .call(
                Method::GET,
                &format!("/api/{tenant}/{project}/async/operation/{op}"),
                Some(&app.token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{tenant}/{project}");
    }
}

async fn missing_scopes_are_forbidden(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reader = app.token_with("operations:read").await;
    let writer = app.token_with("operations:write").await;
    let r = app
        .call(
            Method::POST,
            &app.api("/operation"),
            Some(&reader),
            Some(&json!({"operationType": "T", "operationName": "n"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["code"], "INSUFFICIENT_PERMISSIONS");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("operations:write"));
    let r = app
        .call(
            Method::POST,
            &app.api("/workers/lease"),
            Some(&writer),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(Method::GET, &app.api("/operations"), Some(&writer), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(Method::GET, &app.api("/operations"), Some(&reader), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let admin = app.token_with("admin").await;
    let r = app
        .call(
            Method::POST,
            &app.api("/workers/lease"),
            Some(&admin),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "admin implies every scope");
}

async fn bad_input_gets_a_4xx_naming_the_field_and_creates_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let raw = |body: &'static str| {
        let app = &app;
        async move {
            let request = app
                .client
                .post(format!("{}{}", app.base, app.api("/operation")))
                .bearer_auth(&app.token)
                .header("Content-Type", "application/json")
                .body(body);
            crate::common::Response::read(request.send().await.unwrap()).await
        }
    };
    let malformed = raw("{\"operationType\": \"T\", ").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "INVALID_JSON");

    let cases: Vec<(Value, &str)> = vec![
        (json!({"operationType": "T"}), "operationName"),
        (json!({"operationName": "n"}), "operationType"),
        (
            json!({"operationType": "T", "operationName": "n", "priority": "Urgent"}),
            "priority",
        ),
        (
            json!({"operationType": "T", "operationName": "n", "timeout": -1}),
            "timeout",
        ),
        (
            json!({"operationType": "T", "operationName": "n", "timeout": 999_999_999}),
            "timeout",
        ),
        (
            json!({"operationType": "T", "operationName": "n", "timeout": "soon"}),
            "timeout",
        ),
        (
            json!({"operationType": "T", "operationName": "n", "parameters": "x"}),
            "parameters",
        ),
        (
            json!({"operationType": "T", "operationName": "n", "callbacks": {"onError": "not a url"}}),
            "callbacks.onError",
        ),
        (
            json!({"operationType": "T", "operationName": "n", "retryPolicy": {"backoffMultiplier": 0.1}}),
            "retryPolicy.backoffMultiplier",
        ),
        (
            json!({"operationType": "T", "operationName": "n", "retryPolicy": {"retryDelay": -3}}),
            "retryPolicy.retryDelay",
        ),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let r = app.post(&app.api("/operation"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["code"], "VALIDATION_ERROR", "{body}");
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
        assert!(r.body["requestId"].is_string());
    }

    for (query, field) in [
        ("pageSize=101", "pageSize"),
        ("pageSize=0", "pageSize"),
        ("page=-1", "page"),
        ("status=Done", "status"),
        ("priority=Urgent", "priority"),
        ("dateFrom=last-week", "dateFrom"),
        ("includeDetails=maybe", "includeDetails"),
        ("page=1&page=2", "page"),
    ] {
        let r = app.get(&app.api(&format!("/operations?{query}"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.body["field"], field, "{query}: {}", r.text);
    }

    let r = app.get(&app.api("/operation/op-123")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["field"], "operationId");
    let r = app
        .get(&format!("/api/not-a-guid/{}/async/operations", app.project))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["field"], "tenantId");
    let r = app
        .get(&app.api(&format!("/operation/op-{}", uuid::Uuid::new_v4())))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["code"], "NOT_FOUND");
    let r = app.get(&app.api("/no-such-route")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let list = app.get(&app.api("/operations")).await;
    assert_eq!(
        list.body["summary"]["totalOperations"], 0,
        "no bad request created anything"
    );
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.body_limit = 4096).await;
    let big = "x".repeat(8192);
    let r = app
        .post(
            &app.api("/operation"),
            &json!({"operationType": "T", "operationName": "n", "parameters": {"blob": big}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["code"], "PAYLOAD_TOO_LARGE");
    let list = app.get(&app.api("/operations")).await;
    assert_eq!(list.body["summary"]["totalOperations"], 0);
}

async fn worker_reports_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    let lease = app.lease(&json!({})).await.remove(0);
    let token = lease["leaseToken"].as_str().unwrap();
    let progress = app.api(&format!("/operation/{id}/progress"));
    for (body, field) in [
        (
            json!({"leaseToken": token, "percentage": 101}),
            "percentage",
        ),
        (
            json!({"leaseToken": token, "processedRecords": -5}),
            "processedRecords",
        ),
        (json!({"percentage": 5}), "leaseToken"),
        (
            json!({"leaseToken": token, "phase": {"phaseName": "p", "status": "Exploded"}}),
            "phase.status",
        ),
    ] {
        let r = app.post(&progress, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    let r = app
        .post(&app.api("/workers/lease"), &json!({"max": 1000}))
        .await;
    assert_eq!(r.body["field"], "max");
    let r = app
        .post(&app.api("/workers/lease"), &json!({"waitSeconds": -1}))
        .await;
    assert_eq!(r.body["field"], "waitSeconds");
    // A claim picks each listed type: a list of thousands is refused, not run.
    let types: Vec<String> = (0..1000).map(|i| format!("T{i}")).collect();
    let r = app
        .post(
            &app.api("/workers/lease"),
            &json!({"operationTypes": types}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "operationTypes");
    let r = app
        .post(
            &app.api("/workers/lease"),
            &json!({"operationTypes": ["T", "T\u{0}"]}),
        )
        .await;
    assert_eq!(r.body["field"], "operationTypes[1]");
    let r = app
        .post(
            &app.api("/webhooks"),
            &json!({"webhookUrl": "https://example.com/hook",
                    "filters": {"operationTypes": ["T\u{0}"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "filters.operationTypes[0]");
    let r = app
        .post(
            &app.api(&format!("/operation/op-{}/progress", uuid::Uuid::new_v4())),
            &json!({"leaseToken": token}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            &progress,
            &json!({"leaseToken": "lease_forged", "percentage": 50}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["code"], "LEASE_LOST");
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert!(
        status.body["progress"]["percentage"].is_null(),
        "a refused report changes nothing"
    );
}

/// The guard with private targets refused, as in production: every URL a tenant gives is
/// refused when it names a special-purpose address in any form, and the error names it.
async fn special_purpose_targets_are_refused_at_registration(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.delivery.allow_private_targets = false).await;
    let step = |key: &str, callbacks: Value| json!({"operationKey": key, "operationName": key, "operationType": "Step", "callbacks": callbacks});
    let cases = [
        (
            "/webhooks",
            json!({"webhookUrl": "http://2130706433/hook"}),
            "webhookUrl",
        ),
        (
            "/webhooks",
            json!({"webhookUrl": "http://[::ffff:0:7f00:1]/hook"}),
            "webhookUrl",
        ),
        (
            "/webhooks",
            json!({"webhookUrl": "http://[64:ff9b::10.0.0.1]/hook"}),
            "webhookUrl",
        ),
        (
            "/webhooks",
            json!({"webhookUrl": "http://[2001::1]/hook"}),
            "webhookUrl",
        ),
        (
            "/operation",
            json!({"operationType": "T", "operationName": "n", "callbacks": {"onProgress": "http://0x7f.1/cb"}}),
            "callbacks.onProgress",
        ),
        (
            "/batch",
            json!({"batchName": "b", "operations": [step("a", json!({}))],
                   "batchCallbacks": {"onBatchComplete": "http://198.18.0.1/done"}}),
            "batchCallbacks.onBatchComplete",
        ),
        (
            "/batch",
            json!({"batchName": "b", "operations": [
                step("a", json!({"onCompletion": "http://[64:ff9b::5db8:d822]/a"})),
                step("b", json!({"onCompletion": "http://[fec0::1]/b"})),
            ]}),
            "operations[1].callbacks.onCompletion",
        ),
        (
            "/workers",
            json!({"url": "http://[2002:a00:1::1]/run", "operationTypes": ["A"]}),
            "url",
        ),
    ];
    for (path, body, field) in cases {
        let r = app.post(&app.api(path), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("RELAIS_ALLOW_PRIVATE_TARGETS"),
            "{}",
            r.text
        );
    }
    let list = app.get(&app.api("/operations")).await;
    assert_eq!(list.body["summary"]["totalOperations"], 0);
    let workers = app.get(&app.api("/workers")).await;
    assert_eq!(workers.body["workers"], json!([]));
    let webhooks = app.get(&app.api("/webhooks")).await;
    assert_eq!(webhooks.body["webhooks"], json!([]));

    // A public IPv4 address behind the well-known NAT64 prefix is public. (Registered
    // only: nothing in this project produces an event, so nothing is sent to it.)
    let r = app
        .post(
            &app.api("/webhooks"),
            &json!({"webhookUrl": "http://[64:ff9b::5db8:d822]/hook"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
}
