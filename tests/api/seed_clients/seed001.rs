//! Seed 001's clients: the operation of its examples from start to results with its
//! webhook, failed operations retried and cancelled, its batches, and the webhooks of its
//! JavaScript and Python clients.

use relais::outbound::signing::{verify, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use super::{
    assert_same, assert_shaped, assert_shaped_but_nulls, delivered_to, ok, status, time, SEC,
};
use crate::both_backends;
use crate::common::{eventually, Backend, TestApp};
use crate::receiver::{Received, Receiver};

both_backends!(
    one_operation_from_start_to_results_with_its_webhook,
    failed_operations_retried_and_cancelled,
    batches_run_with_their_estimates_and_callbacks,
    the_client_codes_webhooks_hear_of_their_operations,
);

// Fields the seeds show that Relais cannot know, so its answers leave them out (the README
// lists them with the reason). Each list is checked: its paths are in the seed's example
// and not in Relais's answer, so it can neither hide a field Relais gives nor go stale.

/// The CPU, memory and money a run is given: Relais queues work, it does not allocate
/// machines, and nothing tells it what a worker's machine costs.
const START_UNKNOWABLE: &[&str] = &["resourcesAllocated"];
const RETRY_UNKNOWABLE: &[&str] = &["resourcesAllocated"];
/// What the worker's machine uses: no worker report carries it.
const STATUS_UNKNOWABLE: &[&str] = &["execution.resourceUsage"];
const LIST_UNKNOWABLE: &[&str] = &["operations[].resourceUsage"];
/// What stopping freed and saved: nothing was allocated in the first place.
const CANCEL_UNKNOWABLE: &[&str] = &["resourcesReleased"];

/// The receivers of the seed's three operation callbacks.
struct Callbacks {
    progress: Receiver,
    completion: Receiver,
    error: Receiver,
}

impl Callbacks {
    async fn start() -> Self {
        Callbacks {
            progress: Receiver::start().await,
            completion: Receiver::start().await,
            error: Receiver::start().await,
        }
    }

    fn of(&self, body: Value) -> Value {
        delivered_to(
            body,
            &[
                ("https://your-app.com/webhooks/progress", &self.progress),
                ("https://your-app.com/webhooks/completion", &self.completion),
                ("https://your-app.com/webhooks/error", &self.error),
            ],
        )
    }
}

async fn start(app: &TestApp, body: &Value) -> Value {
    ok(
        app.post(&app.api("/operation"), body).await,
        StatusCode::ACCEPTED,
        "start",
    )
    .await
}

/// A pull worker holding the lease of one operation.
struct Worker<'a> {
    app: &'a TestApp,
    id: String,
    token: String,
    /// What the lease handed the worker.
    lease: Value,
}

impl<'a> Worker<'a> {
    /// Leases the operation `id`, which must be the next of its type.
    async fn lease(app: &'a TestApp, id: &str, operation_type: &str, worker: &str) -> Self {
        let lease = app
            .lease(&json!({"operationTypes": [operation_type], "max": 1, "waitSeconds": 20, "workerId": worker}))
            .await;
        assert_eq!(lease.len(), 1, "{lease:?}");
        assert_eq!(lease[0]["operationId"], id, "{lease:?}");
        Worker {
            app,
            id: id.to_owned(),
            token: lease[0]["leaseToken"].as_str().unwrap().to_owned(),
            lease: lease[0].clone(),
        }
    }

    async fn send(&self, report: &str, body: Value) -> Value {
        let mut body = body;
        body["leaseToken"] = json!(self.token);
        let path = self.app.api(&format!("/operation/{}/{report}", self.id));
        let r = self.app.post(&path, &body).await;
        ok(r, StatusCode::OK, &format!("{report} {body}")).await
    }

    async fn report(&self, body: Value) -> Value {
        self.send("progress", body).await
    }

