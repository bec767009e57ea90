use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::common::{eventually, finished, Backend, TestApp};

both_backends!(
    a_sleep_operation_runs_in_process_and_reports_real_progress,
    a_retryable_failure_resumes_at_the_phase_that_failed,
    cancelling_or_timing_out_a_running_sleep_stops_it_and_frees_its_slot,
    bad_sleep_parameters_are_refused_when_the_operation_starts,
);

const SEC: Duration = Duration::from_secs(1);

async fn a_sleep_operation_runs_in_process_and_reports_real_progress(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phases = json!([{"name": "load", "seconds": 0.1}, {"name": "crunch", "seconds": 0.2}, {"name": "write", "seconds": 0.1}]);
    let id = app.start_operation(&json!({"operationType": "Sleep", "operationName": "demo", "parameters": {"phases": phases}})).await;
    // Built-in types are never handed to pull workers.
    assert!(app
        .lease(&json!({"operationTypes": ["Sleep"]}))
        .await
        .is_empty());
    let status = finished(&app, &id).await;
    assert_eq!(status["status"], "Completed", "{status}");
    assert_eq!(status["progress"]["percentage"], 100.0);
    assert_eq!(status["progress"]["phasesCompleted"], 3);
    assert_eq!(status["progress"]["totalPhases"], 3);
    let names: Vec<_> = status["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phaseName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["load", "crunch", "write"]);
    assert!(
        status["execution"]["workerNode"].is_null()
            || status["execution"]["workerNode"].is_string()
    );
    let results = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(
        results.body["summary"],
        json!({"phases": 3, "phasesRun": 3, "phasesSkipped": 0})
    );
    let events = app.store().events().of_subject(&id).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types.first(), Some(&"operation.started"));
    assert_eq!(types.last(), Some(&"operation.completed"));
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "operation.phase.completed")
            .count(),
        3
    );
}

async fn a_retryable_failure_resumes_at_the_phase_that_failed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "Sleep", "operationName": "flaky",
            "parameters": {"phases": [{"name": "a", "seconds": 0.05}, {"name": "b", "seconds": 0.05}, {"name": "c", "seconds": 0.05}],
                           "failAtPhase": "b", "failRetryable": true, "failAttempts": 1},
            "retryPolicy": {"maxRetries": 2, "retryDelay": 0.1}}))
        .await;
    let status = finished(&app, &id).await;
    assert_eq!(status["status"], "Completed", "{status}");
    assert_eq!(status["execution"]["attempt"], 2);
    assert_eq!(status["attempts"][0]["error"]["code"], "SLEEP_FAILED");
    let results = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(
        results.body["summary"]["phasesSkipped"], 1,
        "phase a was not run again"
    );
    assert_eq!(results.body["summary"]["phasesRun"], 2);

    let fatal = app
        .start_operation(&json!({"operationType": "Sleep", "operationName": "fatal",
            "parameters": {"seconds": 0.05, "failAtPhase": "sleep"}}))
        .await;
    let status = finished(&app, &fatal).await;
    assert_eq!(status["status"], "Failed");
    assert_eq!(
        status["execution"]["attempt"], 1,
        "a non-retryable failure is not retried"
    );
    assert_eq!(status["error"]["code"], "SLEEP_FAILED");
}

async fn cancelling_or_timing_out_a_running_sleep_stops_it_and_frees_its_slot(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.executor_concurrency = 1).await;
    let long =
        json!({"operationType": "Sleep", "operationName": "long", "parameters": {"seconds": 60}});
    let id = app.start_operation(&long).await;
    eventually(10 * SEC, || async {
        let s = app.get(&app.api(&format!("/operation/{id}"))).await;
        (s.body["progress"]["currentPhase"] == "sleep").then_some(())
    })
    .await;
    let r = app
        .delete(&app.api(&format!("/operation/{id}")), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["workerNotified"], "on its next heartbeat");

    // With one slot, this runs only if the cancelled run let go of it.
    let mut timed = long.clone();
    timed["timeout"] = json!(1);
    let timed_id = app.start_operation(&timed).await;
    let status = finished(&app, &timed_id).await;
    assert_eq!(status["status"], "Timeout", "{status}");
    let quick = app.start_operation(&json!({"operationType": "Sleep", "operationName": "quick", "parameters": {"seconds": 0.05}})).await;
    assert_eq!(finished(&app, &quick).await["status"], "Completed");
    let cancelled = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(cancelled.body["status"], "Cancelled");
}

async fn bad_sleep_parameters_are_refused_when_the_operation_starts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (parameters, field) in [
        (
            json!({"phases": [{"name": "a", "seconds": -2}]}),
            "parameters.phases[0].seconds",
        ),
        (
            json!({"phases": [{"name": "a", "seconds": 1}], "failAtPhase": "zzz"}),
            "parameters.failAtPhase",
        ),
        (json!({"snooze": 3}), "parameters.snooze"),
    ] {
        let r = app
            .post(
                &app.api("/operation"),
                &json!({"operationType": "Sleep", "operationName": "n", "parameters": parameters}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{parameters}");
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    let list = app.get(&app.api("/operations")).await;
    assert_eq!(list.body["summary"]["totalOperations"], 0);
}
