use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(
    an_operation_runs_from_start_to_results_with_its_events_in_order,
    a_pending_operation_is_cancelled_at_once,
    a_running_operation_learns_of_its_cancellation_on_its_next_heartbeat,
    partial_results_survive_a_cancellation_when_asked,
    the_same_idempotency_key_and_body_start_one_operation,
    concurrent_requests_with_one_idempotency_key_start_one_operation,
);

fn seed_body() -> Value {
    json!({
        "operationType": "ProcessMiningAnalysis",
        "operationName": "Comprehensive Customer Journey Analysis",
        "operationDescription": "Deep analysis of customer interaction patterns",
        "priority": "High",
        "parameters": {"datasetId": "880e8400-e29b-41d4-a716-446655440000", "analysisType": "comprehensive"},
        "callbacks": {
            "onProgress": "https://your-app.com/webhooks/progress",
            "onCompletion": "https://your-app.com/webhooks/completion",
            "onError": "https://your-app.com/webhooks/error"
        },
        "notifications": {"email": ["analyst@company.com"], "slack": {"channel": "#process-mining", "mentionUsers": ["@analyst"]}},
        "timeout": 7200,
        "retryPolicy": {"maxRetries": 3, "retryDelay": 300, "backoffMultiplier": 2.0}
    })
}

