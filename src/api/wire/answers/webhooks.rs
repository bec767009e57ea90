//! What `…/async/webhooks` and `…/async/callbacks` answer.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ids::{DeliveryId, WebhookId};
use crate::domain::operation::Priority;
use crate::domain::retry::RetryPolicy;
use crate::domain::webhook::{WebhookFilters, WebhookStatus};

/// A webhook as `GET …/webhooks/{webhookId}` shows it; its creation adds `secret`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::webhook)]
pub struct WebhookView {
    #[schema(value_type = String)]
    pub webhook_id: WebhookId,
    pub webhook_url: String,
    pub webhook_name: String,
    pub status: WebhookStatus,
    pub disabled_reason: Option<String>,
    /// Every event type but `webhook.test` when the webhook named none.
    pub events_subscribed: Vec<&'static str>,
    /// `true` when the webhook named no event type: it also receives the types added
    /// later. Send `events` back only when this is `false`, to keep it so.
    pub all_events: bool,
    pub filters: FiltersView,
    #[schema(value_type = Object)]
    pub retry_policy: RetryPolicy,
    pub headers: BTreeMap<String, String>,
    /// Deliveries per second at most; `null`: no limit.
    pub rate_limit: Option<u32>,
    pub labels: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    pub failing_since: Option<String>,
    pub last_delivery: Option<String>,
    pub delivery_stats: DeliveryStatsView,
    /// The signing secret, shown once, in the answer that creates the webhook; again only
    /// through `…/secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The filters as the seed shows them: an empty list takes in every type or priority, and
/// `minProgressIncrement` is `null` when every progress event is sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FiltersView {
    pub operation_types: Vec<String>,
    pub priorities: Vec<Priority>,
    pub min_progress_increment: Option<f64>,
}

impl From<&WebhookFilters> for FiltersView {
    fn from(filters: &WebhookFilters) -> Self {
        FiltersView {
            operation_types: filters.operation_types.clone(),
            priorities: filters.priorities.clone(),
            min_progress_increment: filters.min_progress_increment,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatsView {
    pub total_deliveries: i64,
    pub successful_deliveries: i64,
    pub failed_deliveries: i64,
    pub pending_deliveries: i64,
    /// Milliseconds, to a tenth.
    pub average_response_time: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// The signing secret and the previous ones still signing beside it: a webhook's
/// (`webhookId` then given) or the project's callbacks'.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub webhook_id: Option<WebhookId>,
    pub secret: Option<String>,
    pub previous_secrets: Vec<PreviousSecret>,
}

/// A previous secret is not shown: only until when it keeps signing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecret {
    pub expires_at: Option<String>,
}

/// `202` to `POST …/webhooks/{webhookId}/test`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestQueued {
    pub event_id: String,
    #[schema(value_type = String)]
    pub delivery_id: DeliveryId,
    pub status: &'static str,
}

/// `GET …/webhooks/{webhookId}/deliveries`: every try, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptLog {
    pub deliveries: Vec<AttemptView>,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    #[schema(value_type = String)]
    pub delivery_id: DeliveryId,
    pub event_id: String,
    pub event_type: String,
    pub delivery_status: &'static str,
    pub attempted_at: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub success: bool,
}

/// `GET …/webhooks/{webhookId}/messages`: one row per event sent to the webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageList {
    pub messages: Vec<MessageView>,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    #[schema(value_type = String)]
    pub delivery_id: DeliveryId,
    pub event_id: String,
    pub event_type: String,
    pub status: &'static str,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

/// `202` to `POST …/webhooks/{webhookId}/recover`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovered {
    #[schema(value_type = String)]
    pub webhook_id: WebhookId,
    pub recovered: u64,
    pub since: String,
}

/// `202` to `POST …/deliveries/{deliveryId}/retry`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRequeued {
    #[schema(value_type = String)]
    pub delivery_id: DeliveryId,
    pub status: &'static str,
}
