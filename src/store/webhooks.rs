use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::idempotency::{take_idempotency_key, IdempotencyRecord};
use super::sealed::{callback_place, idempotency_place, webhook_place, Sealer};
use super::{from_json, from_ms, to_json, to_ms, CreateOutcome, Result, StoreError};
use crate::domain::delivery::{Channel, DeliveryStatus};
use crate::domain::event::EventType;
use crate::domain::ids::{OperationId, ProjectId, TenantId, WebhookId};
use crate::domain::operation::Callbacks;
use crate::domain::rate_limit::RateLimit;
use crate::domain::webhook::{SecretVersion, Webhook, WebhookStatus};

/// The idempotency scope of webhook registrations: their stored answers show the new
/// webhook's secret, so they are sealed like it.
pub const WEBHOOK_REGISTRATION_SCOPE: &str = "webhook.create";

const COLUMNS: &str =
    "id, tenant_id, project_id, url, name, events, filters, retry_policy, headers, \
    secrets, status, disabled_reason, failing_since, created_at, updated_at, rate_limit, labels";

/// Real figures from the outbox, for `deliveryStats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryStats {
    pub total: i64,
    pub successful: i64,
    pub failed: i64,
    pub pending: i64,
    pub average_response_ms: Option<f64>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// How one operation's callbacks fared, counted from the outbox: the seed's
/// `progressCallbacksSent` (progress callbacks sent at least once), `lastProgressCallback`
/// (the last attempt at one), `callbacksSuccessful` and `callbacksFailed` (delivered, and
/// given up on, of every kind), and those still on their way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallbackStats {
    pub progress_sent: i64,
    pub last_progress_at: Option<DateTime<Utc>>,
    pub successful: i64,
    pub failed: i64,
    pub pending: i64,
}

/// How the Slack messages and mails about one operation or batch fared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationStats {
    pub sent: i64,
    pub failed: i64,
    pub pending: i64,
}

/// Webhook subscriptions, their delivery figures, and the projects' callback secrets.
#[derive(Clone)]
pub struct Webhooks {
    pool: AnyPool,
    sealer: Sealer,
}

impl Webhooks {
    pub(super) fn new(pool: AnyPool, sealer: Sealer) -> Self {
        Webhooks { pool, sealer }
    }

    pub async fn insert(
        &self,
        webhook: &Webhook,
        idempotency: Option<IdempotencyRecord<'_>>,
    ) -> Result<CreateOutcome> {
        let secrets = self.seal_webhook_secrets(webhook)?;
        let mut tx = self.pool.begin().await?;
        if let Some(record) = idempotency {
            let place = idempotency_place(&webhook.project_id.db(), record.scope, record.key);
            let response = self.sealer.seal(record.response, &place)?;
            let record = IdempotencyRecord {
                response: &response,
                ..record
            };
            if !take_idempotency_key(&mut tx, webhook.project_id, &record, webhook.created_at)
                .await?
            {
                return Ok(CreateOutcome::IdempotencyKeyTaken);
            }
        }
        let sql = format!(
            "INSERT INTO webhooks ({COLUMNS}) VALUES {}",
            super::values_placeholders(1, COLUMNS.split(", ").count(), 1)
        );
        bind_webhook(sqlx::query(&sql), webhook, secrets)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    /// Writes every field of `webhook`. Returns false if it no longer exists.
    pub async fn update(&self, webhook: &Webhook) -> Result<bool> {
        let assignments: Vec<String> = COLUMNS
            .split(", ")
            .enumerate()
            .skip(1)
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        let sql = format!(
            "UPDATE webhooks SET {} WHERE id = $1",
            assignments.join(", ")
        );
        let secrets = self.seal_webhook_secrets(webhook)?;
        let done = bind_webhook(sqlx::query(&sql), webhook, secrets)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: WebhookId,
    ) -> Result<Option<Webhook>> {
        let row = self.webhook_row(tenant, project, id).await?;
        row.map(|row| decode_webhook(&row, self.open_webhook_secrets(&row)?))
            .transpose()
    }

    /// The webhook without its secrets (left empty, not opened): it cannot be written back.
    pub async fn get_settings(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: WebhookId,
    ) -> Result<Option<Webhook>> {
        let row = self.webhook_row(tenant, project, id).await?;
        row.map(|row| decode_webhook(&row, Vec::new())).transpose()
    }

    async fn webhook_row(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: WebhookId,
    ) -> Result<Option<AnyRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND tenant_id = $2 AND project_id = $3"
        );
        Ok(sqlx::query(&sql)
            .bind(id.db())
            .bind(tenant.db())
            .bind(project.db())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The project's webhooks without their secrets (left empty, not opened), for listing.
    pub async fn list(&self, tenant: TenantId, project: ProjectId) -> Result<Vec<Webhook>> {
        let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 AND project_id = $2 ORDER BY created_at, id");
        let rows = sqlx::query(&sql)
            .bind(tenant.db())
            .bind(project.db())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| decode_webhook(row, Vec::new()))
            .collect()
    }

