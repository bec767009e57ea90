use chrono::{DateTime, Utc};
use sqlx::{Any, AnyPool, Row, Transaction};

use super::sealed::Sealer;
use super::{to_ms, Result};
use crate::domain::ids::ProjectId;

/// A key that makes a create request safe to repeat, with the answer to repeat.
pub struct IdempotencyRecord<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub request_hash: &'a str,
    pub status_code: u16,
    pub response: &'a str,
}

impl IdempotencyRecord<'_> {
    pub(super) fn to_owned(&self) -> OwnedIdempotencyRecord {
        OwnedIdempotencyRecord {
            scope: self.scope.to_owned(),
            key: self.key.to_owned(),
            request_hash: self.request_hash.to_owned(),
            status_code: self.status_code,
            response: self.response.to_owned(),
        }
    }
}

/// An `Idempotency-Key` and what identifies its request, for a write whose answer is
/// drawn up inside the write's transaction (from ids and values read there).
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: &'static str,
    pub key: String,
    pub request_hash: String,
    pub status_code: u16,
}

impl IdempotencyKey {
    pub fn record<'a>(&'a self, response: &'a str) -> IdempotencyRecord<'a> {
        IdempotencyRecord {
            scope: self.scope,
            key: &self.key,
            request_hash: &self.request_hash,
            status_code: self.status_code,
            response,
        }
    }
}

/// An [`IdempotencyRecord`] waiting in the group-commit queue.
#[derive(Clone)]
pub(super) struct OwnedIdempotencyRecord {
    scope: String,
    key: String,
    request_hash: String,
    status_code: u16,
    response: String,
}

impl OwnedIdempotencyRecord {
    pub(super) fn borrow(&self) -> IdempotencyRecord<'_> {
        IdempotencyRecord {
            scope: &self.scope,
            key: &self.key,
            request_hash: &self.request_hash,
            status_code: self.status_code,
            response: &self.response,
        }
    }
}

/// Records the key in the transaction that creates the resource. False: a concurrent
/// request with the same key got there first, and this transaction must write nothing.
pub(super) async fn take_idempotency_key(
    tx: &mut Transaction<'static, Any>,
    project: ProjectId,
    record: &IdempotencyRecord<'_>,
    now: DateTime<Utc>,
) -> Result<bool> {
    // DO NOTHING rather than a unique violation, which on PostgreSQL would abort the
    // transaction and with it every other write grouped into it.
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (project_id, scope, idem_key, request_hash, status_code, response, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(project.db())
    .bind(record.scope)
    .bind(record.key)
    .bind(record.request_hash)
    .bind(record.status_code as i64)
    .bind(record.response)
    .bind(to_ms(now))
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The first answer given to a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status_code: u16,
    pub body: String,
}

/// The answers kept for requests that carried an `Idempotency-Key`.
#[derive(Clone)]
pub struct Idempotency {
    pool: AnyPool,
    sealer: Sealer,
}

impl Idempotency {
    pub(super) fn new(pool: AnyPool, sealer: Sealer) -> Self {
        Idempotency { pool, sealer }
    }

    pub async fn find_response(
        &self,
        project: ProjectId,
        scope: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>> {
        let row = sqlx::query(
            "SELECT request_hash, status_code, response FROM idempotency_keys
             WHERE project_id = $1 AND scope = $2 AND idem_key = $3",
        )
        .bind(project.db())
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        // Some answers show a secret and are stored sealed; the others read as they are.
        let place = super::sealed::idempotency_place(&project.db(), scope, key);
        row.map(|row| {
            Ok(StoredResponse {
                request_hash: row.try_get("request_hash")?,
                status_code: row.try_get::<i64, _>("status_code")? as u16,
                body: self
                    .sealer
                    .open(&row.try_get::<String, _>("response")?, &place)?,
            })
        })
        .transpose()
    }

    /// Forgets the answers kept for keys first used before `before`: a retry that late is
    /// a new request. Returns how many were removed.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(super::to_ms(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
