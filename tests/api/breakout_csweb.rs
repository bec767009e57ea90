//! Breakout tables that CSWeb users' queries run on unchanged (issue 19): the layout
//! CSWeb's schema generator makes, checked column by column, and the queries its users
//! write, on PostgreSQL, SQLite and MariaDB.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Row};

use crate::breakout::{finished, fixture, register, start_ok, POPSTAN_DAT, POPSTAN_DCF};
use crate::common::{Backend, MysqlDb, TestApp};

/// Where the breakout tables go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Postgres,
    Sqlite,
    /// MariaDB as the analytics database beside a SQLite main database.
    Mariadb,
}

macro_rules! three_targets {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Target::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Target::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                super::$name(super::Target::Mariadb).await
            }
        }
    )*};
}

three_targets!(
    breakout_popstan_in_csweb_s_layout_runs_csweb_s_queries,
    breakout_three_level_csdb_in_csweb_s_layout_keeps_deleted_cases,
    breakout_incremental_runs_on_csweb_s_layout_rewrite_and_remove_cases,
);

struct Setup {
    app: TestApp,
    target: Target,
    /// The analytics database's URL.
    url: String,
    _mysql: Option<MysqlDb>,
}

async fn setup(target: Target) -> Setup {
    match target {
        Target::Postgres | Target::Sqlite => {
            let backend = if target == Target::Postgres {
                Backend::Postgres
            } else {
                Backend::Sqlite
            };
            let app = TestApp::spawn(backend).await;
            let url = app.store().url().to_owned();
            Setup {
                app,
                target,
                url,
                _mysql: None,
            }
        }
        Target::Mariadb => {
            let mysql = MysqlDb::create().await;
            let url = mysql.url.clone();
            let app = TestApp::spawn_with(Backend::Sqlite, |c| {
                c.analytics_database_url = Some(url.clone())
            })
            .await;
            Setup {
                app,
                target,
                url: mysql.url.clone(),
                _mysql: Some(mysql),
            }
        }
    }
}

impl Setup {
    /// A query written with `"quoted"` names and `CAST(… AS TEXT)`, as this database
    /// takes it (MySQL quotes with backticks and casts to `CHAR`).
    fn sql(&self, sql: &str) -> String {
        match self.target {
            Target::Mariadb => sql.replace('"', "`").replace(" AS TEXT)", " AS CHAR)"),
            _ => sql.to_owned(),
        }
    }

