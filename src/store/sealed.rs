//! Secrets at rest: the store seals every secret it writes and opens every one it reads
//! (see `crate::secrets`), each bound to the row it is stored in, and at start seals again
//! what was stored before sealing existed or under a key that is no longer current.

use std::sync::{Arc, OnceLock};

use sqlx::Row;

use super::webhooks::WEBHOOK_REGISTRATION_SCOPE;
use super::{placeholders, Result, Store, StoreError};
use crate::secrets::SecretKeys;

/// Rows sealed again per transaction at start.
const RESEAL_BATCH: usize = 200;

pub(super) fn webhook_place(id: &str) -> String {
    format!("webhooks:{id}")
}

pub(super) fn push_worker_place(id: &str) -> String {
    format!("push_workers:{id}")
}

pub(super) fn callback_place(project: &str) -> String {
    format!("projects:{project}:callback_secrets")
}

/// A project's Slack incoming-webhook URL: whoever holds it can post to the channel.
pub(super) fn slack_place(project: &str) -> String {
    format!("slack_integrations:{project}")
}

/// A project's credential for a sync's source.
pub(super) fn credential_place(project: &str, name: &str) -> String {
    format!("credentials:{project}:{name}")
}

/// A key the service generated for itself (the access tokens' signing key).
pub(super) fn service_key_place(name: &str) -> String {
    format!("service_keys:{name}")
}

/// A stored answer to a webhook registration: it shows the new webhook's secret.
pub(super) fn idempotency_place(project: &str, scope: &str, key: &str) -> String {
    format!("idempotency_keys:{project}:{scope}:{key}")
}

/// A column that holds secrets, and how to name the place each of its values is bound to.
struct SealedColumn {
    table: &'static str,
    column: &'static str,
    /// The columns that name a row, in the order `place` takes them.
    keys: &'static [&'static str],
    /// Only the rows where this column holds this value hold a secret.
    only: Option<(&'static str, &'static str)>,
    place: fn(&[String]) -> String,
}

const SEALED_COLUMNS: [SealedColumn; 7] = [
    SealedColumn {
        table: "slack_integrations",
        column: "webhook_url",
        keys: &["project_id"],
        only: None,
        place: |k| slack_place(&k[0]),
    },
    SealedColumn {
        table: "service_keys",
        column: "secret",
        keys: &["name"],
        only: None,
        place: |k| service_key_place(&k[0]),
    },
    SealedColumn {
        table: "credentials",
        column: "secret",
        keys: &["project_id", "name"],
        only: None,
        place: |k| credential_place(&k[0], &k[1]),
    },
    SealedColumn {
        table: "webhooks",
        column: "secrets",
        keys: &["id"],
        only: None,
        place: |k| webhook_place(&k[0]),
    },
    SealedColumn {
        table: "push_workers",
        column: "secret",
        keys: &["id"],
        only: None,
        place: |k| push_worker_place(&k[0]),
    },
    SealedColumn {
        table: "projects",
        column: "callback_secrets",
        keys: &["id"],
        only: None,
        place: |k| callback_place(&k[0]),
    },
    SealedColumn {
        table: "idempotency_keys",
        column: "response",
        keys: &["project_id", "scope", "idem_key"],
        only: Some(("scope", WEBHOOK_REGISTRATION_SCOPE)),
        place: |k| idempotency_place(&k[0], &k[1], &k[2]),
    },
];

/// What sealing again at start did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Values now sealed under the current key: stored in the clear before, or sealed
    /// under a previous key.
    pub resealed: u64,
    /// Values none of the keys given opens, left as they are (each is logged).
    pub unreadable: u64,
}

/// The keys a store seals and opens secrets with, shared by the parts that store secrets
/// and given once, after the store is connected (a store opened only to manage tenants
/// and tokens is never given them).
#[derive(Clone, Default)]
pub(super) struct Sealer(Arc<OnceLock<Arc<SecretKeys>>>);

impl Sealer {
    /// Keys given again are ignored: a store keeps the keys it started sealing with.
    pub(super) fn give(&self, keys: Arc<SecretKeys>) {
        let _ = self.0.set(keys);
    }

    fn keys(&self) -> Result<&SecretKeys> {
        self.0.get().map(|k| &**k).ok_or(StoreError::NoSecretKey)
    }

    /// `plain`, sealed under the current key for `place`.
    pub(super) fn seal(&self, plain: &str, place: &str) -> Result<String> {
        Ok(self.keys()?.seal(plain, place))
    }

