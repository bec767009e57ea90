//! Hostile input to the breakout facade: server paths that are no regular file, bodies
//! and uploads over their limits, data files swapped after registration. Each gets a
//! prompt 4xx naming the field (or a failed job with a clear error), never a hang; and
//! large uploads go through with bounded memory, end to end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

use crate::both_backends;
use crate::breakout::{
    counts, finished, fixture, register, start_ok, upload, POPSTAN_DAT, POPSTAN_DATA, POPSTAN_DCF,
    POPSTAN_ROWS,
};
use crate::common::{Backend, Response, TestApp, TestDb};

both_backends!(
    breakout_a_json_body_over_the_limit_is_413,
    breakout_server_paths_must_be_regular_files,
    breakout_a_dictionary_file_over_its_limit_is_refused,
    breakout_a_data_file_swapped_after_registration_fails_its_job,
    breakout_an_upload_over_its_part_limit_is_413_naming_the_part,
    breakout_an_upload_of_tens_of_mib_breaks_out,
    breakout_uploads_stored_before_chunking_are_still_read,
);

/// Hostile requests must be answered at once; a device read to its end never would be.
const PROMPT: Duration = Duration::from_secs(20);

async fn promptly<F: std::future::Future<Output = Response>>(what: &str, call: F) -> Response {
    tokio::time::timeout(PROMPT, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PROMPT:?}"))
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// The JSON form of registration is refused as too large, like every other JSON route.
async fn breakout_a_json_body_over_the_limit_is_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.token_with("admin").await;
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = json!({"dataPath": padding, "dictionaryPath": "census.dcf"});
    let r = app
        .call(
            Method::POST,
            "/api/breakout/dictionaries",
            Some(&admin),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["code"], "PAYLOAD_TOO_LARGE", "{}", r.text);
}

/// Devices, a FIFO, a directory and a link to a device, as either path: each a prompt
/// 400 naming the field, and nothing registered.
async fn breakout_server_paths_must_be_regular_files(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("census.fifo");
    mkfifo(&fifo);
    let link = dir.path().join("census.dat");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let hostile: Vec<(PathBuf, &str)> = vec![
        ("/dev/zero".into(), "character device"),
        ("/dev/urandom".into(), "character device"),
        (fifo, "FIFO"),
        (dir.path().to_path_buf(), "directory"),
        (link, "character device"),
    ];
    let (dcf, dat) = (fixture(POPSTAN_DCF), fixture(POPSTAN_DAT));
    for (path, kind) in &hostile {
        let path = path.to_str().unwrap();
        for (dictionary, data, field) in [
            (path, dat.as_str(), "dictionaryPath"),
            (dcf.as_str(), path, "dataPath"),
        ] {
            let r = promptly(path, register(&app, Some(dictionary), data)).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
            assert_eq!(r.body["field"], field, "{path}: {}", r.text);
            let message = r.body["message"].as_str().unwrap();
            assert!(
                message.contains(kind) && message.contains("not a regular file"),
                "{path}: {message}"
            );
        }
    }
    let listed = app.get("/api/breakout/dictionaries").await;
    assert_eq!(listed.body["total"], 0, "{}", listed.text);
    // The server still answers, and a regular file still registers.
    let r = register(&app, Some(&dcf), &dat).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn breakout_a_dictionary_file_over_its_limit_is_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.breakout_dictionary_limit = 8 * 1024).await;
    // Popstan's dictionary is about 15 KB.
    let r = register(&app, Some(&fixture(POPSTAN_DCF)), &fixture(POPSTAN_DAT)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "dictionaryPath", "{}", r.text);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 8192 bytes"),
        "{}",
        r.text
    );
    // The dictionary inside a .csdb has the same limit.
    let r = register(&app, None, &fixture("cspro_ThreeLevelTest.csdb")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "dataPath", "{}", r.text);
}

/// The job opens the path it stored at registration: a link or a FIFO put there since is
/// not read, and the job fails for good with a message that says why.
async fn breakout_a_data_file_swapped_after_registration_fails_its_job(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("census.dat");
    std::fs::copy(fixture(POPSTAN_DAT), &data).unwrap();
    let r = register(&app, Some(&fixture(POPSTAN_DCF)), data.to_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &data).unwrap();
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let done = tokio::time::timeout(PROMPT, finished(&app, &job))
        .await
        .expect("the job ends at once");
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "DATA_NOT_READABLE", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("/dev/zero"), "{message}");
    let status = app.get(&app.api(&format!("/operation/{job}"))).await;
    assert_eq!(
        status.body["execution"]["attempt"], 1,
        "not retried: {}",
        status.text
    );
    assert_eq!(
        status.body["execution"]["retrying"], false,
        "{}",
        status.text
    );

    std::fs::remove_file(&data).unwrap();
    mkfifo(&data);
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let done = tokio::time::timeout(PROMPT, finished(&app, &job))
        .await
        .expect("the job ends at once");
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "DATA_NOT_READABLE", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("FIFO"), "{message}");
}

