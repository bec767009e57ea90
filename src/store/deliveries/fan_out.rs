//! Fan-out at write time: the delivery rows an event causes, written in the transaction
//! that writes the event, as `domain::delivery::fan_out` decides them; webhook deliveries
//! may be handed straight to this process's dispatcher (see [`super::handoff`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};

use super::handoff::{HandedOff, HandoffLease, HandoffSink};
use crate::domain::delivery::{self, DeliveryStatus, Destination, Routed, Watermarks};
use crate::domain::event::Event;
use crate::domain::ids::{DeliveryId, ProjectId, PushWorkerId, WebhookId};
use crate::domain::webhook::{Webhook, WebhookStatus};
use crate::store::events::{push_insert_events, StagedEvent};
use crate::store::signals::Announce;
use crate::store::webhooks::decode_webhook;
use crate::store::writes::{RowWrite, Rows, Writes};
use crate::store::{
    sized_chunks, to_json, to_ms, values_placeholders, Backend, Result, StoreError,
};

/// Writes `writes`, then the events and the deliveries they queue: on PostgreSQL one
/// statement, once routing has read what it needs. What to announce once committed.
pub(in crate::store) async fn write_events<'q>(
    tx: &mut Transaction<'static, Any>,
    mut writes: Writes<'q>,
    backend: Backend,
    events: &'q [StagedEvent],
    now: DateTime<Utc>,
    handoff: Option<&HandoffSink>,
) -> Result<Announce> {
    let tally = push_insert_events(&mut writes, backend, events);
    let (queued, handed_off) = queue_deliveries(tx, &mut writes, events, now, handoff).await?;
    writes.execute(tx).await?;
    Ok(Announce {
        // Those handed to the dispatcher need no claim.
        deliveries: queued > handed_off.len(),
        events: tally,
        handed_off,
        ..Announce::default()
    })
}

/// Queues one delivery per destination of each event, in the transaction that writes
/// the events (see `domain::delivery::fan_out`): one webhook lookup per project and one
/// watermark read for throttled progress, done at once; the rows (one insert per 500)
/// and the watermarks are added to `writes`, to go out with the events' own. With a
/// `handoff`, webhook deliveries are leased to this process's dispatcher while it has
/// room (see [`handoff`]). Returns how many were queued, and those handed off.
pub(in crate::store) async fn queue_deliveries(
    tx: &mut Transaction<'static, Any>,
    writes: &mut Writes<'_>,
    events: &[StagedEvent],
    now: DateTime<Utc>,
    handoff: Option<&HandoffSink>,
) -> Result<(usize, HandedOff)> {
    if events.is_empty() {
        return Ok((0, HandedOff::default()));
    }
    let mut webhooks: HashMap<ProjectId, Vec<Webhook>> = HashMap::new();
    let mut sealed: HashMap<WebhookId, Option<String>> = HashMap::new();
    let mut push_urls: Vec<Option<String>> = Vec::with_capacity(events.len());
    for staged in events {
        let project = staged.event.project_id;
        if let Entry::Vacant(slot) = webhooks.entry(project) {
            let routed = routed_webhooks(&mut **tx, project, handoff.is_some()).await?;
            slot.insert(
                routed
                    .into_iter()
                    .map(|(webhook, secrets)| {
                        sealed.insert(webhook.id, secrets);
                        webhook
                    })
                    .collect(),
            );
        }
        push_urls.push(match staged.stop_notice {
            Some(worker) => push_worker_url(tx, worker).await?,
            None => None,
        });
    }
    let routed: Vec<Routed<'_>> = events
        .iter()
        .zip(&push_urls)
        .map(|(staged, url)| Routed {
            event: &staged.event,
            callback: staged.callback.as_deref(),
            push_worker: staged.stop_notice.zip(url.as_deref()),
            notify: staged.notify.as_ref(),
        })
        .collect();
    let known = load_watermarks(tx, &delivery::watermarks_needed(&routed, &webhooks)).await?;
    let planned = delivery::fan_out(&routed, &webhooks, known);
    let lease = handoff.map(|sink| sink.lease(now));
    let staged_by_id: HashMap<_, &StagedEvent> = match lease {
        Some(_) => events.iter().map(|s| (&s.event.id, s)).collect(),
        None => HashMap::new(),
    };
    let mut handed = HandedOff::default();
    let mut rows = Vec::with_capacity(planned.deliveries.len());
    for (event, destination) in &planned.deliveries {
        let id = DeliveryId::new();
        let taken = match (&lease, destination) {
            (Some(lease), Destination::Webhook { id: webhook, url }) => {
                let staged = staged_by_id.get(&event.id).copied();
                let target = webhooks
                    .get(&event.project_id)
                    .and_then(|list| list.iter().find(|w| w.id == *webhook));
                match (staged, target) {
                    (Some(staged), Some(target)) => {
                        let secrets = sealed.get(webhook).and_then(Option::as_deref);
                        lease.take(id, staged, target, url, secrets)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        rows.push(QueuedRow {
            id,
            lease: if taken.is_some() {
                lease.as_ref()
            } else {
                None
            },
        });
        if let Some(taken) = taken {
            handed.push(taken);
        }
    }
    push_deliveries(writes, &planned.deliveries, &rows, now);
    push_watermarks(writes, &planned.watermarks);
    Ok((planned.deliveries.len(), handed))
}

/// A delivery row to write: its id, and the lease it is written under when it is
/// handed off.
struct QueuedRow<'a> {
    id: DeliveryId,
    lease: Option<&'a HandoffLease<'a>>,
}

pub(in crate::store) async fn active_webhooks<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    project: ProjectId,
) -> Result<Vec<Webhook>> {
    Ok(routed_webhooks(executor, project, false)
        .await?
        .into_iter()
        .map(|(webhook, _)| webhook)
        .collect())
}

/// The project's active webhooks; with `with_secrets`, each with its secrets as stored
/// (sealed), for deliveries handed straight to the dispatcher.
async fn routed_webhooks<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    project: ProjectId,
    with_secrets: bool,
) -> Result<Vec<(Webhook, Option<String>)>> {
    let sql = format!(
        "SELECT id, tenant_id, project_id, url, name, events, filters, retry_policy, headers, \
               status, disabled_reason, failing_since, created_at, updated_at, rate_limit, labels{secrets} \
               FROM webhooks WHERE project_id = $1 AND status = '{active}'",
        active = WebhookStatus::Active.as_str(),
        secrets = if with_secrets { ", secrets" } else { "" },
    );
    let rows = sqlx::query(&sql)
        .bind(project.db())
        .fetch_all(executor)
        .await?;
    // Routing never signs: the secrets are not opened here.
    rows.iter()
        .map(|row| {
            let secrets = if with_secrets {
                row.try_get("secrets")?
            } else {
                None
            };
            Ok((decode_webhook(row, Vec::new())?, secrets))
        })
        .collect()
}

/// `None` once the worker is deleted: nobody is left to tell.
async fn push_worker_url(
    tx: &mut Transaction<'static, Any>,
    worker: PushWorkerId,
) -> Result<Option<String>> {
    let row = sqlx::query("SELECT url FROM push_workers WHERE id = $1")
        .bind(worker.db())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|row| row.try_get("url")).transpose()?)
}

