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
