//! One tenant's bad request never affects another's: text the databases cannot store is
//! refused at the edge, a shared write that fails is split until only the bad request
//! fails, and a deleted tenant's tokens stop working at once, without a 500 on the way.

use std::process::Command;
use std::time::{Duration, Instant};

use relais::domain::ids::OperationId;
use relais::domain::operation::{Callbacks, Notifications, Operation, OperationSpec, Priority};
use relais::domain::retry::RetryPolicy;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(
    nul_characters_are_refused_naming_where_they_are,
    a_failing_write_in_a_shared_transaction_fails_only_its_own_request,
    one_tenant_sending_nuls_never_fails_another_tenants_writes,
    a_deleted_tenant_gets_404_or_401_never_a_500,
    a_tenant_deleted_from_the_command_line_is_refused_by_the_running_server,
);

async fn nul_characters_are_refused_naming_where_they_are(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = Some(app.token.as_str());
    let refused = [
        (
            Method::POST,
            app.api("/operation"),
            Some(json!({"operationType": "T", "operationName": "a\u{0}b"})),
            "operationName",
        ),
        (
            Method::POST,
            app.api("/operation"),
            Some(
                json!({"operationType": "T", "operationName": "n", "parameters": {"k": ["ok", "\u{0}"]}}),
            ),
            "parameters.k[1]",
        ),
        (
            Method::POST,
            app.api("/batch"),
            Some(json!({"batchName": "b", "operations": [
                {"operationKey": "a", "operationType": "T", "operationName": "ok"},
                {"operationKey": "k\u{0}", "operationType": "T", "operationName": "n"}
            ]})),
            "operations[1].operationKey",
        ),
        (
            Method::POST,
            app.api("/webhooks"),
            Some(
                json!({"webhookUrl": "http://127.0.0.1:9/h", "webhookName": "w\u{0}", "events": ["operation.completed"]}),
            ),
            "webhookName",
        ),
        (
            Method::GET,
            app.api("/operations?operationType=%00&page=1"),
            None,
            "operationType",
        ),
        (
            Method::GET,
            "/api/breakout/tables/EVAL%00DICT".to_owned(),
            None,
            "path",
        ),
    ];
    for (method, path, body, field) in refused {
        let r = app.call(method.clone(), &path, token, body.as_ref()).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            r.text
        );
        assert_eq!(r.body["field"], field, "{method} {path}: {}", r.text);
        assert_eq!(r.body["code"], "VALIDATION_ERROR");
        assert!(r.body["message"].as_str().unwrap().contains("NUL"));
        assert!(r.body["requestId"].is_string());
    }
    let listed = app
        .call(Method::GET, &app.api("/operations"), token, None)
        .await;
    assert_eq!(listed.body["operations"], json!([]), "nothing was created");
}

fn spec(name: &str) -> OperationSpec {
    OperationSpec {
        operation_type: "T".into(),
        operation_name: name.into(),
        description: None,
        priority: Priority::Normal,
        parameters: json!({}),
        callbacks: Callbacks::default(),
        notifications: Notifications::default(),
        timeout: Duration::from_secs(3600),
        retry_policy: RetryPolicy::OPERATION_DEFAULT,
    }
}

/// Below the edge checks: creates that arrive together share one transaction, and one
/// that the database refuses (a NUL on PostgreSQL) must not take the others down.
async fn a_failing_write_in_a_shared_transaction_fails_only_its_own_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (other_tenant, other_project, _) = app.other_tenant().await;
    let mut writes = Vec::new();
    for i in 0..200 {
        let store = app.store().clone();
        let bad = i % 10 == 3;
        let (tenant, project) = match bad {
            true => (other_tenant, other_project),
            false => (app.tenant, app.project),
        };
        writes.push(tokio::spawn(async move {
            let name = if bad { "bad\u{0}name" } else { "good" };
            let mut op = Operation::new(
                OperationId::new(),
                tenant,
                project,
                spec(name),
                chrono::Utc::now(),
            );
            (
                bad,
                store.operations().create(&mut op, Vec::new(), None).await,
            )
        }));
    }
    let (mut good, mut refused) = (0, 0);
    for write in writes {
        let (bad, outcome) = write.await.unwrap();
        match (bad, outcome) {
            (false, Ok(_)) => good += 1,
            (false, Err(e)) => panic!("a valid write failed because of another: {e}"),
            (true, Ok(_)) => assert_eq!(backend, Backend::Sqlite, "PostgreSQL stores no NUL"),
            (true, Err(_)) => refused += 1,
        }
    }
    assert_eq!(good, 180);
    if backend == Backend::Postgres {
        assert_eq!(refused, 20);
    }
}