/// The stored `minProgressIncrement` watermarks of these webhooks and subjects.
async fn load_watermarks(
    tx: &mut Transaction<'static, Any>,
    needed: &BTreeSet<(WebhookId, String)>,
) -> Result<Watermarks> {
    let mut known = Watermarks::new();
    let needed: Vec<&(WebhookId, String)> = needed.iter().collect();
    for chunk in sized_chunks(&needed, 256) {
        let sql = format!(
            "SELECT webhook_id, subject, last_percentage FROM webhook_progress \
             WHERE (webhook_id, subject) IN (VALUES {})",
            values_placeholders(chunk.len(), 2, 1)
        );
        let mut query = sqlx::query(&sql);
        for (webhook, subject) in chunk {
            query = query.bind(webhook.db()).bind(subject.clone());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let webhook: String = row.try_get("webhook_id")?;
            known.insert(
                (
                    webhook.parse().map_err(StoreError::corrupt)?,
                    row.try_get("subject")?,
                ),
                row.try_get("last_percentage")?,
            );
        }
    }
    Ok(known)
}

fn push_watermarks(writes: &mut Writes<'_>, watermarks: &Watermarks) {
    const COLUMNS: &[&str] = &["webhook_id", "subject", "last_percentage"];
    let mut rows = Rows::new(COLUMNS);
    for ((webhook, subject), percentage) in watermarks {
        rows.add([
            webhook.db().into(),
            subject.clone().into(),
            (*percentage).into(),
        ]);
    }
    writes.push_rows(
        RowWrite::Insert {
            table: "webhook_progress",
            computed: &[],
            suffix: " ON CONFLICT (webhook_id, subject) DO UPDATE SET last_percentage = excluded.last_percentage",
        },
        rows,
    );
}

fn push_deliveries(
    writes: &mut Writes<'_>,
    queued: &[(&Event, Destination)],
    rows: &[QueuedRow<'_>],
    now: DateTime<Utc>,
) {
    const COLUMNS: &[&str] = &[
        "id",
        "tenant_id",
        "project_id",
        "event_id",
        "event_type",
        "channel",
        "webhook_id",
        "url",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
        "message",
        "lease_token",
        "lease_expires_at",
    ];
    let mut written = Rows::new(COLUMNS);
    for ((event, destination), row) in queued.iter().zip(rows) {
        let endpoint_id = match destination {
            Destination::Webhook { id, .. } => Some(id.db()),
            Destination::Push { worker, .. } => Some(worker.db()),
            Destination::Callback { .. } | Destination::Notification(_) => None,
        };
        let message = match destination {
            Destination::Notification(outgoing) => Some(to_json(outgoing)),
            _ => None,
        };
        written.add([
            row.id.db().into(),
            event.tenant_id.db().into(),
            event.project_id.db().into(),
            event.id.to_string().into(),
            event.event_type.as_str().into(),
            destination.channel().as_str().into(),
            endpoint_id.into(),
            destination.url().into(),
            DeliveryStatus::Pending.as_str().into(),
            0_i64.into(),
            to_ms(now).into(),
            to_ms(now).into(),
            to_ms(now).into(),
            message.into(),
            row.lease.map(|l| l.token.clone()).into(),
            row.lease.map(|l| to_ms(l.until)).into(),
        ]);
    }
    writes.push_rows(
        RowWrite::Insert {
            table: "deliveries",
            computed: &[],
            suffix: "",
        },
        written,
    );
}
