//! The console (`/console`), its portal links and what it reads: the page and its assets
//! served with a strict policy; a portal link's token that reaches the project's webhooks
//! and nothing else, and stops at its expiry; an operation's events with their deliveries;
//! and, in a real Chromium driven by Playwright (`tests/console_e2e.py`), a person signing
//! in, watching an operation end without a reload, reading a batch's graph, rotating a
//! webhook's secret, following a portal link, and an operation named like markup shown as
//! text.

use std::process::Command;
use std::time::Duration;

use relais::domain::ids::{PortalLinkId, ProjectId};
use relais::domain::oauth::TokenKey;
use relais::domain::portal::Portal;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, Backend, TestApp};
use crate::receiver::Receiver;

both_backends!(
    the_console_is_served_whole_under_a_strict_policy,
    a_portal_link_reaches_the_projects_webhooks_and_nothing_else,
    an_owners_portal_link_sees_and_makes_only_their_endpoints,
    an_operations_events_show_where_each_was_delivered,
    the_console_works_in_a_real_browser,
);

const JWT_SECRET: &str = "a test key for portal links, long enough";

async fn the_console_is_served_whole_under_a_strict_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/console",
        "/console/",
        "/console/operations/op-anything",
        "/console/portal",
    ] {
        let page = app.call(Method::GET, path, None, None).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let policy = page.headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
        // Scripts only from files: no inline script, no handler attribute.
        for tag in page.text.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(open.contains("src=\"/console/assets/"), "{open}");
        }
        assert!(!page.text.contains(" onclick="));
        assert!(!page.text.contains("http://") && !page.text.contains("https://"));
    }
    for (asset, kind) in [
        ("/console/assets/console.js", "text/javascript"),
        ("/console/assets/console.css", "text/css"),
    ] {
        let r = app.call(Method::GET, asset, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(r.text.len() > 1000, "{asset} is the whole file");
    }
    // The script never writes HTML from strings: values reach the page as text.
    let script = app
        .call(Method::GET, "/console/assets/console.js", None, None)
        .await;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.text.contains(sink), "{sink}");
    }
}