async fn one_tenant_sending_nuls_never_fails_another_tenants_writes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, project, token) = app.other_tenant().await;
    let bad_path = format!("/api/{tenant}/{project}/async/operation");
    let mut sends = Vec::new();
    for i in 0..300 {
        let (client, base) = (app.client.clone(), app.base.clone());
        let (path, token, body, bad) = if i % 3 == 0 {
            let body = json!({"operationType": "T", "operationName": format!("x\u{0}{i}")});
            (bad_path.clone(), token.clone(), body, true)
        } else {
            let body = json!({"operationType": "T", "operationName": format!("op {i}")});
            (app.api("/operation"), app.token.clone(), body, false)
        };
        sends.push(tokio::spawn(async move {
            let r = client
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (bad, r.status())
        }));
    }
    for send in sends {
        let (bad, status) = send.await.unwrap();
        match bad {
            true => assert_eq!(status, StatusCode::BAD_REQUEST),
            false => assert_eq!(status, StatusCode::ACCEPTED),
        }
    }
}

/// While a tenant is deleted, its own requests in flight may fail, but only with 404
/// (its project is gone) or 401 (its token is gone); the other tenant sees no error.
async fn a_deleted_tenant_gets_404_or_401_never_a_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, project, token) = app.other_tenant().await;
    let path = format!("/api/{tenant}/{project}/async/operation");
    let warm = app
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"operationType": "T", "operationName": "before"})),
        )
        .await;
    assert_eq!(warm.status, StatusCode::ACCEPTED, "{}", warm.text);

    let deadline = Instant::now() + Duration::from_secs(3);
    let mut senders = Vec::new();
    for own in [true, false] {
        let (client, base) = (app.client.clone(), app.base.clone());
        let (path, token) = match own {
            true => (path.clone(), token.clone()),
            false => (app.api("/operation"), app.token.clone()),
        };
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < deadline {
                let r = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .json(&json!({"operationType": "T", "operationName": "during"}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status());
            }
            (own, statuses)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let removed = app
        .store()
        .tenants()
        .delete_tenant(tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.projects, 1);
    assert!(removed.operations >= 1);
    let after = app
        .call(
            Method::GET,
            &format!("/api/{tenant}/{project}/async/operations"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "at once: {}",
        after.text
    );
    for sender in senders {
        let (own, statuses) = sender.await.unwrap();
        for status in &statuses {
            match own {
                true => assert!(
                    [
                        StatusCode::ACCEPTED,
                        StatusCode::NOT_FOUND,
                        StatusCode::UNAUTHORIZED
                    ]
                    .contains(status),
                    "the deleted tenant got {status}"
                ),
                false => assert_eq!(*status, StatusCode::ACCEPTED),
            }
        }
        assert!(statuses.len() > 5, "requests were sent throughout");
    }
}

async fn a_tenant_deleted_from_the_command_line_is_refused_by_the_running_server(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, project, token) = app.other_tenant().await;
    let path = format!("/api/{tenant}/{project}/async/operations");
    let r = app.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the token is cached now: {}",
        r.text
    );

    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args([
            "tenant",
            "delete",
            "--tenant",
            &tenant.to_string(),
            "--json",
        ])
        .env("RELAIS_DATABASE_URL", app.database_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["tenantId"], tenant.to_string());
    assert_eq!(answer["deleted"]["projects"], 1);
    assert_eq!(answer["deleted"]["tokens"], 1);

    // The running server learns of it from the database: a notification on PostgreSQL,
    // the count of other processes' commits on SQLite (looked at twice a second).
    let started = Instant::now();
    loop {
        let r = app.call(Method::GET, &path, Some(&token), None).await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the deleted tenant's token still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["tenant", "delete", "--tenant", &tenant.to_string()])
        .env("RELAIS_DATABASE_URL", app.database_url())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no tenant"));
}