    /// Reports what makes the status read as the seed's `status.running` example: the
    /// operation's counts, and each phase in order with the values it shows.
    async fn report_as(&self, seed: &Value) {
        let (progress, execution) = (&seed["progress"], &seed["execution"]);
        self.report(json!({"totalPhases": progress["totalPhases"], "totalRecords": execution["totalRecords"]}))
            .await;
        for phase in seed["phases"].as_array().unwrap() {
            if phase["status"] == "Completed" {
                // Seen running first, so it has a start before its end.
                let started = json!({"phaseName": phase["phaseName"], "status": "Running"});
                self.report(json!({ "phase": started })).await;
            }
            self.report(json!({ "phase": phase_report(phase) })).await;
        }
        self.report(
            json!({"percentage": progress["percentage"], "currentPhase": progress["currentPhase"],
            "processedRecords": execution["processedRecords"]}),
        )
        .await;
    }
}

/// A phase of the seed's status as a worker reports it: the fields Relais keeps as they
/// are, the numbers as counters, any other value as a detail, all shown flat; its times
/// and duration are Relais's, from when the reports arrive.
fn phase_report(phase: &Value) -> Value {
    let mut report = Map::new();
    let (mut counters, mut details) = (Map::new(), Map::new());
    for (key, value) in phase.as_object().unwrap() {
        match key.as_str() {
            "startTime" | "endTime" | "duration" => {}
            "phaseName" | "status" | "results" | "progress" | "currentActivity" => {
                report.insert(key.clone(), value.clone());
            }
            _ if value.is_number() => {
                counters.insert(key.clone(), value.clone());
            }
            _ => {
                details.insert(key.clone(), value.clone());
            }
        }
    }
    if !counters.is_empty() {
        report.insert("counters".into(), Value::Object(counters));
    }
    if !details.is_empty() {
        report.insert("details".into(), Value::Object(details));
    }
    Value::Object(report)
}

