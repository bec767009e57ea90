//! SIGTERM to a real `relais serve` running a built-in operation: the process exits 0 and
//! hands the attempt back, so the next process runs it at once (not after the heartbeat
//! timeout) and the handed-back attempt does not count against the retry policy.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, eventually, Backend, Response, ServeProcess, TestDb};

both_backends!(a_terminated_process_hands_its_running_attempts_back);

async fn a_terminated_process_hands_its_running_attempts_back(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "shutdown");
    // A minute of heartbeat timeout: a lease left to expire would hold the work that long.
    let env = [
        ("RELAIS_HEARTBEAT_TIMEOUT", "60"),
        ("RELAIS_SHUTDOWN_GRACE", "0"),
    ];
    let mut server = ServeProcess::start(&db, &env).await;
    let client = reqwest::Client::new();
    let get = |base: &str, id: &str| {
        let request = client
            .get(format!("{base}/api/{t}/{p}/async/operation/{id}"))
            .bearer_auth(&token);
        async move { Response::read(request.send().await.unwrap()).await.body }
    };
    let r = client
        .post(format!("{}/api/{t}/{p}/async/operation", server.base))
        .bearer_auth(&token)
        .json(&json!({"operationType": "Sleep", "operationName": "long", "parameters": {"seconds": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["operationId"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(10), || async {
        (get(&server.base, &id).await["status"] == "Running").then_some(())
    })
    .await;

    server.terminate();
    let exit = server.exited(Duration::from_secs(20)).await;
    assert!(exit.success(), "exits 0: {exit:?}");

    let restarted = ServeProcess::start(&db, &env).await;
    let started = Instant::now();
    let status = eventually(Duration::from_secs(20), || async {
        let s = get(&restarted.base, &id).await;
        (s["status"] == "Completed").then_some(s)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "run again at once, not after the heartbeat timeout ({:?})",
        started.elapsed()
    );
    assert_eq!(status["execution"]["attempt"], 1, "{status}");
    assert_eq!(
        status["attempts"].as_array().map_or(0, Vec::len),
        0,
        "{status}"
    );
}
