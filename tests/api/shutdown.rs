//! SIGTERM to a real `relais serve`: the process exits 0 within its grace, hands its
//! built-in attempts back, so the next process runs them at once (not after the heartbeat
//! timeout) and a handed-back attempt does not count against the retry policy; deliveries
//! in flight finish and are recorded, the others go back to the queue. A rolling restart
//! of every replica under load loses nothing and sends nothing twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, eventually, Backend, Response, ServeProcess, TestDb};
use crate::receiver::{Receiver, Reply};

both_backends!(
    a_terminated_process_hands_its_running_attempts_back,
    a_rolling_restart_under_load_loses_nothing_and_sends_nothing_twice
);

async fn a_terminated_process_hands_its_running_attempts_back(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "shutdown");
    // A minute of heartbeat timeout: a lease left to expire would hold the work that long.
    let env = [
        ("RELAIS_HEARTBEAT_TIMEOUT", "60"),
        ("RELAIS_SHUTDOWN_DELAY", "0"),
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

/// Every replica restarted in turn (SIGTERM, wait for the exit, start a new one) while a
/// client keeps starting operations (with an `Idempotency-Key`, retried on another
/// replica when one stops answering) whose completions go to a webhook: each accepted
/// operation completes once and its `operation.completed` arrives once.
async fn a_rolling_restart_under_load_loses_nothing_and_sends_nothing_twice(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "rolling");
    let receiver = Receiver::start().await;
    // Deliveries take a while, so some are in flight at every SIGTERM.
    receiver.fallback(Reply::status(200).after(Duration::from_millis(30)));
    let grace = Duration::from_secs(15);
    let env = [
        ("RELAIS_ALLOW_PRIVATE_TARGETS", "true"),
        ("RELAIS_SHUTDOWN_GRACE", "15"),
        ("RELAIS_SHUTDOWN_DELAY", "0"),
        ("RELAIS_HEARTBEAT_TIMEOUT", "60"),
    ];
    // PostgreSQL is what replicas share; on SQLite the one process restarts in place.
    let replicas = match backend {
        Backend::Postgres => 3,
        Backend::Sqlite => 1,
    };
    let mut servers = Vec::new();
    for _ in 0..replicas {
        servers.push(ServeProcess::start(&db, &env).await);
    }
    let bases: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(servers.iter().map(|s| s.base.clone()).collect()));
    let client = reqwest::Client::new();
    let r = Response::read(
        client
            .post(format!("{}/api/{t}/{p}/async/webhooks", servers[0].base))
            .bearer_auth(&token)
            .json(&json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let webhook = r.body["webhookId"].as_str().unwrap().to_owned();

    // The load: four clients starting operations one after another, each on the next
    // live replica.
    let stop = Arc::new(AtomicBool::new(false));
    // Accepted by all clients so far: the phases below wait for the load, not for a
    // time a loaded machine may not fill.
    let count = Arc::new(AtomicUsize::new(0));
    let loads: Vec<_> = (0..4)
        .map(|client_number| {
            let (bases, stop, client, token, count) = (
                bases.clone(),
                stop.clone(),
                client.clone(),
                token.clone(),
                count.clone(),
            );
            let path = format!("/api/{t}/{p}/async/operation");
            tokio::spawn(async move {
                let mut accepted: HashSet<String> = HashSet::new();
                let mut i = client_number;
                while !stop.load(Ordering::Relaxed) {
                    i += 4;
                    let key = format!("op-{i}");
                    for turn in 0.. {
                        assert!(turn < 500, "no replica accepted {key}");
                        let base = {
                            let bases = bases.lock().unwrap();
                            if bases.is_empty() {
                                None
                            } else {
                                Some(bases[(i + turn) % bases.len()].clone())
                            }
                        };
                        let Some(base) = base else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        let sent = client
                            .post(format!("{base}{path}"))
                            .bearer_auth(&token)
                            .header("Idempotency-Key", &key)
                            .json(&json!({"operationType": "Echo", "operationName": key}))
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                                let body: Value = r.json().await.unwrap();
                                accepted.insert(body["operationId"].as_str().unwrap().to_owned());
                                count.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(r) if r.status().is_server_error() => {}
                            Ok(r) => panic!("{key}: {}", r.status()),
                            Err(_) => {}
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                accepted
            })
        })
        .collect();

    let accepted_at_least = |n: usize| {
        let count = count.clone();
        async move {
            eventually(Duration::from_secs(60), || async {
                (count.load(Ordering::Relaxed) >= n).then_some(())
            })
            .await
        }
    };
    accepted_at_least(20).await;
    for n in 0..replicas {
        // As a load balancer does: no new requests to it, then SIGTERM.
        let old = servers.remove(0);
        bases.lock().unwrap().retain(|b| *b != old.base);
        let mut old = old;
        let in_flight_before = receiver.received().len();
        old.terminate();
        let signalled = Instant::now();
        let exit = old.exited(grace + Duration::from_secs(5)).await;
        assert!(exit.success(), "replica {n} exits 0: {exit:?}");
        assert!(
            signalled.elapsed() <= grace,
            "replica {n} exited within its grace ({:?})",
            signalled.elapsed()
        );
        eprintln!(
            "rolling restart: replica {n} exited in {:?} ({} deliveries meanwhile)",
            signalled.elapsed(),
            receiver.received().len() - in_flight_before
        );
        let new = ServeProcess::start(&db, &env).await;
        bases.lock().unwrap().push(new.base.clone());
        servers.push(new);
        // Requests go on through the new replica before the next one stops.
        accepted_at_least(count.load(Ordering::Relaxed) + 10).await;
    }
    accepted_at_least(60).await;
    stop.store(true, Ordering::Relaxed);
    let mut accepted = HashSet::new();
    for load in loads {
        accepted.extend(load.await.unwrap());
    }
    assert!(
        accepted.len() > 50,
        "under load: {} operations",
        accepted.len()
    );

    // Well within a delivery lease (40 s by default): nothing waited for a lease left
    // behind by a stopped replica.
    let subject =
        |r: &crate::receiver::Received| r.json()["subject"].as_str().unwrap_or_default().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let missing = loop {
        let arrived: HashSet<String> = receiver.received().iter().map(subject).collect();
        let missing: Vec<&String> = accepted
            .iter()
            .filter(|id| !arrived.contains(*id))
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !missing.is_empty() {
        // Where the first few stand, to tell a lost operation from a lost delivery.
        let mut states = Vec::new();
        for id in missing.iter().take(3) {
            let r = Response::read(
                client
                    .get(format!(
                        "{}/api/{t}/{p}/async/operation/{id}",
                        servers[0].base
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            states.push(format!(
                "{id}: {} {}",
                r.body["status"], r.body["execution"]
            ));
        }
        let webhook = Response::read(
            client
                .get(format!(
                    "{}/api/{t}/{p}/async/webhooks/{webhook}",
                    servers[0].base
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        panic!(
            "{} of {} accepted operations' completions never arrived: {states:?}; webhook: {}",
            missing.len(),
            accepted.len(),
            webhook.body["deliveryStats"]
        );
    }
    // Anything sent twice would arrive within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = receiver.received();
    let mut per_operation: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *per_operation.entry(subject(r)).or_default() += 1;
    }
    let twice: Vec<_> = per_operation.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(
        per_operation.len(),
        accepted.len(),
        "one completion per accepted operation"
    );
    // Every outcome recorded: no delivery sent by a stopped replica was left under its lease.
    let stats = eventually(Duration::from_secs(10), || async {
        let r = Response::read(
            client
                .get(format!(
                    "{}/api/{t}/{p}/async/webhooks/{webhook}",
                    servers[0].base
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        (r.body["deliveryStats"]["pendingDeliveries"] == 0).then_some(r.body)
    })
    .await;
    assert_eq!(
        stats["deliveryStats"]["successfulDeliveries"],
        accepted.len(),
        "{stats}"
    );
    eprintln!(
        "rolling restart: {} operations accepted, {} deliveries, none twice",
        accepted.len(),
        received.len()
    );
}
