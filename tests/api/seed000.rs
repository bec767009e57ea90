//! Seed 000's breakout facade as its client reads it: the tables 404, a cancelled job, and
//! one tenant's tables kept out of another's answers.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::breakout::{finished, fixture, start_ok, POPSTAN_DAT, POPSTAN_DCF};
use crate::common::{eventually, mint_token, Backend, Response, TestApp, TestDb};

both_backends!(
    the_tables_404_is_the_seeds_also_for_a_dictionary_never_registered,
    a_cancelled_job_is_cancelled_with_cancelled_at,
    another_tenants_tables_are_never_named_nor_sized,
    with_a_schema_per_project_two_tenants_break_out_the_same_dictionary,
);

async fn as_token(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    app.call(method, path, Some(token), body).await
}

async fn register_popstan_as(app: &TestApp, admin: &str) {
    let body = json!({"dictionaryPath": fixture(POPSTAN_DCF), "dataPath": fixture(POPSTAN_DAT)});
    let r = as_token(
        app,
        admin,
        Method::POST,
        "/api/breakout/dictionaries",
        Some(&body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn the_tables_404_is_the_seeds_also_for_a_dictionary_never_registered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for method in [Method::GET, Method::DELETE] {
        let r = as_token(
            &app,
            &app.token,
            method.clone(),
            "/api/breakout/tables/EVAL_DICT",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}: {}", r.text);
        assert_eq!(r.body["error"], "No tables found");
        assert_eq!(
            r.body["message"],
            "No breakout tables found for dictionary 'EVAL_DICT'"
        );
        let suggestion = r.body["suggestion"].as_str().expect("a suggestion");
        assert!(
            suggestion.starts_with("Run breakout first using POST /api/breakout/start"),
            "{suggestion}"
        );
        assert!(
            suggestion.contains("POST /api/breakout/dictionaries"),
            "{suggestion}"
        );
    }
}

async fn a_cancelled_job_is_cancelled_with_cancelled_at(backend: Backend) {
    // One built-in at a time: a long Sleep holds the slot, so the job waits to be cancelled.
    let app = TestApp::spawn_with(backend, |c| c.executor_concurrency = 1).await;
    let admin = app.token_with("admin").await;
    register_popstan_as(&app, &admin).await;
    let sleeper = app
        .start_operation(
            &json!({"operationType": "Sleep", "operationName": "hold the slot",
            "parameters": {"seconds": 60}}),
        )
        .await;
    eventually(Duration::from_secs(20), || async {
        let s = app.get(&app.api(&format!("/operation/{sleeper}"))).await;
        (s.body["status"] == "Running").then_some(())
    })
    .await;
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let r = app
        .delete(
            &app.api(&format!("/operation/{job}")),
            Some(&json!({"reason": "not today"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let status = finished(&app, &job).await;
    assert_eq!(status["status"], "cancelled", "{status}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(status["cancelled_at"].as_str().unwrap()).is_ok(),
        "{status}"
    );
    assert_eq!(status["reason"], "not today");
    assert!(status.get("failed_at").is_none(), "{status}");
    assert!(status.get("error").is_none(), "not a failure: {status}");
    let jobs = app.get("/api/breakout/jobs?status=cancelled").await;
    assert_eq!(
        jobs.body["data"][0]["job_id"],
        job.as_str(),
        "{}",
        jobs.text
    );
    assert!(
        jobs.body["data"][0]["cancelled_at"].is_string(),
        "{}",
        jobs.text
    );
    app.delete(&app.api(&format!("/operation/{sleeper}")), None)
        .await;
}

async fn another_tenants_tables_are_never_named_nor_sized(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.token_with("admin").await;
    register_popstan_as(&app, &admin).await;
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    assert_eq!(finished(&app, &job).await["status"], "completed");

    // Another tenant registers a dictionary of the same label: same table names.
    let (tenant, project, token) = app.other_tenant().await;
    let other_admin = mint_token(app.store(), tenant, Some(project), "admin").await;
    register_popstan_as(&app, &other_admin).await;
    let start = json!({"dictionaries": ["CEN2000"], "overwrite": true});
    let r = as_token(
        &app,
        &token,
        Method::POST,
        "/api/breakout/start",
        Some(&start),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "TABLES_ALREADY_EXIST");
    assert_eq!(r.body["existing_tables"], json!([]), "{}", r.text);
    assert!(!r.text.contains("cen2000_"), "no table named: {}", r.text);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("another project"),
        "{}",
        r.text
    );

    for method in [Method::GET, Method::DELETE] {
        let r = as_token(
            &app,
            &token,
            method.clone(),
            "/api/breakout/tables/CEN2000",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}: {}", r.text);
        assert!(!r.text.contains("cen2000_"), "{}", r.text);
        assert!(r.body.get("total_size").is_none());
    }

    // The same job through the operations API fails without naming them either.
    let direct = json!({"operationType": "CsproBreakout", "operationName": "direct",
        "parameters": {"dictionaries": ["CEN2000"], "overwrite": true}});
    let r = as_token(
        &app,
        &token,
        Method::POST,
        &format!("/api/{tenant}/{project}/async/operation"),
        Some(&direct),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["operationId"].as_str().unwrap().to_owned();
    let failed = eventually(Duration::from_secs(60), || async {
        let s = as_token(
            &app,
            &token,
            Method::GET,
            &format!("/api/breakout/status/{id}"),
            None,
        )
        .await;
        (s.body["status"] == "failed").then_some(s)
    })
    .await;
    assert_eq!(
        failed.body["error"]["code"], "TABLES_ALREADY_EXIST",
        "{}",
        failed.text
    );
    assert!(!failed.text.contains("cen2000_"), "{}", failed.text);

    // The first tenant's tables are untouched and still its own.
    let mine = app.get("/api/breakout/tables/CEN2000").await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(mine.body["tables"][0]["name"], "cen2000_cases");
    assert!(mine.body["tables"][0]["row_count"].as_i64().unwrap() > 0);
}

async fn with_a_schema_per_project_two_tenants_break_out_the_same_dictionary(backend: Backend) {
    if backend == Backend::Sqlite {
        // SQLite has no schemas: the setting is refused at start, not ignored.
        let db = TestDb::create(backend).await;
        let mut config = relais::config::Config::for_database(db.url.clone());
        config.breakout_schema_per_project = true;
        let refused = relais::app::Relais::start(config)
            .await
            .err()
            .expect("refused");
        assert!(format!("{refused:#}").contains("PostgreSQL"), "{refused:#}");
        return;
    }
    let app = TestApp::spawn_with(backend, |c| c.breakout_schema_per_project = true).await;
    let admin = app.token_with("admin").await;
    register_popstan_as(&app, &admin).await;
    let (tenant, project, token) = app.other_tenant().await;
    let other_admin = mint_token(app.store(), tenant, Some(project), "admin").await;
    register_popstan_as(&app, &other_admin).await;

    let mine = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let start = json!({"dictionaries": ["CEN2000"]});
    let r = as_token(
        &app,
        &token,
        Method::POST,
        "/api/breakout/start",
        Some(&start),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "its own schema is free: {}",
        r.text
    );
    let theirs = r.body["job_id"].as_str().unwrap().to_owned();
    assert_eq!(finished(&app, &mine).await["status"], "completed");
    let done = eventually(Duration::from_secs(60), || async {
        let s = as_token(
            &app,
            &token,
            Method::GET,
            &format!("/api/breakout/status/{theirs}"),
            None,
        )
        .await;
        (s.body["status"] != "running" && s.body["status"] != "pending").then_some(s.body)
    })
    .await;
    assert_eq!(done["status"], "completed", "{done}");

    let tables = app.get("/api/breakout/tables/CEN2000").await;
    assert_eq!(tables.status, StatusCode::OK, "{}", tables.text);
    let schema = format!("breakout_{}", app.project.uuid().simple());
    assert_eq!(tables.body["schema"], schema.as_str());
    let rows = tables.body["tables"][0]["row_count"].as_i64().unwrap();
    assert!(rows > 0);
    let other_tables = as_token(
        &app,
        &token,
        Method::GET,
        "/api/breakout/tables/CEN2000",
        None,
    )
    .await;
    assert_eq!(
        other_tables.body["schema"],
        format!("breakout_{}", project.uuid().simple()).as_str()
    );
    assert_eq!(
        other_tables.body["tables"][0]["row_count"], rows,
        "the same data, written twice"
    );

    // Dropping one project's tables leaves the other's.
    let dropped = app.delete("/api/breakout/tables/CEN2000", None).await;
    assert_eq!(dropped.status, StatusCode::OK, "{}", dropped.text);
    let kept = as_token(
        &app,
        &token,
        Method::GET,
        "/api/breakout/tables/CEN2000",
        None,
    )
    .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    assert_eq!(kept.body["tables"][0]["row_count"], rows);
}
