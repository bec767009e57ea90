//! Clients written from seeds 001 and 000: every request body the seeds print
//! (`tests/seeds/`) is sent as it is, the operations are driven as the seeds show them, and
//! every field of the seeds' answers is read from Relais's.
//!
//! The one change made to a seed's body: its example URLs (`https://your-app.com/…`) point
//! nowhere, and deliveries need somewhere to go, so each is replaced by a local receiver
//! the test runs (see [`delivered_to`]).
//!
//! An answer is checked twice: its shape, generically (every key path of the seed's
//! example is in Relais's answer with the same JSON type, see [`assert_shaped`]), and the
//! values that the requests (or the worker's reports) determine, one by one. Values that
//! depend on time are real: estimates come from runs of the same type made first.

use std::time::Duration;

use relais::outbound::signing::{verify, SigningKey};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::both_backends;
use crate::breakout::{finished, fixture};
use crate::common::{eventually, Backend, Response, TestApp};
use crate::receiver::{Received, Receiver};

both_backends!(
    seed001_one_operation_from_start_to_results_with_its_webhook,
    seed001_failed_operations_retried_and_cancelled,
    seed001_batches_run_with_their_estimates_and_callbacks,
    seed001_the_client_codes_webhooks_hear_of_their_operations,
    seed000_breakout_jobs_from_start_to_deleted_tables,
    seed000_a_job_whose_database_goes_away_fails_as_the_seed_shows,
);

const SEC: Duration = Duration::from_secs(1);

/// A seed's example from `tests/seeds/`, parsed.
macro_rules! seed {
    ($path:literal) => {
        serde_json::from_str::<Value>(include_str!(concat!("../seeds/", $path)))
            .expect(concat!($path, " is JSON"))
    };
}

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

/// Every key path of `example` (objects by key, arrays item by item as far as both go, `[]`
/// for any index) that `answer` lacks or holds with another JSON type; `unknowable` paths
/// aside, and `nulls`, which the request left out, so `null` in the answer.
fn mismatches(example: &Value, answer: &Value, path: &str, except: &Except) -> Vec<String> {
    let at_path = generic(path);
    if except.unknowable.contains(&at_path.as_str()) {
        return Vec::new();
    }
    if except.nulls.contains(&at_path.as_str()) {
        return match answer {
            Value::Null => Vec::new(),
            other => vec![format!("{path}: {other} where null was expected")],
        };
    }
    match (example, answer) {
        (Value::Object(example), Value::Object(answer)) => example
            .iter()
            .flat_map(|(key, value)| {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match answer.get(key) {
                    Some(given) => mismatches(value, given, &at, except),
                    None if except.unknowable.contains(&generic(&at).as_str()) => Vec::new(),
                    None => vec![format!("{at}: missing")],
                }
            })
            .collect(),
        // How many items there are is the requests' doing (the value checks look at it):
        // each of the answer's items is checked against the seed's item of the same place.
        (Value::Array(example), Value::Array(answer)) => example
            .iter()
            .zip(answer)
            .enumerate()
            .flat_map(|(i, (value, given))| {
                mismatches(value, given, &format!("{path}[{i}]"), except)
            })
            .collect(),
        (example, answer) if kind(example) == kind(answer) => Vec::new(),
        (example, answer) => vec![format!(
            "{path}: {} in the seed, {} in the answer ({answer})",
            kind(example),
            kind(answer)
        )],
    }
}

/// The paths of a seed's example that an answer is not held to.
struct Except<'a> {
    unknowable: &'a [&'a str],
    nulls: &'a [&'a str],
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `operations[2].resourceUsage` → `operations[].resourceUsage`.
fn generic(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// Every key path of `value`, generic.
fn paths(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.push(generic(&at));
                paths(value, &at, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                paths(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Relais's `answer` has every field of the seed's `example` with the same JSON type,
/// but the `unknowable` ones, which the seed has and the answer has not.
fn assert_shaped(name: &str, example: &Value, answer: &Value, unknowable: &[&str]) {
    assert_shaped_but_nulls(name, example, answer, unknowable, &[]);
}

/// [`assert_shaped`], with `nulls` `null` in the answer: the request left them out.
fn assert_shaped_but_nulls(
    name: &str,
    example: &Value,
    answer: &Value,
    unknowable: &[&str],
    nulls: &[&str],
) {
    let except = Except { unknowable, nulls };
    let wrong = mismatches(example, answer, "", &except);
    assert!(
        wrong.is_empty(),
        "{name}: the answer differs from the seed's example:\n  {}\nanswer: {answer:#}",
        wrong.join("\n  ")
    );
    let (mut in_example, mut in_answer) = (Vec::new(), Vec::new());
    paths(example, "", &mut in_example);
    paths(answer, "", &mut in_answer);
    for path in unknowable {
        assert!(
            in_example.iter().any(|p| p == path),
            "{name}: `{path}` is not in the seed's example"
        );
        assert!(
            !in_answer.iter().any(|p| p == path),
            "{name}: Relais answers `{path}`: it is not unknowable any more"
        );
    }
}

/// JSON equality where numbers are equal by value (`72` and `72.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        (a, b) => a == b,
    }
}

#[track_caller]
fn assert_same(given: &Value, expected: &Value, what: &str) {
    assert!(
        same(given, expected),
        "{what}: {given} where {expected} was sent or reported"
    );
}

/// The seed's body with each of its example URLs replaced by a receiver's: the seeds'
/// `https://your-app.com/…` has no server behind it, and Relais delivers to what it is given.
fn delivered_to(mut body: Value, receivers: &[(&str, &Receiver)]) -> Value {
    fn replace(value: &mut Value, receivers: &[(&str, &Receiver)]) {
        match value {
            Value::String(s) => {
                if let Some((_, receiver)) = receivers.iter().find(|(url, _)| url == s) {
                    *s = receiver.url.clone();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| replace(v, receivers)),
            Value::Object(map) => map.values_mut().for_each(|v| replace(v, receivers)),
            _ => {}
        }
    }
    replace(&mut body, receivers);
    assert!(
        !body.to_string().contains("your-app.com"),
        "every example URL has a receiver: {body}"
    );
    body
}

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

async fn ok(r: Response, status: StatusCode, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    r.body
}

async fn start(app: &TestApp, body: &Value) -> Value {
    ok(
        app.post(&app.api("/operation"), body).await,
        StatusCode::ACCEPTED,
        "start",
    )
    .await
}

async fn status(app: &TestApp, id: &str) -> Value {
    ok(
        app.get(&app.api(&format!("/operation/{id}"))).await,
        StatusCode::OK,
        "status",
    )
    .await
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|_| panic!("an RFC 3339 time: {value}"))
        .to_utc()
}

/// A pull worker holding the lease of one operation.
struct Worker<'a> {
    app: &'a TestApp,
    id: String,
    token: String,
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

async fn seed001_one_operation_from_start_to_results_with_its_webhook(backend: Backend) {
    let app = TestApp::spawn(backend).await;
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

async fn seed001_failed_operations_retried_and_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
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

async fn seed001_batches_run_with_their_estimates_and_callbacks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
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

async fn seed001_the_client_codes_webhooks_hear_of_their_operations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
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

// Seed 000: the breakout facade, with the seed's dictionaries made from the CSPro fixtures.

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

async fn seed000_breakout_jobs_from_start_to_deleted_tables(backend: Backend) {
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
        "eval_person",
        "eval_housing",
        "eval_interview_record"
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

async fn seed000_a_job_whose_database_goes_away_fails_as_the_seed_shows(backend: Backend) {
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
