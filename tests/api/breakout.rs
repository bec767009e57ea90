//! The CSWeb breakout facade (seed 000): CSPro dictionaries and their data broken out into
//! SQL tables by a `CsproBreakout` operation.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, query, query_at, Backend, Response, TestApp};

both_backends!(
    breakout_popstan_census_into_typed_tables,
    breakout_three_level_csdb_with_its_own_dictionary,
    breakout_json_dictionary_breaks_out_too,
    breakout_refuses_existing_tables_unless_overwrite_replaces_them,
    breakout_seed_error_codes,
    breakout_bad_lines_are_reported_per_case_or_fail_in_strict_mode,
    breakout_killed_mid_job_resumes_to_the_same_tables,
    breakout_incremental_runs_write_only_the_chunks_that_changed,
    breakout_files_uploaded_as_multipart_are_kept_and_broken_out,
    breakout_an_unreachable_database_is_db_connection_error,
    breakout_never_replaces_tables_it_did_not_create,
    breakout_a_killed_process_resumes_its_job,
    breakout_writes_into_a_separate_analytics_database,
    breakout_losing_the_database_midway_fails_with_db_connection_error_and_a_retry_resumes,
    breakout_server_paths_are_confined_to_the_data_directory,
);

const SEC: Duration = Duration::from_secs(1);

