//! The outbox: delivery rows written with the events that cause them, claimed in batches
//! under leases, and settled with a record of every attempt. Which rows to write and
//! what an outcome means are `domain::delivery`'s rules; this module loads their inputs
//! and writes their results.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

mod fan_out;
pub(super) mod handoff;
mod health;
mod trace;

pub(super) use fan_out::{active_webhooks, write_events};
use handoff::HandoffSink;
pub use handoff::{Handed, Held};
use health::{announce_disabled, record_endpoint_health};
use trace::decode_attempt;
pub use trace::{DeliveryAttempt, EventDelivery};

use super::events::{current_request, insert_events, StagedEvent};
use super::integrations::IntegrationStatus;
use super::sealed::{callback_place, push_worker_place, slack_place, webhook_place, Sealer};
use super::signals::{Announce, Signals};
use super::webhooks::decode_rate_limit;
use super::writes::{RowWrite, Rows, Writes};
use super::{from_json, from_ms, to_ms, Backend, Result, StoreError};
use crate::domain::delivery::{self, Channel, DeliveryOutcome, DeliveryStatus};
use crate::domain::event::{Event, EventType};
use crate::domain::ids::{DeliveryId, ProjectId, TenantId, WebhookId};
use crate::domain::notify::Outgoing;
use crate::domain::rate_limit::RateLimit;
use crate::domain::retry::RetryPolicy;
use crate::domain::webhook::{SecretVersion, Webhook, WebhookStatus};

/// The dispatcher's two queues: first attempts, and deliveries that failed before.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lane {
    Fresh,
    Retry,
}

impl Lane {
    pub(super) const BOTH: [Lane; 2] = [Lane::Fresh, Lane::Retry];

    /// The lane's deliveries due at `now` (a placeholder) and leased to no live
    /// dispatcher. The status is written into the text, not bound: the partial index of
    /// each lane only serves a query that names it.
    pub(super) fn due(self, now: &str) -> String {
        let lane = match self {
            Lane::Fresh => "attempts = 0",
            Lane::Retry => "attempts > 0",
        };
        format!(
            "status = '{pending}' AND {lane} AND next_attempt_at <= {now}
             AND (lease_expires_at IS NULL OR lease_expires_at <= {now})",
            pending = DeliveryStatus::Pending.as_str(),
        )
    }
}

/// How many deliveries a claim may take: first attempts, and deliveries that already
/// failed at least once (retries), up to `total` in all, first attempts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimBudget {
    pub total: usize,
    pub retries: usize,
}

/// What the outbox holds now, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    pub due: i64,
    pub in_flight: i64,
    pub oldest_due: Option<DateTime<Utc>>,
}

/// A delivery handed to the dispatcher, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub lease_token: String,
    pub lease_expires_at: DateTime<Utc>,
    pub channel: Channel,
    pub url: String,
    pub webhook_id: Option<WebhookId>,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When it was queued, with its event.
    pub queued_at: DateTime<Utc>,
    pub event_id: String,
    /// The API request that caused the event, if one did.
    pub request_id: Option<String>,
    /// The W3C `traceparent` of that request's span, when its trace was exported: the
    /// delivery's span joins that trace.
    pub traceparent: Option<String>,
    pub payload: String,
    pub headers: BTreeMap<String, String>,
    /// `Ok(None)` for a callback of a project whose callback secret was never created;
    /// `Err` says why the stored secrets cannot be opened (sealed under a key this process
    /// was not given, or damaged), and the delivery fails with that reason.
    pub secrets: std::result::Result<Option<Vec<SecretVersion>>, String>,
    pub retry_policy: RetryPolicy,
    /// False when the webhook (or the Slack integration) was disabled or deleted after
    /// the delivery was queued.
    pub endpoint_active: bool,
    /// A Slack message's or a mail's notice and recipient.
    pub outgoing: Option<Outgoing>,
    /// The webhook's `rateLimit`, which every replica's sends to it share.
    pub rate_limit: Option<RateLimit>,
    /// The webhook was marked failing when claimed.
    pub endpoint_failing: bool,
}

impl ClaimedDelivery {
    /// A retry (an earlier attempt failed), not a first attempt.
    pub fn is_retry(&self) -> bool {
        self.attempts > 0
    }
}

