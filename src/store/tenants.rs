use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{to_ms, Result, Store, StoreError};
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::{InvalidId, ProjectId, TenantId, TokenId};

fn parse_id<T: std::str::FromStr<Err = InvalidId>>(s: String) -> Result<T> {
    s.parse().map_err(StoreError::corrupt)
}

impl Store {
    /// Creates a tenant with its first project, named `default`.
    pub async fn create_tenant(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(TenantId, ProjectId)> {
        let tenant = TenantId::new();
        let project = ProjectId::new();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.db())
            .bind(name)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO projects (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(project.db())
        .bind(tenant.db())
        .bind("default")
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((tenant, project))
    }

    pub async fn tenant_exists(&self, tenant: TenantId) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
            .bind(tenant.db())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn project_exists(&self, tenant: TenantId, project: ProjectId) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM projects WHERE id = $1 AND tenant_id = $2")
            .bind(project.db())
            .bind(tenant.db())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn insert_token(
        &self,
        tenant: TenantId,
        project: Option<ProjectId>,
        scopes: &[Scope],
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenId> {
        let id = TokenId::new();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, project_id, token_hash, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.db())
        .bind(tenant.db())
        .bind(project.map(|p| p.db()))
        .bind(token_hash)
        .bind(Scope::join(scopes))
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn find_principal(&self, token_hash: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, project_id, scopes FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let scopes: String = row.try_get("scopes")?;
        Ok(Some(Principal {
            token_id: parse_id(row.try_get("id")?)?,
            tenant_id: parse_id(row.try_get("tenant_id")?)?,
            project_id: row
                .try_get::<Option<String>, _>("project_id")?
                .map(parse_id)
                .transpose()?,
            scopes: Scope::parse_list(&scopes).map_err(StoreError::corrupt)?,
            operation: None,
        }))
    }
}