/// Starts `body`, has a worker complete it at once with `processedRecords`, and returns its
/// id: a run of the type, so that Relais has an estimate for the next ones.
async fn run_once(app: &TestApp, body: &Value, processed_records: &Value) -> String {
    let id = start(app, body).await["operationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let operation_type = body["operationType"].as_str().unwrap();
    let worker = Worker::lease(app, &id, operation_type, "history").await;
    worker
        .report(json!({"percentage": 50, "processedRecords": processed_records}))
        .await;
    worker.send("complete", json!({})).await;
    id
}

fn signed_with(secret: &str, r: &Received) -> bool {
    let timestamp: i64 = r.header("webhook-timestamp").parse().unwrap();
    verify(
        &SigningKey::from_secret(secret),
        r.header("webhook-id"),
        timestamp,
        r.body.as_bytes(),
        r.header("webhook-signature"),
        chrono::Utc::now().timestamp(),
        300,
    )
    .is_ok()
}

/// The fields of a webhook's registration answer that its body determines.
fn assert_registered_as_sent(answer: &Value, body: &Value) {
    assert_same(&answer["webhookUrl"], &body["webhookUrl"], "webhookUrl");
    assert_same(&answer["webhookName"], &body["webhookName"], "webhookName");
    assert_same(&answer["eventsSubscribed"], &body["events"], "events");
    let filters = &body["filters"];
    for key in ["operationTypes", "priorities"] {
        let sent = filters.get(key).cloned().unwrap_or(json!([]));
        assert_same(&answer["filters"][key], &sent, key);
    }
    let increment = filters.get("minProgressIncrement").cloned();
    assert_same(
        &answer["filters"]["minProgressIncrement"],
        &increment.unwrap_or(Value::Null),
        "minProgressIncrement",
    );
    assert_eq!(answer["status"], "Active");
}

async fn one_operation_from_start_to_results_with_its_webhook(backend: Backend) {
    // Able to send what the seed's `notifications` ask for: mail, and Slack.
    let (app, mail, slack) = TestApp::spawn_notifying(backend).await;
    let callbacks = Callbacks::start().await;
    let hook = Receiver::start().await;

    // The seed's webhook registration.
    let sent = delivered_to(
        seed!("001/register_webhook.request.json"),
        &[("https://your-app.com/webhooks/async-operations", &hook)],
    );
    let webhook = ok(
        app.post(&app.api("/webhooks"), &sent).await,
        StatusCode::CREATED,
        "webhook",
    )
    .await;
    let example = seed!("001/register_webhook.response.json");
    assert_shaped("register_webhook", &example, &webhook, &[]);
    assert_registered_as_sent(&webhook, &sent);
    assert_same(
        &webhook["deliveryStats"],
        &json!({"totalDeliveries": 0, "successfulDeliveries": 0, "failedDeliveries": 0,
            "pendingDeliveries": 0, "averageResponseTime": null}),
        "a new webhook's deliveries",
    );

    // The Python client's start, run once so that the seed's start has an estimate. Its
    // worker counts the records the seed's list shows for a completed operation.
    let list_example = seed!("001/list_operations.response.json");
    let earlier_records = &list_example["operations"][1]["recordsProcessed"];
    let earlier_callbacks = Callbacks::start().await;
    let python = earlier_callbacks.of(seed!("001/start_operation.py.request.json"));
    let earlier = run_once(&app, &python, earlier_records).await;

    // The seed's start.
    let sent = callbacks.of(seed!("001/start_operation.request.json"));
    let started = start(&app, &sent).await;
    assert_shaped(
        "start_operation",
        &seed!("001/start_operation.response.json"),
        &started,
        START_UNKNOWABLE,
    );
    let id = started["operationId"].as_str().unwrap().to_owned();
    for key in ["operationType", "operationName", "priority"] {
        assert_same(&started[key], &sent[key], key);
    }
    assert_eq!(started["status"], "Initiated");
    assert_eq!(started["trackingUrl"], app.api(&format!("/operation/{id}")));
    assert_eq!(
        started["webhooksRegistered"], 4,
        "the seed's webhook hears of it, and its three callbacks"
    );
    let created = time(&started["dateCreated"]);
    assert_eq!(
        (time(&started["timeoutAt"]) - created).num_seconds(),
        sent["timeout"].as_i64().unwrap()
    );
    assert!(time(&started["estimatedCompletion"]) >= created);

    // A pull worker leases it and reports what the seed's status shows.
    let status_example = seed!("001/status.running.response.json");
    let worker_node = status_example["execution"]["workerNode"].as_str().unwrap();
    let worker = Worker::lease(&app, &id, "ProcessMiningAnalysis", worker_node).await;
    for key in ["operationType", "operationName", "priority", "parameters"] {
        assert_same(
            &worker.lease[key],
            &sent[key],
            &format!("the lease's {key}"),
        );
    }
    worker.report_as(&status_example).await;

    // The status, once the progress callbacks were delivered.
    let running = eventually(20 * SEC, || async {
        let s = status(&app, &id).await;
        let c = &s["callbacks"];
        (c["lastProgressCallback"].is_string() && c["callbacksPending"] == 0).then_some(s)
    })
    .await;
    assert_shaped(
        "status.running",
        &status_example,
        &running,
        STATUS_UNKNOWABLE,
    );
    for key in ["operationId", "operationType", "operationName", "priority"] {
        let expected = if key == "operationId" {
            json!(id)
        } else {
            sent[key].clone()
        };
        assert_same(&running[key], &expected, key);
    }
    assert_eq!(running["status"], "Running");
    for key in [
        "percentage",
        "currentPhase",
        "phasesCompleted",
        "totalPhases",
    ] {
        let what = format!("progress.{key}");
        assert_same(
            &running["progress"][key],
            &status_example["progress"][key],
            &what,
        );
    }
    for key in ["workerNode", "processedRecords", "totalRecords"] {
        let what = format!("execution.{key}");
        assert_same(
            &running["execution"][key],
            &status_example["execution"][key],
            &what,
        );
    }
    let phases = running["phases"].as_array().unwrap();
    let seed_phases = status_example["phases"].as_array().unwrap();
    assert_eq!(phases.len(), seed_phases.len(), "{running:#}");
    for (phase, seed_phase) in phases.iter().zip(seed_phases) {
        for (key, value) in seed_phase.as_object().unwrap() {
            if !["startTime", "endTime", "duration"].contains(&key.as_str()) {
                assert_same(&phase[key], value, &format!("phases[].{key}"));
            }
        }
        assert!(phase.get("counters").is_none() && phase.get("details").is_none());
        match phase["status"].as_str().unwrap() {
            "Completed" => assert!(time(&phase["startTime"]) <= time(&phase["endTime"])),
            "Running" => assert!(phase.get("endTime").is_none(), "{phase}"),
            _ => assert!(phase.get("startTime").is_none(), "not started: {phase}"),
        }
    }
    let c = &running["callbacks"];
    assert_eq!(c["callbacksFailed"], 0, "{c}");
    assert!(c["progressCallbacksSent"].as_i64().unwrap() >= 1, "{c}");
    assert_eq!(
        (time(&running["timeoutAt"]) - time(&running["dateCreated"])).num_seconds(),
        sent["timeout"].as_i64().unwrap()
    );

    // The Python client's list, while it runs: this operation, then the earlier one.
    let list = ok(
        app.get(&app.api("/operations?page=1&pageSize=20")).await,
        StatusCode::OK,
        "list",
    )
    .await;
    assert_shaped("list_operations", &list_example, &list, LIST_UNKNOWABLE);
    let (now_running, done) = (&list["operations"][0], &list["operations"][1]);
    assert_eq!(now_running["operationId"], id.as_str());
    assert_eq!(now_running["status"], "Running");
    let seed_running = &list_example["operations"][0];
    for key in ["progress", "currentPhase", "operationName", "priority"] {
        assert_same(&now_running[key], &seed_running[key], key);
    }
    assert_eq!(done["operationId"], earlier.as_str());
    assert_eq!(done["status"], "Completed");
    assert_same(&done["progress"], &json!(100), "progress");
    assert_same(
        &done["recordsProcessed"],
        earlier_records,
        "recordsProcessed",
    );
    assert_same(
        &list["summary"],
        &json!({"totalOperations": 2, "pending": 0, "initiated": 0, "running": 1, "completed": 1,
            "failed": 0, "cancelled": 0, "timeout": 0, "skipped": 0}),
        "summary",
    );
    assert_eq!(
        (&list["page"], &list["pageSize"], &list["hasNextPage"]),
        (&json!(1), &json!(20), &json!(false))
    );

    // The worker completes with the results the seed shows: every field but those Relais
    // sets itself.
    let results_example = seed!("001/results.completed.response.json");
    let relais_sets = [
        "operationId",
        "operationType",
        "operationName",
        "status",
        "completionTime",
        "totalDuration",
        "success",
    ];
    let reported: Map<String, Value> = results_example
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, _)| !relais_sets.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    assert_eq!(
        worker
            .send("complete", Value::Object(reported.clone()))
            .await["status"],
        "Completed"
    );
    // The JavaScript client's results query.
    let path = format!("/operation/{id}/results?format=detailed&includeArtifacts=true");
    let results = ok(app.get(&app.api(&path)).await, StatusCode::OK, "results").await;
    assert_shaped("results", &results_example, &results, &[]);
    for (key, value) in &reported {
        assert_same(&results[key], value, key);
    }
    for key in ["operationType", "operationName"] {
        assert_same(&results[key], &sent[key], key);
    }
    assert_eq!(results["operationId"], id.as_str());
    assert_eq!(results["status"], "Completed");
    assert_eq!(results["success"], true);
    assert!(time(&results["completionTime"]) >= time(&running["progress"]["startTime"]));

    // Its callbacks and the seed's webhook heard of it, the webhook signed with the seed's
    // secret and carrying the seed's headers.
    let done = callbacks.completion.wait_for(1, 20 * SEC).await;
    assert_eq!(done[0].json()["subject"], id.as_str());
    assert!(callbacks.error.received().is_empty());
    let heard = hook
        .wait_until(20 * SEC, |r| {
            r.iter().any(|r| r.event_type() == "operation.completed")
        })
        .await;
    let secret = sent_secret(&seed!("001/register_webhook.request.json"));
    let types: Vec<String> = heard.iter().map(Received::event_type).collect();
    for expected in [
        "operation.started",
        "operation.progress",
        "operation.phase.completed",
    ] {
        assert!(types.iter().any(|t| t == expected), "{types:?}");
    }
    for r in &heard {
        assert_eq!(
            r.json()["subject"],
            id.as_str(),
            "the Normal one is filtered out"
        );
        assert!(signed_with(&secret, r), "{}", r.body);
        assert_eq!(r.header("x-source"), "mindzie-api");
        assert_eq!(r.header("x-environment"), "production");
    }

    // The seed's `notifications`: a mail to each address, one Slack message for its
    // channel with its mentions.
    let start = seed!("001/start_operation.request.json");
    let mails = mail.wait_for(2, 20 * SEC).await;
    let mut to: Vec<Value> = mails.iter().map(|m| json!(m.rcpt_to[0])).collect();
    to.sort_by_key(|v| v.to_string());
    assert_eq!(Value::Array(to), start["notifications"]["email"]);
    let posted = slack.wait_for(1, 20 * SEC).await;
    let message = &posted[0].body;
    let asked = &start["notifications"]["slack"];
    assert!(
        message.contains(asked["channel"].as_str().unwrap()),
        "{message}"
    );
    for user in asked["mentionUsers"].as_array().unwrap() {
        assert!(
            message.contains(user.as_str().unwrap()),
            "{user}: {message}"
        );
    }
}

