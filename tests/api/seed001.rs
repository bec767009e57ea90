//! Seed 001 as it shows the operation's status, results and cancellation: what a client
//! written from it reads, field by field.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, relais_json, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

both_backends!(
    status_callbacks_count_what_happened_to_the_operations_callbacks,
    a_running_phase_shows_its_own_progress_and_completion_closes_every_phase,
    results_return_every_value_the_worker_reported_and_download_is_a_file,
    worker_reports_that_would_lose_or_hide_a_value_are_refused,
    a_cancel_that_keeps_partial_results_points_at_their_download,
    cancelled_by_names_the_token_that_cancelled,
);

/// Leases the only operation of `operation_type` and returns its id and lease token.
async fn leased(app: &TestApp, operation_type: &str) -> (String, String) {
    let lease = app
        .lease(&json!({"operationTypes": [operation_type], "max": 1}))
        .await
        .remove(0);
    (
        lease["operationId"].as_str().unwrap().to_owned(),
        lease["leaseToken"].as_str().unwrap().to_owned(),
    )
}

async fn report(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app
        .post(&app.api(&format!("/operation/{id}/progress")), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.text);
    r.body
}

async fn status_callbacks_count_what_happened_to_the_operations_callbacks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let progress = Receiver::start().await;
    let completion = Receiver::start().await;
    // Gone: the completion callback fails for good at its first attempt.
    completion.fallback(Reply::status(410));
    let callbacks = json!({"onProgress": progress.url, "onCompletion": completion.url});
    app.start_operation(
        &json!({"operationType": "Counted", "operationName": "n", "callbacks": callbacks}),
    )
    .await;
    let (id, token) = leased(&app, "Counted").await;
    let before = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(before.body["callbackUrls"], callbacks, "{}", before.text);
    for p in [30, 60] {
        report(&app, &id, json!({"leaseToken": token, "percentage": p})).await;
    }
    let r = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": token}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    progress.wait_for(3, Duration::from_secs(20)).await;
    completion.wait_for(1, Duration::from_secs(20)).await;

    let callbacks = eventually(Duration::from_secs(20), || async {
        let status = app.get(&app.api(&format!("/operation/{id}"))).await;
        let c = status.body["callbacks"].clone();
        (c["callbacksFailed"] == 1 && c["callbacksSuccessful"] == 3).then_some(c)
    })
    .await;
    assert_eq!(callbacks["progressCallbacksSent"], 3, "{callbacks}");
    assert_eq!(callbacks["callbacksPending"], 0, "{callbacks}");
    let last = callbacks["lastProgressCallback"].as_str().expect("a time");
    assert!(chrono::DateTime::parse_from_rfc3339(last).is_ok(), "{last}");

    // Another operation's callbacks are not counted here.
    let quiet = app
        .start_operation(&json!({"operationType": "Quiet", "operationName": "q"}))
        .await;
    let status = app.get(&app.api(&format!("/operation/{quiet}"))).await;
    assert_eq!(
        status.body["callbacks"],
        json!({"progressCallbacksSent": 0, "lastProgressCallback": null, "callbacksSuccessful": 0, "callbacksFailed": 0, "callbacksPending": 0})
    );
    assert_eq!(status.body["callbackUrls"], json!({}));
}

async fn complete(app: &TestApp, id: &str, body: Value) -> crate::common::Response {
    app.post(&app.api(&format!("/operation/{id}/complete")), &body)
        .await
}