    /// The project's active webhooks, which events of its operations are routed to.
    pub async fn routing(&self, project: ProjectId) -> Result<Vec<Webhook>> {
        super::deliveries::active_webhooks(&self.pool, project).await
    }

    /// Deletes the webhook and whatever it still had to deliver.
    pub async fn delete(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: WebhookId,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2 AND project_id = $3",
        )
        .bind(id.db())
        .bind(tenant.db())
        .bind(project.db())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(&format!(
            "DELETE FROM deliveries WHERE webhook_id = $1 AND status = '{pending}'",
            pending = DeliveryStatus::Pending.as_str()
        ))
        .bind(id.db())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM webhook_progress WHERE webhook_id = $1")
            .bind(id.db())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Delivery figures per webhook of the project, or of `only` that webhook.
    pub async fn stats(
        &self,
        project: ProjectId,
        only: Option<WebhookId>,
    ) -> Result<Vec<(String, DeliveryStats)>> {
        let one = if only.is_some() {
            " AND webhook_id = $2"
        } else {
            ""
        };
        fn bind(sql: &str, project: ProjectId, only: Option<WebhookId>) -> AnyQuery<'_> {
            let query = sqlx::query(sql).bind(project.db());
            match only {
                Some(id) => query.bind(id.db()),
                None => query,
            }
        }
        let counts = format!(
            "SELECT webhook_id,
                    COUNT(*) AS total,
                    COUNT(*) FILTER (WHERE status = '{delivered}') AS ok,
                    COUNT(*) FILTER (WHERE status = '{failed}') AS failed,
                    COUNT(*) FILTER (WHERE status = '{pending}') AS pending
             FROM deliveries WHERE project_id = $1 AND channel = '{webhook}'{one} GROUP BY webhook_id",
            delivered = DeliveryStatus::Delivered.as_str(),
            failed = DeliveryStatus::Failed.as_str(),
            pending = DeliveryStatus::Pending.as_str(),
            webhook = Channel::Webhook.as_str(),
        );
        let rows = bind(&counts, project, only).fetch_all(&self.pool).await?;
        let timing = format!(
            "SELECT webhook_id, CAST(AVG(latency_ms) AS DOUBLE PRECISION) AS mean_ms, MAX(attempted_at) AS last_at
             FROM delivery_attempts WHERE project_id = $1 AND webhook_id IS NOT NULL AND status_code IS NOT NULL{one}
             GROUP BY webhook_id"
        );
        let timing = bind(&timing, project, only).fetch_all(&self.pool).await?;
        let mut stats: Vec<(String, DeliveryStats)> = Vec::new();
        for row in &rows {
            stats.push((
                row.try_get("webhook_id")?,
                DeliveryStats {
                    total: row.try_get("total")?,
                    successful: row.try_get("ok")?,
                    failed: row.try_get("failed")?,
                    pending: row.try_get("pending")?,
                    ..Default::default()
                },
            ));
        }
        for row in &timing {
            let id: String = row.try_get("webhook_id")?;
            let mean: Option<f64> = row.try_get("mean_ms")?;
            let last: Option<i64> = row.try_get("last_at")?;
            if let Some((_, s)) = stats.iter_mut().find(|(w, _)| *w == id) {
                s.average_response_ms = mean;
                s.last_attempt_at = last.map(from_ms).transpose()?;
            }
        }
        Ok(stats)
    }

    fn seal_webhook_secrets(&self, webhook: &Webhook) -> Result<String> {
        // Read without its secrets, a webhook written back would lose them.
        if webhook.secrets.is_empty() {
            return Err(StoreError::corrupt(format!(
                "webhook {} has no secret to write",
                webhook.id
            )));
        }
        self.sealer
            .seal(&to_json(&webhook.secrets), &webhook_place(&webhook.id.db()))
    }

    fn open_webhook_secrets(&self, row: &AnyRow) -> Result<Vec<SecretVersion>> {
        let place = webhook_place(&row.try_get::<String, _>("id")?);
        from_json(
            &self
                .sealer
                .open(&row.try_get::<String, _>("secrets")?, &place)?,
            "secrets",
        )
    }

    /// How the callbacks of `operation` fared so far (within the outbox's retention).
    pub async fn callback_stats(
        &self,
        project: ProjectId,
        operation: OperationId,
    ) -> Result<CallbackStats> {
        let progress: Vec<String> = Callbacks::PROGRESS_EVENTS
            .iter()
            .map(|e| format!("'{}'", e.as_str()))
            .collect();
        let sql = format!(
            "SELECT COUNT(*) FILTER (WHERE d.event_type IN ({progress}) AND d.attempts > 0) AS progress_sent,
                    COUNT(*) FILTER (WHERE d.status = '{delivered}') AS ok,
                    COUNT(*) FILTER (WHERE d.status = '{failed}') AS failed,
                    COUNT(*) FILTER (WHERE d.status = '{pending}') AS pending,
                    (SELECT MAX(a.attempted_at) FROM delivery_attempts a
                     JOIN deliveries p ON p.id = a.delivery_id
                     JOIN events pe ON pe.id = p.event_id
                     WHERE pe.subject = $1 AND pe.project_id = $2 AND p.channel = '{callback}'
                       AND p.event_type IN ({progress})) AS last_progress
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE e.subject = $1 AND e.project_id = $2 AND d.channel = '{callback}'",
            progress = progress.join(", "),
            delivered = DeliveryStatus::Delivered.as_str(),
            failed = DeliveryStatus::Failed.as_str(),
            pending = DeliveryStatus::Pending.as_str(),
            callback = Channel::Callback.as_str(),
        );
        let row = sqlx::query(&sql)
            .bind(operation.to_string())
            .bind(project.db())
            .fetch_one(&self.pool)
            .await?;
        Ok(CallbackStats {
            progress_sent: row.try_get("progress_sent")?,
            last_progress_at: row
                .try_get::<Option<i64>, _>("last_progress")?
                .map(from_ms)
                .transpose()?,
            successful: row.try_get("ok")?,
            failed: row.try_get("failed")?,
            pending: row.try_get("pending")?,
        })
    }

    /// How the notifications about `subject` (an operation or a batch id) fared so far.
    pub async fn notification_stats(
        &self,
        project: ProjectId,
        subject: &str,
    ) -> Result<NotificationStats> {
        let sql = format!(
            "SELECT COUNT(*) FILTER (WHERE d.status = '{delivered}') AS sent,
                    COUNT(*) FILTER (WHERE d.status = '{failed}') AS failed,
                    COUNT(*) FILTER (WHERE d.status = '{pending}') AS pending
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE e.subject = $1 AND e.project_id = $2 AND d.channel IN ('{slack}', '{email}')",
            delivered = DeliveryStatus::Delivered.as_str(),
            failed = DeliveryStatus::Failed.as_str(),
            pending = DeliveryStatus::Pending.as_str(),
            slack = Channel::Slack.as_str(),
            email = Channel::Email.as_str(),
        );
        let row = sqlx::query(&sql)
            .bind(subject.to_owned())
            .bind(project.db())
            .fetch_one(&self.pool)
            .await?;
        Ok(NotificationStats {
            sent: row.try_get("sent")?,
            failed: row.try_get("failed")?,
            pending: row.try_get("pending")?,
        })
    }

    /// The project's callback signing secrets, creating the first one on demand.
    pub async fn callback_secrets(
        &self,
        project: ProjectId,
        generate: impl FnOnce() -> String,
    ) -> Result<Vec<SecretVersion>> {
        let row = sqlx::query("SELECT callback_secrets FROM projects WHERE id = $1")
            .bind(project.db())
            .fetch_one(&self.pool)
            .await?;
        let place = callback_place(&project.db());
        if let Some(text) = row.try_get::<Option<String>, _>("callback_secrets")? {
            return from_json(&self.sealer.open(&text, &place)?, "callback_secrets");
        }
        let first = vec![SecretVersion {
            secret: generate(),
            expires_at: None,
        }];
        // Two first readers race: the one that writes first wins, the other reads it back.
        sqlx::query(
            "UPDATE projects SET callback_secrets = $1 WHERE id = $2 AND callback_secrets IS NULL",
        )
        .bind(self.sealer.seal(&to_json(&first), &place)?)
        .bind(project.db())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT callback_secrets FROM projects WHERE id = $1")
            .bind(project.db())
            .fetch_one(&self.pool)
            .await?;
        let text: String = row.try_get("callback_secrets")?;
        from_json(&self.sealer.open(&text, &place)?, "callback_secrets")
    }

    pub async fn set_callback_secrets(
        &self,
        project: ProjectId,
        secrets: &[SecretVersion],
    ) -> Result<()> {
        let sealed = self
            .sealer
            .seal(&to_json(&secrets), &callback_place(&project.db()))?;
        sqlx::query("UPDATE projects SET callback_secrets = $1 WHERE id = $2")
            .bind(sealed)
            .bind(project.db())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// `secrets`: the webhook's secrets as sealed for its row.
fn bind_webhook<'q>(query: AnyQuery<'q>, w: &Webhook, secrets: String) -> AnyQuery<'q> {
    let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
    query
        .bind(w.id.db())
        .bind(w.tenant_id.db())
        .bind(w.project_id.db())
        .bind(w.url.clone())
        .bind(w.name.clone())
        .bind(to_json(&events))
        .bind(to_json(&w.filters))
        .bind(to_json(&w.retry_policy))
        .bind(to_json(&w.headers))
        .bind(secrets)
        .bind(w.status.as_str())
        .bind(w.disabled_reason.clone())
        .bind(w.failing_since.map(to_ms))
        .bind(to_ms(w.created_at))
        .bind(to_ms(w.updated_at))
        .bind(w.rate_limit.map(|limit| i64::from(limit.per_second())))
        .bind(to_json(&w.labels))
}