async fn an_operation_runs_from_start_to_results_with_its_events_in_order(backend: Backend) {
    let (app, mail, slack) = TestApp::spawn_notifying(backend).await;

    let started = app.post(&app.api("/operation"), &seed_body()).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let b = &started.body;
    let id = b["operationId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("op-"));
    assert_eq!(b["status"], "Initiated");
    assert_eq!(b["priority"], "High");
    assert_eq!(b["webhooksRegistered"], 3);
    assert_eq!(b["trackingUrl"], app.api(&format!("/operation/{id}")));
    assert!(
        b["estimatedDuration"].is_null(),
        "no history yet, so no estimate"
    );
    let created = chrono::DateTime::parse_from_rfc3339(b["dateCreated"].as_str().unwrap()).unwrap();
    let timeout_at =
        chrono::DateTime::parse_from_rfc3339(b["timeoutAt"].as_str().unwrap()).unwrap();
    assert_eq!((timeout_at - created).num_seconds(), 7200);

    let results = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(results.status, StatusCode::CONFLICT);
    assert_eq!(results.body["code"], "OPERATION_NOT_COMPLETED");

    let leases = app
        .lease(&json!({"operationTypes": ["ProcessMiningAnalysis"], "max": 5, "workerId": "async-worker-03"}))
        .await;
    assert_eq!(leases.len(), 1);
    let lease = &leases[0];
    assert_eq!(lease["operationId"], id);
    assert_eq!(lease["attempt"], 1);
    assert_eq!(lease["parameters"]["analysisType"], "comprehensive");
    let token = lease["leaseToken"].as_str().unwrap();

    let progress = |body: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.post(&app.api(&format!("/operation/{id}/progress")), &body)
                .await
        }
    };
    let r = progress(json!({
        "leaseToken": token, "percentage": 40, "totalPhases": 2,
        "processedRecords": 400, "totalRecords": 1000,
        "phase": {"phaseName": "Data Loading", "status": "Completed", "results": {"validRecords": 400}, "checkpoint": {"offset": 400}}
    }))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "Running");
    assert_eq!(r.body["cancelRequested"], false);
    let r = progress(json!({"leaseToken": token, "percentage": 67, "phase": {"phaseName": "Analysis", "status": "Running"}})).await;
    assert_eq!(r.status, StatusCode::OK);

    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.status, StatusCode::OK);
    let s = &status.body;
    assert_eq!(s["status"], "Running");
    assert_eq!(s["progress"]["percentage"], 67.0);
    assert_eq!(s["progress"]["currentPhase"], "Analysis");
    assert_eq!(s["progress"]["phasesCompleted"], 1);
    assert_eq!(s["progress"]["totalPhases"], 2);
    assert!(s["progress"]["startTime"].is_string());
    assert_eq!(s["execution"]["workerNode"], "async-worker-03");
    assert_eq!(s["execution"]["attempt"], 1);
    assert_eq!(s["execution"]["processedRecords"], 400);
    assert_eq!(s["phases"][0]["phaseName"], "Data Loading");
    assert_eq!(s["phases"][0]["status"], "Completed");
    assert_eq!(s["phases"][0]["results"]["validRecords"], 400);
    assert_eq!(s["phases"][1]["status"], "Running");

    let done = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": token, "summary": {"recordsAnalyzed": 1000},
                    "phaseResults": [{"phaseName": "Analysis", "status": "Completed", "results": {"variants": 7}}],
                    "artifacts": [{"name": "Report", "format": "PDF", "downloadUrl": "https://files.example/r.pdf"}]}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["status"], "Completed");

    let summary = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.text);
    assert_eq!(summary.body["success"], true);
    assert_eq!(summary.body["summary"]["recordsAnalyzed"], 1000);
    assert_eq!(summary.body["artifacts"][0]["name"], "Report");
    assert!(
        summary.body.get("phaseResults").is_none(),
        "summary format leaves phase results out"
    );
    let detailed = app
        .get(&app.api(&format!(
            "/operation/{id}/results?format=detailed&includeArtifacts=false"
        )))
        .await;
    assert_eq!(detailed.body["phaseResults"][0]["results"]["variants"], 7);
    assert!(detailed.body.get("artifacts").is_none());
    let one_phase = app
        .get(&app.api(&format!("/operation/{id}/results?phase=Analysis")))
        .await;
    assert_eq!(one_phase.body["phaseResults"].as_array().unwrap().len(), 1);
    let no_phase = app
        .get(&app.api(&format!("/operation/{id}/results?phase=Nope")))
        .await;
    assert_eq!(no_phase.status, StatusCode::NOT_FOUND);

    // A late report with the old lease changes nothing.
    let late = progress(json!({"leaseToken": token, "percentage": 10})).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.body["code"], "LEASE_LOST");

    let events = app.store().events().of_subject(&id).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "operation.started",
            "operation.progress",
            "operation.phase.completed",
            "operation.progress",
            "operation.completed"
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.sequence, i as i64 + 1);
        let envelope = &event.payload;
        assert!(envelope["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(envelope["type"], event.event_type);
        assert_eq!(envelope["subject"], id);
        assert_eq!(envelope["sequence"], event.sequence);
        assert_eq!(envelope["tenantId"], app.tenant.to_string());
        assert_eq!(envelope["projectId"], app.project.to_string());
        assert!(envelope["timestamp"].is_string());
        assert_eq!(envelope["data"]["operationId"], id);
    }
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        events[2].payload["data"]["phase"]["phaseName"],
        "Data Loading"
    );
    assert_eq!(
        events[4].payload["data"]["summary"]["recordsAnalyzed"],
        1000
    );

    // The seed's notifications: a mail to the analyst, a message for #process-mining.
    let mails = mail.wait_for(1, std::time::Duration::from_secs(30)).await;
    assert_eq!(mails[0].rcpt_to, ["analyst@company.com"]);
    assert!(
        mails[0].subject().contains("completed"),
        "{}",
        mails[0].subject()
    );
    let posted = slack.wait_for(1, std::time::Duration::from_secs(30)).await;
    let message = posted[0].body.clone();
    assert!(
        message.contains("#process-mining") && message.contains("@analyst"),
        "{message}"
    );

    // Now that the type has a completed run, new operations of it get an estimate.
    let again = app.post(&app.api("/operation"), &seed_body()).await;
    assert!(
        again.body["estimatedDuration"].is_string(),
        "{}",
        again.text
    );
    assert!(again.body["estimatedCompletion"].is_string());
}

async fn a_pending_operation_is_cancelled_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    let r = app
        .delete(
            &app.api(&format!("/operation/{id}")),
            Some(&json!({"reason": "changed requirements"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "Cancelled");
    assert_eq!(r.body["reason"], "changed requirements");
    assert!(r.body["cancellationTime"].is_string());
    assert!(r.body["cancelledBy"].as_str().unwrap().starts_with("tok-"));

    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["status"], "Cancelled");
    assert!(
        app.lease(&json!({"operationTypes": ["T"]}))
            .await
            .is_empty(),
        "a cancelled operation is never leased"
    );

    let again = app
        .delete(&app.api(&format!("/operation/{id}")), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["code"], "INVALID_STATE_TRANSITION");

    let events = app.store().events().of_subject(&id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "operation.cancelled");
    assert_eq!(
        events[0].payload["data"]["cancellation"]["reason"],
        "changed requirements"
    );
}

async fn a_running_operation_learns_of_its_cancellation_on_its_next_heartbeat(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    let lease = app.lease(&json!({"operationTypes": ["T"]})).await.remove(0);
    let token = lease["leaseToken"].as_str().unwrap();
    app.post(
        &app.api(&format!("/operation/{id}/progress")),
        &json!({"leaseToken": token, "percentage": 67, "currentPhase": "ML"}),
    )
    .await;

    let r = app
        .delete(&app.api(&format!("/operation/{id}")), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "Cancelled");
    assert_eq!(r.body["progressAtCancellation"], 67.0);
    assert_eq!(r.body["phaseAtCancellation"], "ML");

    let heartbeat = app
        .post(
            &app.api(&format!("/operation/{id}/progress")),
            &json!({"leaseToken": token, "percentage": 70}),
        )
        .await;
    assert_eq!(heartbeat.status, StatusCode::OK, "{}", heartbeat.text);
    assert_eq!(heartbeat.body["cancelRequested"], true);
    assert_eq!(heartbeat.body["status"], "Cancelled");

    let complete = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": token}),
        )
        .await;
    assert_eq!(complete.status, StatusCode::CONFLICT);
    assert_eq!(complete.body["code"], "LEASE_LOST");
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["status"], "Cancelled");
    assert_eq!(
        status.body["progress"]["percentage"], 67.0,
        "reports after cancellation change nothing"
    );
    let results = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(results.status, StatusCode::CONFLICT);
}