/// One line of a webhook's attempt log.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEntry {
    pub delivery_id: DeliveryId,
    pub event_id: String,
    pub event_type: String,
    pub delivery_status: DeliveryStatus,
    pub attempt: DeliveryAttempt,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The outbox: what the dispatcher claims, sends and settles, and what the API shows
/// of it and queues again.
#[derive(Clone)]
pub struct Deliveries {
    pool: AnyPool,
    backend: Backend,
    signals: Signals,
    /// Opens the endpoints' secrets for the deliveries it claims.
    sealer: Sealer,
}

impl Deliveries {
    pub(super) fn new(pool: AnyPool, backend: Backend, signals: Signals, sealer: Sealer) -> Self {
        Deliveries {
            pool,
            backend,
            signals,
            sealer,
        }
    }

    /// Hands the webhook deliveries this process's writes queue straight to its
    /// dispatcher, while `in_flight` has free slots or `waiting` free places to wait
    /// for one, leased to it for `lease`; what it is handed arrives on the receiver.
    pub fn hand_off_to(
        &self,
        in_flight: std::sync::Arc<tokio::sync::Semaphore>,
        waiting: std::sync::Arc<tokio::sync::Semaphore>,
        lease: Duration,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Vec<Handed>> {
        let (sink, receiver) = HandoffSink::new(in_flight, waiting, lease, self.sealer.clone());
        self.signals.set_handoff(Some(sink));
        receiver
    }

    /// Writes no longer hand deliveries off (the dispatcher is stopping).
    pub fn stop_handoffs(&self) {
        self.signals.set_handoff(None);
    }

    /// Claims due deliveries, within `budget`, under a lease that expires at
    /// `lease_until`; an expired lease (a dead dispatcher) makes a row claimable again.
    /// On PostgreSQL this is one statement: it picks the rows (skipping those another
    /// dispatcher is picking), leases them and reads what sending them needs.
    pub async fn claim(
        &self,
        budget: ClaimBudget,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ClaimedDelivery>> {
        if budget.total == 0 {
            return Ok(Vec::new());
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let due = |lane: Lane, limit: &str| {
            format!(
                "SELECT id, next_attempt_at FROM deliveries WHERE {}
                 ORDER BY next_attempt_at LIMIT {limit}{lock}",
                lane.due("$1"),
            )
        };
        // Rows picked beyond the total are only locked until the statement ends.
        let chosen = format!(
            "WITH fresh AS ({fresh}), retry AS ({retry}),
             chosen AS (SELECT id FROM (SELECT id, 0 AS lane, next_attempt_at FROM fresh
                                        UNION ALL SELECT id, 1 AS lane, next_attempt_at FROM retry) AS c
                        ORDER BY lane, next_attempt_at LIMIT $2)",
            fresh = due(Lane::Fresh, "$2"),
            retry = due(Lane::Retry, "$3"),
        );
        let lease_token = format!("dl_{}", uuid::Uuid::new_v4().simple());
        let read = |from: &str| {
            format!(
                "SELECT d.id, d.channel, d.url, d.webhook_id, d.tenant_id, d.project_id, d.attempts, d.created_at, d.event_id, e.payload, e.request_id, e.traceparent,
                        w.headers, w.secrets, w.retry_policy, w.status AS webhook_status, w.rate_limit, w.failing_since, p.callback_secrets,
                        pw.secret AS push_secret, d.message, si.webhook_url AS slack_url, si.status AS slack_status
                 FROM {from}
                 JOIN events e ON e.id = d.event_id
                 JOIN projects p ON p.id = d.project_id
                 LEFT JOIN webhooks w ON w.id = d.webhook_id AND d.channel = '{webhook}'
                 LEFT JOIN push_workers pw ON pw.id = d.webhook_id AND d.channel = '{push}'
                 LEFT JOIN slack_integrations si ON si.project_id = d.project_id AND d.channel = '{slack}'",
                webhook = Channel::Webhook.as_str(),
                push = Channel::Push.as_str(),
                slack = Channel::Slack.as_str(),
            )
        };
        let total = budget.total as i64;
        let retries = budget.retries.min(budget.total) as i64;
        let rows = match self.backend {
            Backend::Postgres => {
                let sql = format!(
                    "{chosen},
                     leased AS (UPDATE deliveries SET lease_token = $4, lease_expires_at = $5
                                WHERE id IN (SELECT id FROM chosen)
                                RETURNING id, channel, url, webhook_id, tenant_id, project_id, attempts, created_at, event_id, message, next_attempt_at)
                     {} ORDER BY d.next_attempt_at",
                    read("leased d")
                );
                sqlx::query(&sql)
                    .bind(to_ms(now))
                    .bind(total)
                    .bind(retries)
                    .bind(lease_token.clone())
                    .bind(to_ms(lease_until))
                    .fetch_all(&self.pool)
                    .await?
            }
            Backend::Sqlite => {
                let mut tx = self.pool.begin().await?;
                let sql = format!(
                    "{chosen} {} WHERE d.id IN (SELECT id FROM chosen) ORDER BY d.next_attempt_at",
                    read("deliveries d")
                );
                let rows = sqlx::query(&sql)
                    .bind(to_ms(now))
                    .bind(total)
                    .bind(retries)
                    .fetch_all(&mut *tx)
                    .await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<String> = rows
                    .iter()
                    .map(|row| row.try_get("id"))
                    .collect::<std::result::Result<_, _>>()?;
                let update = format!(
                    "UPDATE deliveries SET lease_token = $1, lease_expires_at = $2 WHERE id IN ({})",
                    (3..ids.len() + 3)
                        .map(|i| format!("${i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut query = sqlx::query(&update)
                    .bind(lease_token.clone())
                    .bind(to_ms(lease_until));
                for id in ids {
                    query = query.bind(id);
                }
                query.execute(&mut *tx).await?;
                tx.commit().await?;
                rows
            }
        };
        rows.iter()
            .map(|row| decode_claim(&self.sealer, row, &lease_token, lease_until))
            .collect()
    }

    /// Where a rate-limited webhook's schedule stands: its next free slot, in microseconds
    /// since the epoch (`domain::rate_limit`).
    pub async fn rate_schedule(&self, webhook: WebhookId) -> Result<i64> {
        let scheduled: Option<i64> =
            sqlx::query_scalar("SELECT rate_schedule FROM webhooks WHERE id = $1")
                .bind(webhook.db())
                .fetch_optional(&self.pool)
                .await?;
        Ok(scheduled.unwrap_or(0))
    }

    /// Moves a webhook's schedule from `seen` to `next`, only if no other send (in this
    /// process or another) moved it meanwhile; false if one did.
    pub async fn move_rate_schedule(
        &self,
        webhook: WebhookId,
        seen: i64,
        next: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET rate_schedule = $1 WHERE id = $2 AND rate_schedule = $3",
        )
        .bind(next)
        .bind(webhook.db())
        .bind(seen)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pushes a lease further out before a send that waited; false if it was lost.
    pub async fn extend_lease(
        &self,
        id: DeliveryId,
        lease_token: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE deliveries SET lease_expires_at = $1 WHERE id = $2 AND lease_token = $3 AND status = '{pending}'",
            pending = DeliveryStatus::Pending.as_str()
        );
        let done = sqlx::query(&sql)
            .bind(to_ms(until))
            .bind(id.db())
            .bind(lease_token)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes the results of many attempts in one transaction: the attempt log, each
    /// delivery's new state (only while the lease is still ours), and endpoint health.
    /// On PostgreSQL, when no endpoint's health changes (the common case), that is one
    /// statement.
    pub async fn record_outcomes(
        &self,
        outcomes: &[DeliveryOutcome],
        now: DateTime<Utc>,
        disable_after: Duration,
    ) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let health = delivery::endpoint_health(outcomes, now, disable_after);
        let mut writes = Writes::new(self.backend);
        push_attempts(&mut writes, outcomes);
        push_settlements(&mut writes, outcomes, now);
        if health.is_unchanged() {
            return writes.execute_atomically(&self.pool).await;
        }
        let mut tx = self.pool.begin().await?;
        writes.execute(&mut tx).await?;
        let disabled = record_endpoint_health(&mut tx, &self.sealer, &health, now).await?;
        let announce = announce_disabled(&mut tx, self.backend, disabled, now).await?;
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok(())
    }

    /// The outbox now: deliveries due and not leased, leased (in flight), and when the
    /// oldest due one became due.
    pub async fn backlog(&self, now: DateTime<Utc>) -> Result<Backlog> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(CASE WHEN lease_expires_at IS NULL OR lease_expires_at <= $1 THEN 1 END) AS due,
                    COUNT(CASE WHEN lease_expires_at > $1 THEN 1 END) AS in_flight,
                    MIN(CASE WHEN lease_expires_at IS NULL OR lease_expires_at <= $1 THEN next_attempt_at END) AS oldest
             FROM deliveries WHERE status = '{pending}' AND next_attempt_at <= $1",
            pending = DeliveryStatus::Pending.as_str(),
        ))
        .bind(to_ms(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            due: row.try_get("due")?,
            in_flight: row.try_get("in_flight")?,
            oldest_due: row
                .try_get::<Option<i64>, _>("oldest")?
                .map(from_ms)
                .transpose()?,
        })
    }

    /// Queues a `webhook.test` event for one webhook. Returns the event and delivery ids.
    pub async fn queue_test_event(
        &self,
        webhook: &Webhook,
        now: DateTime<Utc>,
    ) -> Result<(String, DeliveryId)> {
        let mut tx = self.pool.begin().await?;
        let subject = webhook.id.to_string();
        let last: Option<i64> =
            sqlx::query("SELECT MAX(sequence) AS last FROM events WHERE subject = $1")
                .bind(subject.clone())
                .fetch_one(&mut *tx)
                .await?
                .try_get("last")?;
        let mut sequence = last.unwrap_or(0);
        let data = serde_json::json!({"webhookId": webhook.id, "webhookName": webhook.name, "message": "This is a test event from Relais."});
        let draft = crate::domain::event::EventDraft::new(EventType::WebhookTest, data);
        let events = Event::seal(
            vec![draft],
            webhook.tenant_id,
            webhook.project_id,
            &subject,
            &mut sequence,
            now,
            std::iter::repeat_with(crate::domain::ids::EventId::new),
        );
        let events: Vec<StagedEvent> = events
            .into_iter()
            .map(|event| StagedEvent::plain(event, current_request()))
            .collect();
        let tally = insert_events(&mut tx, self.backend, &events).await?;
        let delivery = DeliveryId::new();
        sqlx::query(&format!(
            "INSERT INTO deliveries (id, tenant_id, project_id, event_id, event_type, channel, webhook_id, url, \
             status, attempts, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, '{webhook}', $6, $7, '{pending}', 0, $8, $8, $8)",
            webhook = Channel::Webhook.as_str(),
            pending = DeliveryStatus::Pending.as_str(),
        ))
        .bind(delivery.db())
        .bind(webhook.tenant_id.db())
        .bind(webhook.project_id.db())
        .bind(events[0].event.id.to_string())
        .bind(EventType::WebhookTest.as_str())
        .bind(webhook.id.db())
        .bind(webhook.url.clone())
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.signals.after_commit(Announce {
            deliveries: true,
            events: tally,
            ..Default::default()
        });
        Ok((events[0].event.id.to_string(), delivery))
    }

    /// Queues again every failed delivery of the webhook created since `since`.
    pub async fn recover(
        &self,
        webhook: WebhookId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let done = sqlx::query(&format!(
            "UPDATE deliveries SET status = '{pending}', attempts = 0, next_attempt_at = $1, updated_at = $1,
                    lease_token = NULL, lease_expires_at = NULL
             WHERE webhook_id = $2 AND status = '{failed}' AND created_at >= $3",
            pending = DeliveryStatus::Pending.as_str(),
            failed = DeliveryStatus::Failed.as_str(),
        ))
        .bind(to_ms(now))
        .bind(webhook.db())
        .bind(to_ms(since))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            self.signals.deliveries_available().notify_waiters();
        }
        Ok(done.rows_affected())
    }

    /// Queues one finished delivery again, with a fresh retry budget. `Ok(None)`: no such
    /// delivery for this webhook; `Ok(Some(false))`: it is still pending.
    pub async fn retry(
        &self,
        webhook: WebhookId,
        id: DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>> {
        let row = sqlx::query("SELECT status FROM deliveries WHERE id = $1 AND webhook_id = $2")
            .bind(id.db())
            .bind(webhook.db())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        if decode_status(&row.try_get::<String, _>("status")?)? == DeliveryStatus::Pending {
            return Ok(Some(false));
        }
        sqlx::query(&format!(
            "UPDATE deliveries SET status = '{pending}', attempts = 0, next_attempt_at = $1, updated_at = $1,
                    lease_token = NULL, lease_expires_at = NULL WHERE id = $2 AND status <> '{pending}'",
            pending = DeliveryStatus::Pending.as_str(),
        ))
        .bind(to_ms(now))
        .bind(id.db())
        .execute(&self.pool)
        .await?;
        self.signals.deliveries_available().notify_waiters();
        Ok(Some(true))
    }

    /// A webhook's attempt log, newest first.
    pub async fn attempts_of_webhook(
        &self,
        webhook: WebhookId,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<AttemptEntry>> {
        let rows = sqlx::query(
            "SELECT a.delivery_id, d.event_id, d.event_type, d.status AS delivery_status, a.attempted_at,
                    a.status_code, a.latency_ms, a.response_body, a.error, a.success
             FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE a.webhook_id = $1 ORDER BY a.id DESC LIMIT $2 OFFSET $3",
        )
        .bind(webhook.db())
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptEntry {
                    delivery_id: r
                        .try_get::<String, _>("delivery_id")?
                        .parse()
                        .map_err(StoreError::corrupt)?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    delivery_status: decode_status(&r.try_get::<String, _>("delivery_status")?)?,
                    attempt: decode_attempt(r)?,
                })
            })
            .collect()
    }

