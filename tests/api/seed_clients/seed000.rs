//! Seed 000's clients: the breakout facade from start to deleted tables, and a job whose
//! database goes away, with the seed's dictionaries made from the CSPro fixtures.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{assert_same, assert_shaped, ok, status, SEC};
use crate::both_backends;
use crate::breakout::{finished, fixture};
use crate::common::{eventually, Backend, TestApp};

both_backends!(
    breakout_jobs_from_start_to_deleted_tables,
    a_job_whose_database_goes_away_fails_as_the_seed_shows,
);

/// A CSPro fixture's dictionary under another name, as the seed's `EVAL_DICT` and
/// `KAIROS_DICT`, written into `dir`.
fn renamed_dictionary(dir: &tempfile::TempDir, file: &str, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(fixture(file)).unwrap();
    let line = format!("\nName={from}");
    assert!(text.contains(&line), "{file} names {from}");
    let path = dir.path().join(format!("{to}.dcf"));
    std::fs::write(&path, text.replacen(&line, &format!("\nName={to}"), 1)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Popstan's cases `copies` times over, in `dir` (the BOM only at the start).
fn popstan_copies(dir: &tempfile::TempDir, copies: usize) -> String {
    let popstan = std::fs::read_to_string(fixture(crate::breakout::POPSTAN_DAT)).unwrap();
    let path = dir.path().join("popstan.dat");
    std::fs::write(&path, popstan.trim_start_matches('\u{feff}').repeat(copies)).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn register(app: &TestApp, admin: &str, dictionary: &str, data: &str) {
    let body = json!({"dictionaryPath": dictionary, "dataPath": data});
    let r = app
        .call(
            Method::POST,
            "/api/breakout/dictionaries",
            Some(admin),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// `EVAL_DICT` (Popstan's census, `copies` times over) and `KAIROS_DICT` (a small one).
async fn register_seed_dictionaries(app: &TestApp, dir: &tempfile::TempDir, copies: usize) {
    let admin = app.token_with("admin").await;
    let eval = renamed_dictionary(dir, crate::breakout::POPSTAN_DCF, "CEN2000", "EVAL_DICT");
    register(app, &admin, &eval, &popstan_copies(dir, copies)).await;
    let kairos = renamed_dictionary(
        dir,
        "jhandley_ExpectedCounts.dcf",
        "EXPECTEDCOUNTS_DICT",
        "KAIROS_DICT",
    );
    register(
        app,
        &admin,
        &kairos,
        &fixture("jhandley_ExpectedCounts.dat"),
    )
    .await;
}

/// The 202 of a start: its shape, and what the start body determines.
fn assert_breakout_started(answer: &Value, body: &Value) {
    assert_shaped(
        "start.202",
        &seed!("000/start.202.response.json"),
        answer,
        &[],
    );
    assert_eq!(answer["status"], "started");
    assert_same(
        &answer["dictionaries"],
        &body["dictionaries"],
        "dictionaries",
    );
    assert_same(&answer["threads"], &body["threads"], "threads");
    assert_eq!(answer["message"], "Breakout started in background");
}

async fn breakout_start(app: &TestApp, body: &Value, status: StatusCode) -> Value {
    ok(app.post("/api/breakout/start", body).await, status, "start").await
}

/// Popstan copies enough that the job is seen running between two of its chunks.
const EVAL_COPIES: usize = 40;

async fn breakout_jobs_from_start_to_deleted_tables(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    register_seed_dictionaries(&app, &dir, EVAL_COPIES).await;
    let eval_cases = 294 * EVAL_COPIES;

    // The JavaScript client's start: the first job, so later ones have an estimate.
    let js = seed!("000/start.js.request.json");
    let started = breakout_start(&app, &js, StatusCode::ACCEPTED).await;
    assert!(started["estimated_time"].is_null(), "no history yet");
    let first = started["job_id"].as_str().unwrap().to_owned();
    let done = finished(&app, &first).await;
    let example = seed!("000/status.completed.response.json");
    assert_shaped("status.completed", &example, &done, &[]);
    assert_eq!(done["job_id"], first.as_str());
    assert_eq!(done["status"], "completed");
    let result = &done["result"];
    assert_same(
        &result["dictionaries_processed"],
        &js["dictionaries"],
        "dictionaries",
    );
    assert_eq!(result["total_cases"], eval_cases);
    let eval_tables = json!([
        "eval_cases",
        "eval_level-1",
        "eval_person",
        "eval_housing",
        "eval_interview_record",
        "eval_cspro_jobs",
        "eval_cspro_meta",
        "eval_notes"
    ]);
    assert_eq!(result["tables_created"], eval_tables);

    let tables = ok(
        app.get("/api/breakout/tables/EVAL_DICT").await,
        StatusCode::OK,
        "tables",
    )
    .await;
    assert_shaped(
        "tables.200",
        &seed!("000/tables.200.response.json"),
        &tables,
        &[],
    );
    assert_eq!(tables["dictionary"], "EVAL_DICT");
    assert_eq!(tables["label"], "eval");
    let names: Vec<&Value> = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert_eq!(json!(names), eval_tables);
    assert_eq!(tables["tables"][0]["type"], "main");
    assert_eq!(tables["tables"][0]["row_count"], eval_cases);

    // The seed's start, while EVAL_DICT's tables exist: the seed's 409.
    let main = seed!("000/start.request.json");
    let conflict = breakout_start(&app, &main, StatusCode::CONFLICT).await;
    assert_shaped(
        "start.409",
        &seed!("000/start.409.response.json"),
        &conflict,
        &[],
    );
    assert_eq!(conflict["error"], "Tables already exist");
    assert_eq!(
        conflict["message"],
        "Tables for dictionary 'EVAL_DICT' already exist. Use overwrite=true to replace."
    );
    assert_eq!(conflict["existing_tables"], eval_tables);

    // Deleted, they are the seed's 404.
    let deleted = ok(
        app.delete("/api/breakout/tables/EVAL_DICT", None).await,
        StatusCode::OK,
        "delete",
    )
    .await;
    assert_shaped(
        "tables_delete.200",
        &seed!("000/tables_delete.200.response.json"),
        &deleted,
        &[],
    );
    assert_eq!(deleted["message"], "Tables deleted successfully");
    assert_eq!(deleted["dictionary"], "EVAL_DICT");
    assert_eq!(deleted["deleted_tables"], eval_tables);
    let missing = ok(
        app.get("/api/breakout/tables/EVAL_DICT").await,
        StatusCode::NOT_FOUND,
        "tables",
    )
    .await;
    assert_shaped(
        "tables.404",
        &seed!("000/tables.404.response.json"),
        &missing,
        &[],
    );
    assert_eq!(missing["error"], "No tables found");

    // The seed's curl start, now with an estimate, followed while it runs.
    let curl = seed!("000/start.curl.request.json");
    let started = breakout_start(&app, &curl, StatusCode::ACCEPTED).await;
    assert_breakout_started(&started, &curl);
    let job = started["job_id"].as_str().unwrap().to_owned();
    let running = eventually(60 * SEC, || async {
        let s = app.get(&format!("/api/breakout/status/{job}")).await.body;
        let seen = s["status"] == "running" && s["progress"]["estimated_remaining"].is_string();
        assert_ne!(s["status"], "completed", "never seen running: {s}");
        seen.then_some(s)
    })
    .await;
    assert_shaped(
        "status.running",
        &seed!("000/status.running.response.json"),
        &running,
        &[],
    );
    assert_eq!(running["job_id"], job.as_str());
    let progress = &running["progress"];
    assert_eq!(progress["dictionary"], "EVAL_DICT");
    assert_eq!(progress["total"], eval_cases);
    let processed = progress["processed"].as_u64().unwrap();
    assert!(processed > 0 && processed < eval_cases as u64, "{progress}");
    assert_same(&running["threads"], &curl["threads"], "threads");
    assert_eq!(finished(&app, &job).await["status"], "completed");

    // The seed's start, with both dictionaries free.
    let deleted = app.delete("/api/breakout/tables/EVAL_DICT", None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    let started = breakout_start(&app, &main, StatusCode::ACCEPTED).await;
    assert_breakout_started(&started, &main);
    let last = started["job_id"].as_str().unwrap().to_owned();
    let done = finished(&app, &last).await;
    assert_shaped("status.completed", &example, &done, &[]);
    assert_same(
        &done["result"]["dictionaries_processed"],
        &main["dictionaries"],
        "dictionaries",
    );

    // The curl client's job list.
    let jobs = ok(
        app.get("/api/breakout/jobs?status=completed&limit=10")
            .await,
        StatusCode::OK,
        "jobs",
    )
    .await;
    assert_shaped("jobs.200", &seed!("000/jobs.200.response.json"), &jobs, &[]);
    assert_eq!((&jobs["total"], &jobs["limit"]), (&json!(3), &json!(10)));
    let listed: Vec<&Value> = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["job_id"])
        .collect();
    assert_eq!(json!(listed), json!([last, job, first]), "newest first");
    assert_same(
        &jobs["data"][0]["dictionaries"],
        &main["dictionaries"],
        "dictionaries",
    );
    assert!(jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == "completed"));
}

async fn a_job_whose_database_goes_away_fails_as_the_seed_shows(backend: Backend) {
    // The analytics database behind a proxy the test cuts, as the seed's failure shows.
    let analytics = crate::common::TestDb::create(Backend::Postgres).await;
    let proxy = crate::common::TcpProxy::start(crate::common::postgres_addr()).await;
    let (base, name) = analytics.url.rsplit_once('/').unwrap();
    let (scheme_user, _) = base.rsplit_once('@').unwrap();
    let proxied = format!("{scheme_user}@127.0.0.1:{}/{name}", proxy.port);
    let app = TestApp::spawn_with(backend, |c| {
        c.analytics_database_url = Some(proxied);
        // One built-in at a time, so the job waits while the database goes away.
        c.executor_concurrency = 1;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    register_seed_dictionaries(&app, &dir, 1).await;
    let sleeper = app
        .start_operation(
            &json!({"operationType": "Sleep", "operationName": "hold the slot",
            "parameters": {"seconds": 60}}),
        )
        .await;
    eventually(20 * SEC, || async {
        (status(&app, &sleeper).await["status"] == "Running").then_some(())
    })
    .await;
    let body = seed!("000/start.request.json");
    let job = breakout_start(&app, &body, StatusCode::ACCEPTED).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    proxy.cut();
    let r = app
        .delete(&app.api(&format!("/operation/{sleeper}")), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let failed = finished(&app, &job).await;
    assert_shaped(
        "status.failed",
        &seed!("000/status.failed.response.json"),
        &failed,
        &[],
    );
    assert_eq!(failed["job_id"], job.as_str());
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "DB_CONNECTION_ERROR");
    assert_eq!(
        failed["error"]["details"],
        format!("Host: 127.0.0.1, Port: {}", proxy.port)
    );
}