fn sent_secret(body: &Value) -> String {
    body["authentication"]["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A retry answer: its shape, and what the retry body and the original determine.
fn assert_retried(answer: &Value, original: &str, body: &Value, number: u64, phase: &Value) {
    let example = seed!("001/retry_operation.response.json");
    assert_shaped("retry_operation", &example, answer, RETRY_UNKNOWABLE);
    assert_eq!(answer["originalOperationId"], original);
    assert_same(&answer["retryMode"], &body["retryMode"], "retryMode");
    assert_eq!(answer["retryNumber"], number);
    assert_same(&answer["resumeFromPhase"], phase, "resumeFromPhase");
    assert_eq!(answer["status"], "Initiated");
    assert!(time(&answer["estimatedCompletion"]) >= time(&answer["retryAttemptDate"]));
}

/// A cancellation answer: its shape, and what the cancel body and the worker determine.
fn assert_cancelled(answer: &Value, app: &TestApp, id: &str, body: &Value, worker: &Value) {
    let example = seed!("001/cancel_operation.response.json");
    assert_shaped("cancel_operation", &example, answer, CANCEL_UNKNOWABLE);
    assert_eq!(answer["operationId"], id);
    assert_eq!(answer["status"], "Cancelled");
    assert_same(&answer["reason"], &body["reason"], "reason");
    assert_same(
        &answer["progressAtCancellation"],
        &worker["percentage"],
        "progressAtCancellation",
    );
    assert_same(
        &answer["phaseAtCancellation"],
        &worker["phase"]["phaseName"],
        "phaseAtCancellation",
    );
    let partial = &answer["partialResults"];
    assert_same(
        &partial["available"],
        &body["preservePartialResults"],
        "partialResults.available",
    );
    assert_eq!(partial["completedPhases"], 2, "{partial}");
    assert_eq!(
        partial["downloadUrls"],
        json!([app.api(&format!("/operation/{id}/results?format=download"))])
    );
}

async fn failed_operations_retried_and_cancelled(backend: Backend) {
    let (app, _mail, _slack) = TestApp::spawn_notifying(backend).await;
    let callbacks = Callbacks::start().await;
    let status_example = seed!("001/status.running.response.json");
    let ml_phase = &status_example["progress"]["currentPhase"];

    // The JavaScript client's start, run once: the retries have an estimate.
    let js = callbacks.of(seed!("001/start_operation.js.request.json"));
    run_once(&app, &js, &json!(10)).await;

    // The seed's start fails in its third phase, for good.
    let sent = callbacks.of(seed!("001/start_operation.request.json"));
    let original = start(&app, &sent).await["operationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = Worker::lease(&app, &original, "ProcessMiningAnalysis", "w1").await;
    worker.report_as(&status_example).await;
    let error = json!({"code": "NODE_LOST", "message": "the worker's node went away"});
    let failed = worker
        .send("fail", json!({"error": error, "retryable": false}))
        .await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    let told = callbacks.error.wait_for(1, 20 * SEC).await;
    assert_eq!(told[0].json()["subject"], original.as_str());

    // The seed's retry.
    let body = seed!("001/retry_operation.request.json");
    let path = app.api(&format!("/operation/{original}/retry"));
    let retried = ok(app.post(&path, &body).await, StatusCode::ACCEPTED, "retry").await;
    assert_retried(&retried, &original, &body, 1, ml_phase);
    let preserved = &retried["preservedResults"];
    assert_eq!(preserved["phasesPreserved"], 2, "{preserved}");
    assert_same(
        &preserved["recordsProcessed"],
        &status_example["execution"]["processedRecords"],
        "recordsProcessed",
    );
    assert_same(
        &preserved["progressSaved"],
        &status_example["progress"]["percentage"],
        "progressSaved",
    );
    let first = retried["newOperationId"].as_str().unwrap().to_owned();
    let again = status(&app, &first).await;
    assert_eq!(again["retryOf"], original.as_str());
    let (parameters, updated) = (&again["parameters"], &body["updatedParameters"]);
    for (key, value) in updated.as_object().unwrap() {
        assert_same(&parameters[key], value, "updatedParameters are merged");
    }
    assert_same(
        &parameters["datasetId"],
        &sent["parameters"]["datasetId"],
        "the rest is kept",
    );
    assert_eq!(
        (time(&again["timeoutAt"]) - time(&again["dateCreated"])).num_seconds(),
        body["newTimeout"].as_i64().unwrap()
    );
    let policy = &body["retryPolicy"];
    assert_eq!(
        again["execution"]["maxAttempts"].as_u64(),
        Some(policy["maxRetries"].as_u64().unwrap() + 1)
    );

    // The JavaScript client monitors the retry, which fails again, and retries it.
    let worker = Worker::lease(&app, &first, "ProcessMiningAnalysis", "w2").await;
    let leased = worker
        .report(json!({"percentage": 70, "processedRecords": 130000,
            "phase": {"phaseName": ml_phase, "status": "Running", "progress": 10}}))
        .await;
    assert_eq!(leased["cancelRequested"], false);
    worker
        .send("fail", json!({"error": error, "retryable": false}))
        .await;
    let body = seed!("001/retry_operation.js.request.json");
    let path = app.api(&format!("/operation/{first}/retry"));
    let retried = ok(app.post(&path, &body).await, StatusCode::ACCEPTED, "retry").await;
    assert_retried(&retried, &first, &body, 2, ml_phase);
    let second = retried["newOperationId"].as_str().unwrap().to_owned();
    let allocation = &status(&app, &second).await["parameters"]["resourceAllocation"];
    assert_same(
        allocation,
        &body["updatedParameters"]["resourceAllocation"],
        "resourceAllocation",
    );

    // The seed's cancellation, while its worker is in the third phase.
    let worker = Worker::lease(&app, &second, "ProcessMiningAnalysis", "w3").await;
    let report = json!({"percentage": 75, "processedRecords": 140000,
        "phase": {"phaseName": ml_phase, "status": "Running"}});
    worker.report(report.clone()).await;
    let body = seed!("001/cancel_operation.request.json");
    let path = app.api(&format!("/operation/{second}"));
    let cancelled = ok(
        app.delete(&path, Some(&body)).await,
        StatusCode::OK,
        "cancel",
    )
    .await;
    assert_cancelled(&cancelled, &app, &second, &body, &report);
    let heartbeat = worker.report(json!({})).await;
    assert_eq!(
        heartbeat["cancelRequested"], true,
        "the worker learns it: {heartbeat}"
    );

    // The Python client retries the cancelled one, then cancels that retry.
    let body = seed!("001/retry_operation.py.request.json");
    let path = app.api(&format!("/operation/{second}/retry"));
    let retried = ok(app.post(&path, &body).await, StatusCode::ACCEPTED, "retry").await;
    assert_retried(&retried, &second, &body, 3, ml_phase);
    let third = retried["newOperationId"].as_str().unwrap().to_owned();
    let kept = status(&app, &third).await;
    assert_same(
        &kept["parameters"],
        &status(&app, &second).await["parameters"],
        "modifyParameters false keeps them",
    );
    let worker = Worker::lease(&app, &third, "ProcessMiningAnalysis", "w4").await;
    let report = json!({"percentage": 80, "processedRecords": 150000,
        "phase": {"phaseName": ml_phase, "status": "Running"}});
    worker.report(report.clone()).await;
    let body = seed!("001/cancel_operation.py.request.json");
    let path = app.api(&format!("/operation/{third}"));
    let cancelled = ok(
        app.delete(&path, Some(&body)).await,
        StatusCode::OK,
        "cancel",
    )
    .await;
    assert_cancelled(&cancelled, &app, &third, &body, &report);
}

/// Has pull workers complete every member of the batch as it is released, in order.
async fn run_batch(app: &TestApp, accepted: &Value, sent: &Value) {
    for (member, spec) in accepted["operations"]
        .as_array()
        .unwrap()
        .iter()
        .zip(sent["operations"].as_array().unwrap())
    {
        let id = member["operationId"].as_str().unwrap();
        let kind = spec["operationType"].as_str().unwrap();
        let worker = Worker::lease(app, id, kind, "batch-worker").await;
        for key in ["operationName", "priority", "parameters"] {
            assert_same(
                &worker.lease[key],
                &spec[key],
                &format!("the lease's {key}"),
            );
        }
        worker
            .send("complete", json!({"summary": {"ok": true}}))
            .await;
    }
    let path = accepted["trackingUrl"].as_str().unwrap();
    eventually(20 * SEC, || async {
        let batch = app.get(path).await;
        (batch.body["status"] == "Completed").then_some(())
    })
    .await;
}

/// A batch's acceptance: its shape, and what the batch body determines.
fn assert_batch_accepted(app: &TestApp, accepted: &Value, sent: &Value) {
    let example = seed!("001/submit_batch.response.json");
    assert_shaped("submit_batch", &example, accepted, &[]);
    assert_same(&accepted["batchName"], &sent["batchName"], "batchName");
    assert_eq!(accepted["status"], "Initiated");
    let members = sent["operations"].as_array().unwrap();
    assert_eq!(accepted["totalOperations"], members.len());
    assert_eq!(
        accepted["operations"].as_array().unwrap().len(),
        members.len()
    );
    let id = accepted["batchId"].as_str().unwrap();
    assert_eq!(accepted["trackingUrl"], app.api(&format!("/batch/{id}")));
    let start = time(&accepted["batchStartTime"]);
    assert!(time(&accepted["estimatedBatchCompletion"]) >= start);
    for (member, spec) in accepted["operations"]
        .as_array()
        .unwrap()
        .iter()
        .zip(members)
    {
        assert_same(
            &member["operationKey"],
            &spec["operationKey"],
            "operationKey",
        );
        let dependencies = spec.get("dependencies").cloned().unwrap_or(json!([]));
        assert_same(&member["dependencies"], &dependencies, "dependencies");
        let waits = dependencies != json!([]);
        // No worker holds it yet: ready, or waiting for its dependencies.
        let expected = if waits { "Pending" } else { "Initiated" };
        assert_eq!(member["status"], expected, "{member}");
        assert!(member["estimatedDuration"].is_string(), "{member}");
        if waits {
            assert!(time(&member["estimatedStartTime"]) >= start, "{member}");
        }
    }
}

async fn batches_run_with_their_estimates_and_callbacks(backend: Backend) {
    let (app, _mail, _slack) = TestApp::spawn_notifying(backend).await;
    let (batch_start, operation_complete, batch_complete) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    // One run of each type first: the estimates of the answer need them.
    for kind in [
        "DataEnrichment",
        "ProcessMiningAnalysis",
        "ReportGeneration",
    ] {
        let body = json!({"operationType": kind, "operationName": "an earlier run"});
        run_once(&app, &body, &json!(1)).await;
    }

    let sent = delivered_to(
        seed!("001/submit_batch.request.json"),
        &[
            ("https://your-app.com/webhooks/batch-start", &batch_start),
            (
                "https://your-app.com/webhooks/operation-complete",
                &operation_complete,
            ),
            (
                "https://your-app.com/webhooks/batch-complete",
                &batch_complete,
            ),
        ],
    );
    let accepted = ok(
        app.post(&app.api("/batch"), &sent).await,
        StatusCode::ACCEPTED,
        "batch",
    )
    .await;
    assert_batch_accepted(&app, &accepted, &sent);
    run_batch(&app, &accepted, &sent).await;
    let id = accepted["batchId"].as_str().unwrap();
    for (receiver, count) in [
        (&batch_start, 1),
        (&operation_complete, 3),
        (&batch_complete, 1),
    ] {
        let heard = receiver.wait_for(count, 20 * SEC).await;
        assert!(
            heard.iter().all(|r| r.json()["subject"] == id),
            "{:?}",
            heard.iter().map(|r| r.body.clone()).collect::<Vec<_>>()
        );
    }

    // The JavaScript client's batch, which has no callbacks.
    let sent = seed!("001/submit_batch.js.request.json");
    let accepted = ok(
        app.post(&app.api("/batch"), &sent).await,
        StatusCode::ACCEPTED,
        "batch",
    )
    .await;
    assert_batch_accepted(&app, &accepted, &sent);
    run_batch(&app, &accepted, &sent).await;
}

async fn the_client_codes_webhooks_hear_of_their_operations(backend: Backend) {
    let (app, _mail, _slack) = TestApp::spawn_notifying(backend).await;
    let example = seed!("001/register_webhook.response.json");
    let mut hooks = Vec::new();
    // The Python client registers with no filters, so no increment: `null`.
    for (body, nulls) in [
        (seed!("001/register_webhook.js.request.json"), &[][..]),
        (
            seed!("001/register_webhook.py.request.json"),
            &["filters.minProgressIncrement"][..],
        ),
    ] {
        let hook = Receiver::start().await;
        let sent = delivered_to(
            body,
            &[("https://your-app.com/webhooks/async-operations", &hook)],
        );
        let webhook = ok(
            app.post(&app.api("/webhooks"), &sent).await,
            StatusCode::CREATED,
            "webhook",
        )
        .await;
        assert_shaped_but_nulls("register_webhook", &example, &webhook, &[], nulls);
        assert_registered_as_sent(&webhook, &sent);
        hooks.push((hook, sent_secret(&sent)));
    }

    let callbacks = Callbacks::start().await;
    let started = start(
        &app,
        &callbacks.of(seed!("001/start_operation.js.request.json")),
    )
    .await;
    assert_eq!(
        started["webhooksRegistered"], 5,
        "two webhooks, three callbacks"
    );
    let id = started["operationId"].as_str().unwrap();
    Worker::lease(&app, id, "ProcessMiningAnalysis", "w").await;
    for (hook, secret) in &hooks {
        let heard = hook.wait_for(1, 20 * SEC).await;
        assert_eq!(heard[0].event_type(), "operation.started");
        assert_eq!(heard[0].json()["subject"], id);
        assert!(signed_with(secret, &heard[0]), "{}", heard[0].body);
    }
}