async fn portal_link(app: &TestApp, body: &Value) -> Value {
    let r = app.post(&app.api("/portal-links"), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

async fn a_portal_link_reaches_the_projects_webhooks_and_nothing_else(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.access_tokens.secret = Some(JWT_SECRET.into());
    })
    .await;
    let receiver = Receiver::start().await;
    let webhook = app
        .register_webhook(&json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}))
        .await;
    let webhook_id = webhook["webhookId"].as_str().unwrap();
    let op = app
        .start_operation(&json!({"operationType": "Echo", "operationName": "private"}))
        .await;

    let link = portal_link(&app, &json!({})).await;
    let token = link["token"].as_str().unwrap();
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/console/portal#token=", app.base)),
        "{url}"
    );
    assert!(url.ends_with(token), "the token is in the fragment only");
    let expires = chrono::DateTime::parse_from_rfc3339(link["expiresAt"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let in_an_hour = chrono::Utc::now().timestamp() + 3600;
    assert!(
        (in_an_hour - 5..=in_an_hour + 1).contains(&expires),
        "{link}"
    );

    let call = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move { app.call(method, &path, Some(token), body.as_ref()).await }
    };
    let who = call(Method::GET, "/api/whoami".into(), None).await;
    assert_eq!(who.status, StatusCode::OK, "{}", who.text);
    assert_eq!(who.body["kind"], "portal");
    assert_eq!(who.body["projectId"], app.project.to_string());
    assert_eq!(who.body["scopes"], json!(["webhooks:manage"]));
    assert_eq!(who.body["expiresAt"], link["expiresAt"]);

    // The project's webhooks: list, read, the attempt log, rotate the secret, replay.
    let list = call(Method::GET, app.api("/webhooks"), None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.body["webhooks"][0]["webhookId"], webhook_id);
    let hook = |rest: &str| app.api(&format!("/webhooks/{webhook_id}{rest}"));
    for path in ["", "/deliveries", "/messages", "/secret"] {
        let r = call(Method::GET, hook(path), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    let rotated = call(Method::POST, hook("/rotate-secret"), Some(json!({}))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let recovered = call(
        Method::POST,
        hook("/recover"),
        Some(json!({"since": "2024-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(recovered.status, StatusCode::ACCEPTED, "{}", recovered.text);

    // Nothing else: operations, the events, the integrations, another link (which could
    // outlive this one), the facades; each as if it did not exist.
    let (other_tenant, other_project, _) = app.other_tenant().await;
    for (method, path) in [
        (Method::GET, app.api("/operations")),
        (Method::GET, app.api(&format!("/operation/{op}"))),
        (Method::GET, app.api(&format!("/operation/{op}/events"))),
        (Method::DELETE, app.api(&format!("/operation/{op}"))),
        (Method::GET, app.api("/events")),
        (Method::GET, app.api("/events/stream")),
        (Method::GET, app.api("/batches")),
        (Method::GET, app.api("/callbacks/secret")),
        (Method::GET, app.api("/integrations/slack")),
        (Method::POST, app.api("/portal-links")),
        (Method::GET, app.api("/workers")),
        (Method::GET, "/api/breakout/jobs".to_owned()),
        (
            Method::GET,
            format!("/api/{}/{}/async/webhooks", app.tenant, ProjectId::new()),
        ),
        (
            Method::GET,
            format!("/api/{other_tenant}/{other_project}/async/webhooks"),
        ),
        (
            Method::GET,
            format!("/api/{}/{}/notebooks", app.tenant, app.project),
        ),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let r = call(method.clone(), path.clone(), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
    }
    let vitam = app
        .client
        .get(format!("{}/v1/tasks", app.base))
        .header("X-Vitam-Key", token)
        .header("X-Tenant-Id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(vitam.status(), StatusCode::NOT_FOUND);

    // A link signed with the same key but expired, or signed with another key, or
    // tampered with, is no token at all.
    let key = TokenKey::new(JWT_SECRET.as_bytes());
    let past = chrono::Utc::now() - chrono::Duration::hours(2);
    let expired = Portal::grant(
        PortalLinkId::new(),
        app.tenant,
        app.project,
        None,
        past,
        Duration::from_secs(3600),
    );
    let forged = Portal::grant(
        PortalLinkId::new(),
        app.tenant,
        app.project,
        None,
        chrono::Utc::now(),
        Duration::from_secs(3600),
    );
    let mut tampered = token.to_owned();
    tampered.insert(tampered.find('.').unwrap() + 3, 'x');
    for refused in [
        expired.token(&key, past),
        forged.token(&TokenKey::new(&[1; 32]), chrono::Utc::now()),
        tampered,
    ] {
        let r = app
            .call(Method::GET, &app.api("/webhooks"), Some(&refused), None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    // Made with the same key for now, it works: the key is the server's.
    let valid = forged.token(&key, chrono::Utc::now());
    let r = app
        .call(Method::GET, &app.api("/webhooks"), Some(&valid), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // The lifetime asked for, within bounds; anything else is refused by name.
    let short = portal_link(&app, &json!({"expiresIn": 60})).await;
    let expires = chrono::DateTime::parse_from_rfc3339(short["expiresAt"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!((expires - chrono::Utc::now().timestamp() - 60).abs() <= 2);
    for body in [
        json!({"expiresIn": 59}),
        json!({"expiresIn": 604_801}),
        json!({"expiresIn": -1}),
        json!({"expiresIn": "3600"}),
        json!({"labels": {"owner": "me"}}),
    ] {
        let r = app.post(&app.api("/portal-links"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
    }
    let r = app
        .client
        .post(format!("{}{}", app.base, app.api("/portal-links")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "an empty body takes the defaults"
    );
    // Making a link takes `webhooks:manage`.
    let reader = app.token_with("operations:read").await;
    let r = app
        .call(
            Method::POST,
            &app.api("/portal-links"),
            Some(&reader),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

async fn an_owners_portal_link_sees_and_makes_only_their_endpoints(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let register = |url: &str, labels: Value| {
        let app = &app;
        let body = json!({"webhookUrl": url, "labels": labels});
        async move { app.register_webhook(&body).await }
    };
    let acme = register(
        "https://acme.example/hooks",
        json!({"owner": "acme", "env": "prod"}),
    )
    .await;
    assert_eq!(acme["labels"], json!({"owner": "acme", "env": "prod"}));
    let globex = register("https://globex.example/hooks", json!({"owner": "globex"})).await;
    let unowned = register("https://nobody.example/hooks", json!({})).await;
    for (labels, field) in [
        (json!({"Owner": "acme"}), "labels.Owner"),
        (json!({"owner": ""}), "labels.owner"),
        (json!({"owner": "a\u{0}b"}), "labels.owner"),
        (json!({"owner": 1}), "labels"),
        (Value::Null, "labels"),
    ] {
        let r = app
            .post(
                &app.api("/webhooks"),
                &json!({"webhookUrl": "https://x.example/h", "labels": labels}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{labels}: {}", r.text);
        assert!(
            r.body["field"].as_str().unwrap().starts_with(field),
            "{labels}: {}",
            r.text
        );
    }

    let link = portal_link(&app, &json!({"owner": "acme"})).await;
    let token = link["token"].as_str().unwrap();
    let call = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move { app.call(method, &path, Some(token), body.as_ref()).await }
    };
    let who = call(Method::GET, "/api/whoami".into(), None).await;
    assert_eq!(who.body["owner"], "acme");
    let list = call(Method::GET, app.api("/webhooks"), None).await;
    let ids: Vec<&Value> = list.body["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["webhookId"])
        .collect();
    assert_eq!(ids, [&acme["webhookId"]], "{}", list.text);
    for other in [&globex, &unowned] {
        let id = other["webhookId"].as_str().unwrap();
        for (method, rest) in [
            (Method::GET, ""),
            (Method::GET, "/secret"),
            (Method::POST, "/rotate-secret"),
            (Method::POST, "/disable"),
            (Method::DELETE, ""),
        ] {
            let body = (method == Method::POST).then(|| json!({}));
            let r = call(
                method.clone(),
                app.api(&format!("/webhooks/{id}{rest}")),
                body,
            )
            .await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {rest}: {}",
                r.text
            );
        }
    }
    // What it makes is the owner's; it cannot make another's, nor take its own away.
    let made = call(
        Method::POST,
        app.api("/webhooks"),
        Some(json!({"webhookUrl": "https://acme.example/other"})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert_eq!(made.body["labels"], json!({"owner": "acme"}));
    let r = call(
        Method::POST,
        app.api("/webhooks"),
        Some(json!({"webhookUrl": "https://acme.example/x", "labels": {"owner": "globex"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "labels.owner");
    let acme_id = acme["webhookId"].as_str().unwrap();
    let changed = call(
        Method::PUT,
        app.api(&format!("/webhooks/{acme_id}")),
        Some(json!({"webhookUrl": "https://acme.example/moved", "labels": {}})),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["labels"], json!({"owner": "acme"}));
    // The project's own token still sees them all.
    let all = app.get(&app.api("/webhooks")).await;
    assert_eq!(all.body["webhooks"].as_array().unwrap().len(), 4);
    for body in [
        json!({"owner": ""}),
        json!({"owner": null}),
        json!({"owner": "a\nb"}),
    ] {
        let r = app.post(&app.api("/portal-links"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["field"], "owner", "{body}: {}", r.text);
    }
}

async fn an_operations_events_show_where_each_was_delivered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    app.register_webhook(&json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}))
        .await;
    let id = app
        .start_operation(&json!({"operationType": "Echo", "operationName": "traced"}))
        .await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let path = app.api(&format!("/operation/{id}/events"));
    let page = eventually(Duration::from_secs(20), || async {
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let delivered = r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["deliveries"].as_array().unwrap())
            .any(|d| d["status"] == "Delivered");
        delivered.then_some(r.body)
    })
    .await;
    let events = page["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["operation.started", "operation.completed"]);
    assert!(
        events[0]["deliveries"].as_array().unwrap().is_empty(),
        "not subscribed"
    );
    let delivery = &events[1]["deliveries"][0];
    assert_eq!(delivery["channel"], "webhook");
    assert_eq!(delivery["status"], "Delivered");
    let attempt = &delivery["attempts"][0];
    assert_eq!(attempt["statusCode"], 200);
    assert_eq!(attempt["success"], true);
    assert!(attempt["latencyMs"].as_i64().unwrap() >= 0);
    assert_eq!(page["hasNextPage"], false);

    let r = app.get(&format!("{path}?pageSize=1")).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["hasNextPage"], true);
    let r = app.get(&format!("{path}?pageSize=1&page=2")).await;
    assert_eq!(r.body["events"][0]["event"]["type"], "operation.completed");
    let r = app.get(&format!("{path}?pageSize=0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["field"], "pageSize");
    // Another tenant's token learns nothing of it.
    let (_, _, other) = app.other_tenant().await;
    let r = app.call(Method::GET, &path, Some(&other), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// `tests/console_e2e.py` in Playwright, with the system's Chromium: each scenario of the
/// issue in a real browser, a screenshot saved for each one that fails.
async fn the_console_works_in_a_real_browser(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let python = std::env::var("RELAIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let chromium = std::env::var("RELAIS_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let shots = std::env::temp_dir().join(format!("relais-console-{}", app.project));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console_e2e.py");
    let args = [
        app.base.clone(),
        app.tenant.to_string(),
        app.project.to_string(),
        app.token.clone(),
        chromium,
        shots.display().to_string(),
    ];
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).args(args).output())
            .await
            .unwrap()
            .expect("python runs (scripts/test installs the test environment)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser scenarios failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    for scenario in [
        "sign in",
        "operation ends live",
        "batch graph",
        "large batch",
        "rotate secret",
        "portal link",
        "markup shown as text",
    ] {
        assert!(stdout.contains(&format!("ok: {scenario}")), "{stdout}");
    }
}