    /// The secret stored at `place`.
    pub(super) fn open(&self, stored: &str, place: &str) -> Result<String> {
        self.keys()?
            .open(stored, place)
            .map_err(|error| StoreError::Secret {
                place: place.to_owned(),
                error,
            })
    }

    /// The secret stored at `place`, or why no key given opens it: what it signs then
    /// fails with that reason, while the read around it goes on.
    pub(super) fn open_or_reason(
        &self,
        stored: &str,
        place: &str,
    ) -> Result<std::result::Result<String, String>> {
        match self.open(stored, place) {
            Ok(secret) => Ok(Ok(secret)),
            Err(e @ StoreError::Secret { .. }) => Ok(Err(e.to_string())),
            Err(e) => Err(e),
        }
    }
}

impl Store {
    /// Seals again, under the current key, every stored secret that is not sealed under
    /// it, a batch of rows per transaction. Each row is written only if it still holds what
    /// was read, so a replica writing or resealing at the same time loses nothing, and a
    /// run cut short is simply finished by the next.
    pub async fn reseal_secrets(&self) -> Result<Resealed> {
        let keys = self.sealer.keys()?;
        let prefix = keys.current_prefix();
        let mut done = Resealed::default();
        for sealed in &SEALED_COLUMNS {
            let mut after: Option<Vec<String>> = None;
            loop {
                let rows = self
                    .needing_reseal(sealed, &prefix, after.as_deref())
                    .await?;
                let mut tx = self.pool.begin().await?;
                for row in &rows {
                    let ids = sealed
                        .keys
                        .iter()
                        .map(|k| row.try_get::<String, _>(*k))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    let stored: String = row.try_get(sealed.column)?;
                    let place = (sealed.place)(&ids);
                    match keys.open(&stored, &place) {
                        Ok(plain) => {
                            let sql = format!(
                                "UPDATE {table} SET {column} = $1 WHERE {matches} AND {column} = ${last}",
                                table = sealed.table,
                                column = sealed.column,
                                matches = key_conditions(sealed.keys, 2),
                                last = sealed.keys.len() + 2,
                            );
                            let mut query = sqlx::query(&sql).bind(keys.seal(&plain, &place));
                            for id in &ids {
                                query = query.bind(id.clone());
                            }
                            let written = query.bind(stored).execute(&mut *tx).await?;
                            done.resealed += written.rows_affected();
                        }
                        Err(error) => {
                            tracing::warn!(%place, %error, "a stored secret cannot be opened with the secret keys given; left as it is");
                            done.unreadable += 1;
                        }
                    }
                    after = Some(ids);
                }
                tx.commit().await?;
                if rows.len() < RESEAL_BATCH {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// The next rows of `sealed` (after `after`, in key order) whose value does not start
    /// with `prefix`.
    async fn needing_reseal(
        &self,
        sealed: &SealedColumn,
        prefix: &str,
        after: Option<&[String]>,
    ) -> Result<Vec<sqlx::any::AnyRow>> {
        let keys = sealed.keys.join(", ");
        let mut conditions = format!(
            "{column} IS NOT NULL AND substr({column}, 1, {len}) <> $1",
            column = sealed.column,
            len = prefix.len()
        );
        if let Some((column, value)) = sealed.only {
            // Written out, not bound: a partial index (`idempotency_webhook_answers`) serves
            // the query only when its condition is in the text. The value is a constant of
            // this module.
            debug_assert!(!value.contains('\''));
            conditions.push_str(&format!(" AND {column} = '{value}'"));
        }
        if after.is_some() {
            conditions.push_str(&format!(
                " AND ({keys}) > ({})",
                placeholders(2, sealed.keys.len())
            ));
        }
        let sql = format!(
            "SELECT {keys}, {column} FROM {table} WHERE {conditions} ORDER BY {keys} LIMIT {RESEAL_BATCH}",
            column = sealed.column,
            table = sealed.table,
        );
        let mut query = sqlx::query(&sql).bind(prefix.to_owned());
        for id in after.unwrap_or_default() {
            query = query.bind(id.clone());
        }
        Ok(query.fetch_all(&self.pool).await?)
    }
}

/// `a = $first AND b = $first+1 …`
fn key_conditions(keys: &[&str], first: usize) -> String {
    keys.iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = ${}", first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}
