use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::operations::Claim;
use super::sealed::{push_worker_place, Sealer};
use super::{from_json, from_ms, to_json, to_ms, Backend, Operations, Result, Signals, StoreError};
use crate::domain::auth::hash_token;
use crate::domain::ids::{LeaseToken, OperationId, ProjectId, PushWorkerId, TenantId};
use crate::domain::operation::Operation;
use crate::domain::worker::PushWorker;

/// Operations a push worker holds now, by its lease name.
const HELD_BY: &str = "SELECT COUNT(*) AS n FROM operations \
    WHERE lease_worker = $1 AND status = 'Running' AND lease_token IS NOT NULL";

const COLUMNS: &str =
    "id, tenant_id, project_id, name, url, operation_types, max_concurrency, secret, created_at";

/// Every wake-up of the push loop and every lease asks which push workers exist, and
/// they change rarely: this process sees its own registrations and removals at once and
/// another replica's within this long.
const PUSH_WORKERS_REFRESH: Duration = Duration::from_secs(1);

/// The last listing of every project's push workers, and when it was read.
#[derive(Default)]
struct PushWorkerCache(Mutex<Listed>);

#[derive(Default)]
struct Listed {
    /// Moved by every registration and removal here: a listing that began before one
    /// may have missed it, so it is not kept (else this process would, for up to
    /// [`PUSH_WORKERS_REFRESH`], hand a new push worker's types to pull workers).
    generation: u64,
    workers: Option<(Instant, Arc<Vec<PushWorker>>)>,
}

impl PushWorkerCache {
    /// The listing if it is fresh; otherwise the generation to list under.
    fn fresh(&self) -> std::result::Result<Arc<Vec<PushWorker>>, u64> {
        let listed = self.0.lock().expect("push worker cache");
        listed
            .workers
            .as_ref()
            .filter(|(at, _)| at.elapsed() < PUSH_WORKERS_REFRESH)
            .map(|(_, workers)| workers.clone())
            .ok_or(listed.generation)
    }

    /// Keeps a listing begun at `read_at` under `generation`, unless workers changed
    /// since.
    fn keep(&self, generation: u64, read_at: Instant, workers: Arc<Vec<PushWorker>>) {
        let mut listed = self.0.lock().expect("push worker cache");
        if listed.generation == generation {
            listed.workers = Some((read_at, workers));
        }
    }

    fn forget(&self) {
        let mut listed = self.0.lock().expect("push worker cache");
        listed.generation += 1;
        listed.workers = None;
    }
}

/// A task handed to a push worker: the operation, its lease, and the token the worker
/// reports with.
pub struct PushTask {
    pub operation: Operation,
    pub lease: LeaseToken,
    pub callback_token: String,
}

/// Push workers: their registrations, and the claims that hand them work within their
/// `maxConcurrency`.
#[derive(Clone)]
pub struct PushWorkers {
    pool: AnyPool,
    backend: Backend,
    /// A push worker's claim is an operation claim, under a lock on the worker's row.
    operations: Operations,
    signals: Signals,
    cache: Arc<PushWorkerCache>,
    sealer: Sealer,
}

impl PushWorkers {
    pub(super) fn new(
        pool: AnyPool,
        backend: Backend,
        operations: Operations,
        signals: Signals,
        sealer: Sealer,
    ) -> Self {
        PushWorkers {
            pool,
            backend,
            operations,
            signals,
            cache: Arc::default(),
            sealer,
        }
    }