async fn partial_results_survive_a_cancellation_when_asked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n"}))
        .await;
    let lease = app.lease(&json!({})).await.remove(0);
    let token = lease["leaseToken"].as_str().unwrap();
    app.post(
        &app.api(&format!("/operation/{id}/progress")),
        &json!({"leaseToken": token, "phase": {"phaseName": "load", "status": "Completed", "results": {"rows": 5}}}),
    )
    .await;
    let r = app
        .delete(
            &app.api(&format!("/operation/{id}")),
            Some(&json!({"preservePartialResults": true})),
        )
        .await;
    assert_eq!(r.body["partialResults"]["available"], true);
    assert_eq!(r.body["partialResults"]["completedPhases"], 1);
    let results = app
        .get(&app.api(&format!("/operation/{id}/results?format=detailed")))
        .await;
    assert_eq!(results.status, StatusCode::OK, "{}", results.text);
    assert_eq!(results.body["partial"], true);
    assert_eq!(results.body["success"], false);
    assert_eq!(results.body["phaseResults"][0]["results"]["rows"], 5);
}

async fn the_same_idempotency_key_and_body_start_one_operation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let send = |key: &'static str, body: Value| {
        let app = &app;
        async move {
            app.post_idempotent(&app.api("/operation"), key, &body)
                .await
        }
    };
    let body = json!({"operationType": "T", "operationName": "n", "parameters": {"a": 1, "b": 2}});
    let first = send("key-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    // Same content, other key order: the same request.
    let reordered =
        json!({"parameters": {"b": 2, "a": 1}, "operationName": "n", "operationType": "T"});
    let second = send("key-1", reordered).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["idempotent-replayed"], "true");

    let other = send(
        "key-1",
        json!({"operationType": "T", "operationName": "different"}),
    )
    .await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.body["code"], "IDEMPOTENCY_KEY_REUSED");

    let fresh = send("key-2", body).await;
    assert_ne!(fresh.body["operationId"], first.body["operationId"]);
    let list = app.get(&app.api("/operations")).await;
    assert_eq!(list.body["summary"]["totalOperations"], 2);

    // Past the retention (RELAIS_IDEMPOTENCY_RETENTION_HOURS) a key is forgotten, so the
    // table stays bounded: reusing it is a new request.
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(app.store().idempotency().prune(later).await.unwrap(), 2);
    let reused = send(
        "key-1",
        json!({"operationType": "T", "operationName": "different"}),
    )
    .await;
    assert_eq!(reused.status, StatusCode::ACCEPTED, "{}", reused.text);
    assert_ne!(reused.body["operationId"], first.body["operationId"]);
}

async fn concurrent_requests_with_one_idempotency_key_start_one_operation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"operationType": "T", "operationName": "n"});
    let requests = (0..8).map(|_| {
        app.client
            .post(format!("{}{}", app.base, app.api("/operation")))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", "race")
            .json(&body)
            .send()
    });
    let mut ids = std::collections::HashSet::new();
    for response in futures_join_all(requests).await {
        let r = crate::common::Response::read(response.unwrap()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        ids.insert(r.body["operationId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every racer got the one operation");
    let list = app.get(&app.api("/operations")).await;
    assert_eq!(list.body["summary"]["totalOperations"], 1);
}

/// Runs the futures concurrently on the runtime and collects their outputs in order.
pub async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
