//! OAuth2 client credentials: a client made with the CLI gets an access token from
//! `POST /oauth/token` (HTTP Basic or the form), which works on the async API and the
//! breakout facade; each error of RFC 6749 §5.2; scopes only narrow; an expired token, a
//! revoked client's, a forged or tampered one are 401.

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, relais_json, Backend, Response, TestApp};

both_backends!(
    a_client_trades_its_secret_for_a_token_that_works_like_an_api_token,
    each_refusal_is_an_rfc_6749_error,
    expired_revoked_and_forged_tokens_are_refused,
);

fn client(app: &TestApp, scopes: &str, project: bool) -> (String, String) {
    let tenant = app.tenant.to_string();
    let project_id = app.project.to_string();
    let mut args = vec![
        "client", "create", "--tenant", &tenant, "--scopes", scopes, "--name", "etl", "--json",
    ];
    if project {
        args.extend(["--project", &project_id]);
    }
    let created = relais_json(app.database_url(), &args);
    assert_eq!(created["tenantId"], tenant);
    assert_eq!(created["name"], "etl");
    (
        created["clientId"].as_str().unwrap().to_owned(),
        created["clientSecret"].as_str().unwrap().to_owned(),
    )
}

async fn ask(app: &TestApp, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Response {
    let mut request = app
        .client
        .post(format!("{}/oauth/token", app.base))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    Response::read(request.send().await.unwrap()).await
}

async fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Response {
    app.call(method, path, Some(token), body).await
}

async fn a_client_trades_its_secret_for_a_token_that_works_like_an_api_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = client(&app, "operations:read,operations:write,admin", true);

    let r = ask(
        &app,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    assert_eq!(r.body["scope"], "operations:read operations:write admin");
    assert_eq!(r.headers["cache-control"], "no-store");
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    // The access token on the async API…
    let started = with_token(
        &app,
        Method::POST,
        &app.api("/operation"),
        &token,
        Some(&json!({"operationType": "Echo", "operationName": "by oauth"})),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let op = started.body["operationId"].as_str().unwrap();
    let status = with_token(
        &app,
        Method::GET,
        &app.api(&format!("/operation/{op}")),
        &token,
        None,
    )
    .await;
    assert_eq!(status.status, StatusCode::OK);
    // …and on the breakout facade, scoped by the client's project.
    let dictionaries = with_token(
        &app,
        Method::GET,
        "/api/breakout/dictionaries",
        &token,
        None,
    )
    .await;
    assert_eq!(dictionaries.status, StatusCode::OK, "{}", dictionaries.text);

    // The secret in the form instead of Basic; a narrower scope.
    let r = ask(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "operations:read"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["scope"], "operations:read");
    let reader = r.body["access_token"].as_str().unwrap().to_owned();
    let refused = with_token(
        &app,
        Method::POST,
        &app.api("/operation"),
        &reader,
        Some(&json!({"operationType": "Echo", "operationName": "x"})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.body["code"], "INSUFFICIENT_PERMISSIONS");
    // Bound to its project: another project of the tenant, or another tenant, is a 404.
    let (tenant, project, _) = app.other_tenant().await;
    let elsewhere = with_token(
        &app,
        Method::GET,
        &format!("/api/{tenant}/{project}/async/operations"),
        &token,
        None,
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);

    // `relais client list` shows it, never its secret.
    let listed = relais_json(
        app.database_url(),
        &[
            "client",
            "list",
            "--tenant",
            &app.tenant.to_string(),
            "--json",
        ],
    );
    assert_eq!(listed["clients"][0]["clientId"], id);
    assert!(!listed.to_string().contains(&secret));
}

/// A token request (its form, its Basic credentials) and the status and error it gets.
type Case<'a> = (
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, &'a str)>,
    u16,
    &'a str,
);

async fn each_refusal_is_an_rfc_6749_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = client(&app, "operations:read", false);
    let cc = ("grant_type", "client_credentials");
    let cases: Vec<Case> = vec![
        (vec![], Some((&id, &secret)), 400, "invalid_request"),
        (
            vec![("grant_type", "password")],
            Some((&id, &secret)),
            400,
            "unsupported_grant_type",
        ),
        (vec![cc, cc], Some((&id, &secret)), 400, "invalid_request"),
        (vec![cc], None, 401, "invalid_client"),
        (vec![cc], Some((&id, "rlscs_wrong")), 401, "invalid_client"),
        (
            vec![cc],
            Some(("client-not-a-guid", &secret)),
            401,
            "invalid_client",
        ),
        (vec![cc, ("client_id", &id)], None, 401, "invalid_client"),
        (
            vec![cc, ("client_id", &id), ("client_secret", &secret)],
            Some((&id, &secret)),
            400,
            "invalid_request",
        ),
        (
            vec![cc, ("scope", "operations:write")],
            Some((&id, &secret)),
            400,
            "invalid_scope",
        ),
        (
            vec![cc, ("scope", "everything")],
            Some((&id, &secret)),
            400,
            "invalid_scope",
        ),
        (
            vec![cc, ("scope", "operations:read\u{0}")],
            Some((&id, &secret)),
            400,
            "invalid_request",
        ),
    ];
    for (form, basic, status, error) in cases {
        let r = ask(&app, &form, basic).await;
        assert_eq!(r.status.as_u16(), status, "{form:?}: {}", r.text);
        assert_eq!(r.body["error"], error, "{form:?}: {}", r.text);
        assert!(r.body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        if status == 401 {
            assert_eq!(r.headers["www-authenticate"], "Basic realm=\"relais\"");
        }
    }
    // Not a form at all.
    let r = Response::read(
        app.client
            .post(format!("{}/oauth/token", app.base))
            .json(&json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_request");
    // A body over the size limit: a 413 naming the limit, never a 500.
    let r = Response::read(
        app.client
            .post(format!("{}/oauth/token", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&scope={}",
                "a".repeat(2 << 20)
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["code"], "PAYLOAD_TOO_LARGE");
    // A Basic header that is not base64.
    let r = Response::read(
        app.client
            .post(format!("{}/oauth/token", app.base))
            .header("authorization", "Basic !!!")
            .form(&[cc])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_client");
}

async fn expired_revoked_and_forged_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.access_tokens.ttl = Duration::from_secs(1)).await;
    let (id, secret) = client(&app, "operations:read", true);
    let token = ask(
        &app,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await
    .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = app.api("/operations");
    assert_eq!(
        with_token(&app, Method::GET, &list, &token, None)
            .await
            .status,
        StatusCode::OK
    );
    // Expired: refused at once, though its client's lookup is still remembered.
    eventually(Duration::from_secs(5), || async {
        (with_token(&app, Method::GET, &list, &token, None)
            .await
            .status
            == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;

    // Forged: signed with another key, or changed after signing.
    let (header, claims, _) = {
        let mut parts = token.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut widened: Value = serde_json::from_slice(&b64.decode(claims).unwrap()).unwrap();
    widened["scope"] = json!("admin");
    widened["exp"] = json!(chrono::Utc::now().timestamp() + 600);
    let forged = format!(
        "{header}.{}.{}",
        b64.encode(widened.to_string()),
        b64.encode([0u8; 32])
    );
    assert_eq!(
        with_token(&app, Method::GET, &list, &forged, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(widened.to_string())
    );
    assert_eq!(
        with_token(&app, Method::GET, &list, &none, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Revoked: a fresh token stops working, and no new one is given.
    let app = app
        .restart(|c| c.access_tokens.ttl = Duration::from_secs(600))
        .await;
    let fresh = ask(
        &app,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await
    .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        with_token(&app, Method::GET, &list, &fresh, None)
            .await
            .status,
        StatusCode::OK
    );
    let revoked = relais_json(app.database_url(), &["client", "revoke", &id, "--json"]);
    assert_eq!(revoked["revoked"], true);
    eventually(Duration::from_secs(10), || async {
        (with_token(&app, Method::GET, &list, &fresh, None)
            .await
            .status
            == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;
    let r = ask(
        &app,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_client");
}