    /// A webhook's deliveries (one per event), newest first.
    pub async fn of_webhook(
        &self,
        webhook: WebhookId,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DeliveryView>> {
        let mut sql =
            format!("SELECT {DELIVERY_VIEW_COLUMNS} FROM deliveries WHERE webhook_id = $1");
        if status.is_some() {
            sql.push_str(" AND status = $4");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3");
        let mut query = sqlx::query(&sql)
            .bind(webhook.db())
            .bind(limit as i64)
            .bind(offset as i64);
        if let Some(s) = status {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode_delivery_view).collect()
    }

    /// Earliest time a pending delivery becomes due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(&format!(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries WHERE status = '{pending}'",
            pending = DeliveryStatus::Pending.as_str(),
        ))
        .fetch_one(&self.pool)
        .await?;
        row.try_get::<Option<i64>, _>("due")?
            .map(from_ms)
            .transpose()
    }

    /// Removes settled deliveries, attempts and events older than `before`. Events that a
    /// pending delivery still needs are kept.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let cutoff = to_ms(before);
        let mut removed = 0;
        let pending = DeliveryStatus::Pending.as_str();
        for sql in [
            "DELETE FROM delivery_attempts WHERE attempted_at < $1".to_owned(),
            format!("DELETE FROM deliveries WHERE status <> '{pending}' AND updated_at < $1"),
            format!(
                "DELETE FROM events WHERE created_at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = '{pending}')"
            ),
        ] {
            removed += sqlx::query(&sql)
                .bind(cutoff)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }
}

