//! Secrets at rest: what the database holds is sealed, what receivers get still verifies,
//! rows from before sealing and rows sealed under a previous key are sealed again at
//! start, and a secret no key opens fails only what it signs.

use std::process::Command;
use std::time::Duration;

use relais::secrets::SecretKeys;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{AnyPool, Row};

use crate::both_backends;
use crate::common::{eventually, Backend, TestApp, TestDb};
use crate::push_workers::signed_by;
use crate::receiver::{Receiver, Reply};
use crate::webhooks::run_operation;

both_backends!(
    the_database_holds_no_secret_in_the_clear_and_receivers_still_verify,
    secrets_stored_in_the_clear_before_are_sealed_at_start,
    a_rotated_key_still_opens_and_the_rows_are_sealed_again_under_the_new_one,
    a_secret_no_key_opens_fails_what_it_signs_and_nothing_else,
    damaged_stored_secrets_fail_their_own_deliveries_and_nothing_else,
    the_key_file_is_generated_private_once_and_bad_keys_are_named,
);

const SEC: Duration = Duration::from_secs(1);

/// The test's own connection to the app's database, to read and write rows directly.
async fn database(app: &TestApp) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(app.database_url()).await.unwrap()
}

/// Every stored secret: (table, value).
async fn stored_secrets(db: &AnyPool) -> Vec<(String, String)> {
    let mut stored = Vec::new();
    for (table, sql) in [
        ("webhooks", "SELECT secrets AS v FROM webhooks"),
        ("push_workers", "SELECT secret AS v FROM push_workers"),
        (
            "projects",
            "SELECT callback_secrets AS v FROM projects WHERE callback_secrets IS NOT NULL",
        ),
        (
            "idempotency_keys",
            "SELECT response AS v FROM idempotency_keys WHERE scope = 'webhook.create'",
        ),
    ] {
        for row in sqlx::query(sql).fetch_all(db).await.unwrap() {
            stored.push((table.to_owned(), row.get::<String, _>("v")));
        }
    }
    stored
}

/// A push worker for `Pushed` operations at `receiver`'s `/worker` path.
async fn register_worker(app: &TestApp, receiver: &Receiver) -> Value {
    let worker = app
        .post(
            &app.api("/workers"),
            &json!({"url": format!("{}/worker", receiver.url), "operationTypes": ["Pushed"]}),
        )
        .await;
    assert_eq!(worker.status, StatusCode::CREATED, "{}", worker.text);
    worker.body
}

/// Registers a webhook (with an `Idempotency-Key`), a push worker and the callback
/// secret, all pointing at `receiver`: their three secrets.
async fn register_everything(app: &TestApp, receiver: &Receiver) -> (String, String, String) {
    let webhook = app
        .post_idempotent(
            &app.api("/webhooks"),
            "hook-1",
            &json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}),
        )
        .await;
    assert_eq!(webhook.status, StatusCode::CREATED, "{}", webhook.text);
    let worker = register_worker(app, receiver).await;
    let callback = app.get(&app.api("/callbacks/secret")).await;
    assert_eq!(callback.status, StatusCode::OK, "{}", callback.text);
    let secret = |v: &Value| v["secret"].as_str().unwrap().to_owned();
    (
        secret(&webhook.body),
        secret(&worker),
        secret(&callback.body),
    )
}

/// A pulled operation with a completion callback, and a pushed one: the receiver gets the
/// webhook, the callback and the task. Each is checked against its secret.
async fn everything_verifies(
    app: &TestApp,
    receiver: &Receiver,
    (webhook, worker, callback): &(String, String, String),
) {
    let before = receiver.received().len();
    run_operation(
        app,
        json!({"operationType": "Pulled", "operationName": "n",
            "callbacks": {"onCompletion": format!("{}/callback", receiver.url)}}),
        &[],
    )
    .await;
    app.start_operation(&json!({"operationType": "Pushed", "operationName": "n"}))
        .await;
    let got = receiver
        .wait_until(10 * SEC, |r| {
            let new = &r[before.min(r.len())..];
            ["/hook", "/hook/callback", "/hook/worker"]
                .iter()
                .all(|path| new.iter().any(|x| x.path == *path))
        })
        .await;
    for r in &got[before..] {
        let secret = match r.path.as_str() {
            "/hook" => webhook,
            "/hook/callback" => callback,
            "/hook/worker" => worker,
            other => panic!("unexpected request to {other}"),
        };
        assert!(signed_by(secret, r), "{} verifies", r.path);
    }
}

