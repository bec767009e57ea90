use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::common::{eventually, Backend, TestApp};

both_backends!(
    concurrent_workers_complete_each_operation_exactly_once,
    an_expired_lease_is_taken_back_and_offered_again,
    a_worker_that_never_heartbeats_exhausts_its_attempts_and_fails,
    a_long_poll_answers_as_soon_as_work_appears,
    a_long_poll_with_no_work_answers_empty_after_waiting,
    waiting_workers_each_get_work_announced_while_they_wait,
    retryable_failures_are_offered_again_and_final_ones_fail,
    leases_are_handed_out_most_urgent_first_and_by_type,
    a_restarted_server_carries_on_with_leased_and_queued_work,
    a_run_past_its_timeout_ends_and_its_worker_is_told_to_stop,
    writes_arriving_together_are_each_answered_on_their_own_merits,
    a_completion_repeated_with_its_lease_gets_the_first_answer_again,
    a_failure_repeated_with_its_lease_gets_the_first_answer_again,
    a_job_whose_attempts_keep_losing_their_lease_fails_as_poisoned,
);

/// A job that kills the process running it shows as attempts that lose their lease, even
/// when they heartbeat until they die; after the configured number in a row it fails for
/// good, retries left or not.
async fn a_job_whose_attempts_keep_losing_their_lease_fails_as_poisoned(backend: Backend) {
    // Long enough for the heartbeat below to arrive in time on a loaded machine (with
    // 200 ms it once came late in CI, and the test failed on a lease lost too soon).
    let app = TestApp::spawn_with(backend, |c| {
        c.heartbeat_timeout = Duration::from_secs(1);
        c.max_lost_leases = 2;
    })
    .await;
    let id = app
        .start_operation(&json!({"operationType": "Deadly", "operationName": "n", "retryPolicy": {"maxRetries": 5, "retryDelay": 0}}))
        .await;
    let first = app
        .lease(&json!({"operationTypes": ["Deadly"]}))
        .await
        .remove(0);
    assert_eq!(first["attempt"], 1);
    let second = eventually(Duration::from_secs(10), || async {
        app.lease(&json!({"operationTypes": ["Deadly"], "waitSeconds": 1}))
            .await
            .pop()
    })
    .await;
    assert_eq!(second["attempt"], 2);
    let token = second["leaseToken"].as_str().unwrap();
    let heartbeat = app
        .post(
            &app.api(&format!("/operation/{id}/progress")),
            &json!({"leaseToken": token, "percentage": 10}),
        )
        .await;
    assert_eq!(heartbeat.status, StatusCode::OK, "{}", heartbeat.text);
    let status = eventually(Duration::from_secs(10), || async {
        let s = app.get(&app.api(&format!("/operation/{id}"))).await;
        (s.body["status"] == "Failed").then_some(s)
    })
    .await;
    assert_eq!(status.body["error"]["code"], "POISONED", "{}", status.text);
    let message = status.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 attempts in a row"), "{message}");
    assert!(message.contains("lost their lease"), "{message}");
    let attempts = status.body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["error"]["code"], "LEASE_EXPIRED");
    let events = app.store().events().of_subject(&id).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "operation.started",
            "operation.started",
            "operation.progress",
            "operation.failed"
        ]
    );
    assert!(app
        .lease(&json!({"operationTypes": ["Deadly"]}))
        .await
        .is_empty());
}