/// The attempt log's rows for `outcomes` that made an attempt.
fn push_attempts(writes: &mut Writes<'_>, outcomes: &[DeliveryOutcome]) {
    const COLUMNS: &[&str] = &[
        "delivery_id",
        "webhook_id",
        "project_id",
        "attempted_at",
        "status_code",
        "latency_ms",
        "response_body",
        "error",
        "success",
    ];
    let mut rows = Rows::new(COLUMNS);
    for outcome in outcomes {
        let Some(a) = outcome.attempt.as_ref() else {
            continue;
        };
        rows.add([
            outcome.id.db().into(),
            outcome.webhook_id.map(|w| w.db()).into(),
            outcome.project_id.db().into(),
            to_ms(a.attempted_at).into(),
            a.status_code.map(i64::from).into(),
            a.latency_ms.into(),
            a.response_body.clone().into(),
            a.error.clone().into(),
            i64::from(outcome.succeeded()).into(),
        ]);
    }
    writes.push_rows(
        RowWrite::Insert {
            table: "delivery_attempts",
            computed: &[],
            suffix: "",
        },
        rows,
    );
}

/// Each delivery's new state, applied only while the lease is still ours.
fn push_settlements(writes: &mut Writes<'_>, outcomes: &[DeliveryOutcome], now: DateTime<Utc>) {
    const COLUMNS: &[&str] = &[
        "id",
        "lease_token",
        "status",
        "attempted",
        "next_attempt_at",
        "delivered_at",
        "status_code",
        "last_error",
        "updated_at",
    ];
    let mut rows = Rows::new(COLUMNS);
    for outcome in outcomes {
        let settled = outcome.settled_state(now);
        rows.add([
            outcome.id.db().into(),
            outcome.lease_token.clone().into(),
            settled.status.as_str().into(),
            i64::from(outcome.attempt.is_some()).into(),
            settled.next_attempt_at.map(to_ms).into(),
            settled.delivered_at.map(to_ms).into(),
            outcome
                .attempt
                .as_ref()
                .and_then(|a| a.status_code)
                .map(i64::from)
                .into(),
            settled.last_error.into(),
            to_ms(now).into(),
        ]);
    }
    writes.push_rows(
        RowWrite::Update {
            table: "deliveries",
            set: "status = v.status, attempts = deliveries.attempts + v.attempted, \
                  next_attempt_at = COALESCE(v.next_attempt_at, deliveries.next_attempt_at), \
                  delivered_at = v.delivered_at, \
                  last_status_code = COALESCE(v.status_code, deliveries.last_status_code), \
                  last_error = v.last_error, lease_token = NULL, lease_expires_at = NULL, \
                  updated_at = v.updated_at",
            condition: "deliveries.id = v.id AND deliveries.lease_token = v.lease_token",
        },
        rows,
    );
}

