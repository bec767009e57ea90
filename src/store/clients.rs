//! OAuth2 clients (their secrets as hashes only), and the key access tokens are signed
//! with: generated once, stored sealed, shared by every replica.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::sealed::{service_key_place, Sealer};
use super::{from_ms, to_ms, Result, StoreError};
use crate::domain::auth::Scope;
use crate::domain::ids::{ClientId, TenantId};
use crate::domain::oauth::Client;

/// The name the access tokens' signing key is stored under.
const ACCESS_TOKEN_KEY: &str = "access_tokens";

#[derive(Clone)]
pub struct Clients {
    pool: AnyPool,
    sealer: Sealer,
}

const COLUMNS: &str =
    "id, tenant_id, project_id, name, scopes, secret_hash, created_at, revoked_at";

fn decode(row: &AnyRow) -> Result<Client> {
    let id: String = row.try_get("id")?;
    let tenant: String = row.try_get("tenant_id")?;
    let project: Option<String> = row.try_get("project_id")?;
    let scopes: String = row.try_get("scopes")?;
    Ok(Client {
        id: id.parse().map_err(StoreError::corrupt)?,
        tenant_id: tenant.parse().map_err(StoreError::corrupt)?,
        project_id: project
            .map(|p| p.parse().map_err(StoreError::corrupt))
            .transpose()?,
        name: row.try_get("name")?,
        scopes: Scope::parse_list(&scopes).map_err(StoreError::corrupt)?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(from_ms)
            .transpose()?,
    })
}

impl Clients {
    pub(super) fn new(pool: AnyPool, sealer: Sealer) -> Self {
        Clients { pool, sealer }
    }

    pub async fn insert(&self, client: &Client) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO oauth_clients ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(client.id.db())
        .bind(client.tenant_id.db())
        .bind(client.project_id.map(|p| p.db()))
        .bind(client.name.clone())
        .bind(Scope::join(&client.scopes))
        .bind(client.secret_hash.clone())
        .bind(to_ms(client.created_at))
        .bind(client.revoked_at.map(to_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: ClientId) -> Result<Option<Client>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM oauth_clients WHERE id = $1"
        ))
        .bind(id.db())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every client, or a tenant's, oldest first.
    pub async fn list(&self, tenant: Option<TenantId>) -> Result<Vec<Client>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM oauth_clients WHERE $1 IS NULL OR tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant.map(|t| t.db()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// `false` when there is no such client or it was revoked already.
    pub async fn revoke(&self, id: ClientId, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE oauth_clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id.db())
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The access tokens' signing key: the stored one, or `generated` stored now. Two
    /// replicas starting together store one key: the second insert does nothing and both
    /// read the first. A stored key that no secret key given opens (the key that sealed
    /// it is lost) is replaced by `generated`: the tokens it signed can no longer be
    /// checked anyway, and they are short-lived.
    pub async fn access_token_key(&self, generated: &str, now: DateTime<Utc>) -> Result<String> {
        let place = service_key_place(ACCESS_TOKEN_KEY);
        let sealed = self.sealer.seal(generated, &place)?;
        sqlx::query(
            "INSERT INTO service_keys (name, secret, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(ACCESS_TOKEN_KEY)
        .bind(sealed.clone())
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        let stored = self.stored_key().await?;
        match self.sealer.open(&stored, &place) {
            Err(StoreError::Secret { error, .. }) => {
                tracing::warn!(%error, "the stored access-token signing key cannot be opened with the secret keys given; replacing it (access tokens issued before are no longer accepted)");
                sqlx::query(
                    "UPDATE service_keys SET secret = $1, created_at = $2 WHERE name = $3 AND secret = $4",
                )
                .bind(sealed)
                .bind(to_ms(now))
                .bind(ACCESS_TOKEN_KEY)
                .bind(stored)
                .execute(&self.pool)
                .await?;
                // Another replica may have replaced it first: read what won.
                let stored = self.stored_key().await?;
                self.sealer.open(&stored, &place)
            }
            opened => opened,
        }
    }

    async fn stored_key(&self) -> Result<String> {
        Ok(
            sqlx::query("SELECT secret FROM service_keys WHERE name = $1")
                .bind(ACCESS_TOKEN_KEY)
                .fetch_one(&self.pool)
                .await?
                .try_get("secret")?,
        )
    }
}