pub(crate) fn fixture(name: &str) -> String {
    format!("{}/fixtures/cspro/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub(crate) const POPSTAN_DCF: &str = "jhandley_PopstanCensus_CEN2000.dcf";
pub(crate) const POPSTAN_DAT: &str = "jhandley_PopstanCensus.dat";

pub(crate) async fn register(app: &TestApp, dictionary: Option<&str>, data: &str) -> Response {
    let admin = app.token_with("admin").await;
    let mut body = json!({"dataPath": data});
    if let Some(d) = dictionary {
        body["dictionaryPath"] = json!(d);
    }
    app.call(
        Method::POST,
        "/api/breakout/dictionaries",
        Some(&admin),
        Some(&body),
    )
    .await
}

async fn register_popstan(app: &TestApp) {
    let r = register(app, Some(&fixture(POPSTAN_DCF)), &fixture(POPSTAN_DAT)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn start(app: &TestApp, body: &Value) -> Response {
    app.post("/api/breakout/start", body).await
}

pub(crate) async fn start_ok(app: &TestApp, body: &Value) -> String {
    let r = start(app, body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body["job_id"].as_str().unwrap().to_owned()
}

/// Jobs of tens of MiB take tens of seconds on two busy cores: the limit only catches a
/// job that never ends.
pub(crate) async fn finished(app: &TestApp, job: &str) -> Value {
    eventually(180 * SEC, || async {
        let s = app.get(&format!("/api/breakout/status/{job}")).await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.text);
        matches!(
            s.body["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        )
        .then_some(s.body)
    })
    .await
}

pub(crate) async fn counts(app: &TestApp, tables: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for t in tables {
        let rows = query(app, &format!("SELECT CAST(COUNT(*) AS TEXT) FROM \"{t}\"")).await;
        out.push(rows[0][0].as_deref().unwrap().parse().unwrap());
    }
    out
}

/// Every table a Popstan breakout creates, CSWeb's bookkeeping included.
pub(crate) const POPSTAN_TABLES: [&str; 8] = [
    "cen2000_cases",
    "cen2000_level-1",
    "cen2000_person",
    "cen2000_housing",
    "cen2000_interview_record",
    "cen2000_cspro_jobs",
    "cen2000_cspro_meta",
    "cen2000_notes",
];

/// The tables that hold Popstan's data: the first five of `POPSTAN_TABLES`.
pub(crate) const POPSTAN_DATA: [&str; 5] = [
    "cen2000_cases",
    "cen2000_level-1",
    "cen2000_person",
    "cen2000_housing",
    "cen2000_interview_record",
];

/// The rows one Popstan file gives each of `POPSTAN_DATA`.
pub(crate) const POPSTAN_ROWS: [i64; 5] = [294, 294, 1262, 240, 294];

/// Copies of Popstan in the file that interruption tests break off after its first 300
/// cases: enough that the job is still far from done when the test cuts in.
const COPIES: i64 = 20;

/// Popstan's cases `COPIES` times over (without the BOM, which only a file's start may have).
fn popstan_copies(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let popstan = std::fs::read_to_string(fixture(POPSTAN_DAT)).unwrap();
    let data = dir.path().join("popstan_copies.dat");
    std::fs::write(
        &data,
        popstan
            .trim_start_matches('\u{feff}')
            .repeat(COPIES as usize),
    )
    .unwrap();
    data
}

async fn breakout_popstan_census_into_typed_tables(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    register_popstan(&app).await;
    let listed = app.get("/api/breakout/dictionaries").await;
    assert_eq!(listed.body["total"], 1, "{}", listed.text);
    assert_eq!(listed.body["data"][0]["name"], "CEN2000");
    assert_eq!(listed.body["data"][0]["tables"], json!(POPSTAN_TABLES));

    let r = start(
        &app,
        &json!({"dictionaries": ["CEN2000"], "threads": 3, "overwrite": false, "chunk_size": 40}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "started");
    assert_eq!(r.body["dictionaries"], json!(["CEN2000"]));
    assert_eq!(r.body["threads"], 3);
    assert!(r.body["estimated_time"].is_null(), "no history yet");
    assert_eq!(r.body["message"], "Breakout started in background");
    let job = r.body["job_id"].as_str().unwrap().to_owned();

    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 294);
    assert_eq!(done["result"]["tables_created"], json!(POPSTAN_TABLES));
    assert_eq!(done["result"]["dictionaries_processed"], json!(["CEN2000"]));
    assert!(done["result"]["execution_time"]
        .as_str()
        .unwrap()
        .starts_with("00:"));
    assert!(done["completed_at"].is_string());
    assert_eq!(done["result"]["issues"]["count"], 0, "{done}");

    // Sizes and counts measured from the database.
    let t = app.get("/api/breakout/tables/CEN2000").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(t.body["label"], "cen2000");
    let rows: Vec<(String, String, i64)> = t.body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["size_bytes"].as_i64().unwrap() > 0, "{t}");
            (
                t["name"].as_str().unwrap().to_owned(),
                t["type"].as_str().unwrap().to_owned(),
                t["row_count"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, i64)> = [
        ("cen2000_cases", "main", 294),
        ("cen2000_level-1", "level", 294),
        ("cen2000_person", "record", 1262),
        ("cen2000_housing", "record", 240),
        ("cen2000_interview_record", "record", 294),
        ("cen2000_cspro_jobs", "jobs", 1),
        ("cen2000_cspro_meta", "meta", 1),
        ("cen2000_notes", "notes", 0),
    ]
    .iter()
    .map(|(n, k, c)| (n.to_string(), k.to_string(), *c))
    .collect();
    assert_eq!(rows, expected);
    assert!(t.body["total_size"].as_str().unwrap().ends_with('B'));

    // Spot checks: ids and a zero-filled numeric on the cases row, an alpha item, person
    // rows keyed by case and occurrence.
    let case = query(
        &app,
        "SELECT c.key, CAST(province AS TEXT), CAST(village AS TEXT), CAST(hh AS TEXT)
         FROM cen2000_cases c JOIN \"cen2000_level-1\" l ON l.\"case-id\" = c.id
         WHERE c.key = '010100300110210011'",
    )
    .await;
    assert_eq!(
        case[0],
        [
            Some("010100300110210011".to_owned()),
            Some("1".to_owned()),
            Some("3".to_owned()),
            Some("1".to_owned())
        ]
    );
    let interview = query(
        &app,
        "SELECT enumerator, CAST(interview_month AS TEXT) FROM cen2000_interview_record r
         JOIN \"cen2000_level-1\" l ON l.\"level-1-id\" = r.\"level-1-id\"
         JOIN cen2000_cases c ON c.id = l.\"case-id\" WHERE c.key = '010100300110210011'",
    )
    .await;
    assert_eq!(interview[0][0].as_deref().map(str::trim_end), Some("Lisa"));
    assert_eq!(interview[0][1].as_deref(), Some("12"));
    let persons = query(
        &app,
        "SELECT CAST(occ AS TEXT), CAST(p03_sex AS TEXT), CAST(p04_age AS TEXT)
         FROM cen2000_person p JOIN \"cen2000_level-1\" l ON l.\"level-1-id\" = p.\"level-1-id\"
         JOIN cen2000_cases c ON c.id = l.\"case-id\" WHERE c.key = '010100300110210011'
         ORDER BY occ",
    )
    .await;
    assert_eq!(persons.len(), 3);
    // First PERSON line: `...1 0 1 1 2 1 95...`: sex at column 23, age at 24-25.
    let line = std::fs::read_to_string(fixture(POPSTAN_DAT)).unwrap();
    let first = line.trim_start_matches('\u{feff}').lines().next().unwrap();
    let sex: i64 = first[22..23].parse().unwrap();
    let age: i64 = first[23..25].trim().parse().unwrap();
    assert_eq!(persons[0][0].as_deref(), Some("1"));
    assert_eq!(persons[0][1], Some(sex.to_string()));
    assert_eq!(persons[0][2], Some(age.to_string()));

    // Progress and completion went out as the operation's events, like any operation's.
    let types = eventually(10 * SEC, || async {
        let page = app.get(&app.api("/events?first=100")).await;
        let types: Vec<String> = page.body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["subject"] == job.as_str())
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        types
            .iter()
            .any(|t| t == "operation.completed")
            .then_some(types)
    })
    .await;
    assert!(types.iter().any(|t| t == "operation.progress"), "{types:?}");

    // Listed among jobs, and as an ordinary operation.
    let jobs = app
        .get("/api/breakout/jobs?status=completed&limit=10")
        .await;
    assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.text);
    assert_eq!(jobs.body["total"], 1);
    assert_eq!(jobs.body["limit"], 10);
    assert_eq!(jobs.body["data"][0]["job_id"], job.as_str());
    assert_eq!(jobs.body["data"][0]["cases_processed"], 294);
    let running = app.get("/api/breakout/jobs?status=running").await;
    assert_eq!(running.body["total"], 0);
    let op = app.get(&app.api(&format!("/operation/{job}"))).await;
    assert_eq!(op.body["operationType"], "CsproBreakout", "{}", op.text);
    assert_eq!(op.body["status"], "Completed");

    // A second start now has history for its estimate.
    let again = start(
        &app,
        &json!({"dictionaries": ["CEN2000"], "overwrite": true}),
    )
    .await;
    assert!(again.body["estimated_time"].is_string(), "{}", again.text);
    finished(&app, again.body["job_id"].as_str().unwrap()).await;

    // Dropping the tables reports what was freed; then they are gone.
    let d = app.delete("/api/breakout/tables/CEN2000", None).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert_eq!(d.body["message"], "Tables deleted successfully");
    assert_eq!(d.body["deleted_tables"], json!(POPSTAN_TABLES));
    assert!(d.body["freed_bytes"].as_i64().unwrap() > 0);
    let gone = app.get("/api/breakout/tables/CEN2000").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body["error"], "No tables found");
    assert_eq!(
        gone.body["suggestion"],
        "Run breakout first using POST /api/breakout/start"
    );
}

async fn breakout_three_level_csdb_with_its_own_dictionary(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = register(&app, None, &fixture("cspro_ThreeLevelTest.csdb")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data_kind"], "csdb");
    let name = r.body["name"].as_str().unwrap().to_owned();
    let tables: Vec<String> = r.body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let job = start_ok(&app, &json!({"dictionaries": [name], "threads": 2})).await;
    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 1);
    let cases = query(&app, &format!("SELECT id FROM {}", tables[0])).await;
    assert_eq!(
        cases[0][0].as_deref(),
        Some("997f1b93-b3c7-468e-ba29-7c9b799a0281")
    );
    // A decimal item (Decimal=5, written with its decimal character) keeps its exact value;
    // a repeating subitem is a column per occurrence, DEFAULT is NULL.
    let longitude = query(
        &app,
        "SELECT CAST(longitude AS TEXT) FROM household_compound_info_rec",
    )
    .await;
    let longitude = longitude[0][0].clone().unwrap();
    assert_eq!(longitude.parse::<f64>().unwrap(), 234234.567, "{longitude}");
    if backend == Backend::Postgres {
        assert_eq!(longitude, "234234.56700");
    }
    let person = query(
        &app,
        "SELECT first_name, CAST(\"repeating_subitem(2)\" AS TEXT), CAST(\"repeating_subitem(3)\" AS TEXT),
                CAST(\"level-3-id\" AS TEXT), CAST(occ AS TEXT)
         FROM household_person_rec",
    )
    .await;
    assert_eq!(person[0][0].as_deref().map(str::trim_end), Some("newdude"));
    assert_eq!(person[0][1].as_deref(), Some("2"));
    assert_eq!(person[0][2], None);
    assert_eq!(person[0][3].as_deref(), Some("1"));
    assert_eq!(person[0][4].as_deref(), Some("1"));
    // The person joins back to its case through its household and housing unit.
    let path = query(
        &app,
        "SELECT c.id FROM household_person_rec p
         JOIN \"household_level-3\" h ON h.\"level-3-id\" = p.\"level-3-id\"
         JOIN \"household_level-2\" u ON u.\"level-2-id\" = h.\"level-2-id\"
         JOIN \"household_level-1\" l ON l.\"level-1-id\" = u.\"level-1-id\"
         JOIN household_cases c ON c.id = l.\"case-id\"",
    )
    .await;
    assert_eq!(path.len(), 1);
    let t = app.get(&format!("/api/breakout/tables/{name}")).await;
    // The one case has one node of each level, each with its record, one run, no notes.
    for table in t.body["tables"].as_array().unwrap() {
        let expected = if table["type"] == "notes" { 0 } else { 1 };
        assert_eq!(table["row_count"], expected, "{}", t.text);
    }
    assert_eq!(t.body["tables"].as_array().unwrap().len(), tables.len());
}

async fn breakout_json_dictionary_breaks_out_too(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    // TESTDICT_DICT (JSON, relative positions): record type in column 1, the id in
    // column 2, then TEST_ITEM (alpha, 30). Case 1 has two records, case 2 one.
    let data = dir.path().join("testdict.dat");
    std::fs::write(&data, "11first record\n11second record\n12other case\n").unwrap();
    let r = register(
        &app,
        Some(&fixture("cspro_TestDict_json.dcf")),
        data.to_str().unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let name = r.body["name"].as_str().unwrap().to_owned();
    assert_eq!(name, "TESTDICT_DICT");
    let got = app.get(&format!("/api/breakout/dictionaries/{name}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body["tables"],
        json!([
            "testdict_cases",
            "testdict_level-1",
            "testdict_testdict_rec",
            "testdict_cspro_jobs",
            "testdict_cspro_meta",
            "testdict_notes"
        ])
    );
    let job = start_ok(&app, &json!({"dictionaries": [name]})).await;
    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 2);
    let rows = query(
        &app,
        "SELECT c.key, CAST(l.testdict_id AS TEXT), CAST(r.occ AS TEXT), r.test_item
         FROM testdict_testdict_rec r JOIN \"testdict_level-1\" l ON l.\"level-1-id\" = r.\"level-1-id\"
         JOIN testdict_cases c ON c.id = l.\"case-id\"
         ORDER BY c.key, r.occ",
    )
    .await;
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.unwrap_or_default().trim_end().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [
            ["1", "1", "1", "first record"],
            ["1", "1", "2", "second record"],
            ["2", "2", "1", "other case"]
        ]
    );
    let d = app
        .delete(&format!("/api/breakout/dictionaries/{name}"), None)
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let gone = app.get(&format!("/api/breakout/dictionaries/{name}")).await;
    assert_eq!(gone.body["code"], "DICTIONARY_NOT_FOUND");
}

async fn breakout_refuses_existing_tables_unless_overwrite_replaces_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    register_popstan(&app).await;
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    assert_eq!(finished(&app, &job).await["status"], "completed");

    let r = start(
        &app,
        &json!({"dictionaries": ["CEN2000"], "overwrite": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["error"], "Tables already exist");
    assert_eq!(r.body["code"], "TABLES_ALREADY_EXIST");
    assert_eq!(
        r.body["message"],
        "Tables for dictionary 'CEN2000' already exist. Use overwrite=true to replace."
    );
    assert_eq!(r.body["existing_tables"], json!(POPSTAN_TABLES));

    // Overwrite replaces: a stray row is gone and nothing is doubled.
    query(
        &app,
        "INSERT INTO cen2000_cases (id, key) VALUES ('stray', 'stray')",
    )
    .await;
    let job = start_ok(
        &app,
        &json!({"dictionaries": ["CEN2000"], "overwrite": true, "threads": 4, "chunk_size": 7}),
    )
    .await;
    assert_eq!(finished(&app, &job).await["status"], "completed");
    assert_eq!(counts(&app, &POPSTAN_DATA).await, POPSTAN_ROWS);
}

async fn breakout_seed_error_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    register_popstan(&app).await;

    let r = start(&app, &json!({"dictionaries": ["EVAL_DICT"]})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.body["code"], "DICTIONARY_NOT_FOUND");

    for threads in [json!(0), json!(11), json!(2.5), json!("3")] {
        let r = start(
            &app,
            &json!({"dictionaries": ["CEN2000"], "threads": threads}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{threads}: {}", r.text);
        assert_eq!(r.body["code"], "INVALID_THREADS", "{threads}");
    }

    // A read-only token may look but not start; a token for no single project may not.
    let reader = app.token_with("operations:read").await;
    let body = json!({"dictionaries": ["CEN2000"]});
    let r = app
        .call(
            Method::POST,
            "/api/breakout/start",
            Some(&reader),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.body["code"], "INSUFFICIENT_PERMISSIONS");
    let r = app
        .call(Method::GET, "/api/breakout/jobs", Some(&reader), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let tenant_wide =
        crate::common::mint_token(app.store(), app.tenant, None, crate::common::ALL_SCOPES).await;
    let r = app
        .call(Method::GET, "/api/breakout/jobs", Some(&tenant_wide), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.body["code"], "INSUFFICIENT_PERMISSIONS");
    // Registering server files needs the admin scope.
    let body = json!({"dictionaryPath": fixture(POPSTAN_DCF), "dataPath": fixture(POPSTAN_DAT)});
    let r = app.post("/api/breakout/dictionaries", &body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = app
        .call(Method::POST, "/api/breakout/start", None, Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Another project's token sees neither the dictionary nor the job.
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let (_, _, other) = app.other_tenant().await;
    let r = app
        .call(
            Method::GET,
            &format!("/api/breakout/status/{job}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app
        .call(
            Method::POST,
            "/api/breakout/start",
            Some(&other),
            Some(&json!({"dictionaries": ["CEN2000"]})),
        )
        .await;
    assert_eq!(r.body["code"], "DICTIONARY_NOT_FOUND", "{}", r.text);

    let r = app.get("/api/breakout/jobs?status=sleeping").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.get("/api/breakout/jobs?limit=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .get("/api/breakout/status/breakout-20260315-120000")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    finished(&app, &job).await;
}

async fn breakout_bad_lines_are_reported_per_case_or_fail_in_strict_mode(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let good = std::fs::read_to_string(fixture("jhandley_PopstanCensus_first5cases.dat")).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let case_ids = &lines[0][1..19].to_owned();
    let case_key = case_ids.clone();
    // Line 2 gets an unknown record type, line 3 is cut short, and the age of the first
    // person (columns 24-25) becomes letters.
    lines[1] = format!("9{}{}", case_ids, &lines[1][19..]);
    lines[2] = lines[2][..10].to_owned();
    lines[0].replace_range(23..25, "XX");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.dat");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let r = register(&app, Some(&fixture(POPSTAN_DCF)), data.to_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 5);
    let issues = &done["result"]["issues"];
    assert_eq!(issues["count"], 3, "{issues}");
    assert_eq!(issues["by_kind"]["unknown_record_type"], 1, "{issues}");
    assert_eq!(issues["by_kind"]["short_line"], 1, "{issues}");
    assert_eq!(issues["by_kind"]["not_numeric"], 1, "{issues}");
    let mut listed: Vec<(i64, String)> = issues["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["case_id"], 1, "{i}");
            assert_eq!(i["case_key"], case_key.as_str(), "{i}");
            (
                i["line"].as_i64().unwrap(),
                i["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            (1, "not_numeric".to_owned()),
            (2, "unknown_record_type".to_owned()),
            (3, "short_line".to_owned())
        ]
    );
    // The rest of the data is there.
    let persons = counts(&app, &["cen2000_cases", "cen2000_person"]).await;
    assert_eq!(persons[0], 5);

    let strict = start(
        &app,
        &json!({"dictionaries": ["CEN2000"], "overwrite": true, "strict": true}),
    )
    .await;
    assert_eq!(strict.status, StatusCode::ACCEPTED, "{}", strict.text);
    let failed = finished(&app, strict.body["job_id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "INVALID_DATA", "{failed}");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 1"));
    assert!(failed["failed_at"].is_string());
}

/// Restarts the server in-process (`TestApp::restart`) while the job is part-way through:
/// the next attempt skips the committed chunks, and the tables equal those of an
/// uninterrupted run.
async fn breakout_killed_mid_job_resumes_to_the_same_tables(backend: Backend) {
    let short_lease = |c: &mut relais::config::Config| c.heartbeat_timeout = 2 * SEC;
    let app = TestApp::spawn_with(backend, short_lease).await;
    let dir = tempfile::tempdir().unwrap();
    let data = popstan_copies(&dir);
    let r = register(&app, Some(&fixture(POPSTAN_DCF)), data.to_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let body = json!({"dictionaries": ["CEN2000"], "threads": 2, "chunk_size": 5});
    let job = start_ok(&app, &body).await;
    // While it runs, another job on the same dictionary is refused.
    let r = start(
        &app,
        &json!({"dictionaries": ["CEN2000"], "overwrite": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "JOB_ALREADY_RUNNING");
    assert_eq!(r.body["job_id"], job.as_str());
    let at_kill = eventually(60 * SEC, || async {
        let s = app.get(&format!("/api/breakout/status/{job}")).await;
        let processed = s.body["progress"]["processed"].as_u64().unwrap_or(0);
        (processed >= 300).then_some(s.body)
    })
    .await;
    assert_eq!(at_kill["status"], "running", "{at_kill}");
    assert_eq!(at_kill["progress"]["total"], 294 * COPIES);
    assert!(at_kill["progress"]["estimated_remaining"].is_string());
    assert!(
        at_kill["progress"]["percentage"].is_u64(),
        "a whole percentage, as the seed shows: {at_kill}"
    );
    let app = app.restart(short_lease).await;

    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 294 * COPIES);
    // The restart stopped the first process gracefully: it handed the attempt back, so
    // the attempt that finished the job is the first again, run by the new process.
    let op = app.get(&app.api(&format!("/operation/{job}"))).await;
    assert_eq!(op.body["execution"]["attempt"], 1, "{}", op.text);
    assert_eq!(
        op.body["attempts"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        op.text
    );
    let resumed = fingerprint(&app).await;

    let again = start_ok(
        &app,
        &json!({"dictionaries": ["CEN2000"], "threads": 1, "overwrite": true}),
    )
    .await;
    assert_eq!(finished(&app, &again).await["status"], "completed");
    assert_eq!(fingerprint(&app).await, resumed);
    assert_eq!(
        counts(&app, &POPSTAN_DATA).await,
        POPSTAN_ROWS.map(|n| n * COPIES)
    );
}

async fn fingerprint(app: &TestApp) -> Vec<Vec<Option<String>>> {
    fingerprint_at(app.store().url()).await
}

async fn fingerprint_at(url: &str) -> Vec<Vec<Option<String>>> {
    let mut all = Vec::new();
    // Counts and sums of values: serial ids depend on which chunks a killed job had
    // committed, the rest must not.
    all.extend(
        query_at(
            url,
            "SELECT CAST(COUNT(*) AS TEXT), CAST(COUNT(DISTINCT id) AS TEXT),
             CAST(COUNT(DISTINCT key) AS TEXT) FROM cen2000_cases",
        )
        .await,
    );
    for (table, column) in [
        ("cen2000_level-1", "province"),
        ("cen2000_person", "p04_age"),
        ("cen2000_housing", "h01_type"),
        ("cen2000_interview_record", "interview_month"),
    ] {
        all.extend(
            query_at(
                url,
                &format!(
                    "SELECT CAST(COUNT(*) AS TEXT), CAST(CAST(SUM({column}) AS BIGINT) AS TEXT)
                     FROM \"{table}\""
                ),
            )
            .await,
        );
    }
    // Every record still reaches its case.
    all.extend(
        query_at(
            url,
            "SELECT CAST(COUNT(*) AS TEXT) FROM cen2000_person p
             JOIN \"cen2000_level-1\" l ON l.\"level-1-id\" = p.\"level-1-id\"
             JOIN cen2000_cases c ON c.id = l.\"case-id\"",
        )
        .await,
    );
    all
}

async fn breakout_incremental_runs_write_only_the_chunks_that_changed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let popstan = std::fs::read_to_string(fixture(POPSTAN_DAT)).unwrap();
    let popstan = popstan.trim_start_matches('\u{feff}');
    let first5 =
        std::fs::read_to_string(fixture("jhandley_PopstanCensus_first5cases.dat")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("census.dat");
    std::fs::write(&data, popstan).unwrap();
    let r = register(&app, Some(&fixture(POPSTAN_DCF)), data.to_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let run = |body: Value| {
        let app = &app;
        async move {
            let job = start_ok(app, &body).await;
            let done = finished(app, &job).await;
            assert_eq!(done["status"], "completed", "{done}");
            let op = app
                .get(&app.api(&format!("/operation/{job}/results")))
                .await;
            (
                op.body["summary"]["cases_written"].as_u64().unwrap(),
                op.body["summary"]["cases_unchanged"].as_u64().unwrap(),
                done["result"]["total_cases"].as_u64().unwrap(),
            )
        }
    };
    let body = json!({"dictionaries": ["CEN2000"], "chunk_size": 50, "threads": 2});
    assert_eq!(run(body.clone()).await, (294, 0, 294));

    let incremental = json!({"dictionaries": ["CEN2000"], "chunk_size": 50, "incremental": true});
    // Nothing changed: nothing written.
    assert_eq!(run(incremental.clone()).await, (0, 294, 294));

    // Five cases appended: only the last chunk (cases 251-299) is written again.
    std::fs::write(&data, format!("{popstan}{first5}")).unwrap();
    assert_eq!(run(incremental.clone()).await, (49, 250, 299));
    assert_eq!(counts(&app, &["cen2000_cases"]).await, [299]);

    // Cut down to five cases: the first chunk changed, the rows of the rest are gone.
    std::fs::write(&data, &first5).unwrap();
    assert_eq!(run(incremental.clone()).await, (5, 0, 5));
    assert_eq!(counts(&app, &["cen2000_cases"]).await, [5]);
    assert_eq!(counts(&app, &["cen2000_level-1"]).await, [5]);
    let orphans = query(
        &app,
        "SELECT CAST(COUNT(*) AS TEXT) FROM cen2000_person p
         LEFT JOIN \"cen2000_level-1\" l ON l.\"level-1-id\" = p.\"level-1-id\"
         WHERE l.\"level-1-id\" IS NULL",
    )
    .await;
    assert_eq!(
        orphans[0][0].as_deref(),
        Some("0"),
        "removed cases took their records"
    );

    // Without `incremental` or `overwrite`, existing tables are still a 409.
    let r = start(&app, &body).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

/// A `multipart/form-data` body of file parts: its content type and bytes.
pub(crate) fn multipart(parts: &[(&str, &str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "relais-test-7d1f0c";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn upload(app: &TestApp, parts: &[(&str, &str, Vec<u8>)]) -> Response {
    let (content_type, body) = multipart(parts);
    let r = app
        .client
        .post(format!("{}/api/breakout/dictionaries", app.base))
        .bearer_auth(&app.token)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    Response::read(r).await
}

async fn breakout_files_uploaded_as_multipart_are_kept_and_broken_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let read = |name: &str| std::fs::read(fixture(name)).unwrap();
    let r = upload(
        &app,
        &[
            ("dictionary", "census.dcf", read(POPSTAN_DCF)),
            ("data", "census.dat", read(POPSTAN_DAT)),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "CEN2000");
    assert_eq!(r.body["uploaded"], true);
    assert!(r.body["data_path"].is_null());
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"], "threads": 2})).await;
    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&app, &POPSTAN_DATA).await, POPSTAN_ROWS);

    // A .csdb alone: its own dictionary is used.
    let r = upload(
        &app,
        &[("data", "t.csdb", read("cspro_ThreeLevelTest.csdb"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data_kind"], "csdb");
    let name = r.body["name"].as_str().unwrap().to_owned();
    let job = start_ok(&app, &json!({"dictionaries": [name]})).await;
    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 1);

    // A text data file needs its dictionary; unknown parts are named.
    let r = upload(&app, &[("data", "census.dat", read(POPSTAN_DAT))]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "dictionary");
    let r = upload(&app, &[("questionnaire", "x", vec![1, 2])]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], "questionnaire");
}

/// The database goes away under a running server (its pool is closed): the token and
/// project are still known from the few-seconds cache, and the breakout answers the
/// seed's `DB_CONNECTION_ERROR` rather than a 500.
async fn breakout_an_unreachable_database_is_db_connection_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    register_popstan(&app).await;
    let listed = app.get("/api/breakout/jobs").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    app.store().close().await;
    let r = start(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.body["code"], "DB_CONNECTION_ERROR");
    assert_eq!(r.body["error"], "Database connection failed");
}

/// Table names follow the seed (no project prefix), so a table of the same name may be
/// another project's, or no breakout table at all: it is never dropped, even with
/// `overwrite`, whether the job comes through the facade or the operations API.
async fn breakout_never_replaces_tables_it_did_not_create(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    register_popstan(&app).await;
    query(&app, "CREATE TABLE cen2000_person (precious TEXT)").await;
    query(
        &app,
        "INSERT INTO cen2000_person (precious) VALUES ('keep me')",
    )
    .await;
    let r = start(
        &app,
        &json!({"dictionaries": ["CEN2000"], "overwrite": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "TABLES_ALREADY_EXIST");
    assert_eq!(r.body["existing_tables"], json!(["cen2000_person"]));

    let id = app
        .start_operation(
            &json!({"operationType": "CsproBreakout", "operationName": "direct",
            "parameters": {"dictionaries": ["CEN2000"], "overwrite": true}}),
        )
        .await;
    let failed = finished(&app, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "TABLES_ALREADY_EXIST", "{failed}");
    let kept = query(&app, "SELECT precious FROM cen2000_person").await;
    assert_eq!(kept, [[Some("keep me".to_owned())]]);
}

/// SIGKILL of a real `relais serve` mid-job: another process takes the job over once its
/// lease runs out, skips the chunks already committed, and ends with the same tables as
/// an uninterrupted run.
async fn breakout_a_killed_process_resumes_its_job(backend: Backend) {
    use crate::common::{cli_tenant, ServeProcess, TestDb};
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "kill");
    // Leases of the killed process run out after two seconds.
    let env = [("RELAIS_HEARTBEAT_TIMEOUT", "2")];
    let client = reqwest::Client::new();
    let call = |base: &str, method: Method, path: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { Response::read(request.send().await.unwrap()).await }
    };

    let dir = tempfile::tempdir().unwrap();
    let data = popstan_copies(&dir);

    let mut first = ServeProcess::start(&db, &env).await;
    let body = json!({"dictionaryPath": fixture(POPSTAN_DCF), "dataPath": data.to_str().unwrap()});
    let r = call(
        &first.base,
        Method::POST,
        "/api/breakout/dictionaries",
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let body = json!({"dictionaries": ["CEN2000"], "threads": 2, "chunk_size": 5});
    let r = call(&first.base, Method::POST, "/api/breakout/start", Some(body)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let job = r.body["job_id"].as_str().unwrap().to_owned();
    let status_path = format!("/api/breakout/status/{job}");
    let at_kill = eventually(60 * SEC, || async {
        let s = call(&first.base, Method::GET, &status_path, None).await;
        let processed = s.body["progress"]["processed"].as_u64().unwrap_or(0);
        (processed >= 300).then_some(s.body)
    })
    .await;
    assert_eq!(at_kill["status"], "running", "{at_kill}");
    first.kill();

    let second = ServeProcess::start(&db, &env).await;
    let done = eventually(90 * SEC, || async {
        let s = call(&second.base, Method::GET, &status_path, None).await;
        matches!(s.body["status"].as_str(), Some("completed" | "failed")).then_some(s.body)
    })
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 294 * COPIES);
    let op = call(
        &second.base,
        Method::GET,
        &format!("/api/{t}/{p}/async/operation/{job}"),
        None,
    )
    .await;
    assert!(
        op.body["execution"]["attempt"].as_u64().unwrap() >= 2,
        "{}",
        op.text
    );
    // The resumed attempt wrote only what the killed one had not committed.
    let results = call(
        &second.base,
        Method::GET,
        &format!("/api/{t}/{p}/async/operation/{job}/results"),
        None,
    )
    .await;
    let written = results.body["summary"]["cases_written"].as_i64().unwrap();
    assert!(written <= 294 * COPIES - 300, "{}", results.text);
    let resumed = fingerprint_at(&db.url).await;

    let body = json!({"dictionaries": ["CEN2000"], "overwrite": true});
    let r = call(
        &second.base,
        Method::POST,
        "/api/breakout/start",
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let again = format!(
        "/api/breakout/status/{}",
        r.body["job_id"].as_str().unwrap()
    );
    eventually(60 * SEC, || async {
        let s = call(&second.base, Method::GET, &again, None).await;
        (s.body["status"] == "completed").then_some(())
    })
    .await;
    assert_eq!(fingerprint_at(&db.url).await, resumed);
    drop(second);
}

/// With `RELAIS_ANALYTICS_DATABASE_URL`, the tables (and the record of what was written
/// into them) go into that database and nothing of them into the main one.
async fn breakout_writes_into_a_separate_analytics_database(backend: Backend) {
    let analytics = crate::common::TestDb::create(backend).await;
    let url = analytics.url.clone();
    let app = TestApp::spawn_with(backend, |c| c.analytics_database_url = Some(url)).await;
    register_popstan(&app).await;
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"], "threads": 2})).await;
    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    for (table, rows) in POPSTAN_DATA.iter().zip(POPSTAN_ROWS) {
        let found = query_at(
            &analytics.url,
            &format!("SELECT CAST(COUNT(*) AS TEXT) FROM \"{table}\""),
        )
        .await;
        assert_eq!(
            found[0][0].as_deref(),
            Some(rows.to_string().as_str()),
            "{table}"
        );
    }
    let main_tables = query(
        &app,
        if backend == Backend::Postgres {
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'cen2000%' AND table_schema = current_schema()"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'cen2000%'"
        },
    )
    .await;
    assert!(
        main_tables.is_empty(),
        "nothing in the main database: {main_tables:?}"
    );
    let t = app.get("/api/breakout/tables/CEN2000").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(t.body["tables"][2]["row_count"], 1262, "{}", t.text);
    let again = start(&app, &json!({"dictionaries": ["CEN2000"], "threads": 1})).await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "the tables exist there: {}",
        again.text
    );
    let dropped = app
        .call(
            Method::DELETE,
            "/api/breakout/tables/CEN2000",
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(dropped.status, StatusCode::OK, "{}", dropped.text);
    let left = query_at(
        &analytics.url,
        if backend == Backend::Postgres {
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'cen2000%' AND table_schema = current_schema()"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'cen2000%'"
        },
    )
    .await;
    assert!(
        left.is_empty(),
        "dropped from the analytics database: {left:?}"
    );
}

/// The analytics database (PostgreSQL, behind a proxy) goes away part-way through a job:
/// each attempt fails with the seed's `DB_CONNECTION_ERROR`, retryable, until the retries
/// run out and the job reports the seed's failed shape. Once the database is back, a
/// `resume` retry of the operation finishes the job, and the tables equal those of an
/// uninterrupted run.
async fn breakout_losing_the_database_midway_fails_with_db_connection_error_and_a_retry_resumes(
    backend: Backend,
) {
    let analytics = crate::common::TestDb::create(Backend::Postgres).await;
    let proxy = crate::common::TcpProxy::start(crate::common::postgres_addr()).await;
    let (base, name) = analytics.url.rsplit_once('/').unwrap();
    let (scheme_user, _) = base.rsplit_once('@').unwrap();
    let proxied = format!("{scheme_user}@127.0.0.1:{}/{name}", proxy.port);
    let app = TestApp::spawn_with(backend, |c| c.analytics_database_url = Some(proxied)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = popstan_copies(&dir);
    let r = register(&app, Some(&fixture(POPSTAN_DCF)), data.to_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let job = start_ok(
        &app,
        &json!({"dictionaries": ["CEN2000"], "threads": 2, "chunk_size": 5}),
    )
    .await;
    eventually(60 * SEC, || async {
        let s = app.get(&format!("/api/breakout/status/{job}")).await;
        (s.body["progress"]["processed"].as_u64().unwrap_or(0) >= 300).then_some(())
    })
    .await;
    proxy.cut();

    let failed = finished(&app, &job).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "DB_CONNECTION_ERROR", "{failed}");
    // As the seed shows it: where the database is, without credentials.
    assert_eq!(
        failed["error"]["details"],
        format!("Host: 127.0.0.1, Port: {}", proxy.port)
    );
    assert!(failed["failed_at"].is_string());
    let op = app.get(&app.api(&format!("/operation/{job}"))).await;
    let attempts = op.body["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "the error is retryable: {}", op.text);
    for attempt in attempts {
        assert_eq!(
            attempt["error"]["code"], "DB_CONNECTION_ERROR",
            "{}",
            op.text
        );
    }
    let kept = query_at(
        &analytics.url,
        "SELECT CAST(COUNT(*) AS TEXT) FROM cen2000_cases",
    )
    .await;
    let kept: i64 = kept[0][0].as_deref().unwrap().parse().unwrap();
    assert!(
        (300..294 * COPIES).contains(&kept),
        "the chunks committed before the cut stay: {kept}"
    );

    proxy.restore();
    let r = app
        .post(
            &app.api(&format!("/operation/{job}/retry")),
            &json!({"retryMode": "resume"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let retried = r.body["newOperationId"].as_str().unwrap().to_owned();
    let done = finished(&app, &retried).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 294 * COPIES);
    let resumed = fingerprint_at(&analytics.url).await;

    let again = start_ok(
        &app,
        &json!({"dictionaries": ["CEN2000"], "threads": 1, "overwrite": true}),
    )
    .await;
    assert_eq!(finished(&app, &again).await["status"], "completed");
    assert_eq!(fingerprint_at(&analytics.url).await, resumed);
}

/// With `RELAIS_BREAKOUT_DATA_DIR`, files named by path must resolve (after `..` and
/// symbolic links) to a place inside that directory; anything else is a 400 naming the
/// field, and nothing is registered.
async fn breakout_server_paths_are_confined_to_the_data_directory(backend: Backend) {
    let outside = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let inside = data_dir.path().join("census");
    std::fs::create_dir(&inside).unwrap();
    for (from, to) in [(POPSTAN_DCF, "census.dcf"), (POPSTAN_DAT, "census.dat")] {
        std::fs::copy(fixture(from), inside.join(to)).unwrap();
        std::fs::copy(fixture(from), outside.path().join(to)).unwrap();
    }
    std::os::unix::fs::symlink(outside.path().join("census.dat"), inside.join("linked.dat"))
        .unwrap();
    let dir = data_dir.path().to_path_buf();
    let app = TestApp::spawn_with(backend, |c| {
        c.breakout_data_dir = Some(std::fs::canonicalize(dir).unwrap())
    })
    .await;
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let dcf = path(inside.join("census.dcf"));

    let refused = [
        (
            Some(dcf.clone()),
            path(outside.path().join("census.dat")),
            "dataPath",
        ),
        (
            Some(dcf.clone()),
            path(
                inside
                    .join("../../")
                    .join(outside.path().file_name().unwrap())
                    .join("census.dat"),
            ),
            "dataPath",
        ),
        (
            Some(dcf.clone()),
            path(inside.join("linked.dat")),
            "dataPath",
        ),
        (
            Some(path(outside.path().join("census.dcf"))),
            path(inside.join("census.dat")),
            "dictionaryPath",
        ),
    ];
    for (dictionary, data, field) in refused {
        let r = register(&app, dictionary.as_deref(), &data).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{data}: {}", r.text);
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    let listed = app.get("/api/breakout/dictionaries").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(
        listed.body["total"], 0,
        "nothing registered: {}",
        listed.text
    );

    // Inside, even spelled with `..` that stays inside, it registers and breaks out.
    let data = path(inside.join("../census/census.dat"));
    let r = register(&app, Some(&dcf), &data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let job = start_ok(&app, &json!({"dictionaries": ["CEN2000"]})).await;
    let done = finished(&app, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_cases"], 294);
}