/// A webhook row, with its secrets as opened (or none, where only routing needs it).
pub(super) fn decode_webhook(row: &AnyRow, secrets: Vec<SecretVersion>) -> Result<Webhook> {
    let text = |c: &str| -> Result<String> { Ok(row.try_get::<String, _>(c)?) };
    let events: Vec<String> = from_json(&text("events")?, "events")?;
    let status = text("status")?;
    Ok(Webhook {
        id: text("id")?.parse().map_err(StoreError::corrupt)?,
        tenant_id: text("tenant_id")?.parse().map_err(StoreError::corrupt)?,
        project_id: text("project_id")?.parse().map_err(StoreError::corrupt)?,
        url: text("url")?,
        name: text("name")?,
        events: events
            .iter()
            .map(|e| {
                EventType::parse(e).ok_or_else(|| StoreError::corrupt(format!("event type {e}")))
            })
            .collect::<Result<_>>()?,
        filters: from_json(&text("filters")?, "filters")?,
        retry_policy: from_json(&text("retry_policy")?, "retry_policy")?,
        headers: from_json(&text("headers")?, "headers")?,
        rate_limit: decode_rate_limit(row)?,
        labels: from_json(&text("labels")?, "labels")?,
        secrets,
        status: WebhookStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("webhook status {status}")))?,
        disabled_reason: row.try_get("disabled_reason")?,
        failing_since: row
            .try_get::<Option<i64>, _>("failing_since")?
            .map(from_ms)
            .transpose()?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

/// A webhook row's `rate_limit` column.
pub(super) fn decode_rate_limit(row: &AnyRow) -> Result<Option<RateLimit>> {
    row.try_get::<Option<i64>, _>("rate_limit")?
        .map(|n| {
            RateLimit::new(u64::try_from(n).unwrap_or(0), "rate_limit").map_err(StoreError::corrupt)
        })
        .transpose()
}
