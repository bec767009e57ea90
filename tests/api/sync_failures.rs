//! A cursor sync against a source that misbehaves, and requests that are refused: a busy
//! source is asked again (honouring `Retry-After`) within the retry policy; GraphQL errors,
//! a missing `pageInfo` and an oversize page fail clearly; bad parameters and credentials
//! are a 400 naming the field; another tenant sees nothing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{Backend, TestApp};
use crate::sync_source::{sync_operation, Source, Trouble};
use crate::syncs::finished;

both_backends!(
    a_busy_source_is_asked_again_after_its_retry_after,
    a_source_that_stays_down_fails_the_sync_once_the_policy_is_spent,
    answers_that_cannot_be_read_fail_with_what_is_wrong,
    bad_sync_parameters_and_credentials_are_refused_naming_the_field,
    syncs_and_credentials_are_the_projects_own,
);

async fn a_busy_source_is_asked_again_after_its_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let source = Source::start(120).await;
    source.trouble([
        Trouble::Status {
            status: 429,
            retry_after: Some(1),
        },
        Trouble::Status {
            status: 500,
            retry_after: None,
        },
    ]);
    let id = app
        .start_operation(&sync_operation(&source, "busy", 100))
        .await;
    let status = finished(&app, &id).await;
    assert_eq!(status["status"], "Completed", "{status}");
    let asked = source.asked();
    assert_eq!(asked.len(), 4, "429, 500, then two pages");
    let waited = asked[1].at - asked[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({waited:?})"
    );
    assert_eq!(
        asked[1].variables, asked[0].variables,
        "the same page asked again"
    );
    let results = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(results.body["summary"]["records"], 120);
}

async fn a_source_that_stays_down_fails_the_sync_once_the_policy_is_spent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let source = Source::start(10).await;
    source.always(Trouble::Status {
        status: 503,
        retry_after: None,
    });
    let mut body = sync_operation(&source, "down", 100);
    body["retryPolicy"] = json!({"maxRetries": 2, "retryDelay": 1, "backoffMultiplier": 1});
    let id = app.start_operation(&body).await;
    let status = finished(&app, &id).await;
    assert_eq!(status["status"], "Failed", "{status}");
    assert_eq!(status["error"]["code"], "SOURCE_UNAVAILABLE", "{status}");
    assert!(
        status["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"),
        "{status}"
    );
    assert_eq!(source.asked().len(), 3, "the first try and 2 retries");
    let sync = app.get(&app.api("/syncs/down")).await;
    assert!(sync.body["lastError"]
        .as_str()
        .unwrap()
        .contains("did not answer"));
    assert!(sync.body["cursor"].is_null());
    assert_eq!(sync.body["lastRun"]["status"], "Failed");
}

async fn answers_that_cannot_be_read_fail_with_what_is_wrong(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let source = Source::start(300).await;
    let run = |name: &str, body: serde_json::Value| {
        let app = &app;
        let name = name.to_owned();
        async move {
            let id = app.start_operation(&body).await;
            let status = finished(app, &id).await;
            assert_eq!(status["status"], "Failed", "{name}: {status}");
            status["error"].clone()
        }
    };

    source.trouble([Trouble::GraphqlErrors("Démarche introuvable")]);
    let error = run("errors", sync_operation(&source, "a", 100)).await;
    assert_eq!(error["code"], "SOURCE_GRAPHQL_ERRORS");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("Démarche introuvable"));

    source.trouble([Trouble::NoPageInfo]);
    let error = run("no pageInfo", sync_operation(&source, "b", 100)).await;
    assert_eq!(error["code"], "SYNC_CONFIGURATION");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("data.demarche.dossiers.pageInfo"),
        "{error}"
    );

    let mut wrong_path = sync_operation(&source, "c", 100);
    wrong_path["parameters"]["idPath"] = json!("numero");
    let error = run("idPath", wrong_path).await;
    assert_eq!(error["code"], "SYNC_CONFIGURATION");
    assert!(error["message"].as_str().unwrap().contains("`numero`"));

    let mut small = sync_operation(&source, "d", 300);
    small["parameters"]["maxPageBytes"] = json!(4096);
    let error = run("too large", small).await;
    assert_eq!(error["code"], "PAGE_TOO_LARGE");
    // Nothing was written for pages that failed.
    let sync = app.get(&app.api("/syncs/d")).await;
    assert_eq!(sync.body["recordsTotal"], 0);
    assert!(sync.body["lastError"]
        .as_str()
        .unwrap()
        .contains("maxPageBytes"));

    let mut missing = sync_operation(&source, "e", 100);
    missing["parameters"]["credential"] = json!("nowhere");
    let error = run("credential", missing).await;
    assert_eq!(error["code"], "CREDENTIAL_NOT_FOUND");
}

