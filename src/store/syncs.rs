//! Seed 004's syncs: each sync's cursor and figures, and the project's credentials for
//! sources (sealed). `SyncSink` is one project's narrow handle for the `CursorSync`
//! executor: take a sync for a run, write a page (its events, their deliveries and the
//! new cursor in one transaction), let go.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::deliveries::write_events;
use super::events::StagedEvent;
use super::sealed::{credential_place, Sealer};
use super::writes::Writes;
use super::{from_json, from_ms, to_json, to_ms, Backend, Result, Signals, StoreError};
use crate::domain::event::{Event, EventDraft};
use crate::domain::ids::{EventId, OperationId, ProjectId, TenantId};
use crate::domain::operation::OperationStatus;
use crate::domain::sync::credential::{Credential, Secret};
use crate::domain::sync::SyncName;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredCredential {
    pub name: String,
    pub kind: String,
    pub header: Option<String>,
    pub origins: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A sync as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncView {
    pub name: String,
    pub cursor: Option<String>,
    pub records_total: i64,
    pub pages_total: i64,
    /// The operation of the last run, and its status now.
    pub last_run: Option<(OperationId, Option<String>)>,
    pub run_started_at: Option<DateTime<Utc>>,
    pub run_ended_at: Option<DateTime<Utc>>,
    pub run_records: i64,
    pub run_pages: i64,
    pub last_error: Option<String>,
    /// The operation paging it now, if one is.
    pub running: Option<OperationId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a run stands: what it pages from, and what its next write must match.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncState {
    pub cursor: Option<String>,
    pub version: i64,
    pub event_sequence: i64,
    pub run_records: i64,
    pub run_pages: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    Held(SyncState),
    /// Another live operation runs the sync.
    Busy(OperationId),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CursorReset {
    Reset(Box<SyncView>),
    NotFound,
    Running(OperationId),
}

#[derive(Clone)]
pub struct Syncs {
    pool: AnyPool,
    backend: Backend,
    signals: Signals,
    sealer: Sealer,
}

const VIEW_COLUMNS: &str =
    "s.name, s.cursor, s.records_total, s.pages_total, s.last_operation_id, \
     s.run_started_at, s.run_ended_at, s.run_records, s.run_pages, s.last_error, s.holder, \
     s.created_at, s.updated_at, o.status AS last_status, h.status AS holder_status";

/// The sync with its last run's operation and its holder's (a sync's operations are its
/// project's, so the join is by id alone).
const VIEW_FROM: &str = "FROM syncs s LEFT JOIN operations o ON o.id = s.last_operation_id \
     LEFT JOIN operations h ON h.id = s.holder";

fn opt_ms(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_ms)
        .transpose()
}

fn operation_id(text: &str) -> Result<OperationId> {
    text.parse().map_err(StoreError::corrupt)
}

/// The operation holding the sync in a row that joined it as `holder_status`, if it still
/// has work to do (its status is not final): while it does, no other run of the sync pages.
fn live_holder(row: &AnyRow) -> Result<Option<OperationId>> {
    let holder: Option<String> = row.try_get("holder")?;
    let status: Option<String> = row.try_get("holder_status")?;
    let live = status
        .as_deref()
        .and_then(OperationStatus::parse)
        .is_some_and(|s| !s.is_terminal());
    match holder {
        Some(id) if live => Ok(Some(operation_id(&id)?)),
        _ => Ok(None),
    }
}

fn decode_view(row: &AnyRow) -> Result<SyncView> {
    let last: Option<String> = row.try_get("last_operation_id")?;
    Ok(SyncView {
        name: row.try_get("name")?,
        cursor: row.try_get("cursor")?,
        records_total: row.try_get("records_total")?,
        pages_total: row.try_get("pages_total")?,
        last_run: last
            .as_deref()
            .map(|id| Ok::<_, StoreError>((operation_id(id)?, row.try_get("last_status")?)))
            .transpose()?,
        run_started_at: opt_ms(row, "run_started_at")?,
        run_ended_at: opt_ms(row, "run_ended_at")?,
        run_records: row.try_get("run_records")?,
        run_pages: row.try_get("run_pages")?,
        last_error: row.try_get("last_error")?,
        running: live_holder(row)?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

impl Syncs {
    pub(super) fn new(pool: AnyPool, backend: Backend, signals: Signals, sealer: Sealer) -> Self {
        Syncs {
            pool,
            backend,
            signals,
            sealer,
        }
    }

    pub fn sink(&self, tenant: TenantId, project: ProjectId) -> SyncSink {
        SyncSink {
            syncs: self.clone(),
            tenant,
            project,
        }
    }

    // ---- credentials -----------------------------------------------------------------

    /// Creates or replaces a credential. `true` when it was created.
    pub async fn put_credential(
        &self,
        tenant: TenantId,
        project: ProjectId,
        name: &SyncName,
        credential: &Credential,
        now: DateTime<Utc>,
    ) -> Result<(StoredCredential, bool)> {
        let secret = &credential.secret;
        let sealed = self.sealer.seal(
            &secret.to_stored(),
            &credential_place(&project.db(), name.as_str()),
        )?;
        let mut tx = self.pool.begin().await?;
        let existed =
            sqlx::query("SELECT 1 AS one FROM credentials WHERE project_id = $1 AND name = $2")
                .bind(project.db())
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        sqlx::query(
            "INSERT INTO credentials (project_id, name, tenant_id, kind, header, origins, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (project_id, name) DO UPDATE SET kind = excluded.kind,
                 header = excluded.header, origins = excluded.origins, secret = excluded.secret,
                 updated_at = excluded.updated_at",
        )
        .bind(project.db())
        .bind(name.as_str())
        .bind(tenant.db())
        .bind(secret.kind())
        .bind(secret.header_name())
        .bind(to_json(&credential.origins))
        .bind(sealed)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let stored = self
            .stored_credentials(project, Some(name))
            .await?
            .pop()
            .ok_or_else(|| StoreError::corrupt("the credential just written is gone"))?;
        Ok((stored, !existed))
    }

    pub async fn credentials(&self, project: ProjectId) -> Result<Vec<StoredCredential>> {
        self.stored_credentials(project, None).await
    }

    /// The project's credentials, or the one named.
    async fn stored_credentials(
        &self,
        project: ProjectId,
        name: Option<&SyncName>,
    ) -> Result<Vec<StoredCredential>> {
        let rows = sqlx::query(
            "SELECT name, kind, header, origins, created_at, updated_at FROM credentials
             WHERE project_id = $1 AND ($2 IS NULL OR name = $2) ORDER BY name",
        )
        .bind(project.db())
        .bind(name.map(SyncName::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredCredential {
                    name: row.try_get("name")?,
                    kind: row.try_get("kind")?,
                    header: row.try_get("header")?,
                    origins: from_json(&row.try_get::<String, _>("origins")?, "origins")?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                    updated_at: from_ms(row.try_get("updated_at")?)?,
                })
            })
            .collect()
    }

    pub async fn delete_credential(&self, project: ProjectId, name: &SyncName) -> Result<bool> {
        let done = sqlx::query("DELETE FROM credentials WHERE project_id = $1 AND name = $2")
            .bind(project.db())
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn credential(&self, project: ProjectId, name: &SyncName) -> Result<Option<Credential>> {
        let row = sqlx::query(
            "SELECT secret, origins FROM credentials WHERE project_id = $1 AND name = $2",
        )
        .bind(project.db())
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("secret")?;
        let plain = self
            .sealer
            .open(&stored, &credential_place(&project.db(), name.as_str()))?;
        let secret = Secret::from_stored(&plain)
            .ok_or_else(|| StoreError::corrupt("a stored credential"))?;
        Ok(Some(Credential {
            secret,
            origins: from_json(&row.try_get::<String, _>("origins")?, "origins")?,
        }))
    }

    // ---- syncs -----------------------------------------------------------------------

    pub async fn list(&self, project: ProjectId, offset: u32, limit: u32) -> Result<Vec<SyncView>> {
        let sql = format!(
            "SELECT {VIEW_COLUMNS} {VIEW_FROM} WHERE s.project_id = $1 ORDER BY s.name LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql)
            .bind(project.db())
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_view).collect()
    }

    pub async fn get(&self, project: ProjectId, name: &SyncName) -> Result<Option<SyncView>> {
        let sql =
            format!("SELECT {VIEW_COLUMNS} {VIEW_FROM} WHERE s.project_id = $1 AND s.name = $2");
        let row = sqlx::query(&sql)
            .bind(project.db())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_view).transpose()
    }

    /// Forgets the cursor, so the next run starts from its `updatedSince` again; refused
    /// while a run pages (the version moves, so a run that races this cannot write over
    /// it either).
    pub async fn reset_cursor(
        &self,
        project: ProjectId,
        name: &SyncName,
        now: DateTime<Utc>,
    ) -> Result<CursorReset> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT s.holder, h.status AS holder_status FROM syncs s LEFT JOIN operations h ON h.id = s.holder \
             WHERE s.project_id = $1 AND s.name = $2{}",
            self.backend.for_update_of("s")
        );
        let row = sqlx::query(&sql)
            .bind(project.db())
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(CursorReset::NotFound);
        };
        if let Some(holder) = live_holder(&row)? {
            return Ok(CursorReset::Running(holder));
        }
        sqlx::query(
            "UPDATE syncs SET cursor = NULL, version = version + 1, updated_at = $3
             WHERE project_id = $1 AND name = $2",
        )
        .bind(project.db())
        .bind(name.as_str())
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match self.get(project, name).await? {
            Some(view) => CursorReset::Reset(Box::new(view)),
            None => CursorReset::NotFound,
        })
    }
}

