//! `GET …/async/events/stream`: the events feed as Server-Sent Events. Each event is the
//! feed's envelope, its `id:` the feed cursor after it, so a client that reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does) goes on from there and misses nothing.
//! The stream is woken by commits (this process's, and other replicas' through the
//! store's signals); it ends when the process begins shutting down, so clients reconnect
//! to a replica that stays, and after `RELAIS_EVENT_STREAM_LIFETIME`, so that streams
//! spread again over the replicas there are.

use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::mpsc;

use super::auth::ProjectPath;
use super::error::ApiError;
use super::events::{decode_cursor, encode_cursor, parse_types};
use super::operations::parse_query;
use super::wire::answers::events::{EventEnvelope, StreamMessage};
use super::wire::events::StreamQuery;
use super::{wire, AppState};
use crate::domain::auth::{Principal, Scope};
use crate::domain::event::EventType;
use crate::domain::ids::{ProjectId, TenantId};
use crate::domain::FieldError;
use crate::store::{FeedCursor, Store};

/// Events read from the log at a time.
const PAGE: u32 = 100;
/// Frames a slow client may have waiting; beyond it, reading the log waits for it.
const BUFFERED_FRAMES: usize = 64;
/// A comment this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A quiet stream still looks at the log this often, whatever it was told.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// After a wake-up that found nothing (on PostgreSQL, a commit may be hidden a moment
/// behind an older transaction still running), the log is looked at again this soon.
const RECHECK: Duration = Duration::from_millis(50);
/// How long a client waits before reconnecting, as the stream tells `EventSource`.
const RECONNECT_MS: u32 = 1000;

#[utoipa::path(
    get,
    operation_id = "events_stream",
    path = "/api/{tenantId}/{projectId}/async/events/stream",
    tag = "events",
    summary = "Follow the event log live (Server-Sent Events)",
    description = "`text/event-stream`: one message per event, `id:` its feed cursor, `event:` its type, `data:` the envelope the feed shows. Reconnect with `Last-Event-ID` (or `after`) to go on after the last one received; without either, `from=now` skips the events already written. A comment line is sent every 15 s while nothing happens; the stream ends when the server begins shutting down.",
    params(
        ProjectPath,
        wire::events::StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id:` of the last event received; replaces `after`")
    ),
    responses((status = 200, description = "The stream: each message an event", content_type = "text/event-stream", body = StreamMessage))
)]
pub async fn stream(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    query: web::Query<Vec<(String, String)>>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::OperationsRead))
        .await?;
    let q: StreamQuery = parse_query(&query)?;
    let types = parse_types(q.types.as_deref())?;
    let after = match req.headers().get("Last-Event-ID") {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| FieldError::new("Last-Event-ID", "is not an id this stream sent"))?;
            cursor(text, "Last-Event-ID")?
        }
        None => match (q.after.as_deref(), q.from.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new("from", "cannot be given with `after`").into())
            }
            (Some(text), None) => cursor(text, "after")?,
            (None, None | Some("start")) => None,
            (None, Some("now")) => Some(state.store.events().tail().await?),
            (None, Some(_)) => {
                return Err(FieldError::new("from", "must be `start` or `now`").into())
            }
        },
    };
    let (frames, receiver) = mpsc::channel(BUFFERED_FRAMES);
    let follow = Follow {
        store: state.store.clone(),
        tenant: target.tenant,
        project: target.project,
        types,
        after,
        frames,
    };
    let state = state.clone();
    let lifetime = state.config.event_stream_lifetime;
    tokio::spawn(async move {
        tokio::select! {
            () = follow.run() => {}
            () = state.instance.stopping() => {}
            () = tokio::time::sleep(lifetime) => {}
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let frame = receiver.recv().await?;
        Some((Ok::<_, actix_web::Error>(frame), receiver))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Reverse proxies that buffer answers (nginx) would hold the events back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// An empty id starts from the beginning, as no id does.
fn cursor(text: &str, field: &str) -> Result<Option<FeedCursor>, FieldError> {
    if text.is_empty() {
        return Ok(None);
    }
    decode_cursor(text)
        .map(Some)
        .ok_or_else(|| FieldError::new(field, "is not a cursor this feed returned"))
}

/// One client's stream: reads the log after its cursor, sends what it finds, and waits
/// for news. Ends when the client goes away (its frames are no longer taken).
struct Follow {
    store: Store,
    tenant: TenantId,
    project: ProjectId,
    types: Vec<EventType>,
    after: Option<FeedCursor>,
    frames: mpsc::Sender<Bytes>,
}

impl Follow {
    async fn run(mut self) {
        if !self.send(format!("retry: {RECONNECT_MS}\n\n")).await {
            return;
        }
        let signals = self.store.signals().clone();
        let mut keep_alive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_check = IDLE_CHECK;
        loop {
            let woken = signals.events_written().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let page = match self
                .store
                .events()
                .feed(
                    self.tenant,
                    self.project,
                    self.after,
                    None,
                    &self.types,
                    PAGE,
                )
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "an event stream could not read the log; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = self.frames.closed() => return,
                    }
                }
            };
            let found = !page.events.is_empty();
            for event in page.events {
                self.after = Some(event.cursor);
                let envelope = match serde_json::from_value::<EventEnvelope>(event.envelope) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        // The feed answers 500 for it; a stream cannot, so it says so and ends.
                        tracing::error!(error = %e, "a stored event is not an envelope");
                        return;
                    }
                };
                let message = StreamMessage::new(encode_cursor(event.cursor), &envelope);
                if !self.send(message.frame()).await {
                    return;
                }
            }
            if page.has_next_page {
                continue;
            }
            tokio::select! {
                () = &mut woken => {
                    next_check = RECHECK;
                    continue;
                }
                _ = keep_alive.tick() => {
                    if !self.send(": keep-alive\n\n".to_owned()).await {
                        return;
                    }
                }
                () = tokio::time::sleep(next_check) => {}
                () = self.frames.closed() => return,
            }
            if !found {
                next_check = IDLE_CHECK;
            }
        }
    }

    /// False once the client is gone.
    async fn send(&self, frame: String) -> bool {
        self.frames.send(Bytes::from(frame)).await.is_ok()
    }
}