/// The worker's first report committed but it never saw the answer, and sends it again:
/// the same report with the same lease is answered as the first and changes nothing; the
/// other report with that lease, or any report with another, is still refused.
async fn a_completion_repeated_with_its_lease_gets_the_first_answer_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "Twice", "operationName": "n"}))
        .await;
    let token = app.lease(&json!({"operationTypes": ["Twice"]})).await[0]["leaseToken"].clone();
    let complete = app.api(&format!("/operation/{id}/complete"));
    let first = app
        .post(
            &complete,
            &json!({"leaseToken": token, "summary": {"n": 1}}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let again = app
        .post(
            &complete,
            &json!({"leaseToken": token, "summary": {"n": 2}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body, first.body);

    let fail = app
        .post(
            &app.api(&format!("/operation/{id}/fail")),
            &json!({"leaseToken": token, "error": {"code": "X", "message": "late"}}),
        )
        .await;
    assert_eq!(fail.status, StatusCode::CONFLICT, "{}", fail.text);
    assert_eq!(fail.body["code"], "LEASE_LOST");
    let other = app
        .post(&complete, &json!({"leaseToken": "lease_other"}))
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.text);
    assert_eq!(other.body["code"], "LEASE_LOST");

    let results = app.get(&app.api(&format!("/operation/{id}/results"))).await;
    assert_eq!(
        results.body["summary"],
        json!({"n": 1}),
        "the first result stays"
    );
    let events = app.store().events().of_subject(&id).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["operation.started", "operation.completed"]);
}

/// A retried failure's repeat is answered as it was, even once the next attempt runs.
async fn a_failure_repeated_with_its_lease_gets_the_first_answer_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "Twice", "operationName": "n", "retryPolicy": {"maxRetries": 2, "retryDelay": 0}}))
        .await;
    let first_token =
        app.lease(&json!({"operationTypes": ["Twice"]})).await[0]["leaseToken"].clone();
    let fail = app.api(&format!("/operation/{id}/fail"));
    let failure = json!({"leaseToken": first_token, "error": {"code": "FLAKY", "message": "try again"}, "retryable": true});
    let first = app.post(&fail, &failure).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["status"], "Running");
    assert_eq!(first.body["attempt"], 1);

    let second = app
        .lease(&json!({"operationTypes": ["Twice"]}))
        .await
        .remove(0);
    assert_eq!(second["attempt"], 2);
    let again = app.post(&fail, &failure).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body, first.body);
    let complete = app.api(&format!("/operation/{id}/complete"));
    let late = app
        .post(&complete, &json!({"leaseToken": first_token}))
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    assert_eq!(late.body["code"], "LEASE_LOST");

    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["status"], "Running");
    assert_eq!(status.body["execution"]["attempt"], 2);
    assert_eq!(status.body["attempts"].as_array().unwrap().len(), 1);
    let done = app
        .post(&complete, &json!({"leaseToken": second["leaseToken"]}))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
}