async fn bad_sync_parameters_and_credentials_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let source = Source::start(1).await;
    let refused = |field: &'static str, change: Box<dyn Fn(&mut serde_json::Value)>| {
        let app = &app;
        let mut body = sync_operation(&source, "s", 100);
        change(&mut body["parameters"]);
        async move {
            let r = app.post(&app.api("/operation"), &body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.text);
            assert_eq!(r.body["field"], field, "{}", r.text);
        }
    };
    refused(
        "parameters.syncName",
        Box::new(|p| {
            p.as_object_mut().unwrap().remove("syncName");
        }),
    )
    .await;
    refused(
        "parameters.syncName",
        Box::new(|p| p["syncName"] = json!("a\u{0}b")),
    )
    .await;
    refused(
        "parameters.syncName",
        Box::new(|p| p["syncName"] = json!("../x")),
    )
    .await;
    refused(
        "parameters.endpoint",
        Box::new(|p| p["endpoint"] = json!("file:///etc/passwd")),
    )
    .await;
    refused(
        "parameters.pageSize",
        Box::new(|p| p["pageSize"] = json!(-5)),
    )
    .await;
    refused(
        "parameters.pageSize",
        Box::new(|p| p["pageSize"] = json!(1u64 << 40)),
    )
    .await;
    refused("parameters.kind", Box::new(|p| p["kind"] = json!("soap"))).await;
    refused(
        "parameters.nodesPath",
        Box::new(|p| p["nodesPath"] = json!("")),
    )
    .await;
    refused(
        "parameters.updatedSince",
        Box::new(|p| p["updatedSince"] = json!("hier")),
    )
    .await;
    refused(
        "parameters.variables.first",
        Box::new(|p| p["variables"]["first"] = json!(5)),
    )
    .await;
    refused(
        "parameters.unknown",
        Box::new(|p| p["unknown"] = json!(true)),
    )
    .await;
    // A batch member's parameters are checked the same way, named under the member.
    let mut member = sync_operation(&source, "s", 100);
    member["parameters"]["pageSize"] = json!(0);
    member["operationKey"] = json!("sync");
    let r = app
        .post(
            &app.api("/batch"),
            &json!({"batchName": "b", "operations": [member]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "operations[0].parameters.pageSize");

    // With private targets refused, a source on a private address is a 400 at start.
    let strict = TestApp::spawn_with(backend, |c| c.delivery.allow_private_targets = false).await;
    for endpoint in [
        source.url.clone(),
        "http://[::ffff:127.0.0.1]/graphql".to_owned(),
        "http://2130706433/graphql".to_owned(),
        "http://[64:ff9b::a00:1]/graphql".to_owned(),
    ] {
        let mut body = sync_operation(&source, "s", 100);
        body["parameters"]["endpoint"] = json!(endpoint);
        let r = strict.post(&strict.api("/operation"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{endpoint}: {}", r.text);
        assert_eq!(r.body["field"], "parameters.endpoint", "{}", r.text);
    }

    let admin = app.token_with("admin").await;
    let put = |name: &str, body: serde_json::Value, token: String| {
        let app = &app;
        let path = app.api(&format!("/credentials/{name}"));
        async move {
            app.call(Method::PUT, &path, Some(&token), Some(&body))
                .await
        }
    };
    for (body, field) in [
        (
            json!({"type": "bearer", "token": "a\r\nX-Injected: 1"}),
            "token",
        ),
        (json!({"type": "bearer", "token": "nul\u{0}"}), "token"),
        (
            json!({"type": "header", "header": "Host", "value": "x"}),
            "header",
        ),
        (
            json!({"type": "header", "header": "X Key", "value": "x"}),
            "header",
        ),
        (
            json!({"type": "bearer", "token": "t", "origins": ["https://a.example/path"]}),
            "origins[0]",
        ),
    ] {
        let r = put("c", body.clone(), admin.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    for body in [
        json!({"type": "basic", "token": "t"}),
        json!({"type": "bearer"}),
        json!({"type": "bearer", "token": "t", "extra": 1}),
        json!(["bearer"]),
    ] {
        let r = put("c", body.clone(), admin.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
    }
    let r = put(
        "bad name",
        json!({"type": "bearer", "token": "t"}),
        admin.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "name");
    // Storing a secret takes the admin scope; a token that may start syncs may not.
    let r = put(
        "c",
        json!({"type": "bearer", "token": "t"}),
        app.token.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = put("c", json!({"type": "bearer", "token": "t"}), admin.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = put("c", json!({"type": "bearer", "token": "u"}), admin.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "replaced: {}", r.text);
    let r = app
        .call(
            Method::DELETE,
            &app.api("/credentials/c"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(
            Method::DELETE,
            &app.api("/credentials/c"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get(&app.api("/syncs?pageSize=0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["field"], "pageSize");
    let r = app.get(&app.api("/syncs/never-ran")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn syncs_and_credentials_are_the_projects_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let source = Source::start(5).await;
    let admin = app.token_with("admin").await;
    let r = app
        .call(
            Method::PUT,
            &app.api("/credentials/mine"),
            Some(&admin),
            Some(&json!({"type": "bearer", "token": "only-mine"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = app
        .start_operation(&sync_operation(&source, "mine", 100))
        .await;
    assert_eq!(finished(&app, &id).await["status"], "Completed");

    let (tenant, project, token) = app.other_tenant().await;
    let other = |path: &str| format!("/api/{tenant}/{project}/async{path}");
    // Another tenant's token on this project's paths: 404, never 403.
    for (method, path) in [
        (Method::GET, app.api("/syncs")),
        (Method::GET, app.api("/syncs/mine")),
        (Method::DELETE, app.api("/syncs/mine/cursor")),
        (Method::GET, app.api("/credentials")),
        (Method::DELETE, app.api("/credentials/mine")),
    ] {
        let r = app.call(method.clone(), &path, Some(&token), None).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
    }
    // Its own project has neither the sync nor the credential; a sync of the same name
    // there is its own, and cannot use this project's credential.
    let r = app
        .call(Method::GET, &other("/syncs/mine"), Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(Method::GET, &other("/credentials"), Some(&token), None)
        .await;
    assert_eq!(r.body["credentials"], json!([]));
    let mut body = sync_operation(&source, "mine", 100);
    body["parameters"]["credential"] = json!("mine");
    let r = app
        .call(
            Method::POST,
            &other("/operation"),
            Some(&token),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let theirs = r.body["operationId"].as_str().unwrap().to_owned();
    let status = crate::common::eventually(Duration::from_secs(30), || async {
        let s = app
            .call(
                Method::GET,
                &other(&format!("/operation/{theirs}")),
                Some(&token),
                None,
            )
            .await;
        (s.body["status"] == "Failed").then_some(s.body)
    })
    .await;
    assert_eq!(status["error"]["code"], "CREDENTIAL_NOT_FOUND");
    assert!(source
        .asked()
        .iter()
        .all(|a| a.authorization.as_deref() != Some("Bearer only-mine")));
    let mine = app.get(&app.api("/syncs/mine")).await;
    assert_eq!(mine.body["recordsTotal"], 5);
}
