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