    pub async fn insert(&self, worker: &PushWorker) -> Result<()> {
        let secret = worker
            .secret
            .as_deref()
            .map_err(|why| StoreError::corrupt(format!("a new push worker's secret: {why}")))?;
        let secret = self
            .sealer
            .seal(secret, &push_worker_place(&worker.id.db()))?;
        sqlx::query(&format!(
            "INSERT INTO push_workers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(worker.id.db())
        .bind(worker.tenant_id.db())
        .bind(worker.project_id.db())
        .bind(worker.name.clone())
        .bind(worker.url.clone())
        .bind(to_json(&worker.operation_types))
        .bind(worker.max_concurrency as i64)
        .bind(secret)
        .bind(to_ms(worker.created_at))
        .execute(&self.pool)
        .await?;
        self.cache.forget();
        Ok(())
    }

    pub async fn list(&self, project: Option<(TenantId, ProjectId)>) -> Result<Vec<PushWorker>> {
        let rows = match project {
            Some((tenant, project)) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM push_workers WHERE tenant_id = $1 AND project_id = $2 ORDER BY created_at, id"
                ))
                .bind(tenant.db())
                .bind(project.db())
                .fetch_all(&self.pool)
                .await?
            }
            None => sqlx::query(&format!("SELECT {COLUMNS} FROM push_workers ORDER BY created_at, id"))
                .fetch_all(&self.pool)
                .await?,
        };
        rows.iter().map(|row| self.decode_worker(row)).collect()
    }

    pub async fn get(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: PushWorkerId,
    ) -> Result<Option<PushWorker>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM push_workers WHERE id = $1 AND tenant_id = $2 AND project_id = $3"
        ))
        .bind(id.db())
        .bind(tenant.db())
        .bind(project.db())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|row| self.decode_worker(row)).transpose()
    }

    pub async fn delete(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: PushWorkerId,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM push_workers WHERE id = $1 AND tenant_id = $2 AND project_id = $3",
        )
        .bind(id.db())
        .bind(tenant.db())
        .bind(project.db())
        .execute(&self.pool)
        .await?;
        self.cache.forget();
        Ok(done.rows_affected() == 1)
    }

    /// Every project's push workers, as listed at most [`PUSH_WORKERS_REFRESH`] ago.
    pub async fn known(&self) -> Result<Arc<Vec<PushWorker>>> {
        let generation = match self.cache.fresh() {
            Ok(workers) => return Ok(workers),
            Err(generation) => generation,
        };
        let read_at = Instant::now();
        let workers = Arc::new(self.list(None).await?);
        self.cache.keep(generation, read_at, workers.clone());
        Ok(workers)
    }

    /// The operation types push workers of the project serve (so pull workers skip them).
    pub async fn served_types(&self, project: ProjectId) -> Result<Vec<String>> {
        let mut types: Vec<String> = self
            .known()
            .await?
            .iter()
            .filter(|worker| worker.project_id == project)
            .flat_map(|worker| worker.operation_types.iter().cloned())
            .collect();
        types.sort();
        types.dedup();
        Ok(types)
    }

    /// Operations the worker holds now.
    pub async fn in_flight(&self, id: PushWorkerId) -> Result<i64> {
        let row = sqlx::query(HELD_BY)
            .bind(PushWorker::lease_name(id))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Claims as many of the worker's operations as its `maxConcurrency` leaves room for.
    /// The worker's row is locked for the count and the claim, so replicas together never
    /// exceed the limit.
    pub async fn claim(
        &self,
        worker: &PushWorker,
        excluded_types: &[String],
        now: DateTime<Utc>,
        lease_ttl: std::time::Duration,
    ) -> Result<Vec<PushTask>> {
        let mut tx = self.backend.begin_reusing_plans(&self.pool).await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let exists = sqlx::query(&format!("SELECT id FROM push_workers WHERE id = $1{lock}"))
            .bind(worker.id.db())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        let lease_name = PushWorker::lease_name(worker.id);
        let held: i64 = sqlx::query(HELD_BY)
            .bind(lease_name.clone())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let free = (worker.max_concurrency as i64 - held).max(0) as u32;
        let claim = Claim {
            scope: Some((worker.tenant_id, worker.project_id)),
            types: &worker.operation_types,
            excluded_types,
            max: free,
            worker_id: Some(lease_name),
        };
        let (claimed, announce) = self
            .operations
            .claim_in(&mut tx, &claim, now, lease_ttl)
            .await?;
        let mut tasks = Vec::with_capacity(claimed.len());
        for (operation, lease) in claimed {
            let callback_token = format!("rlscb_{}", uuid::Uuid::new_v4().simple());
            sqlx::query("UPDATE operations SET callback_token_hash = $1 WHERE id = $2")
                .bind(hash_token(&callback_token))
                .bind(operation.id.db())
                .execute(&mut *tx)
                .await?;
            tasks.push(PushTask {
                operation,
                lease,
                callback_token,
            });
        }
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok(tasks)
    }

    /// The operation a push worker's callback token was issued for.
    pub async fn callback_operation(
        &self,
        token_hash: &str,
    ) -> Result<Option<(TenantId, ProjectId, OperationId)>> {
        let row = sqlx::query(
            "SELECT tenant_id, project_id, id FROM operations WHERE callback_token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let text = |c: &str| -> Result<String> { Ok(row.try_get::<String, _>(c)?) };
        Ok(Some((
            text("tenant_id")?.parse().map_err(StoreError::corrupt)?,
            text("project_id")?.parse().map_err(StoreError::corrupt)?,
            text("id")?.parse().map_err(StoreError::corrupt)?,
        )))
    }
}

impl PushWorkers {
    /// A secret that cannot be opened is kept as the reason: only this worker's tasks
    /// fail, while listing workers (which every lease does) goes on.
    fn decode_worker(&self, row: &AnyRow) -> Result<PushWorker> {
        let text = |c: &str| -> Result<String> { Ok(row.try_get::<String, _>(c)?) };
        Ok(PushWorker {
            secret: self
                .sealer
                .open_or_reason(&text("secret")?, &push_worker_place(&text("id")?))?,
            id: text("id")?.parse().map_err(StoreError::corrupt)?,
            tenant_id: text("tenant_id")?.parse().map_err(StoreError::corrupt)?,
            project_id: text("project_id")?.parse().map_err(StoreError::corrupt)?,
            name: text("name")?,
            url: text("url")?,
            operation_types: from_json(&text("operation_types")?, "operation_types")?,
            max_concurrency: row.try_get::<i64, _>("max_concurrency")?.max(1) as u32,
            created_at: from_ms(row.try_get("created_at")?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_begun_before_a_registration_is_not_kept() {
        let cache = PushWorkerCache::default();
        let generation = cache.fresh().unwrap_err();
        // A worker is registered (or removed) while the listing is on its way.
        cache.forget();
        cache.keep(generation, Instant::now(), Arc::new(Vec::new()));
        let again = cache.fresh().expect_err("the stale listing was kept");
        cache.keep(again, Instant::now(), Arc::new(Vec::new()));
        assert!(cache.fresh().is_ok(), "a listing begun after it is kept");
    }
}
