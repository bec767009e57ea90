//! `GET …/async/events/stream`: the events feed as Server-Sent Events. Each event is the
//! feed's envelope, its `id:` the feed cursor after it, so a client that reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does) goes on from there and misses nothing.
//! The stream is woken by commits (this process's, and other replicas' through the
//! store's signals); it ends when the process begins shutting down, so clients reconnect
//! to a replica that stays, and after `RELAIS_EVENT_STREAM_LIFETIME`, so that streams
//! spread again over the replicas there are.

mod tail;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::{broadcast, mpsc};

use tail::Tail;
pub use tail::Tails;

use super::auth::ProjectPath;
use super::error::ApiError;
use super::events::{decode_cursor, parse_types};
use super::operations::parse_query;
use super::wire::answers::events::StreamMessage;
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
            // The project's last event the feed shows now; none yet: every event is new.
            (None, Some("now")) => {
                state
                    .store
                    .events()
                    .head(target.tenant, target.project)
                    .await?
            }
            (None, Some(_)) => {
                return Err(FieldError::new("from", "must be `start` or `now`").into())
            }
        },
    };
    let (frames, receiver) = mpsc::channel(BUFFERED_FRAMES);
    let follow = Follow {
        store: state.store.clone(),
        tail: state
            .event_tails
            .get(&state.store, target.tenant, target.project),
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

/// One client's stream: reads the log after its cursor until it has caught up, then
/// takes what the project's tail reads, and reads the log itself again whenever it fell
/// behind the tail. Ends when the client goes away (its frames are no longer taken).
struct Follow {
    store: Store,
    tail: Arc<Tail>,
    tenant: TenantId,
    project: ProjectId,
    types: Vec<EventType>,
    after: Option<FeedCursor>,
    frames: mpsc::Sender<Bytes>,
}

impl Follow {
    async fn run(mut self) {
        if !self.send(format!("retry: {RECONNECT_MS}\n\n").into()).await {
            return;
        }
        let mut keep_alive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'resync: loop {
            // Subscribed before reading, so that what the log shows after this read is in
            // the batches to come (see `tail`).
            let mut batches = match self.tail.subscribe().await {
                Ok(batches) => batches,
                Err(e) => {
                    tracing::warn!(error = %e, "an event stream could not read the log; trying again");
                    if !self.pause().await {
                        return;
                    }
                    continue;
                }
            };
            match self.catch_up().await {
                Some(true) => {}
                Some(false) => {
                    if !self.pause().await {
                        return;
                    }
                    continue;
                }
                None => return,
            }
            loop {
                tokio::select! {
                    batch = batches.recv() => match batch {
                        Ok(batch) => {
                            for event in batch.iter() {
                                if self.after.is_some_and(|after| event.cursor <= after) {
                                    continue;
                                }
                                let Some(rendered) = &event.rendered else {
                                    // The log itself says whether this stream takes it.
                                    continue 'resync;
                                };
                                if !self.takes(&rendered.event_type) {
                                    continue;
                                }
                                self.after = Some(event.cursor);
                                if !self.send(rendered.frame.clone()).await {
                                    return;
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'resync,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = keep_alive.tick() => {
                        if !self.send(Bytes::from_static(b": keep-alive\n\n")).await {
                            return;
                        }
                    }
                    () = self.frames.closed() => return,
                }
            }
        }
    }

    /// Sends what the log holds after the cursor, page by page, up to its end. `None`:
    /// the stream ends; `Some(false)`: the log could not be read.
    async fn catch_up(&mut self) -> Option<bool> {
        loop {
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
                    return Some(false);
                }
            };
            for event in page.events {
                let event = tail::framed(event);
                self.after = Some(event.cursor);
                // The feed answers 500 for it; a stream cannot, so it ends (`framed` said why).
                let rendered = event.rendered?;
                if !self.send(rendered.frame).await {
                    return None;
                }
            }
            if !page.has_next_page {
                return Some(true);
            }
        }
    }

    /// Whether the stream was asked for events of this type (all, when none was named).
    fn takes(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t.as_str() == event_type)
    }

    /// Waits a moment before reading the log again; false once the client is gone.
    async fn pause(&self) -> bool {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => true,
            () = self.frames.closed() => false,
        }
    }

    /// False once the client is gone.
    async fn send(&self, frame: Bytes) -> bool {
        self.frames.send(frame).await.is_ok()
    }
}