/// The columns [`decode_delivery_view`] reads.
const DELIVERY_VIEW_COLUMNS: &str = "id, event_id, event_type, status, attempts, next_attempt_at, \
    last_status_code, last_error, created_at, delivered_at";

/// A delivery row as people read it (its next attempt only while it is pending).
fn decode_delivery_view(r: &AnyRow) -> Result<DeliveryView> {
    let status = decode_status(&r.try_get::<String, _>("status")?)?;
    let next: i64 = r.try_get("next_attempt_at")?;
    Ok(DeliveryView {
        id: r
            .try_get::<String, _>("id")?
            .parse()
            .map_err(StoreError::corrupt)?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| from_ms(next))
            .transpose()?,
        status,
        attempts: r.try_get("attempts")?,
        last_status_code: r.try_get("last_status_code")?,
        last_error: r.try_get("last_error")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        delivered_at: r
            .try_get::<Option<i64>, _>("delivered_at")?
            .map(from_ms)
            .transpose()?,
    })
}

pub(super) fn decode_status(column: &str) -> Result<DeliveryStatus> {
    DeliveryStatus::parse(column)
        .ok_or_else(|| StoreError::corrupt(format!("delivery status {column}")))
}

/// The signing secrets (their versions) of a webhook or a project's callbacks, stored
/// sealed at `place` in `column`. `Ok(Err(why))` when no key of this process opens them,
/// or what they open to is not secrets: the delivery then fails with that reason (see
/// [`ClaimedDelivery::secrets`]), and one endpoint's damaged row never fails a claim of
/// other tenants' deliveries, or the write that queues a delivery.
fn open_secret_versions(
    sealer: &Sealer,
    stored: Option<&str>,
    place: &str,
    column: &str,
) -> Result<std::result::Result<Option<Vec<SecretVersion>>, String>> {
    let Some(stored) = stored else {
        return Ok(Ok(None));
    };
    Ok(match sealer.open_or_reason(stored, place)? {
        Ok(text) => from_json(&text, column)
            .map(Some)
            .map_err(|e| format!("the stored secrets are damaged ({e})")),
        Err(why) => Err(why),
    })
}