/// One project's syncs, for the executor that runs them.
#[derive(Clone)]
pub struct SyncSink {
    syncs: Syncs,
    tenant: TenantId,
    project: ProjectId,
}

impl SyncSink {
    /// The named credential, opened.
    pub async fn credential(&self, name: &SyncName) -> Result<Option<Credential>> {
        self.syncs.credential(self.project, name).await
    }

    /// Takes the sync for `operation`'s run, unless another live operation has it. A run
    /// taken again by the operation that had it (a retry, or after a crash) goes on with
    /// its figures; a new operation's run starts them again.
    pub async fn take(
        &self,
        name: &SyncName,
        operation: OperationId,
        now: DateTime<Utc>,
    ) -> Result<Taken> {
        let s = &self.syncs;
        let mut tx = s.pool.begin().await?;
        sqlx::query(
            "INSERT INTO syncs (project_id, name, tenant_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (project_id, name) DO NOTHING",
        )
        .bind(self.project.db())
        .bind(name.as_str())
        .bind(self.tenant.db())
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "SELECT s.cursor, s.version, s.event_sequence, s.run_records, s.run_pages, s.holder, \
             s.last_operation_id, h.status AS holder_status \
             FROM syncs s LEFT JOIN operations h ON h.id = s.holder \
             WHERE s.project_id = $1 AND s.name = $2{}",
            s.backend.for_update_of("s")
        );
        let row = sqlx::query(&sql)
            .bind(self.project.db())
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if let Some(holder) = live_holder(&row)?.filter(|h| *h != operation) {
            return Ok(Taken::Busy(holder));
        }
        let last: Option<String> = row.try_get("last_operation_id")?;
        let same_run = last.as_deref() == Some(operation.db().as_str());
        let mut state = SyncState {
            cursor: row.try_get("cursor")?,
            version: row.try_get("version")?,
            event_sequence: row.try_get("event_sequence")?,
            run_records: row.try_get("run_records")?,
            run_pages: row.try_get("run_pages")?,
        };
        if !same_run {
            state.run_records = 0;
            state.run_pages = 0;
        }
        let started = if same_run { "run_started_at" } else { "$4" };
        sqlx::query(&format!(
            "UPDATE syncs SET holder = $3, last_operation_id = $3, run_started_at = {started},
                 run_ended_at = NULL, run_records = $5, run_pages = $6, last_error = NULL, updated_at = $4
             WHERE project_id = $1 AND name = $2"
        ))
        .bind(self.project.db())
        .bind(name.as_str())
        .bind(operation.db())
        .bind(to_ms(now))
        .bind(state.run_records)
        .bind(state.run_pages)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Taken::Held(state))
    }

    /// Writes one page: its events, their deliveries, and the cursor after it, in one
    /// transaction, only over the version `state` was read at and while `operation`
    /// holds the sync. `false` (nothing written) when either moved: the page was written
    /// by someone else, or the cursor was reset. On success `state` is the new one.
    pub async fn write_page(
        &self,
        name: &SyncName,
        operation: OperationId,
        state: &mut SyncState,
        cursor: Option<String>,
        records: Vec<EventDraft>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let s = &self.syncs;
        let count = records.len() as i64;
        let mut sequence = state.event_sequence;
        let events = Event::seal(
            records,
            self.tenant,
            self.project,
            &name.subject(),
            &mut sequence,
            now,
            std::iter::repeat_with(EventId::new),
        );
        let mut tx = s.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE syncs SET cursor = $5, version = version + 1, event_sequence = $6,
                 records_total = records_total + $7, pages_total = pages_total + 1,
                 run_records = run_records + $7, run_pages = run_pages + 1, updated_at = $8
             WHERE project_id = $1 AND name = $2 AND holder = $3 AND version = $4",
        )
        .bind(self.project.db())
        .bind(name.as_str())
        .bind(operation.db())
        .bind(state.version)
        .bind(cursor.clone())
        .bind(sequence)
        .bind(count)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Ok(false);
        }
        let staged: Vec<StagedEvent> = events
            .into_iter()
            .map(|event| StagedEvent::plain(event, None))
            .collect();
        let handoff = s.signals.handoff();
        let announce = write_events(
            &mut tx,
            Writes::new(s.backend),
            s.backend,
            &staged,
            now,
            handoff.as_deref(),
        )
        .await?;
        tx.commit().await?;
        s.signals.after_commit(announce);
        *state = SyncState {
            cursor,
            version: state.version + 1,
            event_sequence: sequence,
            run_records: state.run_records + count,
            run_pages: state.run_pages + 1,
        };
        Ok(true)
    }

    /// Lets go of the sync at the end of an attempt, with the error it ended on.
    pub async fn release(
        &self,
        name: &SyncName,
        operation: OperationId,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE syncs SET holder = NULL, run_ended_at = $4, last_error = $5, updated_at = $4
             WHERE project_id = $1 AND name = $2 AND holder = $3",
        )
        .bind(self.project.db())
        .bind(name.as_str())
        .bind(operation.db())
        .bind(to_ms(now))
        .bind(error)
        .execute(&self.syncs.pool)
        .await?;
        Ok(())
    }
}