async fn the_database_holds_no_secret_in_the_clear_and_receivers_still_verify(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.fallback(Reply::status(200));
    let secrets = register_everything(&app, &receiver).await;
    let db = database(&app).await;

    let stored = stored_secrets(&db).await;
    assert_eq!(
        stored.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["webhooks", "push_workers", "projects", "idempotency_keys"]
    );
    for (table, value) in &stored {
        assert!(value.starts_with("rlsenc:v1:"), "{table}: {value}");
        for secret in [&secrets.0, &secrets.1, &secrets.2] {
            assert!(!value.contains(secret.as_str()), "{table} holds a secret");
        }
    }
    everything_verifies(&app, &receiver, &secrets).await;

    // The stored answer of the registration opens again for its replay.
    let replay = app
        .post_idempotent(
            &app.api("/webhooks"),
            "hook-1",
            &json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::CREATED, "{}", replay.text);
    assert_eq!(replay.body["secret"], secrets.0.as_str());
}

async fn secrets_stored_in_the_clear_before_are_sealed_at_start(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let secrets = register_everything(&app, &receiver).await;
    let webhook_id = app.get(&app.api("/webhooks")).await.body["webhooks"][0]["webhookId"]
        .as_str()
        .unwrap()
        .to_owned();
    let registration = app
        .post_idempotent(
            &app.api("/webhooks"),
            "hook-1",
            &json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}),
        )
        .await
        .text;

    // The rows as a version of Relais without sealing wrote them.
    let db = database(&app).await;
    let clear = |s: &str| json!([{ "secret": s }]).to_string();
    for (sql, value) in [
        ("UPDATE webhooks SET secrets = $1", clear(&secrets.0)),
        ("UPDATE push_workers SET secret = $1", secrets.1.clone()),
        (
            "UPDATE projects SET callback_secrets = $1 WHERE callback_secrets IS NOT NULL",
            clear(&secrets.2),
        ),
        (
            "UPDATE idempotency_keys SET response = $1 WHERE scope = 'webhook.create'",
            registration.clone(),
        ),
    ] {
        let done = sqlx::query(sql).bind(value).execute(&db).await.unwrap();
        assert_eq!(done.rows_affected(), 1, "{sql}");
    }
    db.close().await;

    let app = app.restart(|_| {}).await;
    let db = database(&app).await;
    let stored = stored_secrets(&db).await;
    assert_eq!(stored.len(), 4);
    for (table, value) in &stored {
        assert!(value.starts_with("rlsenc:v1:"), "{table} sealed at start");
    }
    let secret = app
        .get(&app.api(&format!("/webhooks/{webhook_id}/secret")))
        .await;
    assert_eq!(secret.body["secret"], secrets.0.as_str(), "{}", secret.text);
    everything_verifies(&app, &receiver, &secrets).await;
}

async fn a_rotated_key_still_opens_and_the_rows_are_sealed_again_under_the_new_one(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let key_a = app.secret_key().to_owned();
    let receiver = Receiver::start().await;
    let secrets = register_everything(&app, &receiver).await;
    let db = database(&app).await;
    let under_a = stored_secrets(&db).await;

    let key_b = SecretKeys::generate();
    let app = {
        let key_b = key_b.clone();
        app.restart(move |config| {
            config.secret_keys.secret_key = Some(key_b);
            config.secret_keys.previous_secret_keys = vec![key_a];
        })
        .await
    };
    let under_b = stored_secrets(&db).await;
    assert_eq!(under_b.len(), under_a.len());
    for ((table, a), (_, b)) in under_a.iter().zip(&under_b) {
        assert!(b.starts_with("rlsenc:v1:"), "{table}");
        assert_ne!(a, b, "{table} sealed again");
        let key_id = |v: &str| v.split(':').nth(2).unwrap().to_owned();
        assert_ne!(key_id(a), key_id(b), "{table} under the new key");
    }
    everything_verifies(&app, &receiver, &secrets).await;

    // Once everything is sealed under B, A may go.
    let app = app
        .restart(move |config| {
            config.secret_keys.secret_key = Some(key_b);
        })
        .await;
    everything_verifies(&app, &receiver, &secrets).await;
}

