use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(lists_filter_paginate_and_summarise_over_the_filter);

async fn lists_filter_paginate_and_summarise_over_the_filter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = chrono::Utc::now();
    for i in 0..5 {
        app.start_operation(&json!({"operationType": "Enrich", "operationName": format!("e{i}"), "priority": "Low"})).await;
    }
    for i in 0..3 {
        app.start_operation(&json!({"operationType": "Report", "operationName": format!("r{i}"), "priority": "High"})).await;
    }
    // Complete one report, cancel one enrichment.
    let lease = app
        .lease(&json!({"operationTypes": ["Report"]}))
        .await
        .remove(0);
    let done_id = lease["operationId"].as_str().unwrap().to_owned();
    app.post(
        &app.api(&format!("/operation/{done_id}/complete")),
        &json!({"leaseToken": lease["leaseToken"]}),
    )
    .await;
    let all = app.get(&app.api("/operations?pageSize=100")).await;
    let enrich_id = all.body["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operationType"] == "Enrich")
        .unwrap()["operationId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&app.api(&format!("/operation/{enrich_id}")), None)
        .await;

    let all = app.get(&app.api("/operations")).await;
    assert_eq!(all.status, StatusCode::OK);
    let s = &all.body["summary"];
    assert_eq!(s["totalOperations"], 8);
    assert_eq!(s["completed"], 1);
    assert_eq!(s["cancelled"], 1);
    assert_eq!(s["initiated"], 6);
    assert_eq!(all.body["page"], 1);
    assert_eq!(all.body["pageSize"], 20);
    assert_eq!(all.body["hasNextPage"], false);
    // Newest first.
    assert_eq!(all.body["operations"][0]["operationName"], "r2");

    let reports = app.get(&app.api("/operations?operationType=Report")).await;
    assert_eq!(reports.body["summary"]["totalOperations"], 3);
    assert_eq!(reports.body["summary"]["completed"], 1);
    assert!(reports.body["operations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["operationType"] == "Report"));

    let low = app
        .get(&app.api("/operations?priority=Low&status=Initiated"))
        .await;
    assert_eq!(low.body["summary"]["totalOperations"], 4);
    assert_eq!(low.body["operations"].as_array().unwrap().len(), 4);

    let completed = app
        .get(&app.api("/operations?status=Completed&includeDetails=true"))
        .await;
    let item = &completed.body["operations"][0];
    assert_eq!(item["operationId"], done_id);
    assert_eq!(item["progress"], 100.0);
    assert!(item["execution"]["executionId"]
        .as_str()
        .unwrap()
        .starts_with("exec-"));
    assert!(item["duration"].is_string());
    let plain = app.get(&app.api("/operations?status=Completed")).await;
    assert!(plain.body["operations"][0].get("execution").is_none());

    // Pages of 3: 3 + 3 + 2.
    let mut seen = Vec::new();
    for page in 1..=3 {
        let r = app
            .get(&app.api(&format!("/operations?pageSize=3&page={page}")))
            .await;
        assert_eq!(r.body["hasNextPage"], page < 3, "page {page}");
        assert_eq!(r.body["summary"]["totalOperations"], 8);
        for op in r.body["operations"].as_array().unwrap() {
            seen.push(op["operationId"].as_str().unwrap().to_owned());
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "pages neither repeat nor skip");
    let past = app.get(&app.api("/operations?page=4&pageSize=3")).await;
    assert_eq!(past.body["operations"].as_array().unwrap().len(), 0);

    let from =
        (before - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to =
        (before - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let window = app
        .get(&app.api(&format!("/operations?dateFrom={from}&dateTo={to}")))
        .await;
    assert_eq!(window.status, StatusCode::OK, "{}", window.text);
    assert_eq!(window.body["summary"]["totalOperations"], 0);
    let since = app
        .get(&app.api(&format!("/operations?dateFrom={from}")))
        .await;
    assert_eq!(since.body["summary"]["totalOperations"], 8);
}
