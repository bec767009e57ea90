//! `GET …/async/events`: its query.

use serde::Deserialize;
use utoipa::IntoParams;

/// `after`: the `endCursor` of the last page read; `updatedSince`: an RFC 3339 time;
/// `types`: event types, comma-separated; `first`: how many, 1 to 1000 (100).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    pub after: Option<String>,
    pub updated_since: Option<String>,
    pub types: Option<String>,
    pub first: Option<String>,
}

/// `GET …/async/events/stream`: `after`, a cursor of the feed (or an event's `id:` in the
/// stream) to start after, which the `Last-Event-ID` header replaces when a client
/// reconnects; `types`, event types, comma-separated; `from`, where to begin without a
/// cursor.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    pub after: Option<String>,
    pub types: Option<String>,
    /// Where a stream without a cursor begins: `start` (the oldest event kept, the
    /// default) or `now` (only events written from now on).
    pub from: Option<String>,
}
