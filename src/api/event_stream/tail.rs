//! One reader of a project's event log per process, shared by all of that project's
//! streams. With a reader per stream, every commit had each of them query the log: two
//! hundred clients meant two hundred queries per commit, which took the pool from the
//! writers. The tail reads what follows its cursor once per wake-up, renders each
//! event's frame once, and broadcasts the batch; each stream takes what follows its own
//! cursor and matches its types.
//!
//! A stream subscribes first and then reads the log itself up to the end it sees, so
//! nothing falls between the two: the tail's batches are contiguous from a cursor read
//! before anyone subscribed, and a batch sent before a subscription holds only events
//! the subscriber's own read sees. A stream that falls behind the broadcast (a slow
//! client) reads the log itself again, as it does at the start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix_web::web::Bytes;
use tokio::sync::{broadcast, oneshot, OnceCell};

use super::super::events::encode_cursor;
use super::super::wire::answers::events::{EventEnvelope, StreamMessage};
use super::{IDLE_CHECK, PAGE, RECHECK};
use crate::domain::ids::{ProjectId, TenantId};
use crate::store::{FeedCursor, FeedEvent, Store, StoreError};

/// Batches a stream may be behind the tail before it reads the log itself instead.
const BATCHES_KEPT: usize = 128;

/// One event as the tail read it.
pub(super) struct Framed {
    pub(super) cursor: FeedCursor,
    /// `None` when the stored payload is not an envelope: the stream then reads the log
    /// itself, which decides (by its types) whether that ends it.
    pub(super) rendered: Option<Rendered>,
}

pub(super) struct Rendered {
    pub(super) event_type: String,
    pub(super) frame: Bytes,
}

pub(super) type Batch = Arc<Vec<Framed>>;

/// The tails of this process, one per project being streamed; a tail's reader stops
/// when the last stream of its project ends.
#[derive(Default)]
pub struct Tails {
    tails: Mutex<HashMap<(TenantId, ProjectId), Weak<Tail>>>,
}

impl Tails {
    pub(super) fn get(&self, store: &Store, tenant: TenantId, project: ProjectId) -> Arc<Tail> {
        let mut tails = self.tails.lock().expect("tails");
        if let Some(tail) = tails.get(&(tenant, project)).and_then(Weak::upgrade) {
            return tail;
        }
        tails.retain(|_, tail| tail.strong_count() > 0);
        let tail = Arc::new(Tail::new(store.clone(), tenant, project));
        tails.insert((tenant, project), Arc::downgrade(&tail));
        tail
    }
}

pub(super) struct Tail {
    store: Store,
    tenant: TenantId,
    project: ProjectId,
    batches: broadcast::Sender<Batch>,
    started: OnceCell<()>,
    /// Handed to the reader when it starts; dropped with the tail, which stops it.
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
    _stop: oneshot::Sender<()>,
}

impl Tail {
    fn new(store: Store, tenant: TenantId, project: ProjectId) -> Self {
        let (stop, stopped) = oneshot::channel();
        Tail {
            store,
            tenant,
            project,
            batches: broadcast::channel(BATCHES_KEPT).0,
            started: OnceCell::new(),
            stopped: Mutex::new(Some(stopped)),
            _stop: stop,
        }
    }

    /// The batches read from now on. The first subscriber starts the reader at the end
    /// of the log as it is then.
    pub(super) async fn subscribe(&self) -> Result<broadcast::Receiver<Batch>, StoreError> {
        self.started
            .get_or_try_init(|| async {
                let head = self.store.events().head(self.tenant, self.project).await?;
                let stopped = self.stopped.lock().expect("tail").take();
                if let Some(stopped) = stopped {
                    let reader = Reader {
                        store: self.store.clone(),
                        tenant: self.tenant,
                        project: self.project,
                        after: head,
                        batches: self.batches.clone(),
                    };
                    tokio::spawn(async move {
                        tokio::select! {
                            () = reader.run() => {}
                            _ = stopped => {}
                        }
                    });
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(self.batches.subscribe())
    }
}

struct Reader {
    store: Store,
    tenant: TenantId,
    project: ProjectId,
    after: Option<FeedCursor>,
    batches: broadcast::Sender<Batch>,
}

impl Reader {
    /// Reads the log after its cursor whenever events were written, and broadcasts them.
    async fn run(mut self) {
        let signals = self.store.signals().clone();
        let mut next_check = IDLE_CHECK;
        loop {
            let woken = signals.events_written().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let page = match self
                .store
                .events()
                .feed(self.tenant, self.project, self.after, None, &[], PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "the event streams of a project could not read the log; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let found = !page.events.is_empty();
            if let Some(last) = page.events.last() {
                self.after = Some(last.cursor);
                let batch = page.events.into_iter().map(framed).collect();
                // No receiver: no stream is listening at this moment, and none misses it.
                let _ = self.batches.send(Arc::new(batch));
            }
            if page.has_next_page {
                continue;
            }
            tokio::select! {
                () = &mut woken => {
                    next_check = RECHECK;
                    continue;
                }
                () = tokio::time::sleep(next_check) => {}
            }
            if !found {
                next_check = IDLE_CHECK;
            }
        }
    }
}

/// The event's frame, rendered once for every stream (and by a stream catching up).
pub(super) fn framed(event: FeedEvent) -> Framed {
    let rendered = match serde_json::from_value::<EventEnvelope>(event.envelope) {
        Ok(envelope) => {
            let message = StreamMessage::new(encode_cursor(event.cursor), &envelope);
            Some(Rendered {
                event_type: envelope.event_type,
                frame: Bytes::from(message.frame()),
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "a stored event is not an envelope");
            None
        }
    };
    Framed {
        cursor: event.cursor,
        rendered,
    }
}
