//! The event log as a feed that a consumer pages through with a cursor.
//!
//! On PostgreSQL, positions come from a sequence and transactions commit in any order, so
//! "everything after position N" could skip an event whose transaction commits late. Each
//! event therefore records its transaction id (`commit_order`), the feed is ordered by
//! (commit_order, position), and it only shows transactions older than every transaction
//! still running: nothing can ever appear behind a cursor already handed out. SQLite has a
//! single writer, so there commit order is position order.

use chrono::{DateTime, Utc};
use sqlx::{Any, AnyPool, Row, Transaction};

use super::writes::{RowWrite, Rows, Writes};
use super::{from_json, to_ms, Backend, Result};
use crate::domain::event::{Event, EventType};
use crate::domain::ids::{ProjectId, PushWorkerId, TenantId};
use crate::domain::notify::Notify;
use crate::trace::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedCursor {
    pub commit_order: i64,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub cursor: FeedCursor,
    pub envelope: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub events: Vec<FeedEvent>,
    pub has_next_page: bool,
}

/// An event as stored, for readers of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub position: i64,
    pub event_type: String,
    pub subject: String,
    pub sequence: i64,
    pub payload: serde_json::Value,
}

/// One event of a subject's log, with its id, for a page of that log.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectEvent {
    pub id: String,
    pub event_type: String,
    pub sequence: i64,
    pub payload: serde_json::Value,
}

/// An event on its way to the log, with what decides its deliveries besides the
/// project's webhooks, and the request that caused it.
pub(super) struct StagedEvent {
    pub(super) event: Event,
    /// The callback URL the operation (or batch) asked for.
    pub(super) callback: Option<String>,
    /// The push worker to tell when the operation is cancelled or times out.
    pub(super) stop_notice: Option<PushWorkerId>,
    /// The people to tell by mail or Slack.
    pub(super) notify: Option<Notify>,
    /// The request that caused it (its id, and its span's `traceparent` for the trace
    /// its deliveries join); `None` for the changes of background loops (timeouts, lease
    /// expiry, the batch scheduler).
    pub(super) request: Option<Request>,
    /// The envelope as written to the log and sent, serialized once (see
    /// [`StagedEvent::payload`]).
    pub(super) payload: std::sync::OnceLock<String>,
}

impl StagedEvent {
    /// The envelope as written to the log and sent to every endpoint.
    pub(super) fn payload(&self) -> &str {
        self.payload
            .get_or_init(|| self.event.envelope().to_string())
    }

    /// An event of a change no operation asked anyone to hear of but the project's
    /// webhooks (a test event, a sync's record).
    pub(super) fn plain(event: Event, request: Option<Request>) -> Self {
        StagedEvent {
            event,
            callback: None,
            stop_notice: None,
            notify: None,
            request,
            payload: Default::default(),
        }
    }
}

/// The request this task serves, if any: what writes done in the caller's own task
/// stamp on their events. The group commit writes from another task, so it takes each
/// request when the request is queued.
pub(super) fn current_request() -> Option<Request> {
    crate::trace::current()
}

/// Operation types counted under their own name in the metrics; the others are
/// counted together, as `other` (a type is a tenant's free text). The built-in types,
/// which the store does not know otherwise: a test of `executors` holds them equal.
pub const COUNTED_TYPES: [&str; 4] = ["Sleep", "Echo", "CsproBreakout", "CursorSync"];

/// How many events of each type (and, for an operation's, of each built-in operation
/// type) a transaction wrote: counted in the metrics once it commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct EventTally {
    counts: [[u32; COUNTED_TYPES.len() + 1]; EventType::ALL.len()],
}

impl EventTally {
    fn of(events: &[StagedEvent]) -> Self {
        let mut tally = EventTally::default();
        for staged in events {
            let event = &staged.event;
            let kind = EventType::ALL
                .iter()
                .position(|t| *t == event.event_type)
                .expect("every type is in ALL");
            let operation_type = event.data.get("operationType").and_then(|t| t.as_str());
            let label = COUNTED_TYPES
                .iter()
                .position(|t| Some(*t) == operation_type)
                .unwrap_or(COUNTED_TYPES.len());
            tally.counts[kind][label] += 1;
        }
        tally
    }

