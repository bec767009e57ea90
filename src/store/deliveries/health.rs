//! What a batch of outcomes does to endpoints: failing since, recovered, disabled; and,
//! for each endpoint this transaction disabled, the `endpoint.disabled` event that tells
//! the feed, the webhooks that take it and the project's alert contacts.

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};

use super::write_events;
use crate::domain::delivery::{DisableReason, EndpointHealth};
use crate::domain::event::{Event, EventDraft, EventType};
use crate::domain::ids::{EventId, ProjectId, TenantId, WebhookId};
use crate::domain::notify::{masked_url, DisabledEndpoint, EndpointKind};
use crate::domain::webhook::WebhookStatus;
use crate::store::events::StagedEvent;
use crate::store::integrations::{decode_contacts, IntegrationStatus};
use crate::store::sealed::{slack_place, Sealer};
use crate::store::signals::Announce;
use crate::store::writes::Writes;
use crate::store::{from_ms, to_ms, Backend, Result, StoreError};

/// An endpoint that the transaction recording outcomes disabled.
pub(super) struct Disabled {
    tenant: TenantId,
    project: ProjectId,
    endpoint: DisabledEndpoint,
}

/// Marks endpoints failing, recovered or disabled as `health` says; the ones it disabled
/// (only those this transaction turned from active, so each is alerted once).
pub(super) async fn record_endpoint_health(
    tx: &mut Transaction<'static, Any>,
    sealer: &Sealer,
    health: &EndpointHealth,
    now: DateTime<Utc>,
) -> Result<Vec<Disabled>> {
    let mut disabled = Vec::new();
    for w in &health.recovered {
        sqlx::query(
            "UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
        )
        .bind(w.db())
        .execute(&mut **tx)
        .await?;
    }
    let (active, inactive) = (
        WebhookStatus::Active.as_str(),
        WebhookStatus::Disabled.as_str(),
    );
    for w in &health.failing {
        sqlx::query(
            "UPDATE webhooks SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL",
        )
        .bind(to_ms(now))
        .bind(w.db())
        .execute(&mut **tx)
        .await?;
        let reason = health.failing_reason.to_string();
        let done = sqlx::query(&format!(
            "UPDATE webhooks SET status = '{inactive}', disabled_reason = $1, updated_at = $2
             WHERE id = $3 AND status = '{active}' AND failing_since <= $4"
        ))
        .bind(reason.clone())
        .bind(to_ms(now))
        .bind(w.db())
        .bind(to_ms(health.disable_failing_since))
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() > 0 {
            tracing::warn!(webhook_id = %w, "webhook disabled after failing continuously");
            disabled.push(disabled_webhook(tx, *w, reason, now).await?);
        }
    }
    for w in &health.gone {
        let reason = DisableReason::Gone.to_string();
        let done = sqlx::query(&format!(
            "UPDATE webhooks SET status = '{inactive}', disabled_reason = $1, updated_at = $2 WHERE id = $3 AND status = '{active}'"
        ))
        .bind(reason.clone())
        .bind(to_ms(now))
        .bind(w.db())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() > 0 {
            tracing::warn!(webhook_id = %w, "webhook disabled: receiver answered 410 Gone");
            disabled.push(disabled_webhook(tx, *w, reason, now).await?);
        }
    }
    for (project, why) in &health.slack_gone {
        let done = sqlx::query(
            "UPDATE slack_integrations SET status = $1, disabled_reason = $2, disabled_at = $3, updated_at = $3
             WHERE project_id = $4 AND status = $5",
        )
        .bind(IntegrationStatus::Disabled.as_str())
        .bind(why.clone())
        .bind(to_ms(now))
        .bind(project.db())
        .bind(IntegrationStatus::Active.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            continue;
        }
        tracing::warn!(project_id = %project, reason = %why, "Slack integration disabled");
        let row = sqlx::query(
            "SELECT tenant_id, webhook_url FROM slack_integrations WHERE project_id = $1",
        )
        .bind(project.db())
        .fetch_one(&mut **tx)
        .await?;
        let tenant: TenantId = row
            .try_get::<String, _>("tenant_id")?
            .parse()
            .map_err(StoreError::corrupt)?;
        let url = match sealer.open_or_reason(
            &row.try_get::<String, _>("webhook_url")?,
            &slack_place(&project.db()),
        )? {
            Ok(url) => masked_url(&url),
            Err(_) => "the project's Slack incoming webhook".to_owned(),
        };
        disabled.push(Disabled {
            tenant,
            project: *project,
            endpoint: DisabledEndpoint {
                kind: EndpointKind::Slack,
                id: "slack".to_owned(),
                name: None,
                url,
                reason: why.clone(),
                failing_since: None,
                disabled_at: now,
                reenable: format!(
                    "PUT /api/{tenant}/{project}/async/integrations/slack with its webhookUrl"
                ),
            },
        });
    }
    Ok(disabled)
}