async fn a_secret_no_key_opens_fails_what_it_signs_and_nothing_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let old = app
        .register_webhook(
            &json!({"webhookUrl": receiver.url, "events": ["operation.completed"],
            "retryPolicy": {"maxRetries": 0}}),
        )
        .await;
    register_worker(&app, &receiver).await;
    let callback = app.get(&app.api("/callbacks/secret")).await;
    assert_eq!(callback.status, StatusCode::OK, "{}", callback.text);

    // The key they were sealed under is lost.
    let app = app
        .restart(|config| {
            config.secret_keys.secret_key = Some(SecretKeys::generate());
        })
        .await;
    let old_id = old["webhookId"].as_str().unwrap();
    let settings = app.get(&app.api(&format!("/webhooks/{old_id}"))).await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.text);
    let listed = app.get(&app.api("/webhooks")).await;
    assert_eq!(
        listed.body["webhooks"].as_array().unwrap().len(),
        1,
        "{}",
        listed.text
    );
    let read = app
        .get(&app.api(&format!("/webhooks/{old_id}/secret")))
        .await;
    assert_eq!(
        read.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        read.text
    );
    assert_eq!(read.body["code"], "SECRET_UNREADABLE");
    let message = read.body["message"].as_str().unwrap();
    assert!(
        message.contains("neither the current secret key nor a previous one")
            && message.contains("RELAIS_PREVIOUS_SECRET_KEYS"),
        "{message}"
    );

    // A webhook registered now is sealed under the new key and delivers; the old one's
    // delivery fails, saying why.
    let new = app
        .register_webhook(&json!({"webhookUrl": format!("{}/new", receiver.url),
            "events": ["operation.completed"]}))
        .await;
    run_operation(
        &app,
        json!({"operationType": "Pulled", "operationName": "n"}),
        &[],
    )
    .await;
    let got = receiver
        .wait_until(10 * SEC, |r| r.iter().any(|x| x.path == "/hook/new"))
        .await;
    let delivered = got.iter().find(|r| r.path == "/hook/new").unwrap();
    assert!(signed_by(new["secret"].as_str().unwrap(), delivered));
    let failed = eventually(10 * SEC, || async {
        let r = app
            .get(&app.api(&format!("/webhooks/{old_id}/messages?status=Failed")))
            .await;
        (r.body["messages"].as_array().unwrap().len() == 1).then_some(r.body)
    })
    .await;
    let error = failed["messages"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("cannot be opened"), "{error}");
    assert!(
        receiver.received().iter().all(|r| r.path == "/hook/new"),
        "nothing goes out unsigned"
    );

    // The push worker's tasks fail with the reason; the worker is still listed.
    let pushed = app
        .start_operation(&json!({"operationType": "Pushed", "operationName": "n",
            "retryPolicy": {"maxRetries": 0}}))
        .await;
    let status = eventually(10 * SEC, || async {
        let s = app.get(&app.api(&format!("/operation/{pushed}"))).await;
        (s.body["status"] == "Failed").then_some(s.body)
    })
    .await;
    assert!(
        status.to_string().contains("PUSH_WORKER_SECRET_UNREADABLE"),
        "{status}"
    );
    let workers = app.get(&app.api("/workers")).await;
    assert_eq!(workers.status, StatusCode::OK, "{}", workers.text);
    assert_eq!(workers.body["workers"].as_array().unwrap().len(), 1);

    // The way out: delete and register again; a new callback secret replaces the old.
    let deleted = app
        .delete(&app.api(&format!("/webhooks/{old_id}")), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let unreadable = app.get(&app.api("/callbacks/secret")).await;
    assert_eq!(
        unreadable.body["code"], "SECRET_UNREADABLE",
        "{}",
        unreadable.text
    );
    let rotated = app
        .post(&app.api("/callbacks/secret/rotate"), &json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert_eq!(rotated.body["previousSecrets"], json!([]));
    let readable = app.get(&app.api("/callbacks/secret")).await;
    assert_eq!(
        readable.body["secret"], rotated.body["secret"],
        "{}",
        readable.text
    );
}

/// A webhook row whose secrets open (under the current key) to something that is not
/// secrets: neither the write that queues its delivery nor the dispatcher's claims fail
/// for it; only its own deliveries do, saying why.
async fn damaged_stored_secrets_fail_their_own_deliveries_and_nothing_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let damaged = app
        .register_webhook(&json!({"webhookUrl": format!("{}/damaged", receiver.url),
            "events": ["operation.completed"], "retryPolicy": {"maxRetries": 0}}))
        .await;
    let damaged_id = damaged["webhookId"].as_str().unwrap();
    // Written in the clear, as before sealing: sealed as it is at the next start.
    let db = database(&app).await;
    // The project's only webhook so far.
    let done = sqlx::query("UPDATE webhooks SET secrets = $1")
        .bind("not a list of secrets")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    db.close().await;
    let app = app.restart(|_| {}).await;
    let healthy = app
        .register_webhook(&json!({"webhookUrl": format!("{}/healthy", receiver.url),
            "events": ["operation.completed"]}))
        .await;

    // Queued by the writes, each handed straight to the dispatcher (the callbacks wait in
    // the outbox for a claim).
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    for round in 0..2 {
        run_operation(
            &app,
            json!({"operationType": "Pulled", "operationName": format!("n{round}"),
                "callbacks": {"onCompletion": format!("{}/callback", receiver.url)}}),
            &[],
        )
        .await;
    }
    let got = receiver
        .wait_until(10 * SEC, |r| {
            r.iter().filter(|x| x.path.ends_with("/healthy")).count() == 2
                && r.iter().filter(|x| x.path.ends_with("/callback")).count() == 2
        })
        .await;
    let delivered = got.iter().find(|r| r.path.ends_with("/healthy")).unwrap();
    assert!(signed_by(healthy["secret"].as_str().unwrap(), delivered));
    let failed = eventually(10 * SEC, || async {
        let r = app
            .get(&app.api(&format!("/webhooks/{damaged_id}/messages?status=Failed")))
            .await;
        (r.body["messages"].as_array().unwrap().len() == 2).then_some(r.body)
    })
    .await;
    let error = failed["messages"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("stored secrets are damaged"), "{error}");

    // Queued again in the outbox, they are claimed with another operation's callback and
    // fail again; the claim goes on for the rest.
    let recovered = app
        .post(
            &app.api(&format!("/webhooks/{damaged_id}/recover")),
            &json!({"since": since.to_rfc3339()}),
        )
        .await;
    assert_eq!(recovered.status, StatusCode::ACCEPTED, "{}", recovered.text);
    assert_eq!(recovered.body["recovered"], 2, "{}", recovered.text);
    run_operation(
        &app,
        json!({"operationType": "Pulled", "operationName": "n2",
            "callbacks": {"onCompletion": format!("{}/callback", receiver.url)}}),
        &[],
    )
    .await;
    receiver
        .wait_until(10 * SEC, |r| {
            r.iter().filter(|x| x.path.ends_with("/callback")).count() == 3
        })
        .await;
    let failed_again = eventually(10 * SEC, || async {
        let r = app
            .get(&app.api(&format!("/webhooks/{damaged_id}/messages?status=Failed")))
            .await;
        let messages = r.body["messages"].as_array().unwrap().clone();
        (messages.len() == 3).then_some(messages)
    })
    .await;
    assert!(
        failed_again.iter().all(|m| m["lastError"]
            .as_str()
            .unwrap()
            .contains("stored secrets are damaged")),
        "{failed_again:?}"
    );
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| !r.path.ends_with("/damaged")),
        "nothing goes out unsigned"
    );
}