/// Concurrent requests share transactions; each must still get its own answer, and a
/// refused one must neither block nor taint the others written with it.
async fn writes_arriving_together_are_each_answered_on_their_own_merits(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    const OPERATIONS: usize = 60;
    let creates = (0..OPERATIONS).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            app.start_operation(
                &json!({"operationType": "Grouped", "operationName": format!("g{i}")}),
            )
            .await
        })
    });
    let mut ids = Vec::new();
    for create in creates {
        ids.push(create.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), OPERATIONS, "every create got its own operation");

    let leases = app
        .lease(&json!({"operationTypes": ["Grouped"], "max": OPERATIONS, "waitSeconds": 1}))
        .await;
    assert_eq!(leases.len(), OPERATIONS);
    // For every operation at once: its completion, a second completion with the same
    // token, and one with a token it never had.
    let mut calls = Vec::new();
    for lease in &leases {
        let id = lease["operationId"].as_str().unwrap().to_owned();
        for token in [
            lease["leaseToken"].clone(),
            lease["leaseToken"].clone(),
            json!("not-a-lease"),
        ] {
            let (app, id) = (app.clone(), id.clone());
            calls.push(tokio::spawn(async move {
                let r = app
                    .post(
                        &app.api(&format!("/operation/{id}/complete")),
                        &json!({"leaseToken": token, "summary": {"id": id}}),
                    )
                    .await;
                (id, r.status, r.text)
            }));
        }
    }
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for call in calls {
        let (id, status, text) = call.await.unwrap();
        match status {
            StatusCode::OK => *accepted.entry(id).or_default() += 1,
            StatusCode::CONFLICT => assert!(
                text.contains("LEASE_LOST") || text.contains("INVALID_STATE"),
                "{text}"
            ),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    for id in &ids {
        let op = app.get(&app.api(&format!("/operation/{id}"))).await.body;
        assert_eq!(op["status"], "Completed", "{op}");
        let results = app
            .get(&app.api(&format!("/operation/{id}/results")))
            .await
            .body;
        assert_eq!(
            results["summary"]["id"],
            json!(id),
            "each operation kept its own result: {results}"
        );
        assert!(
            accepted.get(id).copied().unwrap_or(0) >= 1,
            "{id} was completed by someone"
        );
    }
}

async fn concurrent_workers_complete_each_operation_exactly_once(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    const OPERATIONS: usize = 40;
    const WORKERS: usize = 4;
    let mut ids = Vec::new();
    for i in 0..OPERATIONS {
        ids.push(
            app.start_operation(
                &json!({"operationType": "Job", "operationName": format!("job {i}")}),
            )
            .await,
        );
    }
    let completions: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let app = app.clone();
        let completions = completions.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let leases = app
                    .lease(&json!({"operationTypes": ["Job"], "max": 3, "waitSeconds": 0.5, "workerId": format!("w-{w}")}))
                    .await;
                if leases.is_empty() {
                    return;
                }
                for lease in leases {
                    let id = lease["operationId"].as_str().unwrap().to_owned();
                    let r = app
                        .post(&app.api(&format!("/operation/{id}/complete")), &json!({"leaseToken": lease["leaseToken"]}))
                        .await;
                    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                    *completions.lock().unwrap().entry(id).or_default() += 1;
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let completions = completions.lock().unwrap().clone();
    assert_eq!(completions.len(), OPERATIONS);
    assert!(completions.values().all(|&n| n == 1), "{completions:?}");
    let list = app.get(&app.api("/operations?pageSize=100")).await;
    assert_eq!(list.body["summary"]["completed"], OPERATIONS);
    for op in list.body["operations"].as_array().unwrap() {
        let status = app
            .get(&app.api(&format!(
                "/operation/{}",
                op["operationId"].as_str().unwrap()
            )))
            .await;
        assert_eq!(
            status.body["execution"]["attempt"], 1,
            "no operation was handed out twice"
        );
    }
}

async fn an_expired_lease_is_taken_back_and_offered_again(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.heartbeat_timeout = Duration::from_millis(400)
    })
    .await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n", "retryPolicy": {"maxRetries": 2, "retryDelay": 0}}))
        .await;
    let first = app.lease(&json!({"workerId": "silent"})).await.remove(0);
    assert_eq!(first["heartbeatTimeout"], 0.4);
    // A heartbeat keeps the lease alive past the timeout.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hb = app
            .post(
                &app.api(&format!("/operation/{id}/progress")),
                &json!({"leaseToken": first["leaseToken"]}),
            )
            .await;
        assert_eq!(hb.status, StatusCode::OK, "{}", hb.text);
    }
    // Then the worker goes silent; another worker gets the operation.
    let second = eventually(Duration::from_secs(10), || async {
        app.lease(&json!({"workerId": "second", "waitSeconds": 1}))
            .await
            .pop()
    })
    .await;
    assert_eq!(second["operationId"], id);
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["leaseToken"], first["leaseToken"]);

    let stale = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": first["leaseToken"]}),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["code"], "LEASE_LOST");

    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["status"], "Running");
    assert_eq!(status.body["execution"]["workerNode"], "second");
    assert_eq!(status.body["attempts"][0]["error"]["code"], "LEASE_EXPIRED");
    assert_eq!(status.body["attempts"][0]["workerId"], "silent");
    let ok = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": second["leaseToken"]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

async fn a_worker_that_never_heartbeats_exhausts_its_attempts_and_fails(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.heartbeat_timeout = Duration::from_millis(200)
    })
    .await;
    let id = app
        .start_operation(
            &json!({"operationType": "T", "operationName": "n", "retryPolicy": {"maxRetries": 0}}),
        )
        .await;
    assert_eq!(app.lease(&json!({})).await.len(), 1);
    let status = eventually(Duration::from_secs(10), || async {
        let s = app.get(&app.api(&format!("/operation/{id}"))).await;
        (s.body["status"] == "Failed").then_some(s)
    })
    .await;
    assert_eq!(status.body["error"]["code"], "LEASE_EXPIRED");
    let events = app.store().events().of_subject(&id).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["operation.started", "operation.failed"]);
    assert!(app.lease(&json!({})).await.is_empty());
}

