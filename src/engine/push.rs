//! Push workers: the engine claims each worker's operations within its `maxConcurrency`
//! and POSTs each as a signed task. A 200 answer is the result; a 202 means the worker
//! reports later, with the task's callback token, like a pull worker. 5xx answers and
//! network errors fail the attempt as retryable, other 4xx answers for good. Cancel and
//! timeout notices reach the worker through the outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::due::Wakes;
use crate::clock;
use crate::domain::operation::OperationResult;
use crate::domain::worker::PushWorker;
use crate::executors::ExecutionError;
use crate::lease::{Leases, WorkOrder};
use crate::outbound::signing::SigningKey;
use crate::outbound::{OutboundClient, SignedMessage};
use crate::store::{PushTask, PushWorkers, Signals};

#[derive(Debug, Clone)]
pub struct PushSettings {
    pub lease_ttl: Duration,
    /// Where workers reach this service, for the callback URL of each task.
    pub public_url: String,
    pub allow_private_targets: bool,
}

/// A push request never waits longer than this, whatever the operation's timeout.
const MAX_REQUEST: Duration = Duration::from_secs(3600);

pub async fn run(
    push_workers: PushWorkers,
    signals: Signals,
    wakes: Arc<Wakes>,
    leases: Leases,
    builtin_types: Vec<String>,
    settings: PushSettings,
) {
    let client = OutboundClient::new(MAX_REQUEST, settings.allow_private_targets);
    let freed = Arc::new(Notify::new());
    loop {
        let woken = signals.work().worker_work().notified();
        let slot_freed = freed.notified();
        let due = wakes.push.notified();
        tokio::pin!(woken, slot_freed, due);
        woken.as_mut().enable();
        slot_freed.as_mut().enable();
        let workers = match push_workers.known().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "listing push workers failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut pushed = false;
        for worker in workers.iter() {
            match push_workers
                .claim(worker, &builtin_types, clock::now(), settings.lease_ttl)
                .await
            {
                Ok(tasks) => {
                    for task in tasks {
                        pushed = true;
                        let (leases, client, worker, settings, freed) = (
                            leases.clone(),
                            client.clone(),
                            worker.clone(),
                            settings.clone(),
                            freed.clone(),
                        );
                        tokio::spawn(async move {
                            push(&leases, &client, &worker, task, &settings).await;
                            freed.notify_one();
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(worker_id = %worker.id, error = %e, "claiming for a push worker failed")
                }
            }
        }
        if !pushed {
            // The clock catches workers that finished asynchronously, retry delays that
            // ran out and other replicas' work.
            tokio::select! {
                _ = &mut woken => {}
                _ = &mut slot_freed => {}
                _ = &mut due => {}
            }
        }
    }
}

/// What a push worker is sent: the work order, and how to report on it later (after a
/// 202) as a pull worker would, with the callback token in place of a worker's token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PushTask)]
pub struct TaskBody<'a> {
    /// `operation.task`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    work_order: WorkOrder<'a>,
    /// Where to report progress, completion or failure (`…/progress`, `…/complete`,
    /// `…/fail`), after answering 202.
    callback_base_url: String,
    /// The bearer token for those reports, good for this task only.
    callback_token: &'a str,
}

fn task_body<'a>(task: &'a PushTask, settings: &PushSettings) -> TaskBody<'a> {
    let op = &task.operation;
    TaskBody {
        kind: "operation.task",
        work_order: WorkOrder::new(op, &task.lease, settings.lease_ttl),
        callback_base_url: format!(
            "{}/api/{}/{}/async/operation/{}",
            settings.public_url.trim_end_matches('/'),
            op.tenant_id,
            op.project_id,
            op.id
        ),
        callback_token: &task.callback_token,
    }
}

async fn push(
    leases: &Leases,
    client: &OutboundClient,
    worker: &PushWorker,
    task: PushTask,
    settings: &PushSettings,
) {
    let op = &task.operation;
    let lease = leases.hold(op, task.lease.clone());
    let body = serde_json::to_string(&task_body(&task, settings))
        .expect("a task is strings, numbers and JSON values, which always serialize");
    let now = clock::now();
    let msg_id = format!("task_{}_{}", op.id.uuid().simple(), op.attempt);
    let secret = match &worker.secret {
        Ok(secret) => secret,
        Err(why) => {
            tracing::warn!(worker_id = %worker.id, operation_id = %op.id, reason = %why, "cannot sign a push worker's task");
            let unsigned = ExecutionError::new("PUSH_WORKER_SECRET_UNREADABLE", why.clone(), true);
            lease.finish(Err(unsigned)).await;
            return;
        }
    };
    let keys = [SigningKey::from_secret(secret)];
    let signed = client.signed_post(
        &worker.url,
        SignedMessage {
            id: &msg_id,
            timestamp: now.timestamp(),
            body,
            keys: &keys,
            headers: &BTreeMap::new(),
            traceparent: None,
        },
    );
    let Ok(request) = signed else {
        let refused = ExecutionError::new(
            "PUSH_WORKER_REFUSED",
            "the worker's address is private",
            false,
        );
        lease.finish(Err(refused)).await;
        return;
    };
    // The lease lives while the worker holds the request open (a synchronous worker).
    let keep_alive = lease.keep_alive();
    let until_timeout = (op.timeout_at - now).to_std().unwrap_or_default();
    let request = request
        .timeout(until_timeout.clamp(Duration::from_secs(1), MAX_REQUEST))
        .send();
    let answer = tokio::select! {
        answer = request => Some(answer),
        _ = lease.stopped() => None,
    };
    drop(keep_alive);
    let result = match answer {
        // Cancelled or timed out meanwhile: the outbox tells the worker.
        None => return,
        Some(Err(e)) => Err(ExecutionError::new(
            "PUSH_WORKER_UNREACHABLE",
            format!("the worker did not answer: {e}"),
            true,
        )),
        Some(Ok(response)) => {
            let status = response.status().as_u16();
            match status {
                202 => return,
                200 | 201 | 204 => {
                    let text = response.text().await.unwrap_or_default();
                    if text.trim().is_empty() {
                        Ok(OperationResult::default())
                    } else {
                        serde_json::from_str::<OperationResult>(&text)
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.check_extra().map(|()| r).map_err(|e| e.to_string()))
                            .map_err(|e| {
                                ExecutionError::new(
                                    "PUSH_WORKER_BAD_RESULT",
                                    format!("the worker's result is not a result object: {e}"),
                                    false,
                                )
                            })
                    }
                }
                408 | 429 | 500..=599 => Err(ExecutionError::new(
                    "PUSH_WORKER_ERROR",
                    format!("the worker answered {status}"),
                    true,
                )),
                _ => Err(ExecutionError::new(
                    "PUSH_WORKER_REJECTED",
                    format!("the worker answered {status}"),
                    false,
                )),
            }
        }
    };
    lease.finish(result).await;
}
