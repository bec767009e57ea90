//! `GET …/async/events`: the event log, oldest first, paged by an opaque cursor. A consumer
//! that stores `endCursor` and passes it back as `after` sees every event exactly once.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use super::auth::ProjectPath;
use super::error::ApiError;
use super::operations::parse_query;
use super::wire::answers::events::{EventEnvelope, EventPage, PageInfo};
use super::wire::events::FeedQuery;
use super::wire::query::parse_time;
use super::wire::{self, answers};
use super::AppState;
use crate::domain::auth::{Principal, Scope};
use crate::domain::event::EventType;
use crate::domain::FieldError;
use crate::store::FeedCursor;

pub const DEFAULT_FIRST: u32 = 100;
pub const MAX_FIRST: u32 = 1000;

pub fn encode_cursor(c: FeedCursor) -> String {
    B64.encode(format!("v1:{}:{}", c.commit_order, c.position))
}

pub(super) fn decode_cursor(text: &str) -> Option<FeedCursor> {
    let raw = String::from_utf8(B64.decode(text).ok()?).ok()?;
    let mut parts = raw.strip_prefix("v1:")?.split(':');
    let commit_order = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(FeedCursor {
        commit_order,
        position,
    })
}

#[utoipa::path(
    get,
    operation_id = "events_feed",
    path = "/api/{tenantId}/{projectId}/async/events",
    tag = "events",
    summary = "Read the event log",
    params(ProjectPath, wire::events::FeedQuery),
    responses((status = 200, description = "A page of events, oldest first", body = answers::events::EventPage))
)]
pub async fn feed(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::OperationsRead))
        .await?;
    let q: FeedQuery = parse_query(&query)?;
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(
            decode_cursor(a)
                .ok_or_else(|| FieldError::new("after", "is not a cursor this feed returned"))?,
        ),
    };
    let since = q
        .updated_since
        .as_deref()
        .map(|s| parse_time(s, "updatedSince"))
        .transpose()?;
    let types = parse_types(q.types.as_deref())?;
    let first = match q.first.as_deref() {
        None => DEFAULT_FIRST,
        Some(f) => match f.parse::<u32>() {
            Ok(n) if (1..=MAX_FIRST).contains(&n) => n,
            _ => {
                return Err(FieldError::new(
                    "first",
                    format!("must be a whole number between 1 and {MAX_FIRST}"),
                )
                .into())
            }
        },
    };
    let page = state
        .store
        .events()
        .feed(target.tenant, target.project, after, since, &types, first)
        .await?;
    let end_cursor = page
        .events
        .last()
        .map(|e| e.cursor)
        .or(after)
        .map(encode_cursor);
    let events = page
        .events
        .into_iter()
        .map(|e| serde_json::from_value::<EventEnvelope>(e.envelope))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            tracing::error!(error = %e, "a stored event is not an envelope");
            ApiError::Internal
        })?;
    Ok(HttpResponse::Ok().json(EventPage {
        events,
        page_info: PageInfo {
            end_cursor,
            has_next_page: page.has_next_page,
        },
    }))
}

/// `types`: event types, comma-separated; none, every type.
pub(super) fn parse_types(types: Option<&str>) -> Result<Vec<EventType>, FieldError> {
    let mut parsed = Vec::new();
    for name in types
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        parsed.push(
            EventType::parse(name)
                .ok_or_else(|| FieldError::new("types", format!("unknown event type `{name}`")))?,
        );
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = FeedCursor {
            commit_order: 1234,
            position: -5,
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        assert_eq!(decode_cursor(&B64.encode("v1:1")), None);
    }
}