async fn a_long_poll_answers_as_soon_as_work_appears(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    let poller = {
        let app = app.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let leases = app
                .lease(&json!({"operationTypes": ["Late"], "waitSeconds": 20}))
                .await;
            (leases, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = app
        .start_operation(&json!({"operationType": "Late", "operationName": "n"}))
        .await;
    let (leases, waited) = poller.await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["operationId"], id);
    // Woken by the commit, not by the periodic re-check or the 20 s deadline.
    assert!(waited < Duration::from_millis(1900), "waited {waited:?}");
}

/// Workers waiting for the same work take turns after each announcement and skip a look
/// that could only come back empty; none may sleep through work announced meanwhile, and
/// workers waiting for other types are woken for their own.
async fn waiting_workers_each_get_work_announced_while_they_wait(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    const WORKERS: usize = 6;
    const ROUNDS: usize = 9;
    let leased: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (app, leased) = (app.clone(), leased.clone());
        workers.push(tokio::spawn(async move {
            // Ends with the first look that finds nothing for its whole wait.
            loop {
                let leases = app
                    .lease(&json!({"operationTypes": ["Shared"], "max": 2, "waitSeconds": 2.5, "workerId": format!("w-{w}")}))
                    .await;
                if leases.is_empty() {
                    return;
                }
                for lease in leases {
                    let id = lease["operationId"].as_str().unwrap().to_owned();
                    *leased.lock().unwrap().entry(id).or_default() += 1;
                }
            }
        }));
    }
    let loner = {
        let app = app.clone();
        tokio::spawn(async move {
            app.lease(&json!({"operationTypes": ["Rare"], "waitSeconds": 20}))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rare = app
        .start_operation(&json!({"operationType": "Rare", "operationName": "r"}))
        .await;
    let mut ids = Vec::new();
    // Rounds of one to three operations, each while every worker waits, so that only the
    // announcement can hand them out: well before the 2 s re-check would find them.
    for round in 0..ROUNDS {
        for i in 0..=round % 3 {
            ids.push(
                app.start_operation(
                    &json!({"operationType": "Shared", "operationName": format!("s{round}.{i}")}),
                )
                .await,
            );
        }
        eventually(Duration::from_secs(1), || async {
            let leased = leased.lock().unwrap();
            ids.iter().all(|id| leased.contains_key(id)).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loner = loner.await.unwrap();
    assert_eq!(loner.len(), 1);
    assert_eq!(loner[0]["operationId"], rare);
    for worker in workers {
        worker.await.unwrap();
    }
    let leased = leased.lock().unwrap().clone();
    assert_eq!(leased.len(), ids.len());
    assert!(leased.values().all(|&n| n == 1), "{leased:?}");
}

/// Replicas share one PostgreSQL database and tell each other of new work through
/// LISTEN/NOTIFY; each ignores the echo of its own notifications, never another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waiting_on_one_replica_is_woken_by_work_created_on_another() {
    let app = Arc::new(TestApp::spawn(Backend::Postgres).await);
    let (replica, replica_base) = app.start_replica().await;
    for (round, name) in ["first", "second"].into_iter().enumerate() {
        let poller = {
            let (app, url) = (
                app.clone(),
                format!("{replica_base}{}", app.api("/workers/lease")),
            );
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let r = app
                    .client
                    .post(url)
                    .bearer_auth(&app.token)
                    .json(&json!({"operationTypes": ["Elsewhere"], "waitSeconds": 20}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let body: serde_json::Value = r.json().await.unwrap();
                (
                    body["leases"].as_array().unwrap().clone(),
                    started.elapsed(),
                )
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = app
            .start_operation(&json!({"operationType": "Elsewhere", "operationName": name}))
            .await;
        let (leases, waited) = poller.await.unwrap();
        assert_eq!(leases.len(), 1, "round {round}");
        assert_eq!(leases[0]["operationId"], id);
        // Woken by the other replica's notification, not by the 2 s re-check.
        assert!(
            waited < Duration::from_millis(1900),
            "round {round}: waited {waited:?}"
        );
    }
    replica.stop(Duration::from_secs(10)).await;
}

async fn a_long_poll_with_no_work_answers_empty_after_waiting(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.start_operation(&json!({"operationType": "Other", "operationName": "n"}))
        .await;
    let started = tokio::time::Instant::now();
    let leases = app
        .lease(&json!({"operationTypes": ["Wanted"], "waitSeconds": 0.5}))
        .await;
    assert!(leases.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(500));
}

async fn retryable_failures_are_offered_again_and_final_ones_fail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "T", "operationName": "n", "retryPolicy": {"maxRetries": 2, "retryDelay": 0.2}}))
        .await;
    let lease = app.lease(&json!({})).await.remove(0);
    let error =
        json!({"code": "UPSTREAM_DOWN", "message": "503 from upstream", "details": {"host": "x"}});
    let r = app
        .post(
            &app.api(&format!("/operation/{id}/fail")),
            &json!({"leaseToken": lease["leaseToken"], "error": error, "retryable": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "Running");
    assert_eq!(r.body["attempt"], 1);
    assert!(r.body["nextAttemptAt"].is_string());
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["execution"]["retrying"], true);
    assert_eq!(status.body["attempts"][0]["error"]["code"], "UPSTREAM_DOWN");

    let again = eventually(Duration::from_secs(10), || async {
        app.lease(&json!({"waitSeconds": 1})).await.pop()
    })
    .await;
    assert_eq!(again["attempt"], 2);
    let r = app
        .post(
            &app.api(&format!("/operation/{id}/fail")),
            &json!({"leaseToken": again["leaseToken"], "error": {"code": "BAD_INPUT", "message": "dataset missing"}, "retryable": false}),
        )
        .await;
    assert_eq!(r.body["status"], "Failed");
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["error"]["code"], "BAD_INPUT");
    let events = app.store().events().of_subject(&id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "operation.failed");
    assert_eq!(last.payload["data"]["error"]["message"], "dataset missing");
}

async fn leases_are_handed_out_most_urgent_first_and_by_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut expected = Vec::new();
    for (name, priority) in [
        ("low", "Low"),
        ("normal", "Normal"),
        ("critical", "Critical"),
        ("high", "High"),
    ] {
        app.start_operation(
            &json!({"operationType": "T", "operationName": name, "priority": priority}),
        )
        .await;
    }
    app.start_operation(
        &json!({"operationType": "Other", "operationName": "other", "priority": "Critical"}),
    )
    .await;
    for name in ["critical", "high", "normal", "low"] {
        expected.push(name);
    }
    let leases = app
        .lease(&json!({"operationTypes": ["T"], "max": 10}))
        .await;
    let names: Vec<_> = leases
        .iter()
        .map(|l| l["operationName"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected);
}

async fn a_restarted_server_carries_on_with_leased_and_queued_work(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let leased = app
        .start_operation(&json!({"operationType": "T", "operationName": "leased"}))
        .await;
    let lease = app.lease(&json!({})).await.remove(0);
    assert_eq!(lease["operationId"], leased);
    let queued = app
        .start_operation(&json!({"operationType": "T", "operationName": "queued"}))
        .await;

    let app = app.restart(|_| {}).await;
    // The worker carries on under its lease, and the queued operation is still offered.
    let r = app
        .post(
            &app.api(&format!("/operation/{leased}/progress")),
            &json!({"leaseToken": lease["leaseToken"], "percentage": 50}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .post(
            &app.api(&format!("/operation/{leased}/complete")),
            &json!({"leaseToken": lease["leaseToken"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let next = app.lease(&json!({})).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["operationId"], queued);
    let events = app.store().events().of_subject(&leased).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "operation.started",
            "operation.progress",
            "operation.completed"
        ]
    );
}

async fn a_run_past_its_timeout_ends_and_its_worker_is_told_to_stop(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .start_operation(&json!({"operationType": "Slow", "operationName": "n", "timeout": 1}))
        .await;
    let lease = app
        .lease(&json!({"operationTypes": ["Slow"]}))
        .await
        .remove(0);
    let token = lease["leaseToken"].clone();
    // The worker keeps heartbeating; the timeout ends the run all the same.
    let stopped = eventually(Duration::from_secs(10), || async {
        let hb = app
            .post(
                &app.api(&format!("/operation/{id}/progress")),
                &json!({"leaseToken": token, "percentage": 10}),
            )
            .await;
        assert_eq!(hb.status, StatusCode::OK, "{}", hb.text);
        (hb.body["cancelRequested"] == true).then_some(hb.body)
    })
    .await;
    assert_eq!(stopped["status"], "Timeout");
    let late = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": token}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.body["code"], "LEASE_LOST");
    let status = app.get(&app.api(&format!("/operation/{id}"))).await;
    assert_eq!(status.body["status"], "Timeout");
    assert_eq!(status.body["error"]["code"], "TIMEOUT");
    let events = app.store().events().of_subject(&id).await.unwrap();
    assert_eq!(events.last().unwrap().event_type, "operation.timeout");
}