    pub(super) fn is_empty(&self) -> bool {
        self.counts.iter().flatten().all(|n| *n == 0)
    }

    pub(super) fn add(&mut self, other: EventTally) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }

    /// `relais_events_total{type}`; for operations, `relais_operations_started_total` and
    /// `relais_operations_ended_total{status}`, each by `operation_type`.
    pub(super) fn record(&self) {
        for (kind, counts) in EventType::ALL.iter().zip(self.counts) {
            let total: u32 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            metrics::counter!("relais_events_total", "type" => kind.as_str())
                .increment(u64::from(total));
            let ended = match kind {
                EventType::OperationCompleted => Some("Completed"),
                EventType::OperationFailed => Some("Failed"),
                EventType::OperationCancelled => Some("Cancelled"),
                EventType::OperationTimeout => Some("Timeout"),
                _ => None,
            };
            for (label, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                let operation_type = COUNTED_TYPES.get(label).copied().unwrap_or("other");
                let n = u64::from(*n);
                if *kind == EventType::OperationStarted {
                    metrics::counter!("relais_operations_started_total", "operation_type" => operation_type).increment(n);
                }
                if let Some(status) = ended {
                    metrics::counter!("relais_operations_ended_total", "status" => status, "operation_type" => operation_type).increment(n);
                }
            }
        }
    }
}

/// Writes events in the transaction of the change that caused them; each takes the
/// writing transaction's id as its `commit_order`. What it wrote is counted by the
/// caller once the transaction commits.
pub(super) async fn insert_events(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    events: &[StagedEvent],
) -> Result<EventTally> {
    let mut writes = Writes::one_at_a_time(backend);
    let tally = push_insert_events(&mut writes, backend, events);
    writes.execute(tx).await?;
    Ok(tally)
}

pub(super) fn push_insert_events(
    writes: &mut Writes<'_>,
    backend: Backend,
    events: &[StagedEvent],
) -> EventTally {
    const COLUMNS: &[&str] = &[
        "id",
        "tenant_id",
        "project_id",
        "event_type",
        "subject",
        "sequence",
        "payload",
        "created_at",
        "request_id",
        "traceparent",
    ];
    if events.is_empty() {
        return EventTally::default();
    }
    let commit_order = match backend {
        Backend::Postgres => "pg_current_xact_id()::text::bigint",
        Backend::Sqlite => "0",
    };
    let mut rows = Rows::new(COLUMNS);
    for staged in events {
        let event = &staged.event;
        let request = staged.request.as_ref();
        rows.add([
            event.id.to_string().into(),
            event.tenant_id.db().into(),
            event.project_id.db().into(),
            event.event_type.as_str().into(),
            event.subject.clone().into(),
            event.sequence.into(),
            staged.payload().into(),
            to_ms(event.timestamp).into(),
            request.map(|r| &*r.id).into(),
            request.and_then(|r| r.traceparent.as_deref()).into(),
        ]);
    }
    writes.push_rows(
        RowWrite::Insert {
            table: "events",
            computed: &[("commit_order", commit_order)],
            suffix: "",
        },
        rows,
    );
    EventTally::of(events)
}

/// The event log: the feed that consumers page through, and each subject's history.
#[derive(Clone)]
pub struct Events {
    pool: AnyPool,
    backend: Backend,
}

