//! What `GET …/async/events` answers: the envelopes Relais stored, a page at a time.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<EventEnvelope>,
    pub page_info: PageInfo,
}

/// An event as webhooks receive it too (`domain::event::Event::envelope`); read back from
/// the stored payload, so a payload of another shape is an error rather than passed on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: String,
    pub tenant_id: String,
    pub project_id: String,
    pub subject: String,
    pub sequence: i64,
    /// What the event says; its fields depend on its type.
    pub data: Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Pass it back as `after` to read on from here; `null` before the first event.
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}

/// One message of `GET …/events/stream`, as an `EventSource` reads it. Each event of the
/// feed is one message; the stream's first frame (`retry:`) and its keep-alive comments
/// carry no data and are not messages.
#[derive(Debug, ToSchema)]
pub struct StreamMessage {
    /// The feed cursor after this event: send it back as `Last-Event-ID` (or `after`) to
    /// go on from here.
    pub id: String,
    /// The event's type (`operation.completed`, …).
    pub event: String,
    /// The event's envelope (`EventEnvelope`) as one line of JSON.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

impl StreamMessage {
    pub fn new(cursor: String, envelope: &EventEnvelope) -> Self {
        StreamMessage {
            id: cursor,
            event: envelope.event_type.clone(),
            // Compact JSON holds no line break, so the data is one `data:` line.
            data: serde_json::to_string(envelope).expect("an envelope serializes"),
        }
    }

    /// The message in the `text/event-stream` format.
    pub fn frame(&self) -> String {
        format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            self.id, self.event, self.data
        )
    }
}

/// `GET …/operation/{operationId}/events`: a page of the operation's own events, oldest
/// first, each with where it was sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectEventPage {
    pub events: Vec<TracedEvent>,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}

/// An event and its deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracedEvent {
    pub event: EventEnvelope,
    pub deliveries: Vec<DeliveryTrace>,
}

/// One delivery of an event: to a webhook, the operation's callback, its push worker,
/// Slack or a mail.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryTrace {
    #[schema(value_type = String)]
    pub delivery_id: crate::domain::ids::DeliveryId,
    /// `webhook`, `callback`, `push`, `slack` or `email`.
    pub channel: &'static str,
    /// The webhook's (or push worker's) id; `null` for the other channels.
    pub endpoint_id: Option<String>,
    /// `Pending`, `Delivered` or `Failed`.
    pub status: &'static str,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub attempts: Vec<AttemptTrace>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptTrace {
    pub attempted_at: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The start of what the receiver answered.
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub success: bool,
}
