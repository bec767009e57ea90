//! What became of some events: their deliveries, whatever the channel, and each attempt,
//! for people following one operation.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::super::{from_ms, placeholders, Result, StoreError};
use super::{decode_delivery_view, Deliveries, DeliveryView, DELIVERY_VIEW_COLUMNS};
use crate::domain::delivery::Channel;
use crate::domain::ids::ProjectId;

/// One delivery of an event, to whichever destination, with its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDelivery {
    pub delivery: DeliveryView,
    pub channel: Channel,
    /// The webhook's or push worker's id; `None` for callbacks, Slack and mail.
    pub endpoint_id: Option<String>,
    pub attempts: Vec<DeliveryAttempt>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub success: bool,
}

/// A `delivery_attempts` row's account of one attempt.
pub(super) fn decode_attempt(r: &AnyRow) -> Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        attempted_at: from_ms(r.try_get("attempted_at")?)?,
        status_code: r.try_get("status_code")?,
        latency_ms: r.try_get("latency_ms")?,
        response_body: r.try_get("response_body")?,
        error: r.try_get("error")?,
        success: r.try_get::<i64, _>("success")? == 1,
    })
}

impl Deliveries {
    /// The deliveries of some of a project's events, each with its attempts in order.
    /// The caller bounds `event_ids` (a page of events); attempts are bounded by the
    /// retry policies.
    pub async fn of_events(
        &self,
        project: ProjectId,
        event_ids: &[String],
    ) -> Result<Vec<EventDelivery>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {DELIVERY_VIEW_COLUMNS}, channel, webhook_id
             FROM deliveries WHERE project_id = $1 AND event_id IN ({}) ORDER BY created_at, id",
            placeholders(2, event_ids.len())
        );
        let mut query = sqlx::query(&sql).bind(project.db());
        for id in event_ids {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut deliveries = rows
            .iter()
            .map(|r| {
                let channel: String = r.try_get("channel")?;
                Ok(EventDelivery {
                    delivery: decode_delivery_view(r)?,
                    channel: Channel::parse(&channel)
                        .ok_or_else(|| StoreError::corrupt(format!("channel {channel}")))?,
                    endpoint_id: r.try_get("webhook_id")?,
                    attempts: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if deliveries.is_empty() {
            return Ok(deliveries);
        }
        let index: HashMap<String, usize> = deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| (d.delivery.id.db(), i))
            .collect();
        let sql = format!(
            "SELECT delivery_id, attempted_at, status_code, latency_ms, response_body, error, success
             FROM delivery_attempts WHERE project_id = $1 AND delivery_id IN ({}) ORDER BY id",
            placeholders(2, deliveries.len())
        );
        let mut query = sqlx::query(&sql).bind(project.db());
        for delivery in &deliveries {
            query = query.bind(delivery.delivery.id.db());
        }
        for r in query.fetch_all(&self.pool).await? {
            let delivery: String = r.try_get("delivery_id")?;
            let Some(&at) = index.get(&delivery) else {
                continue;
            };
            deliveries[at].attempts.push(decode_attempt(&r)?);
        }
        Ok(deliveries)
    }
}