/// `relais migrate` in `dir` with these extra variables: success and standard error.
fn migrate(dir: &std::path::Path, db: &TestDb, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .arg("migrate")
        .current_dir(dir)
        .env("RELAIS_DATABASE_URL", &db.url)
        .env_remove("RELAIS_SECRET_KEY")
        .env_remove("RELAIS_SECRET_KEY_FILE")
        .env_remove("RELAIS_PREVIOUS_SECRET_KEYS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_key_file_is_generated_private_once_and_bad_keys_are_named(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = migrate(dir.path(), &db, &[]);
    assert!(ok, "{stderr}");
    let file = dir.path().join("relais.key");
    let key = std::fs::read_to_string(&file).unwrap();
    assert!(SecretKeys::from_base64(&key, &[]).is_ok(), "{key}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, stderr) = migrate(dir.path(), &db, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        key,
        "kept, not replaced"
    );

    let elsewhere = dir.path().join("keys");
    std::fs::create_dir(&elsewhere).unwrap();
    let named = elsewhere.join("relais.key");
    let (ok, stderr) = migrate(
        dir.path(),
        &db,
        &[("RELAIS_SECRET_KEY_FILE", named.to_str().unwrap())],
    );
    assert!(ok && named.exists(), "{stderr}");

    let (ok, stderr) = migrate(dir.path(), &db, &[("RELAIS_SECRET_KEY", "c2hvcnQ=")]);
    assert!(!ok);
    assert!(
        stderr.contains("RELAIS_SECRET_KEY") && stderr.contains("32 bytes"),
        "{stderr}"
    );
    let good = SecretKeys::generate();
    let previous = format!("{},not a key", SecretKeys::generate());
    let (ok, stderr) = migrate(
        dir.path(),
        &db,
        &[
            ("RELAIS_SECRET_KEY", &good),
            ("RELAIS_PREVIOUS_SECRET_KEYS", &previous),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("RELAIS_PREVIOUS_SECRET_KEYS") && stderr.contains("previous secret key 2"),
        "{stderr}"
    );
    assert!(!stderr.contains(&good), "a key is never printed");
}