async fn breakout_an_upload_over_its_part_limit_is_413_naming_the_part(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.breakout_dictionary_limit = 8 * 1024;
        c.breakout_upload_limit = 64 * 1024;
    })
    .await;
    let dcf = std::fs::read(fixture(POPSTAN_DCF)).unwrap();
    let dat = std::fs::read(fixture(POPSTAN_DAT)).unwrap();
    for (parts, field) in [
        (
            vec![
                ("dictionary", "c.dcf", dcf.clone()),
                ("data", "c.dat", dat.clone()),
            ],
            "dictionary",
        ),
        (
            vec![
                ("data", "c.dat", dat.clone()),
                ("dictionary", "c.dcf", dcf.clone()),
            ],
            "data",
        ),
    ] {
        let r = promptly(field, upload(&app, &parts)).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
        assert_eq!(r.body["code"], "PAYLOAD_TOO_LARGE", "{}", r.text);
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    // A part sent twice is named too.
    let small = dat[..1000].to_vec();
    let r = upload(&app, &[("data", "a", small.clone()), ("data", "b", small)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "data", "{}", r.text);
    let listed = app.get("/api/breakout/dictionaries").await;
    assert_eq!(listed.body["total"], 0, "{}", listed.text);
}

/// Popstan's cases over and over, each copy with its own ids, to about `bytes`.
fn large_popstan(bytes: usize) -> Vec<u8> {
    let per_case = relais::bench::popstan_like(1_000, 3).len() / 1_000;
    relais::bench::popstan_like(bytes / per_case, 3).into_bytes()
}

/// Tens of MiB go through the streaming path: received into a temporary file, stored in
/// chunks, copied out by the job and read as they come.
async fn breakout_an_upload_of_tens_of_mib_breaks_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = large_popstan(24 * 1024 * 1024);
    let size = data.len();
    let dcf = std::fs::read(fixture(POPSTAN_DCF)).unwrap();
    let r = upload(
        &app,
        &[("dictionary", "c.dcf", dcf), ("data", "c.dat", data)],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let stored = stored_upload_bytes(&app).await;
    assert_eq!(stored, size as i64, "every byte stored once");

    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"], "threads": 4})).await;
    let done = tokio::time::timeout(Duration::from_secs(600), finished(&app, &job))
        .await
        .expect("the breakout ends");
    assert_eq!(done["status"], "completed", "{done}");
    let cases = done["result"]["total_cases"].as_i64().unwrap();
    assert!(cases > 80_000, "{cases} cases from {size} bytes");
    let rows = counts(&app, &POPSTAN_DATA).await;
    assert_eq!(rows[0], cases, "one row per case: {rows:?}");
    assert!(rows[2] > 4 * cases, "persons: {rows:?}");

    // Registering again replaces the upload; deleting the dictionary removes its data.
    let dcf = std::fs::read(fixture(POPSTAN_DCF)).unwrap();
    let dat = std::fs::read(fixture(POPSTAN_DAT)).unwrap();
    let r = upload(
        &app,
        &[("dictionary", "c.dcf", dcf), ("data", "c.dat", dat.clone())],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(stored_upload_bytes(&app).await, dat.len() as i64);
    let r = app
        .call(
            Method::DELETE,
            "/api/breakout/dictionaries/CEN2000",
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(stored_upload_bytes(&app).await, 0);
}

async fn stored_upload_bytes(app: &TestApp) -> i64 {
    let mut conn = sqlx::AnyConnection::connect(app.store().url())
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(LENGTH(bytes)), 0) AS BIGINT) FROM breakout_uploads",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    total
}

/// A database whose uploads were stored whole (before migration 0011): the migration cuts
/// them into chunks, and a job reads them back. The data fills its chunks exactly, the
/// edge where the last chunk is an empty one.
async fn breakout_uploads_stored_before_chunking_are_still_read(backend: Backend) {
    let db = TestDb::create(backend).await;
    let mut data = std::fs::read(fixture(POPSTAN_DAT)).unwrap();
    let mib = relais::store::breakout::UPLOAD_CHUNK_BYTES;
    while data.len() < 2 * mib - 1 {
        data.extend_from_slice(b"        \n");
    }
    data.truncate(2 * mib - 1);
    data.push(b'\n');
    let dictionary = std::fs::read_to_string(fixture(POPSTAN_DCF)).unwrap();
    let (tenant, project) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    {
        sqlx::any::install_default_drivers();
        let url = match backend {
            Backend::Sqlite => format!("{}?mode=rwc", db.url),
            Backend::Postgres => db.url.clone(),
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let dir = match backend {
            Backend::Sqlite => "migrations/sqlite",
            Backend::Postgres => "migrations/postgres",
        };
        let mut migrator =
            sqlx::migrate::Migrator::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                .await
                .unwrap();
        migrator.migrations = migrator
            .migrations
            .iter()
            .filter(|m| m.version <= 10)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        migrator.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO breakout_dictionaries (tenant_id, project_id, name, label, dictionary,
               data_kind, data_path, data, created_at)
             VALUES ($1, $2, 'CEN2000', 'Popstan', $3, 'dat', '', $4, 0)",
        )
        .bind(tenant.to_string())
        .bind(project.to_string())
        .bind(&dictionary)
        .bind(data.clone())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let app = TestApp::start_on(db, |_| {}).await;
    // The row was written for a project that did not exist yet: it becomes the app's.
    let mut conn = sqlx::AnyConnection::connect(app.store().url())
        .await
        .unwrap();
    for table in ["breakout_dictionaries", "breakout_uploads"] {
        sqlx::query(&format!("UPDATE {table} SET project_id = $1"))
            .bind(app.project.to_string())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE breakout_dictionaries SET tenant_id = $1")
        .bind(app.tenant.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    let chunks: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(LENGTH(bytes) AS BIGINT) FROM breakout_uploads ORDER BY seq",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(chunks, [mib as i64, mib as i64, 0]);

    let listed = app.get("/api/breakout/dictionaries").await;
    assert_eq!(listed.body["data"][0]["uploaded"], true, "{}", listed.text);
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let done: Value = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&app, &POPSTAN_DATA).await, POPSTAN_ROWS);
}