/// `sealer` opens the endpoint's secrets; one that cannot be opened fails only its own
/// delivery (see [`ClaimedDelivery::secrets`]), never the claim.
fn decode_claim(
    sealer: &Sealer,
    row: &AnyRow,
    lease_token: &str,
    lease_until: DateTime<Utc>,
) -> Result<ClaimedDelivery> {
    let channel: String = row.try_get("channel")?;
    let channel = Channel::parse(&channel)
        .ok_or_else(|| StoreError::corrupt(format!("channel {channel}")))?;
    let webhook_status: Option<String> = row.try_get("webhook_status")?;
    let endpoint_id = row.try_get::<Option<String>, _>("webhook_id")?;
    let project_id: String = row.try_get("project_id")?;
    let mut url: String = row.try_get("url")?;
    let (column, place) = match channel {
        Channel::Webhook => (
            "secrets",
            webhook_place(endpoint_id.as_deref().unwrap_or_default()),
        ),
        Channel::Callback => ("callback_secrets", callback_place(&project_id)),
        Channel::Push => (
            "push_secret",
            push_worker_place(endpoint_id.as_deref().unwrap_or_default()),
        ),
        // Not a signing secret: the URL to post to, which only the sender sees.
        Channel::Slack => ("slack_url", slack_place(&project_id)),
        Channel::Email => ("", String::new()),
    };
    let stored = match channel {
        Channel::Email => None,
        _ => row.try_get::<Option<String>, _>(column)?,
    };
    let secrets = match (channel, stored) {
        (Channel::Webhook | Channel::Callback, stored) => {
            open_secret_versions(sealer, stored.as_deref(), &place, column)?
        }
        (_, None) => Ok(None),
        (_, Some(stored)) => match sealer.open_or_reason(&stored, &place)? {
            Ok(text) if channel == Channel::Slack => {
                url = text;
                Ok(None)
            }
            Ok(text) => Ok(Some(vec![SecretVersion {
                secret: text,
                expires_at: None,
            }])),
            Err(why) => Err(why),
        },
    };
    let (headers, retry_policy) = match channel {
        Channel::Webhook => (
            row.try_get::<Option<String>, _>("headers")?
                .map(|h| from_json(&h, "headers"))
                .transpose()?
                .unwrap_or_default(),
            row.try_get::<Option<String>, _>("retry_policy")?
                .map(|p| from_json(&p, "retry_policy"))
                .transpose()?
                .unwrap_or(RetryPolicy::WEBHOOK_DEFAULT),
        ),
        Channel::Callback | Channel::Push | Channel::Slack | Channel::Email => {
            (BTreeMap::new(), RetryPolicy::WEBHOOK_DEFAULT)
        }
    };
    Ok(ClaimedDelivery {
        id: row
            .try_get::<String, _>("id")?
            .parse()
            .map_err(StoreError::corrupt)?,
        lease_token: lease_token.to_owned(),
        lease_expires_at: lease_until,
        channel,
        url,
        webhook_id: match channel {
            Channel::Webhook => endpoint_id
                .map(|w| w.parse().map_err(StoreError::corrupt))
                .transpose()?,
            _ => None,
        },
        tenant_id: row
            .try_get::<String, _>("tenant_id")?
            .parse()
            .map_err(StoreError::corrupt)?,
        project_id: project_id.parse().map_err(StoreError::corrupt)?,
        attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
        queued_at: from_ms(row.try_get("created_at")?)?,
        event_id: row.try_get("event_id")?,
        request_id: row.try_get("request_id")?,
        traceparent: row.try_get("traceparent")?,
        payload: row.try_get("payload")?,
        headers,
        secrets,
        retry_policy,
        endpoint_active: match channel {
            Channel::Webhook => {
                webhook_status.as_deref().and_then(WebhookStatus::parse)
                    == Some(WebhookStatus::Active)
            }
            Channel::Callback => true,
            // A deleted worker has nobody left to tell.
            Channel::Push => row.try_get::<Option<String>, _>("push_secret")?.is_some(),
            Channel::Slack => {
                row.try_get::<Option<String>, _>("slack_status")?.as_deref()
                    == Some(IntegrationStatus::Active.as_str())
            }
            Channel::Email => true,
        },
        outgoing: row
            .try_get::<Option<String>, _>("message")?
            .map(|m| from_json(&m, "message"))
            .transpose()?,
        rate_limit: match channel {
            Channel::Webhook => decode_rate_limit(row)?,
            _ => None,
        },
        endpoint_failing: channel == Channel::Webhook
            && row.try_get::<Option<i64>, _>("failing_since")?.is_some(),
    })
}
