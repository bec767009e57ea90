//! Notebooks (seed 003): their blocks run as a batch in dependency or block order, the
//! blocks' statistics from real runs, cron schedules (every tick run, pause and resume),
//! and bad input refused naming the field.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, Backend, Response, TestApp};

both_backends!(
    three_echo_blocks_run_in_order_and_their_statistics_follow,
    explicit_dependencies_and_disabled_blocks_shape_the_run,
    an_every_second_schedule_runs_each_tick_until_paused,
    ticks_missed_while_the_service_was_down_run_once_not_each,
    a_retried_create_or_run_with_its_idempotency_key_happens_once,
    notebooks_are_created_listed_changed_and_deleted,
    bad_input_is_refused_naming_the_field,
);

/// `/api/{tenant}/{project}{path}`: seed 003's paths carry no `/async`.
pub fn at(app: &TestApp, path: &str) -> String {
    format!("/api/{}/{}{path}", app.tenant, app.project)
}

pub async fn put(app: &TestApp, path: &str, body: &Value) -> Response {
    app.call(Method::PUT, path, Some(&app.token), Some(body))
        .await
}

/// Creates a notebook and returns its answer.
pub async fn notebook(app: &TestApp, body: Value) -> Value {
    let r = app.post(&at(app, "/notebook"), &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

/// Adds a block and returns its id.
pub async fn block(app: &TestApp, notebook: &str, body: Value) -> String {
    let r = app
        .post(&at(app, &format!("/notebook/{notebook}/blocks")), &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["blockId"].as_str().unwrap().to_owned()
}

async fn run(app: &TestApp, notebook: &str) -> Value {
    let r = app
        .post(&at(app, &format!("/notebook/{notebook}/run")), &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body
}

async fn finished_batch(app: &TestApp, batch: &str) -> Value {
    eventually(Duration::from_secs(30), || async {
        let b = app.get(&app.api(&format!("/batch/{batch}"))).await.body;
        (b["status"] == "Completed" || b["status"] == "Failed").then_some(b)
    })
    .await
}

async fn echo_received(app: &TestApp, operation: &str) -> Vec<String> {
    let r = app
        .get(&app.api(&format!("/operation/{operation}/results")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["summary"]["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

async fn three_echo_blocks_run_in_order_and_their_statistics_follow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nb = notebook(&app, json!({"notebookName": "Echoes"})).await;
    let id = nb["notebookId"].as_str().unwrap();
    // Created out of order: `blockOrder` decides.
    let third = block(&app, id, json!({"blockType": "Echo", "blockTitle": "third", "blockOrder": 2, "configuration": "{\"n\": 3}"})).await;
    let first = block(&app, id, json!({"blockType": "Echo", "blockTitle": "first", "blockOrder": 0, "configuration": "{\"n\": 1}"})).await;
    let second = block(
        &app,
        id,
        json!({"blockType": "Echo", "blockTitle": "second", "blockOrder": 1}),
    )
    .await;

    let started = run(&app, id).await;
    assert_eq!(started["trigger"], "manual");
    assert_eq!(started["scheduledFor"], Value::Null);
    assert_eq!(started["totalOperations"], 3);
    let members = started["operations"].as_array().unwrap();
    let order: Vec<&str> = members
        .iter()
        .map(|m| m["blockId"].as_str().unwrap())
        .collect();
    assert_eq!(order, [first.as_str(), second.as_str(), third.as_str()]);
    assert_eq!(members[1]["dependencies"], json!([first]));
    assert_eq!(members[2]["dependencies"], json!([second]));
    let batch = started["batchId"].as_str().unwrap();
    let done = finished_batch(&app, batch).await;
    assert_eq!(done["status"], "Completed", "{done}");
    // Each block was handed the result of the one before it, so it ran after it.
    let op = |i: usize| members[i]["operationId"].as_str().unwrap().to_owned();
    assert!(echo_received(&app, &op(0)).await.is_empty());
    assert_eq!(echo_received(&app, &op(1)).await, vec![first.clone()]);
    assert_eq!(echo_received(&app, &op(2)).await, vec![second.clone()]);
    let status = app
        .get(&app.api(&format!("/operation/{}", op(0))))
        .await
        .body;
    assert_eq!(status["operationName"], "first");

    for b in [&first, &second, &third] {
        let got = app.get(&at(&app, &format!("/block/{b}"))).await.body;
        assert_eq!(got["executionCount"], 1, "{got}");
        assert_eq!(got["lastExecutionStatus"], "Success");
        assert!(got["lastExecutionDate"].is_string());
    }
    // A second run, the second block disabled: the third now follows the first.
    let disabled = put(
        &app,
        &at(&app, &format!("/block/{second}")),
        &json!({"isDisabled": true}),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text);
    let again = run(&app, id).await;
    assert_eq!(again["totalOperations"], 2);
    assert_eq!(again["operations"][1]["dependencies"], json!([first]));
    finished_batch(&app, again["batchId"].as_str().unwrap()).await;
    let counts = |b: &str| {
        let path = at(&app, &format!("/block/{b}"));
        let app = &app;
        async move { app.get(&path).await.body["executionCount"].clone() }
    };
    assert_eq!(counts(&first).await, 2);
    assert_eq!(counts(&second).await, 1, "a disabled block does not run");
    assert_eq!(counts(&third).await, 2);

    let runs = app.get(&at(&app, &format!("/notebook/{id}/runs"))).await;
    assert_eq!(runs.status, StatusCode::OK, "{}", runs.text);
    let list = runs.body["runs"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["batchId"], again["batchId"], "newest first");
    assert_eq!(list[1]["batchId"], started["batchId"]);
    assert!(list
        .iter()
        .all(|r| r["status"] == "Completed" && r["trigger"] == "manual"));
    assert_eq!(runs.body["hasNextPage"], false);
    let one = app
        .get(&at(&app, &format!("/notebook/{id}/runs?pageSize=1")))
        .await
        .body;
    assert_eq!(
        (one["runs"].as_array().unwrap().len(), &one["hasNextPage"]),
        (1, &json!(true))
    );
    let nb = app.get(&at(&app, &format!("/notebook/{id}"))).await.body;
    assert!(nb["lastRunAt"].is_string(), "{nb}");
    assert_eq!(nb["blocks"].as_array().unwrap().len(), 3);

    // A failing block: Failed, and what depended on it Skipped.
    let failing = notebook(&app, json!({"notebookName": "Fails"})).await;
    let fid = failing["notebookId"].as_str().unwrap();
    let bad = block(&app, fid, json!({"blockType": "Sleep", "blockTitle": "fails",
        "configuration": "{\"phases\": [{\"name\": \"x\", \"seconds\": 0}], \"failAtPhase\": \"x\", \"failRetryable\": false}"})).await;
    let after = block(
        &app,
        fid,
        json!({"blockType": "Echo", "blockTitle": "after", "blockOrder": 1}),
    )
    .await;
    let r = run(&app, fid).await;
    finished_batch(&app, r["batchId"].as_str().unwrap()).await;
    let got = app.get(&at(&app, &format!("/block/{bad}"))).await.body;
    assert_eq!(got["lastExecutionStatus"], "Failed", "{got}");
    let got = eventually(Duration::from_secs(10), || async {
        let b = app.get(&at(&app, &format!("/block/{after}"))).await.body;
        (b["executionCount"] == 1).then_some(b)
    })
    .await;
    assert_eq!(got["lastExecutionStatus"], "Skipped", "{got}");
}

async fn explicit_dependencies_and_disabled_blocks_shape_the_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nb = notebook(&app, json!({"notebookName": "Diamond"})).await;
    let id = nb["notebookId"].as_str().unwrap();
    let root = block(
        &app,
        id,
        json!({"blockType": "Echo", "blockTitle": "root", "blockOrder": 5}),
    )
    .await;
    let left = block(
        &app,
        id,
        json!({"blockType": "Echo", "blockTitle": "left", "dependencies": [root]}),
    )
    .await;
    let right = block(
        &app,
        id,
        json!({"blockType": "Echo", "blockTitle": "right", "dependencies": [root]}),
    )
    .await;
    let join = block(
        &app,
        id,
        json!({"blockType": "Echo", "blockTitle": "join", "dependencies": [left, right]}),
    )
    .await;
    let started = run(&app, id).await;
    let deps = |b: &str| {
        started["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["blockId"] == b)
            .unwrap()["dependencies"]
            .clone()
    };
    assert_eq!(deps(&root), json!([]));
    assert_eq!(deps(&left), json!([root]));
    assert_eq!(deps(&join), json!([left, right]));
    let done = finished_batch(&app, started["batchId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "Completed");
    // A cycle is refused, and names the blocks.
    let cycle = put(
        &app,
        &at(&app, &format!("/block/{root}")),
        &json!({"dependencies": [join]}),
    )
    .await;
    assert_eq!(cycle.status, StatusCode::BAD_REQUEST);
    let reason = cycle.headers["x-relais-error"].to_str().unwrap();
    assert!(
        reason.starts_with("dependencies: ") && reason.contains("cycle"),
        "{reason}"
    );
    assert!(reason.contains(&root) && reason.contains(&join), "{reason}");
    // The left branch disabled: the join waits for what it waited for.
    put(
        &app,
        &at(&app, &format!("/block/{left}")),
        &json!({"isDisabled": true}),
    )
    .await;
    let again = run(&app, id).await;
    let members = again["operations"].as_array().unwrap();
    let join_deps = &members
        .iter()
        .find(|m| m["blockId"] == join.as_str())
        .unwrap()["dependencies"];
    assert_eq!(join_deps, &json!([root, right]));
    // Deleting a block removes it from its dependents.
    let deleted = app
        .delete(&at(&app, &format!("/block/{right}")), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let j = app.get(&at(&app, &format!("/block/{join}"))).await.body;
    assert_eq!(j["dependencies"], json!([left]));
    // A notebook with nothing enabled cannot run.
    let empty = notebook(&app, json!({"notebookName": "Empty"})).await;
    let r = app
        .post(
            &at(
                &app,
                &format!("/notebook/{}/run", empty["notebookId"].as_str().unwrap()),
            ),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "NOTEBOOK_EMPTY");
}

async fn an_every_second_schedule_runs_each_tick_until_paused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nb = notebook(
        &app,
        json!({"notebookName": "Every second", "schedule": "* * * * * *", "timezone": "Europe/Paris"}),
    )
    .await;
    let id = nb["notebookId"].as_str().unwrap().to_owned();
    assert_eq!(nb["schedule"], "* * * * * *");
    assert_eq!(nb["timezone"], "Europe/Paris");
    assert!(nb["nextRunAt"].is_string(), "{nb}");
    block(
        &app,
        &id,
        json!({"blockType": "Echo", "blockTitle": "tick"}),
    )
    .await;
    let runs_path = at(&app, &format!("/notebook/{id}/runs?pageSize=100"));
    let runs = eventually(Duration::from_secs(20), || async {
        let list = app.get(&runs_path).await.body["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (list.len() >= 4).then_some(list)
    })
    .await;
    let mut ticks: Vec<chrono::DateTime<chrono::Utc>> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["trigger"], "schedule", "{r}");
            chrono::DateTime::parse_from_rfc3339(r["scheduledFor"].as_str().unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    ticks.sort();
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "one run per tick, none missed: {ticks:?}"
        );
    }
    assert!(ticks.iter().all(|t| t.timestamp_subsec_millis() == 0));
    let got = app.get(&at(&app, &format!("/notebook/{id}"))).await.body;
    assert!(
        got["lastRunAt"].is_string() && got["nextRunAt"].is_string(),
        "{got}"
    );

    // Paused: no more runs, the schedule kept.
    let paused = put(
        &app,
        &at(&app, &format!("/notebook/{id}")),
        &json!({"schedulePaused": true}),
    )
    .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert_eq!(paused.body["schedulePaused"], true);
    assert_eq!(paused.body["schedule"], "* * * * * *");
    assert_eq!(paused.body["nextRunAt"], Value::Null);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = app.get(&runs_path).await.body["runs"]
        .as_array()
        .unwrap()
        .len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = app.get(&runs_path).await.body["runs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "a paused schedule does not run");
    // Resumed: it runs again.
    let resumed = put(
        &app,
        &at(&app, &format!("/notebook/{id}")),
        &json!({"schedulePaused": false}),
    )
    .await;
    assert!(resumed.body["nextRunAt"].is_string(), "{}", resumed.text);
    eventually(Duration::from_secs(20), || async {
        let n = app.get(&runs_path).await.body["runs"]
            .as_array()
            .map_or(0, Vec::len);
        (n > after).then_some(())
    })
    .await;
    // The schedule removed: nothing due any more.
    let removed = put(
        &app,
        &at(&app, &format!("/notebook/{id}")),
        &json!({"schedule": null}),
    )
    .await;
    assert_eq!(removed.body["schedule"], Value::Null, "{}", removed.text);
    assert_eq!(removed.body["nextRunAt"], Value::Null);
}

async fn notebooks_are_created_listed_changed_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = notebook(
        &app,
        json!({"notebookName": "One", "notebookDescription": "first"}),
    )
    .await;
    assert_eq!(first["timezone"], "UTC", "the default zone");
    assert_eq!(first["schedule"], Value::Null);
    assert_eq!(first["nextRunAt"], Value::Null);
    notebook(&app, json!({"notebookName": "Two", "schedule": "0 9 * * MON-FRI", "timezone": "America/New_York"})).await;
    let id = first["notebookId"].as_str().unwrap();
    for path in ["/notebooks", "/notebook"] {
        let list = app.get(&at(&app, &format!("{path}?pageSize=1"))).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        assert_eq!(
            list.body["notebooks"][0]["notebookName"], "Two",
            "newest first"
        );
        assert_eq!(list.body["hasNextPage"], true);
        assert_eq!(list.body["pageSize"], 1);
    }
    // Partial: what is left out stays.
    let changed = put(
        &app,
        &at(&app, &format!("/notebook/{id}")),
        &json!({"notebookName": "Uno", "schedule": "*/5 * * * *"}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["notebookName"], "Uno");
    assert_eq!(changed.body["notebookDescription"], "first");
    assert!(changed.body["nextRunAt"].is_string());
    // Another tenant sees none of it.
    let (tenant, project, token) = app.other_tenant().await;
    let theirs = app
        .call(
            Method::GET,
            &format!("/api/{tenant}/{project}/notebook/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let mine_with_their_token = app
        .call(
            Method::GET,
            &at(&app, &format!("/notebook/{id}")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(mine_with_their_token.status, StatusCode::NOT_FOUND);
    // A run already started finishes after its notebook is deleted; its blocks go.
    let b = block(&app, id, json!({"blockType": "Sleep", "blockTitle": "slow", "configuration": "{\"phases\": [{\"name\": \"wait\", \"seconds\": 1}]}"})).await;
    let started = run(&app, id).await;
    let deleted = app
        .delete(&at(&app, &format!("/notebook/{id}")), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(
        app.get(&at(&app, &format!("/notebook/{id}"))).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&at(&app, &format!("/block/{b}"))).await.status,
        StatusCode::NOT_FOUND
    );
    let done = finished_batch(&app, started["batchId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "Completed");
    assert_eq!(
        app.delete(&at(&app, &format!("/notebook/{id}")), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn bad_input_is_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let refused = |r: Response, field: &str| {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.text);
        assert_eq!(r.body["field"], field, "{}", r.text);
        r.body["message"].as_str().unwrap().to_owned()
    };
    let create = |body: Value| {
        let app = &app;
        async move { app.post(&at(app, "/notebook"), &body).await }
    };
    let m = refused(
        create(json!({"notebookName": "x", "schedule": "61 * * * *"})).await,
        "schedule",
    );
    assert!(m.contains("not a valid cron expression"), "{m}");
    refused(
        create(json!({"notebookName": "x", "schedule": "* * *"})).await,
        "schedule",
    );
    refused(
        create(json!({"notebookName": "x", "schedule": "* * * * *", "timezone": "Mars/Base"}))
            .await,
        "timezone",
    );
    refused(
        create(json!({"notebookName": "x", "timezone": "Nowhere"})).await,
        "timezone",
    );
    refused(create(json!({"notebookName": " "})).await, "notebookName");
    refused(
        create(json!({"notebookName": "a\u{1}b"})).await,
        "notebookName",
    );
    refused(
        create(json!({"notebookName": "a\u{0}b"})).await,
        "notebookName",
    );
    refused(
        create(json!({"notebookName": "x", "colour": 1})).await,
        "colour",
    );
    refused(create(json!({"notebookName": 7})).await, "notebookName");
    refused(
        create(json!({"notebookName": "x", "callbacks": {"onBatchStart": "ftp://x"}})).await,
        "callbacks.onBatchStart",
    );

    let nb = notebook(&app, json!({"notebookName": "n"})).await;
    let id = nb["notebookId"].as_str().unwrap();
    let other = notebook(&app, json!({"notebookName": "other"})).await;
    let elsewhere = block(
        &app,
        other["notebookId"].as_str().unwrap(),
        json!({"blockType": "Echo", "blockTitle": "e"}),
    )
    .await;
    let add = |body: Value| {
        let app = &app;
        let path = at(app, &format!("/notebook/{id}/blocks"));
        async move { app.post(&path, &body).await }
    };
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "configuration": "[1]"})).await,
        "configuration",
    );
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "configuration": "{not json"})).await,
        "configuration",
    );
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "configuration": {"a": 1}})).await,
        "configuration",
    );
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "dependencies": [elsewhere]})).await,
        "dependencies[0]",
    );
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "dependencies": ["nope"]})).await,
        "dependencies[0]",
    );
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "blockOrder": -1})).await,
        "blockOrder",
    );
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "blockOrder": 99999999999999_i64}))
            .await,
        "blockOrder",
    );
    refused(
        add(json!({"blockType": "a b", "blockTitle": "b"})).await,
        "blockType",
    );
    refused(add(json!({"blockType": "Echo"})).await, "blockTitle");
    refused(
        add(json!({"blockType": "Echo", "blockTitle": "b", "isDisabled": "yes"})).await,
        "isDisabled",
    );
    let m = refused(
        add(json!({"blockType": "Sleep", "blockTitle": "b", "configuration": "{\"phases\": [{\"name\": \"p\", \"seconds\": -1}]}"})).await,
        "configuration.phases[0].seconds",
    );
    assert!(!m.is_empty());
    // A type nothing built in runs waits for workers, as operations do.
    block(
        &app,
        id,
        json!({"blockType": "Filter", "blockTitle": "for a worker"}),
    )
    .await;

    let missing = app
        .get(&at(&app, "/notebook/0b6e8c52-7d1f-4a8e-9b55-3c2f0e6a1d90"))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    refused(
        app.get(&at(&app, "/notebook/not-a-guid")).await,
        "notebookId",
    );
    refused(app.get(&at(&app, "/block/not-a-guid")).await, "blockId");
    refused(
        app.get(&at(&app, &format!("/notebook/{id}/runs?pageSize=1000")))
            .await,
        "pageSize",
    );
    let post_missing = app
        .post(
            &at(
                &app,
                "/notebook/0b6e8c52-7d1f-4a8e-9b55-3c2f0e6a1d90/blocks",
            ),
            &json!({"blockType": "Echo", "blockTitle": "b"}),
        )
        .await;
    assert_eq!(post_missing.status, StatusCode::NOT_FOUND);
    // Another tenant's block is unknown to this project: the seed's 404.
    let (tenant, project, token) = app.other_tenant().await;
    let r = app
        .call(
            Method::GET,
            &format!("/api/{tenant}/{project}/block/{elsewhere}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body,
        json!({"Error": "Block not found", "BlockId": elsewhere})
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/{tenant}/{project}/block/{elsewhere}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&at(&app, &format!("/block/{elsewhere}")))
            .await
            .status,
        StatusCode::OK,
        "still there"
    );
    // The paths of other scopes are theirs.
    let r = app.get("/api/breakout/tables/notebook").await;
    assert_ne!(r.body["field"], "tenantId", "{}", r.text);
    let wrong_method = app
        .call(
            Method::PATCH,
            &at(&app, "/notebook"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

async fn ticks_missed_while_the_service_was_down_run_once_not_each(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nb = notebook(
        &app,
        json!({"notebookName": "Outage", "schedule": "* * * * * *"}),
    )
    .await;
    let id = nb["notebookId"].as_str().unwrap().to_owned();
    block(
        &app,
        &id,
        json!({"blockType": "Echo", "blockTitle": "tick"}),
    )
    .await;
    let runs_path = at(&app, &format!("/notebook/{id}/runs?pageSize=100"));
    eventually(Duration::from_secs(20), || async {
        (ticks_of(&app, &runs_path).await.len() >= 2).then_some(())
    })
    .await;
    // Every replica down for 7 s: about seven ticks come due with nothing to run them.
    let app = app.down_for(Duration::from_secs(7)).await;
    let before = ticks_of(&app, &runs_path).await.len();
    let ticks = eventually(Duration::from_secs(20), || async {
        let ticks = ticks_of(&app, &runs_path).await;
        (ticks.len() >= before + 3).then_some(ticks)
    })
    .await;
    let gaps: Vec<_> = ticks
        .windows(2)
        .filter(|pair| pair[1] - pair[0] > chrono::Duration::seconds(1))
        .collect();
    assert_eq!(gaps.len(), 1, "one gap, the outage: {ticks:?}");
    let skipped = (gaps[0][1] - gaps[0][0]).num_seconds() - 1;
    assert!(
        skipped >= 5,
        "the older missed ticks were skipped, not run on start-up: {ticks:?}"
    );
    for pair in ticks.windows(2) {
        assert!(pair[1] > pair[0], "each tick once: {ticks:?}");
    }
}

/// The ticks of a notebook's runs, in order.
async fn ticks_of(app: &TestApp, runs: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    let mut ticks: Vec<chrono::DateTime<chrono::Utc>> = app.get(runs).await.body["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r["scheduledFor"].as_str().unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    ticks.sort();
    ticks
}

async fn a_retried_create_or_run_with_its_idempotency_key_happens_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"notebookName": "Once"});
    let first = app
        .post_idempotent(&at(&app, "/notebook"), "nb-1", &body)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = app
        .post_idempotent(&at(&app, "/notebook"), "nb-1", &body)
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    let other = app
        .post_idempotent(
            &at(&app, "/notebook"),
            "nb-1",
            &json!({"notebookName": "Twice"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.body["code"], "IDEMPOTENCY_KEY_REUSED");
    let list = app.get(&at(&app, "/notebooks")).await.body;
    assert_eq!(list["notebooks"].as_array().unwrap().len(), 1);

    let id = first.body["notebookId"].as_str().unwrap();
    let blocks = at(&app, &format!("/notebook/{id}/blocks"));
    let block = json!({"blockType": "Echo", "blockTitle": "b"});
    let b1 = app.post_idempotent(&blocks, "blk-1", &block).await;
    let b2 = app.post_idempotent(&blocks, "blk-1", &block).await;
    assert_eq!(b1.status, StatusCode::CREATED, "{}", b1.text);
    assert_eq!(b2.body["blockId"], b1.body["blockId"]);
    let nb = app.get(&at(&app, &format!("/notebook/{id}"))).await.body;
    assert_eq!(nb["blocks"].as_array().unwrap().len(), 1);

    let run_path = at(&app, &format!("/notebook/{id}/run"));
    let r1 = app.post_idempotent(&run_path, "run-1", &json!({})).await;
    let r2 = app.post_idempotent(&run_path, "run-1", &json!({})).await;
    assert_eq!(r1.status, StatusCode::ACCEPTED, "{}", r1.text);
    assert_eq!(r2.status, StatusCode::ACCEPTED);
    assert_eq!(r2.body["runId"], r1.body["runId"]);
    let r3 = app.post_idempotent(&run_path, "run-2", &json!({})).await;
    assert_ne!(r3.body["runId"], r1.body["runId"]);
    let runs = app
        .get(&at(&app, &format!("/notebook/{id}/runs")))
        .await
        .body;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
}