    async fn connect(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.url).await.unwrap()
    }

    /// Rows of a query whose every column is text.
    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut conn = self.connect().await;
        let rows = sqlx::query(&self.sql(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                // MySQL hands TEXT columns over as blobs.
                (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i).unwrap_or_else(|_| {
                            row.try_get::<Option<Vec<u8>>, _>(i)
                                .unwrap()
                                .map(|b| String::from_utf8(b).unwrap())
                        })
                    })
                    .collect()
            })
            .collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        let mut conn = self.connect().await;
        sqlx::query(&self.sql(sql))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .try_get::<i64, _>(0)
            .unwrap()
    }

    async fn execute(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::query(&self.sql(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A table's columns, in order, as the database reports them.
    async fn columns(&self, table: &str) -> Vec<String> {
        let sql = match self.target {
            Target::Postgres => "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            Target::Mariadb => "SELECT CAST(column_name AS CHAR) FROM information_schema.columns
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
            Target::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        };
        let mut conn = self.connect().await;
        sqlx::query_scalar(sql)
            .bind(table)
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }

    async fn run(&self, body: serde_json::Value) -> serde_json::Value {
        let job = start_ok(&self.app, &body).await;
        let done = finished(&self.app, &job).await;
        assert_eq!(done["status"], "completed", "{done}");
        let op = self
            .app
            .get(&self.app.api(&format!("/operation/{job}/results")))
            .await;
        op.body["summary"].clone()
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

const CASES: [&str; 13] = [
    "id",
    "key",
    "label",
    "questionnaire",
    "last_modified_revision",
    "deleted",
    "verified",
    "partial_save_mode",
    "partial_save_field_name",
    "partial_save_level_key",
    "partial_save_record_occurrence",
    "partial_save_item_occurrence",
    "partial_save_subitem_occurrence",
];
const JOBS: [&str; 10] = [
    "id",
    "start_caseid",
    "start_revision",
    "end_caseid",
    "end_revision",
    "cases_to_process",
    "cases_processed",
    "status",
    "created_time",
    "modified_time",
];
const META: [&str; 6] = [
    "id",
    "cspro_version",
    "dictionary",
    "source_modified_time",
    "created_time",
    "modified_time",
];
const NOTES: [&str; 9] = [
    "case_id",
    "field_name",
    "level_key",
    "record_occurrence",
    "item_occurrence",
    "subitem_occurrence",
    "content",
    "operator_id",
    "modified_time",
];

/// The first PERSON lines of Popstan's first case: (occ, age).
fn first_case_ages() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fixture(POPSTAN_DAT)).unwrap();
    text.trim_start_matches('\u{feff}')
        .lines()
        .take_while(|l| l.starts_with('1'))
        .enumerate()
        .map(|(i, l)| {
            let age: i64 = l[23..25].trim().parse().unwrap();
            ((i + 1).to_string(), age.to_string())
        })
        .collect()
}

async fn breakout_popstan_in_csweb_s_layout_runs_csweb_s_queries(target: Target) {
    let s = setup(target).await;
    let r = register(&s.app, Some(&fixture(POPSTAN_DCF)), &fixture(POPSTAN_DAT)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    s.run(json!({"dictionaries": ["CEN2000"], "threads": 3, "chunk_size": 40}))
        .await;

    // The layout, column by column.
    assert_eq!(s.columns("cen2000_cases").await, strings(&CASES));
    assert_eq!(
        s.columns("cen2000_level-1").await,
        strings(&[
            "level-1-id",
            "case-id",
            "province",
            "district",
            "village",
            "ea",
            "ur",
            "building",
            "hu",
            "hh"
        ])
    );
    let person = s.columns("cen2000_person").await;
    assert_eq!(
        &person[..6],
        strings(&[
            "person-id",
            "level-1-id",
            "occ",
            "line",
            "p02_rel",
            "p03_sex"
        ])
    );
    assert_eq!(person.len(), 26, "{person:?}");
    let housing = s.columns("cen2000_housing").await;
    assert_eq!(
        &housing[..3],
        strings(&["housing-id", "level-1-id", "h01_type"]),
        "a record that occurs once has no occ"
    );
    let interview = s.columns("cen2000_interview_record").await;
    assert_eq!(
        &interview[..2],
        strings(&["interview_record-id", "level-1-id"])
    );
    assert_eq!(s.columns("cen2000_cspro_jobs").await, strings(&JOBS));
    assert_eq!(s.columns("cen2000_cspro_meta").await, strings(&META));
    assert_eq!(s.columns("cen2000_notes").await, strings(&NOTES));

    // CSWeb's users' queries, unchanged (read through a derived table that casts to text).
    let persons = s
        .rows(
            "SELECT CAST(q.key AS TEXT), CAST(q.province AS TEXT), CAST(q.occ AS TEXT), CAST(q.p04_age AS TEXT)
             FROM (SELECT c.key, l.province, p.occ, p.p04_age FROM cen2000_cases c JOIN \"cen2000_level-1\" l
             ON l.\"case-id\" = c.id JOIN cen2000_person p ON p.\"level-1-id\" = l.\"level-1-id\" WHERE
             c.deleted = 0) q",
        )
        .await;
    assert_eq!(persons.len(), 1262);
    let mut first: Vec<(String, String)> = persons
        .iter()
        .filter(|r| r[0].as_deref() == Some("010100300110210011"))
        .map(|r| {
            assert_eq!(r[1].as_deref(), Some("1"), "province");
            (r[2].clone().unwrap(), r[3].clone().unwrap())
        })
        .collect();
    first.sort();
    assert_eq!(first, first_case_ages());
    assert_eq!(
        s.count("SELECT COUNT(*) FROM cen2000_cases WHERE deleted = 0")
            .await,
        294
    );
    let housing = s
        .rows(
            "SELECT CAST(q.key AS TEXT), CAST(q.h01_type AS TEXT) FROM (SELECT c.key, h.h01_type
             FROM cen2000_cases c JOIN \"cen2000_level-1\" l ON l.\"case-id\" = c.id
             JOIN cen2000_housing h ON h.\"level-1-id\" = l.\"level-1-id\") q",
        )
        .await;
    assert_eq!(housing.len(), 240);

    // Ids: the case's GUID from its key, the label its key; one run recorded, done.
    let case = s
        .rows(
            "SELECT id, label, CAST(verified AS TEXT), CAST(last_modified_revision AS TEXT)
             FROM cen2000_cases WHERE \"key\" = '010100300110210011'",
        )
        .await;
    let guid = relais::cspro::layout::case_guid("CEN2000", "010100300110210011", 1);
    assert_eq!(
        case[0],
        [
            Some(guid.clone()),
            Some("010100300110210011".into()),
            Some("0".into()),
            None
        ]
    );
    let jobs = s
        .rows(
            "SELECT CAST(status AS TEXT), CAST(cases_to_process AS TEXT), CAST(cases_processed AS TEXT),
                    start_caseid, end_caseid FROM cen2000_cspro_jobs",
        )
        .await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        &jobs[0][..4],
        [
            Some("2".into()),
            Some("294".into()),
            Some("294".into()),
            Some(guid.clone())
        ]
    );
    let meta = s
        .rows("SELECT cspro_version, CAST(LENGTH(dictionary) AS TEXT) FROM cen2000_cspro_meta")
        .await;
    assert_eq!(meta[0][0].as_deref(), Some("CSPro 6.1"));
    let dcf_len = std::fs::metadata(fixture(POPSTAN_DCF)).unwrap().len();
    assert!(meta[0][1].as_ref().unwrap().parse::<u64>().unwrap() > dcf_len / 2);

    // The listing names every table, bookkeeping included, with measured sizes.
    let t = s.app.get("/api/breakout/tables/CEN2000").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    let listed: Vec<(String, String, i64)> = t.body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            if t["row_count"].as_i64().unwrap() > 0 {
                assert!(t["size_bytes"].as_i64().unwrap() > 0, "{t}");
            }
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
    assert_eq!(listed, expected);

    // A rerun from scratch keeps the ids.
    s.run(json!({"dictionaries": ["CEN2000"], "overwrite": true}))
        .await;
    let again = s
        .rows("SELECT id FROM cen2000_cases WHERE \"key\" = '010100300110210011'")
        .await;
    assert_eq!(again[0][0].as_deref(), Some(guid.as_str()));

    // Deleting the first level cascades to the records; the cases stay.
    s.execute("DELETE FROM \"cen2000_level-1\"").await;
    for table in [
        "cen2000_person",
        "cen2000_housing",
        "cen2000_interview_record",
    ] {
        assert_eq!(
            s.count(&format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(s.count("SELECT COUNT(*) FROM cen2000_cases").await, 294);
}

async fn breakout_three_level_csdb_in_csweb_s_layout_keeps_deleted_cases(target: Target) {
    let s = setup(target).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("three.csdb");
    std::fs::copy(fixture("cspro_ThreeLevelTest.csdb"), &data).unwrap();
    let r = register(&s.app, None, data.to_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "HOUSEHOLD_DICT");
    s.run(json!({"dictionaries": ["HOUSEHOLD_DICT"], "threads": 2}))
        .await;

    assert_eq!(s.columns("household_cases").await, strings(&CASES));
    assert_eq!(
        s.columns("household_level-2").await,
        strings(&["level-2-id", "level-1-id", "occ", "housing_unit_number"])
    );
    assert_eq!(
        s.columns("household_level-3").await,
        strings(&["level-3-id", "level-2-id", "occ", "household_number"])
    );
    assert_eq!(
        &s.columns("household_household_rec").await[..3],
        strings(&["household_rec-id", "level-3-id", "h06_tenure"])
    );
    let person = s.columns("household_person_rec").await;
    assert_eq!(
        &person[..4],
        strings(&["person_rec-id", "level-3-id", "occ", "first_name"])
    );
    assert!(
        person.contains(&"repeating_subitem(3)".to_owned()),
        "{person:?}"
    );
    assert_eq!(
        &s.columns("household_compound_info_rec").await[4..6],
        strings(&["housing_units(1)", "housing_units(2)"])
    );

    // The file's own GUID and revision; a person reaches its case through its levels.
    let path = s
        .rows(
            "SELECT c.id, CAST(c.last_modified_revision AS TEXT), p.first_name,
                    CAST(p.\"repeating_subitem(2)\" AS TEXT), CAST(u.housing_unit_number AS TEXT)
             FROM household_person_rec p
             JOIN \"household_level-3\" h ON h.\"level-3-id\" = p.\"level-3-id\"
             JOIN \"household_level-2\" u ON u.\"level-2-id\" = h.\"level-2-id\"
             JOIN \"household_level-1\" l ON l.\"level-1-id\" = u.\"level-1-id\"
             JOIN household_cases c ON c.id = l.\"case-id\" WHERE c.deleted = 0",
        )
        .await;
    assert_eq!(path.len(), 1, "{path:?}");
    assert_eq!(
        path[0][0].as_deref(),
        Some("997f1b93-b3c7-468e-ba29-7c9b799a0281")
    );
    assert_eq!(path[0][1].as_deref(), Some("3"));
    assert_eq!(path[0][2].as_deref().map(str::trim_end), Some("newdude"));
    assert_eq!(path[0][3].as_deref(), Some("2"));
    assert_eq!(path[0][4].as_deref(), Some("1"));
    let longitude = s
        .rows("SELECT CAST(longitude AS TEXT) FROM household_compound_info_rec")
        .await;
    let longitude: f64 = longitude[0][0].as_deref().unwrap().parse().unwrap();
    assert_eq!(longitude, 234234.567);

    // CSPro deletes the case: an incremental run keeps it, flagged, with its records.
    {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", data.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE cases SET deleted = 1")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let summary = s
        .run(json!({"dictionaries": ["HOUSEHOLD_DICT"], "incremental": true}))
        .await;
    assert_eq!(summary["cases_written"], 1, "{summary}");
    assert_eq!(
        s.count("SELECT COUNT(*) FROM household_cases WHERE deleted = 0")
            .await,
        0
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM household_cases WHERE deleted = 1")
            .await,
        1
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM household_person_rec").await,
        1
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM household_cspro_jobs WHERE status = 2")
            .await,
        2
    );
    // Deleting the first level takes every deeper level and record with it.
    s.execute("DELETE FROM \"household_level-1\"").await;
    for table in [
        "household_level-2",
        "household_level-3",
        "household_person_rec",
        "household_household_rec",
        "household_compound_info_rec",
    ] {
        assert_eq!(
            s.count(&format!("SELECT COUNT(*) FROM \"{table}\"")).await,
            0,
            "{table}"
        );
    }
}

async fn breakout_incremental_runs_on_csweb_s_layout_rewrite_and_remove_cases(target: Target) {
    let s = setup(target).await;
    let popstan = std::fs::read_to_string(fixture(POPSTAN_DAT)).unwrap();
    let popstan = popstan.trim_start_matches('\u{feff}').to_owned();
    let first5 =
        std::fs::read_to_string(fixture("jhandley_PopstanCensus_first5cases.dat")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("census.dat");
    std::fs::write(&data, &first5).unwrap();
    let r = register(&s.app, Some(&fixture(POPSTAN_DCF)), data.to_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    s.run(json!({"dictionaries": ["CEN2000"], "chunk_size": 50}))
        .await;
    let guid = relais::cspro::layout::case_guid("CEN2000", "010100300110210011", 1);
    let id_of_first = "SELECT CAST(l.\"level-1-id\" AS TEXT) FROM \"cen2000_level-1\" l
         JOIN cen2000_cases c ON c.id = l.\"case-id\" WHERE c.key = '010100300110210011'";
    let before = s.rows(id_of_first).await;

    // The whole census: the first chunk (the five cases and more) is written again, the
    // cases keep their GUIDs, and nothing is doubled.
    std::fs::write(&data, &popstan).unwrap();
    let incremental = json!({"dictionaries": ["CEN2000"], "chunk_size": 50, "incremental": true});
    let summary = s.run(incremental.clone()).await;
    assert_eq!(summary["total_cases"], 294, "{summary}");
    assert_eq!(s.count("SELECT COUNT(*) FROM cen2000_cases").await, 294);
    assert_eq!(s.count("SELECT COUNT(*) FROM cen2000_person").await, 1262);
    let cases = s
        .rows("SELECT id FROM cen2000_cases WHERE \"key\" = '010100300110210011'")
        .await;
    assert_eq!(cases, [[Some(guid)]]);
    assert_ne!(
        s.rows(id_of_first).await,
        before,
        "a rewritten case gets new serial ids"
    );

    // Back to five cases: the others go, their records with them (through the cascade).
    std::fs::write(&data, &first5).unwrap();
    s.run(incremental).await;
    assert_eq!(s.count("SELECT COUNT(*) FROM cen2000_cases").await, 5);
    assert_eq!(s.count("SELECT COUNT(*) FROM \"cen2000_level-1\"").await, 5);
    let persons = s
        .count(
            "SELECT COUNT(*) FROM cen2000_person p JOIN \"cen2000_level-1\" l
             ON l.\"level-1-id\" = p.\"level-1-id\"",
        )
        .await;
    assert_eq!(
        s.count("SELECT COUNT(*) FROM cen2000_person").await,
        persons
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM cen2000_cspro_jobs WHERE status = 2")
            .await,
        3
    );
}