async fn disabled_webhook(
    tx: &mut Transaction<'static, Any>,
    webhook: WebhookId,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Disabled> {
    let row = sqlx::query(
        "SELECT tenant_id, project_id, url, name, failing_since FROM webhooks WHERE id = $1",
    )
    .bind(webhook.db())
    .fetch_one(&mut **tx)
    .await?;
    let tenant: TenantId = row
        .try_get::<String, _>("tenant_id")?
        .parse()
        .map_err(StoreError::corrupt)?;
    let project: ProjectId = row
        .try_get::<String, _>("project_id")?
        .parse()
        .map_err(StoreError::corrupt)?;
    Ok(Disabled {
        tenant,
        project,
        endpoint: DisabledEndpoint {
            kind: EndpointKind::Webhook,
            id: webhook.to_string(),
            name: Some(row.try_get("name")?),
            url: row.try_get("url")?,
            reason,
            failing_since: row
                .try_get::<Option<i64>, _>("failing_since")?
                .map(from_ms)
                .transpose()?,
            disabled_at: now,
            reenable: format!("POST /api/{tenant}/{project}/async/webhooks/{webhook}/enable"),
        },
    })
}

/// An `endpoint.disabled` event for each endpoint disabled, in the same transaction: to
/// the events feed, the project's webhooks that take it, and its alert contacts.
pub(super) async fn announce_disabled(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    disabled: Vec<Disabled>,
    now: DateTime<Utc>,
) -> Result<Announce> {
    let mut announce = Announce::default();
    for d in disabled {
        let contacts = sqlx::query("SELECT email, slack FROM alert_contacts WHERE project_id = $1")
            .bind(d.project.db())
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| decode_contacts(&row))
            .transpose()?;
        let slack_active =
            sqlx::query("SELECT status FROM slack_integrations WHERE project_id = $1")
                .bind(d.project.db())
                .fetch_optional(&mut **tx)
                .await?
                .map(|row| row.try_get::<String, _>("status"))
                .transpose()?
                .as_deref()
                == Some(IntegrationStatus::Active.as_str());
        let notify = contacts.and_then(|c| c.alert(d.endpoint.clone(), slack_active));
        let subject = match d.endpoint.kind {
            EndpointKind::Webhook => d.endpoint.id.clone(),
            EndpointKind::Slack => format!("slack:{}", d.project),
        };
        let last: Option<i64> =
            sqlx::query("SELECT MAX(sequence) AS last FROM events WHERE subject = $1")
                .bind(subject.clone())
                .fetch_one(&mut **tx)
                .await?
                .try_get("last")?;
        let mut sequence = last.unwrap_or(0);
        let data = serde_json::to_value(&d.endpoint).map_err(StoreError::corrupt)?;
        let events: Vec<StagedEvent> = Event::seal(
            vec![EventDraft::new(EventType::EndpointDisabled, data)],
            d.tenant,
            d.project,
            &subject,
            &mut sequence,
            now,
            std::iter::repeat_with(EventId::new),
        )
        .into_iter()
        .map(|event| StagedEvent {
            event,
            callback: None,
            stop_notice: None,
            notify: notify.clone(),
            request: None,
            payload: Default::default(),
        })
        .collect();
        // Rare: claimed as any delivery queued without a dispatcher at hand.
        announce.absorb(write_events(tx, Writes::new(backend), backend, &events, now, None).await?);
    }
    Ok(announce)
}
