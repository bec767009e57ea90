use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, query, Backend, TestApp};
use crate::receiver::Receiver;

both_backends!(
    the_seed_body_is_accepted_and_answered_like_the_seed,
    a_diamond_runs_in_dependency_order_and_hands_results_downstream,
    a_fan_out_fan_in_batch_completes_in_dependency_order,
    a_failure_skips_its_dependents_and_lets_independent_members_finish,
    stop_on_first_failure_cancels_everything_still_pending_or_running,
    without_continuing_independent_members_unstarted_ones_are_skipped,
    cancelling_a_batch_cancels_its_pending_and_running_members,
    a_batch_retry_reruns_exactly_the_failed_subtree,
    batch_events_reach_callbacks_and_webhooks,
    bad_batches_are_refused_and_create_nothing,
    batches_are_listed_with_filters,
    random_dags_end_consistently_with_their_policy,
    the_same_idempotency_key_submits_one_batch,
    built_in_members_are_handed_their_dependencies_results,
);

fn member(key: &str, deps: &[&str]) -> Value {
    json!({"operationKey": key, "operationName": key, "operationType": "Step", "dependencies": deps})
}

async fn submit(app: &TestApp, body: &Value) -> Value {
    let r = app.post(&app.api("/batch"), body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body
}

async fn batch(app: &TestApp, id: &str) -> Value {
    let r = app.get(&app.api(&format!("/batch/{id}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

fn member_of<'a>(batch: &'a Value, key: &str) -> &'a Value {
    batch["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["operationKey"] == key)
        .unwrap_or_else(|| panic!("no member {key} in {batch}"))
}

async fn wait_for_batch(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(Duration::from_secs(20), || async {
        let b = batch(app, id).await;
        (b["status"] == status).then_some(b)
    })
    .await
}

/// A pull worker that completes whatever it is handed (failing the keys in `fail`),
/// recording the order of events, until the batch ends.
struct Worker {
    /// Per key: the work order it was handed.
    orders: HashMap<String, Value>,
    /// Per key: when it was leased, and when its completion was acknowledged.
    started: HashMap<String, std::time::Instant>,
    finished: HashMap<String, std::time::Instant>,
}

async fn run_worker(app: &TestApp, batch_id: &str, fail: &[&str], until: &[&str]) -> Worker {
    let mut worker = Worker {
        orders: HashMap::new(),
        started: HashMap::new(),
        finished: HashMap::new(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let b = batch(app, batch_id).await;
        if until.contains(&b["status"].as_str().unwrap_or_default()) {
            return worker;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch did not end: {b}"
        );
        let leases = app
            .lease(&json!({"operationTypes": ["Step"], "max": 10, "waitSeconds": 0.3}))
            .await;
        for lease in leases {
            let id = lease["operationId"].as_str().unwrap();
            let op = app.get(&app.api(&format!("/operation/{id}"))).await.body;
            let key = member_key_of(&b, id).unwrap_or_else(|| {
                // A member released after `b` was read is still in the batch.
                op["operationName"].as_str().unwrap().to_owned()
            });
            worker
                .started
                .insert(key.clone(), std::time::Instant::now());
            let (path, body) = if fail.contains(&key.as_str()) {
                (
                    "fail",
                    json!({"leaseToken": lease["leaseToken"], "error": {"code": "BROKEN", "message": "no"}, "retryable": false}),
                )
            } else {
                (
                    "complete",
                    json!({"leaseToken": lease["leaseToken"], "summary": {"producedBy": key}}),
                )
            };
            let r = app
                .post(&app.api(&format!("/operation/{id}/{path}")), &body)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            worker
                .finished
                .insert(key.clone(), std::time::Instant::now());
            worker.orders.insert(key, lease);
        }
    }
}

fn member_key_of(batch: &Value, id: &str) -> Option<String> {
    batch["operations"]
        .as_array()?
        .iter()
        .find(|m| m["operationId"] == id)
        .and_then(|m| m["operationKey"].as_str().map(str::to_owned))
}

fn assert_dependency_order(worker: &Worker, edges: &[(&str, &str)]) {
    for (upstream, downstream) in edges {
        let done = worker.finished[*upstream];
        let began = worker.started[*downstream];
        assert!(
            began >= done,
            "{downstream} started before {upstream} completed"
        );
    }
}

async fn the_seed_body_is_accepted_and_answered_like_the_seed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({
        "batchName": "Monthly Process Mining Pipeline",
        "batchDescription": "Complete monthly analysis workflow with multiple datasets",
        "operations": [
            {"operationName": "Data Preparation", "operationType": "DataEnrichment", "priority": "High", "operationKey": "data-prep",
             "parameters": {"datasetId": "dataset-1", "cleaningRules": ["remove_duplicates", "fix_timestamps"], "outputFormat": "processed_csv"}},
            {"operationName": "Process Discovery", "operationType": "ProcessMiningAnalysis", "priority": "High", "operationKey": "discovery",
             "dependencies": ["data-prep"], "parameters": {"algorithm": "alpha_miner_enhanced", "enableVariantAnalysis": true}},
            {"operationName": "Performance Analysis", "operationType": "ProcessMiningAnalysis", "priority": "Normal", "operationKey": "performance",
             "dependencies": ["discovery"], "parameters": {"enableBottleneckDetection": true, "generateOptimizationRecommendations": true}}
        ],
        "batchCallbacks": {
            "onBatchStart": "https://your-app.com/webhooks/batch-start",
            "onOperationComplete": "https://your-app.com/webhooks/operation-complete",
            "onBatchComplete": "https://your-app.com/webhooks/batch-complete"
        },
        "failurePolicy": {"stopOnFirstFailure": false, "continueIndependentOperations": true, "retryFailedOperations": true}
    });
    let answer = submit(&app, &body).await;
    let id = answer["batchId"].as_str().unwrap();
    assert!(id.starts_with("batch-"), "{answer}");
    assert_eq!(answer["batchName"], "Monthly Process Mining Pipeline");
    assert_eq!(answer["status"], "Initiated");
    assert_eq!(answer["totalOperations"], 3);
    assert!(answer["batchStartTime"].is_string());
    assert_eq!(
        answer["trackingUrl"],
        format!("/api/{}/{}/async/batch/{id}", app.tenant, app.project)
    );
    let ops = answer["operations"].as_array().unwrap();
    assert_eq!(ops[0]["operationKey"], "data-prep");
    assert!(ops[0]["operationId"].as_str().unwrap().starts_with("op-"));
    assert_eq!(ops[0]["status"], "Initiated");
    assert_eq!(ops[0]["dependencies"], json!([]));
    assert_eq!(ops[1]["status"], "Pending");
    assert_eq!(ops[2]["dependencies"], json!(["discovery"]));
    // Nothing has run yet, so nothing can be estimated.
    assert!(answer.get("estimatedBatchDuration").is_none(), "{answer}");

    // Members are ordinary operations.
    let first = ops[0]["operationId"].as_str().unwrap();
    let op = app.get(&app.api(&format!("/operation/{first}"))).await;
    assert_eq!(op.status, StatusCode::OK);
    assert_eq!(op.body["operationType"], "DataEnrichment");
    let b = batch(&app, id).await;
    assert_eq!(b["status"], "Initiated");
    assert_eq!(b["counts"]["Pending"], 2);
    assert_eq!(b["progress"], 0.0);
}

async fn a_diamond_runs_in_dependency_order_and_hands_results_downstream(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answer = submit(
        &app,
        &json!({"batchName": "diamond", "operations": [
            member("top", &[]), member("left", &["top"]), member("right", &["top"]), member("bottom", &["left", "right"])
        ]}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    let worker = run_worker(&app, id, &[], &["Completed"]).await;
    assert_dependency_order(
        &worker,
        &[
            ("top", "left"),
            ("top", "right"),
            ("left", "bottom"),
            ("right", "bottom"),
        ],
    );
    let inputs = &worker.orders["bottom"]["dependencyResults"];
    assert_eq!(inputs["left"]["summary"]["producedBy"], "left", "{inputs}");
    assert_eq!(
        inputs["right"]["summary"]["producedBy"], "right",
        "{inputs}"
    );
    assert_eq!(worker.orders["top"]["dependencyResults"], json!({}));
    let b = wait_for_batch(&app, id, "Completed").await;
    assert_eq!(b["counts"]["Completed"], 4);
    assert_eq!(b["progress"], 100.0);
    assert!(b["endTime"].is_string());
}

async fn a_fan_out_fan_in_batch_completes_in_dependency_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut members = vec![member("source", &[])];
    let middle: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    for m in &middle {
        members.push(member(m, &["source"]));
    }
    let refs: Vec<&str> = middle.iter().map(String::as_str).collect();
    members.push(member("sink", &refs));
    let answer = submit(&app, &json!({"batchName": "fan", "operations": members})).await;
    let id = answer["batchId"].as_str().unwrap();
    let worker = run_worker(&app, id, &[], &["Completed"]).await;
    let mut edges: Vec<(&str, &str)> = refs.iter().map(|m| ("source", *m)).collect();
    edges.extend(refs.iter().map(|m| (*m, "sink")));
    assert_dependency_order(&worker, &edges);
    assert_eq!(
        worker.orders["sink"]["dependencyResults"]
            .as_object()
            .unwrap()
            .len(),
        12
    );
}

async fn a_failure_skips_its_dependents_and_lets_independent_members_finish(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answer = submit(
        &app,
        &json!({"batchName": "branches", "operations": [
            member("a", &[]), member("b", &["a"]), member("c", &["b"]), member("x", &[]), member("y", &["x"])
        ]}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    run_worker(&app, id, &["a"], &["Failed"]).await;
    let b = batch(&app, id).await;
    assert_eq!(member_of(&b, "a")["status"], "Failed");
    for key in ["b", "c"] {
        let m = member_of(&b, key);
        assert_eq!(m["status"], "Skipped", "{m}");
        assert_eq!(m["error"]["code"], "UPSTREAM_FAILED");
        assert_eq!(m["error"]["details"]["failedOperationKey"], "a", "{m}");
    }
    assert_eq!(member_of(&b, "x")["status"], "Completed");
    assert_eq!(member_of(&b, "y")["status"], "Completed");
    assert_eq!(b["counts"]["Skipped"], 2);
}

async fn stop_on_first_failure_cancels_everything_still_pending_or_running(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answer = submit(
        &app,
        &json!({"batchName": "stop", "failurePolicy": {"stopOnFirstFailure": true},
            "operations": [member("a", &[]), member("x", &[]), member("y", &["x"])]}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    // x is running (leased, never finished) when a fails.
    let leases = app
        .lease(&json!({"operationTypes": ["Step"], "max": 2, "waitSeconds": 1}))
        .await;
    assert_eq!(leases.len(), 2);
    let a = member_of(&answer, "a")["operationId"].clone();
    let a_lease = leases.iter().find(|l| l["operationId"] == a).unwrap();
    let x_lease = leases.iter().find(|l| l["operationId"] != a).unwrap();
    let r = app
        .post(
            &app.api(&format!("/operation/{}/fail", a.as_str().unwrap())),
            &json!({"leaseToken": a_lease["leaseToken"], "error": {"code": "E", "message": "m"}, "retryable": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = wait_for_batch(&app, id, "Failed").await;
    assert_eq!(member_of(&b, "x")["status"], "Cancelled", "{b}");
    assert_eq!(member_of(&b, "y")["status"], "Cancelled", "{b}");
    // The running worker learns it on its next heartbeat.
    let x = x_lease["operationId"].as_str().unwrap();
    let r = app
        .post(
            &app.api(&format!("/operation/{x}/progress")),
            &json!({"leaseToken": x_lease["leaseToken"], "percentage": 50}),
        )
        .await;
    assert_eq!(r.body["cancelRequested"], true, "{}", r.text);
}

async fn without_continuing_independent_members_unstarted_ones_are_skipped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answer = submit(
        &app,
        &json!({"batchName": "halt", "failurePolicy": {"continueIndependentOperations": false},
            "operations": [member("a", &[]), member("x", &[]), member("y", &["x"])]}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    let a = member_of(&answer, "a")["operationId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Only a is leased (by priority both are equal; take both and let x run on).
    let leases = app
        .lease(&json!({"operationTypes": ["Step"], "max": 2, "waitSeconds": 1}))
        .await;
    let a_lease = leases
        .iter()
        .find(|l| l["operationId"] == a.as_str())
        .unwrap();
    let x_lease = leases
        .iter()
        .find(|l| l["operationId"] != a.as_str())
        .unwrap();
    app.post(
        &app.api(&format!("/operation/{a}/fail")),
        &json!({"leaseToken": a_lease["leaseToken"], "error": {"code": "E", "message": "m"}, "retryable": false}),
    )
    .await;
    // x was running: it may finish. y never started: it is skipped, not run.
    let x = x_lease["operationId"].as_str().unwrap();
    let r = app
        .post(
            &app.api(&format!("/operation/{x}/complete")),
            &json!({"leaseToken": x_lease["leaseToken"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = wait_for_batch(&app, id, "Failed").await;
    assert_eq!(member_of(&b, "x")["status"], "Completed", "{b}");
    let y = member_of(&b, "y");
    assert_eq!(y["status"], "Skipped", "{b}");
    assert!(
        ["BATCH_HALTED", "UPSTREAM_FAILED"].contains(&y["error"]["code"].as_str().unwrap()),
        "{y}"
    );
    let none = app
        .lease(&json!({"operationTypes": ["Step"], "max": 5, "waitSeconds": 0.2}))
        .await;
    assert!(none.is_empty(), "nothing is left to run: {none:?}");
}

async fn cancelling_a_batch_cancels_its_pending_and_running_members(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answer = submit(
        &app,
        &json!({"batchName": "cancel", "operations": [member("a", &[]), member("b", &["a"]), member("c", &[])]}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    let leases = app
        .lease(&json!({"operationTypes": ["Step"], "max": 1, "waitSeconds": 1}))
        .await;
    let first = &leases[0];
    app.post(
        &app.api(&format!(
            "/operation/{}/complete",
            first["operationId"].as_str().unwrap()
        )),
        &json!({"leaseToken": first["leaseToken"]}),
    )
    .await;
    let r = app.delete(&app.api(&format!("/batch/{id}")), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = wait_for_batch(&app, id, "Cancelled").await;
    let statuses: Vec<&str> = b["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "Completed").count(),
        1,
        "{b}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "Cancelled").count(),
        2,
        "{b}"
    );
    let again = app.delete(&app.api(&format!("/batch/{id}")), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
}

async fn a_batch_retry_reruns_exactly_the_failed_subtree(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answer = submit(
        &app,
        &json!({"batchName": "retry", "operations": [
            member("root", &[]), member("a", &["root"]), member("b", &["a"]), member("x", &["root"])
        ]}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    let running = app
        .post(&app.api(&format!("/batch/{id}/retry")), &json!({}))
        .await;
    assert_eq!(
        running.status,
        StatusCode::CONFLICT,
        "only a finished batch is retried"
    );
    run_worker(&app, id, &["a"], &["Failed"]).await;
    let failed = batch(&app, id).await;
    let kept: Vec<(String, Value)> = ["root", "x"]
        .iter()
        .map(|k| (k.to_string(), member_of(&failed, k)["operationId"].clone()))
        .collect();

    let r = app
        .post(&app.api(&format!("/batch/{id}/retry")), &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let mut retried: Vec<&str> = r.body["retriedOperations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operationKey"].as_str().unwrap())
        .collect();
    retried.sort();
    assert_eq!(retried, ["a", "b"]);
    let worker = run_worker(&app, id, &[], &["Completed"]).await;
    let mut ran: Vec<&String> = worker.orders.keys().collect();
    ran.sort();
    assert_eq!(ran, ["a", "b"], "completed members are not run again");
    assert_eq!(
        worker.orders["a"]["dependencyResults"]["root"]["summary"]["producedBy"], "root",
        "the kept result is handed to the rerun"
    );
    let done = batch(&app, id).await;
    for (key, op_id) in kept {
        assert_eq!(member_of(&done, &key)["operationId"], op_id);
    }
    let a = member_of(&done, "a");
    assert_eq!(a["retryOf"], member_of(&failed, "a")["operationId"]);
    assert_eq!(done["retryNumber"], 1);
}

async fn batch_events_reach_callbacks_and_webhooks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let callbacks = Receiver::start().await;
    let hooks = Receiver::start().await;
    app.register_webhook(&json!({"webhookUrl": hooks.url, "events": ["batch.started", "batch.operation.completed", "batch.completed"]}))
        .await;
    let answer = submit(
        &app,
        &json!({"batchName": "events", "operations": [member("a", &[]), member("b", &["a"])],
        "batchCallbacks": {
            "onBatchStart": format!("{}/start", callbacks.url),
            "onOperationComplete": format!("{}/member", callbacks.url),
            "onBatchComplete": format!("{}/end", callbacks.url)
        }}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    run_worker(&app, id, &[], &["Completed"]).await;
    let got = callbacks.wait_for(4, Duration::from_secs(15)).await;
    let tail = |path: &str| format!("/{}", path.rsplit('/').next().unwrap_or_default());
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| (tail(&r.path), r.event_type()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/end".to_string(), "batch.completed".to_string()),
            ("/member".into(), "batch.operation.completed".into()),
            ("/member".into(), "batch.operation.completed".into()),
            ("/start".into(), "batch.started".into()),
        ]
    );
    for r in &got {
        assert!(
            !r.header("webhook-signature").is_empty(),
            "callbacks are signed"
        );
        assert_eq!(r.json()["data"]["batchId"], id);
    }
    let member = got
        .iter()
        .find(|r| tail(&r.path) == "/member")
        .unwrap()
        .json();
    assert!(member["data"]["operationKey"].is_string(), "{member}");
    let hooked = hooks.wait_for(4, Duration::from_secs(15)).await;
    let mut types: Vec<String> = hooked.iter().map(|r| r.event_type()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "batch.completed",
            "batch.operation.completed",
            "batch.operation.completed",
            "batch.started"
        ]
    );
}

async fn bad_batches_are_refused_and_create_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (
            json!({"batchName": "b", "operations": []}),
            "operations",
            "",
        ),
        (
            json!({"batchName": "b", "operations": [member("a", &[]), member("a", &[])]}),
            "operations[1].operationKey",
            "",
        ),
        (
            json!({"batchName": "b", "operations": [member("a", &["ghost"])]}),
            "operations[0].dependencies[0]",
            "ghost",
        ),
        (
            json!({"batchName": "b", "operations": [member("a", &["a"])]}),
            "operations[0].dependencies[0]",
            "itself",
        ),
        (
            json!({"batchName": "b", "operations": [member("a", &["c"]), member("b", &["a"]), member("c", &["b"])]}),
            "operations",
            "a → c → b → a",
        ),
        (
            json!({"batchName": "b", "operations": [{"operationKey": "a", "operationName": "a", "operationType": "Step", "priority": "Urgent"}]}),
            "operations[0].priority",
            "",
        ),
        (
            json!({"batchName": "b", "operations": [member("a", &[])], "batchCallbacks": {"onBatchStart": "ftp://x"}}),
            "batchCallbacks.onBatchStart",
            "",
        ),
    ];
    for (body, field, mentions) in cases {
        let r = app.post(&app.api("/batch"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(
            r.body["field"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{body}: {}",
            r.text
        );
        assert!(r.text.contains(mentions), "{}", r.text);
    }
    let too_many: Vec<Value> = (0..=10_000)
        .map(|i| member(&format!("k{i}"), &[]))
        .collect();
    let r = app
        .post(
            &app.api("/batch"),
            &json!({"batchName": "b", "operations": too_many}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let listed = app.get(&app.api("/batches")).await;
    assert_eq!(listed.body["batches"], json!([]), "{}", listed.text);
    let ops = app.get(&app.api("/operations")).await;
    assert_eq!(ops.body["summary"]["totalOperations"], 0, "{}", ops.text);
}

async fn batches_are_listed_with_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = submit(
        &app,
        &json!({"batchName": "one", "operations": [member("a", &[])]}),
    )
    .await;
    let second = submit(
        &app,
        &json!({"batchName": "two", "operations": [member("a", &[])]}),
    )
    .await;
    app.delete(
        &app.api(&format!("/batch/{}", second["batchId"].as_str().unwrap())),
        None,
    )
    .await;
    wait_for_batch(&app, second["batchId"].as_str().unwrap(), "Cancelled").await;
    let all = app.get(&app.api("/batches")).await.body;
    assert_eq!(all["batches"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all["batches"][0]["batchName"], "two", "newest first");
    let live = app.get(&app.api("/batches?status=Initiated")).await.body;
    assert_eq!(live["batches"].as_array().unwrap().len(), 1, "{live}");
    assert_eq!(live["batches"][0]["batchId"], first["batchId"]);
    let cancelled = app
        .get(&app.api("/batches?status=Cancelled&pageSize=1"))
        .await
        .body;
    assert_eq!(cancelled["batches"][0]["batchId"], second["batchId"]);
    // A third batch whose member a worker took is Running; the first is still Initiated.
    let third = submit(&app, &json!({"batchName": "three", "operations": [{"operationKey": "a", "operationName": "a", "operationType": "Third"}]})).await;
    let leased = app
        .lease(&json!({"operationTypes": ["Third"], "max": 1, "waitSeconds": 1}))
        .await;
    assert_eq!(leased.len(), 1);
    let running = app.get(&app.api("/batches?status=Running")).await.body;
    assert_eq!(running["batches"].as_array().unwrap().len(), 1, "{running}");
    assert_eq!(running["batches"][0]["batchId"], third["batchId"]);
    assert_eq!(running["batches"][0]["status"], "Running");
    let live = app
        .get(&app.api("/batches?status=Initiated&pageSize=1"))
        .await
        .body;
    assert_eq!(live["batches"][0]["batchId"], first["batchId"], "{live}");
    assert_eq!(live["hasNextPage"], false, "{live}");
    let bad = app.get(&app.api("/batches?status=Sleeping")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "status");
    let unknown = app
        .get(&app.api("/batch/batch-00000000-0000-0000-0000-000000000000"))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// A generated DAG: for each member, the earlier members it depends on, and whether its
/// run fails.
#[derive(Debug, Clone)]
struct RandomDag {
    members: Vec<(Vec<usize>, bool)>,
    policy: usize,
}

fn random_dags() -> impl proptest::strategy::Strategy<Value = RandomDag> {
    use proptest::prelude::*;
    (1usize..12, 0usize..3)
        .prop_flat_map(|(n, policy)| {
            let members: Vec<_> = (0..n)
                .map(|i| {
                    (
                        proptest::collection::vec(0..i.max(1), 0..=3.min(i)),
                        proptest::bool::weighted(0.15),
                    )
                })
                .collect();
            (members, Just(policy))
        })
        .prop_map(|(members, policy)| RandomDag {
            members: members
                .into_iter()
                .enumerate()
                .map(|(i, (mut deps, fails))| {
                    deps.retain(|d| *d < i);
                    deps.sort();
                    deps.dedup();
                    (deps, fails)
                })
                .collect(),
            policy,
        })
}

/// Random DAGs, run by the built-in executor, always end with every member in a final
/// state that agrees with the failure policy.
async fn random_dags_end_consistently_with_their_policy(backend: Backend) {
    use proptest::strategy::{Strategy, ValueTree};
    let app = TestApp::spawn(backend).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut submitted = Vec::new();
    for _ in 0..24 {
        let dag = random_dags().new_tree(&mut runner).unwrap().current();
        let policy = match dag.policy {
            0 => json!({"retryFailedOperations": false}),
            1 => json!({"retryFailedOperations": false, "stopOnFirstFailure": true}),
            _ => json!({"retryFailedOperations": false, "continueIndependentOperations": false}),
        };
        let members: Vec<Value> = dag
            .members
            .iter()
            .enumerate()
            .map(|(i, (deps, fails))| {
                let mut parameters = json!({"seconds": 0});
                if *fails {
                    parameters["failAtPhase"] = json!("sleep");
                }
                json!({
                    "operationKey": format!("k{i}"),
                    "operationName": format!("k{i}"),
                    "operationType": "Sleep",
                    "dependencies": deps.iter().map(|d| format!("k{d}")).collect::<Vec<_>>(),
                    "parameters": parameters,
                })
            })
            .collect();
        let answer = submit(
            &app,
            &json!({"batchName": "random", "operations": members, "failurePolicy": policy}),
        )
        .await;
        submitted.push((answer["batchId"].as_str().unwrap().to_owned(), dag));
    }
    for (id, dag) in submitted {
        let b = eventually(Duration::from_secs(30), || async {
            let b = batch(&app, &id).await;
            ["Completed", "Failed"]
                .contains(&b["status"].as_str().unwrap())
                .then_some(b)
        })
        .await;
        let status = |i: usize| {
            member_of(&b, &format!("k{i}"))["status"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        // Whether a member, or any member it depends on transitively, is set to fail.
        let mut tainted = vec![false; dag.members.len()];
        for (i, (deps, fails)) in dag.members.iter().enumerate() {
            tainted[i] = *fails || deps.iter().any(|d| tainted[*d]);
        }
        let any_fails = dag.members.iter().any(|(_, f)| *f);
        for (i, (deps, fails)) in dag.members.iter().enumerate() {
            let s = status(i);
            assert!(
                ["Completed", "Failed", "Skipped", "Cancelled"].contains(&s.as_str()),
                "{dag:?}: k{i} ended {s}"
            );
            if s == "Completed" {
                assert!(!fails, "{dag:?}: k{i} was set to fail but completed");
                for d in deps {
                    assert_eq!(
                        status(*d),
                        "Completed",
                        "{dag:?}: k{i} ran before k{d} completed"
                    );
                }
            }
            if s == "Failed" {
                assert!(fails, "{dag:?}: k{i} failed without being set to");
            }
            if s == "Skipped" || s == "Cancelled" {
                assert!(any_fails, "{dag:?}: k{i} was {s} though nothing failed");
            }
            if dag.policy == 0 {
                // Independent members go on; dependents of a failure are skipped.
                let expected = if !tainted[i] {
                    "Completed"
                } else if *fails && deps.iter().all(|d| !tainted[*d]) {
                    "Failed"
                } else {
                    "Skipped"
                };
                assert_eq!(s, expected, "{dag:?}: k{i}");
            }
        }
        let expected = if (0..dag.members.len()).all(|i| status(i) == "Completed") {
            "Completed"
        } else {
            "Failed"
        };
        assert_eq!(b["status"], expected, "{dag:?}");
        assert_eq!(expected == "Completed", !any_fails, "{dag:?}");
    }
}

async fn the_same_idempotency_key_submits_one_batch(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let send = |key: &'static str, body: Value| {
        let app = &app;
        async move { app.post_idempotent(&app.api("/batch"), key, &body).await }
    };
    let body = json!({"batchName": "once", "operations": [member("a", &[]), member("b", &["a"])]});
    let first = send("batch-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let again = send("batch-1", body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(again.body["batchId"], first.body["batchId"]);
    assert_eq!(again.body["operations"], first.body["operations"]);
    let other = send(
        "batch-1",
        json!({"batchName": "other", "operations": [member("a", &[])]}),
    )
    .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.text);
    let listed = app.get(&app.api("/batches")).await.body;
    assert_eq!(listed["batches"].as_array().unwrap().len(), 1, "{listed}");
    let ops = app.get(&app.api("/operations")).await.body;
    assert_eq!(ops["summary"]["totalOperations"], 2, "{ops}");
}

/// Built-in executors get their dependencies' results too: `Echo` reports the keys of
/// the results it was handed.
async fn built_in_members_are_handed_their_dependencies_results(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let echo = |key: &str, deps: &[&str]| {
        json!({"operationKey": key, "operationName": key, "operationType": "Echo",
               "dependencies": deps, "parameters": {"step": key}})
    };
    let answer = submit(
        &app,
        &json!({"batchName": "echo", "operations": [echo("a", &[]), echo("b", &[]), echo("join", &["a", "b"])]}),
    )
    .await;
    let id = answer["batchId"].as_str().unwrap();
    let b = wait_for_batch(&app, id, "Completed").await;
    let join = member_of(&b, "join")["operationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let results = app
        .get(&app.api(&format!("/operation/{join}/results")))
        .await;
    assert_eq!(results.status, StatusCode::OK, "{}", results.text);
    let mut received: Vec<&str> = results.body["summary"]["received"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", results.text))
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    received.sort();
    assert_eq!(received, ["a", "b"], "{}", results.text);
    assert_eq!(results.body["summary"]["parameters"]["step"], "join");
}

/// A batch of a thousand members is a bulk load: PostgreSQL is asked to sample the batch
/// tables again (`ANALYZE`, which autovacuum never records as `last_analyze`), as
/// without it the scheduler's lookups of a few members read the whole batch. PostgreSQL
/// only: SQLite plans these lookups by their indexes alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_batch_has_postgresql_sample_the_batch_tables_again() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mut members = vec![member("source", &[])];
    members.extend((1..1000).map(|i| member(&format!("m{i}"), &["source"])));
    submit(&app, &json!({"batchName": "bulk", "operations": members})).await;
    eventually(Duration::from_secs(30), || async {
        let analyzed = query(
            &app,
            "SELECT COUNT(*)::text FROM pg_stat_user_tables \
             WHERE relname IN ('batch_members', 'batch_edges') AND last_analyze IS NOT NULL",
        )
        .await;
        (analyzed[0][0].as_deref() == Some("2")).then_some(())
    })
    .await;
}