impl Events {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        Events { pool, backend }
    }

    pub async fn feed(
        &self,
        tenant: TenantId,
        project: ProjectId,
        after: Option<FeedCursor>,
        since: Option<DateTime<Utc>>,
        types: &[EventType],
        first: u32,
    ) -> Result<FeedPage> {
        let after = after.unwrap_or(FeedCursor {
            commit_order: i64::MIN,
            position: i64::MIN,
        });
        let mut sql = "SELECT commit_order, position, payload FROM events
             WHERE project_id = $1 AND tenant_id = $2
               AND (commit_order > $3 OR (commit_order = $3 AND position > $4))"
            .to_owned();
        if self.backend == Backend::Postgres {
            sql.push_str(
                " AND commit_order < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            );
        }
        let mut next = 5;
        if since.is_some() {
            sql.push_str(&format!(" AND created_at >= ${next}"));
            next += 1;
        }
        if !types.is_empty() {
            let list: Vec<String> = (0..types.len()).map(|i| format!("${}", next + i)).collect();
            sql.push_str(&format!(" AND event_type IN ({})", list.join(", ")));
            next += types.len();
        }
        sql.push_str(&format!(" ORDER BY commit_order, position LIMIT ${next}"));
        let mut query = sqlx::query(&sql)
            .bind(project.db())
            .bind(tenant.db())
            .bind(after.commit_order)
            .bind(after.position);
        if let Some(since) = since {
            query = query.bind(to_ms(since));
        }
        for t in types {
            query = query.bind(t.as_str());
        }
        let rows = query.bind(first as i64 + 1).fetch_all(&self.pool).await?;
        let has_next_page = rows.len() > first as usize;
        let events = rows
            .iter()
            .take(first as usize)
            .map(|row| {
                Ok(FeedEvent {
                    cursor: FeedCursor {
                        commit_order: row.try_get("commit_order")?,
                        position: row.try_get("position")?,
                    },
                    envelope: from_json(&row.try_get::<String, _>("payload")?, "payload")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FeedPage {
            events,
            has_next_page,
        })
    }

    /// A page of one project's subject's log, oldest first: `limit + 1` rows are read so
    /// the caller knows whether more follow.
    pub async fn of_subject_page(
        &self,
        project: ProjectId,
        subject: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<SubjectEvent>> {
        let rows = sqlx::query(
            "SELECT id, event_type, sequence, payload FROM events
             WHERE subject = $1 AND project_id = $2 ORDER BY sequence LIMIT $3 OFFSET $4",
        )
        .bind(subject)
        .bind(project.db())
        .bind(i64::from(limit) + 1)
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SubjectEvent {
                    id: row.try_get("id")?,
                    event_type: row.try_get("event_type")?,
                    sequence: row.try_get("sequence")?,
                    payload: from_json(&row.try_get::<String, _>("payload")?, "payload")?,
                })
            })
            .collect()
    }

    /// The cursor of the project's last event the feed shows now (`None`: none yet), so
    /// that a reader can follow the log from here on without paging through its past.
    pub async fn head(&self, tenant: TenantId, project: ProjectId) -> Result<Option<FeedCursor>> {
        let mut sql = "SELECT commit_order, position FROM events
             WHERE project_id = $1 AND tenant_id = $2"
            .to_owned();
        // The feed's own horizon: an event behind it may still be joined by earlier ones.
        if self.backend == Backend::Postgres {
            sql.push_str(
                " AND commit_order < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            );
        }
        sql.push_str(" ORDER BY commit_order DESC, position DESC LIMIT 1");
        let row = sqlx::query(&sql)
            .bind(project.db())
            .bind(tenant.db())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(FeedCursor {
                commit_order: row.try_get("commit_order")?,
                position: row.try_get("position")?,
            })
        })
        .transpose()
    }

    /// The event log of one subject, in sequence order.
    pub async fn of_subject(&self, subject: &str) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT position, event_type, subject, sequence, payload FROM events WHERE subject = $1 ORDER BY sequence",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    position: row.try_get("position")?,
                    event_type: row.try_get("event_type")?,
                    subject: row.try_get("subject")?,
                    sequence: row.try_get("sequence")?,
                    payload: from_json(&row.try_get::<String, _>("payload")?, "payload")?,
                })
            })
            .collect()
    }
}