async fn a_running_phase_shows_its_own_progress_and_completion_closes_every_phase(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    app.start_operation(&json!({"operationType": "Phased", "operationName": "n"}))
        .await;
    let (id, token) = leased(&app, "Phased").await;
    report(
        &app,
        &id,
        json!({"leaseToken": token, "totalPhases": 3, "percentage": 33,
        "phase": {"phaseName": "Data Loading & Validation", "status": "Completed",
                  "counters": {"recordsProcessed": 187250},
                  "results": {"validRecords": 187248}}}),
    )
    .await;
    report(
        &app,
        &id,
        json!({"leaseToken": token, "percentage": 67,
        "phase": {"phaseName": "Machine Learning Analysis", "status": "Running", "progress": 72,
                  "currentActivity": "Training anomaly detection models",
                  "counters": {"modelsTraining": 3, "modelsCompleted": 2}}}),
    )
    .await;
    report(
        &app,
        &id,
        json!({"leaseToken": token,
        "phase": {"phaseName": "Machine Learning Analysis", "status": "Running",
                  "counters": {"modelsCompleted": 3}}}),
    )
    .await;

    let status = app.get(&app.api(&format!("/operation/{id}"))).await.body;
    let running = &status["phases"][1];
    assert_eq!(
        running["phaseName"], "Machine Learning Analysis",
        "{status}"
    );
    assert_eq!(running["status"], "Running");
    assert_eq!(running["progress"], 72.0);
    assert_eq!(
        running["currentActivity"],
        "Training anomaly detection models"
    );
    assert_eq!(
        running["modelsTraining"], 3,
        "counters are shown flat: {running}"
    );
    assert_eq!(
        running["modelsCompleted"], 3,
        "the later count wins: {running}"
    );
    assert!(running.get("counters").is_none(), "{running}");
    assert!(running["startTime"].is_string());
    assert_eq!(status["phases"][0]["recordsProcessed"], 187250);
    assert_eq!(
        status["progress"]["currentPhase"],
        "Machine Learning Analysis"
    );
    assert_eq!(status["progress"]["phasesCompleted"], 1);
    assert_eq!(status["progress"]["totalPhases"], 3);

    let r = complete(
        &app,
        &id,
        json!({"leaseToken": token, "summary": {"ok": true}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let status = app.get(&app.api(&format!("/operation/{id}"))).await.body;
    assert_eq!(status["status"], "Completed");
    let progress = &status["progress"];
    assert_eq!(progress["percentage"], 100.0, "{progress}");
    assert_eq!(progress["phasesCompleted"], 3, "{progress}");
    assert_eq!(progress["totalPhases"], 3, "{progress}");
    assert!(
        progress["currentPhase"].is_null(),
        "no phase runs any more: {progress}"
    );
    for phase in status["phases"].as_array().unwrap() {
        assert_eq!(phase["status"], "Completed", "{phase}");
        assert!(phase["endTime"].is_string(), "{phase}");
    }
    assert_eq!(status["phases"][1]["progress"], 100.0);
    assert_eq!(
        status["phases"][1]["modelsTraining"], 3,
        "counters are kept"
    );
}

/// The results of seed 001's example, as its worker would report them.
fn seed_results(token: &str) -> Value {
    json!({
        "leaseToken": token,
        "summary": {"recordsAnalyzed": 187248, "processVariants": 347, "dataQualityScore": 94.7},
        "phaseResults": [
            {"phaseName": "Data Loading & Validation", "status": "Completed", "results": {"recordsLoaded": 187250}},
            {"phaseName": "Process Discovery", "status": "Completed", "results": {"processModel": {"activities": 52}}}
        ],
        "artifacts": [{"name": "Process Mining Analysis Report", "type": "Report", "format": "PDF",
                       "size": "3.2 MB", "downloadUrl": "https://example.com/report.pdf"}],
        "performance": {"totalExecutionTime": "45 minutes",
                        "resourceUtilization": {"averageCpuUsage": 72, "peakMemoryUsage": "7.8 GB"},
                        "throughput": "4161 records/minute", "efficiency": 87.2},
        "recommendations": [
            {"category": "Process Optimization", "priority": "High",
             "recommendation": "Focus on reducing wait times in 'Manager Approval' activity",
             "expectedImprovement": "25% reduction in overall cycle time"}
        ]
    })
}

async fn results_return_every_value_the_worker_reported_and_download_is_a_file(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.start_operation(&json!({"operationType": "Mining", "operationName": "n"}))
        .await;
    let (id, token) = leased(&app, "Mining").await;
    let sent = seed_results(&token);
    let r = complete(&app, &id, sent.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let results = |query: &'static str| {
        let (app, id) = (&app, &id);
        async move {
            app.get(&app.api(&format!("/operation/{id}/results{query}")))
                .await
        }
    };
    let summary = results("").await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.text);
    for key in ["summary", "artifacts", "performance", "recommendations"] {
        assert_eq!(summary.body[key], sent[key], "{key}: {}", summary.text);
    }
    assert!(summary.body.get("phaseResults").is_none());
    assert!(summary.headers.get("content-disposition").is_none());
    let detailed = results("?format=detailed&includeArtifacts=true").await;
    for key in [
        "summary",
        "phaseResults",
        "artifacts",
        "performance",
        "recommendations",
    ] {
        assert_eq!(detailed.body[key], sent[key], "{key}: {}", detailed.text);
    }
    assert_eq!(detailed.body["status"], "Completed");

    let download = results("?format=download").await;
    assert_eq!(download.status, StatusCode::OK, "{}", download.text);
    assert_eq!(
        download.headers["content-disposition"],
        format!("attachment; filename=\"{id}-results.json\"").as_str()
    );
    assert!(download.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(
        download.body, detailed.body,
        "the file holds the detailed results"
    );
    assert!(
        download.text.ends_with("}\n"),
        "a file, ending with a newline"
    );

    let r = results("?format=zip").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["field"], "format");
}

async fn worker_reports_that_would_lose_or_hide_a_value_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.start_operation(&json!({"operationType": "Careless", "operationName": "n"}))
        .await;
    let (id, token) = leased(&app, "Careless").await;
    let phase = |extra: Value| {
        let mut phase = json!({"phaseName": "p", "status": "Running"});
        for (k, v) in extra.as_object().unwrap() {
            phase[k] = v.clone();
        }
        json!({"leaseToken": token, "phase": phase})
    };
    for (body, field) in [
        (phase(json!({"progress": 120})), "phase.progress"),
        (phase(json!({"progress": null})), "phase.progress"),
        (
            phase(json!({"currentActivity": " "})),
            "phase.currentActivity",
        ),
        (
            phase(json!({"currentActivity": 5})),
            "phase.currentActivity",
        ),
        (
            phase(json!({"counters": {"status": 1}})),
            "phase.counters.status",
        ),
        (
            phase(json!({"counters": {"models in training": 1}})),
            "phase.counters.models in training",
        ),
        (
            phase(json!({"counters": {"models": "3"}})),
            "phase.counters.models",
        ),
        (
            phase(json!({"counters": {"models": null}})),
            "phase.counters.models",
        ),
        (phase(json!({"counters": [1]})), "phase.counters"),
        (
            phase(json!({"details": {"startTime": "2024-01-20T11:18:00Z"}})),
            "phase.details.startTime",
        ),
        (
            phase(json!({"details": {"validationResults": null}})),
            "phase.details.validationResults",
        ),
        (
            phase(json!({"counters": {"models": 3}, "details": {"models": "3"}})),
            "phase.details.models",
        ),
        (phase(json!({"details": "estimated"})), "phase.details"),
        (phase(json!({"details": null})), "phase.details"),
    ] {
        let r = app
            .post(&app.api(&format!("/operation/{id}/progress")), &body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
    }
    for (body, field) in [
        (
            json!({"leaseToken": token, "status": "Completed"}),
            "status",
        ),
        (
            json!({"leaseToken": token, "operationId": "op-x"}),
            "operationId",
        ),
        (
            json!({"leaseToken": token, "performance": null}),
            "performance",
        ),
        (json!({"leaseToken": token, "summary": null}), "summary"),
    ] {
        let r = complete(&app, &id, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
    }
    let status = app.get(&app.api(&format!("/operation/{id}"))).await.body;
    assert_eq!(status["status"], "Running", "nothing refused changed it");
    assert_eq!(status["phases"], json!([]));
}

async fn a_cancel_that_keeps_partial_results_points_at_their_download(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.start_operation(&json!({"operationType": "Partial", "operationName": "n"}))
        .await;
    let (id, token) = leased(&app, "Partial").await;
    report(
        &app,
        &id,
        json!({"leaseToken": token, "percentage": 50,
        "phase": {"phaseName": "first", "status": "Completed", "results": {"rows": 3}}}),
    )
    .await;
    let r = app
        .delete(
            &app.api(&format!("/operation/{id}")),
            Some(&json!({"reason": "enough", "preservePartialResults": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let partial = &r.body["partialResults"];
    assert_eq!(partial["available"], true, "{partial}");
    assert_eq!(partial["completedPhases"], 1);
    let url = partial["downloadUrls"][0].as_str().expect("a download url");
    assert_eq!(
        url,
        app.api(&format!("/operation/{id}/results?format=download"))
    );
    let file = app.get(url).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text);
    assert!(file.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(file.body["partial"], true);
    assert_eq!(file.body["phaseResults"][0]["results"], json!({"rows": 3}));

    app.start_operation(&json!({"operationType": "Dropped", "operationName": "n"}))
        .await;
    let (other, _) = leased(&app, "Dropped").await;
    let r = app
        .delete(&app.api(&format!("/operation/{other}")), None)
        .await;
    assert_eq!(r.body["partialResults"]["downloadUrls"], json!([]));
}

async fn cancelled_by_names_the_token_that_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, project) = (app.tenant.to_string(), app.project.to_string());
    let created = relais_json(
        app.database_url(),
        &[
            "token",
            "create",
            "--tenant",
            &tenant,
            "--project",
            &project,
            "--scopes",
            "operations:read,operations:write",
            "--name",
            " nightly cleanup ",
            "--json",
        ],
    );
    assert_eq!(created["name"], "nightly cleanup");
    let named = created["token"].as_str().unwrap();
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    let r = app
        .call(
            reqwest::Method::DELETE,
            &app.api(&format!("/operation/{id}")),
            Some(named),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["cancelledBy"], "nightly cleanup");
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(
        status.body["cancellation"]["cancelledBy"],
        "nightly cleanup"
    );

    // A token created without a name is shown by its id.
    let other = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    let r = app
        .delete(&app.api(&format!("/operation/{other}")), None)
        .await;
    assert!(
        r.body["cancelledBy"].as_str().unwrap().starts_with("tok-"),
        "{}",
        r.text
    );

    let blank = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["token", "create", "--tenant", &tenant, "--name", "  "])
        .env("RELAIS_DATABASE_URL", app.database_url())
        .output()
        .unwrap();
    assert!(!blank.status.success());
    assert!(String::from_utf8_lossy(&blank.stderr).contains("--name"));
}
