use chrono::{DateTime, Utc};
use sqlx::{AnyPool, Row};

use super::{to_ms, Breakout, Result, Signals, StoreError};
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::{InvalidId, ProjectId, TenantId, TokenId, VitamTenantId};

fn parse_id<T: std::str::FromStr<Err = InvalidId>>(s: String) -> Result<T> {
    s.parse().map_err(StoreError::corrupt)
}

/// Tenants, their projects and API tokens, and their deletion with everything Relais
/// keeps for them.
#[derive(Clone)]
pub struct Tenants {
    pool: AnyPool,
    /// Told when tokens or projects go, so that no cache keeps accepting them.
    signals: Signals,
    /// Where the deleted projects' breakout tables are dropped.
    breakout: Breakout,
}

impl Tenants {
    pub(super) fn new(pool: AnyPool, signals: Signals, breakout: Breakout) -> Self {
        Tenants {
            pool,
            signals,
            breakout,
        }
    }

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
        sqlx::query("INSERT INTO vitam_tenants (tenant_id) VALUES ($1)")
            .bind(tenant.db())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((tenant, project))
    }

    /// The tenant's number for the `/v1` facade (`X-Tenant-Id`). `Ok(None)`: no such tenant.
    pub async fn vitam_id(&self, tenant: TenantId) -> Result<Option<VitamTenantId>> {
        let row = sqlx::query("SELECT vitam_id FROM vitam_tenants WHERE tenant_id = $1")
            .bind(tenant.db())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let n: i64 = row.try_get("vitam_id")?;
            VitamTenantId::from_db(n)
                .ok_or_else(|| StoreError::corrupt(format!("tenant number {n}")))
        })
        .transpose()
    }

    /// Adds a project to a tenant. `Ok(None)`: no such tenant.
    pub async fn create_project(
        &self,
        tenant: TenantId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ProjectId>> {
        if !self.tenant_exists(tenant).await? {
            return Ok(None);
        }
        let project = ProjectId::new();
        sqlx::query(
            "INSERT INTO projects (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(project.db())
        .bind(tenant.db())
        .bind(name)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        Ok(Some(project))
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
        self.insert_named_token(tenant, project, scopes, token_hash, None, now)
            .await
    }

    pub async fn insert_named_token(
        &self,
        tenant: TenantId,
        project: Option<ProjectId>,
        scopes: &[Scope],
        token_hash: &str,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<TokenId> {
        let id = TokenId::new();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, project_id, token_hash, scopes, created_at, name)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.db())
        .bind(tenant.db())
        .bind(project.map(|p| p.db()))
        .bind(token_hash)
        .bind(Scope::join(scopes))
        .bind(to_ms(now))
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn find_principal(&self, token_hash: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, project_id, scopes, name FROM api_tokens WHERE token_hash = $1",
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
            token_name: row.try_get("name")?,
            portal: None,
        }))
    }
}

/// What deleting a tenant or project removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub projects: u64,
    pub operations: u64,
    pub events: u64,
    pub deliveries: u64,
    pub webhooks: u64,
    pub tokens: u64,
    /// Tables written by breakout jobs, dropped from the analytics database.
    pub breakout_tables: Vec<String>,
}

impl Tenants {
    /// Deletes a tenant and everything Relais keeps for it (see [`Tenants::delete_projects`]).
    /// `Ok(None)`: no such tenant.
    pub async fn delete_tenant(&self, tenant: TenantId) -> Result<Option<Removed>> {
        if !self.tenant_exists(tenant).await? {
            return Ok(None);
        }
        let projects: Vec<ProjectId> = sqlx::query("SELECT id FROM projects WHERE tenant_id = $1")
            .bind(tenant.db())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| parse_id(row.try_get("id")?))
            .collect::<Result<_>>()?;
        let mut removed = self.delete_projects(&projects).await?;
        let mut tx = self.pool.begin().await?;
        removed.tokens += sqlx::query("DELETE FROM api_tokens WHERE tenant_id = $1")
            .bind(tenant.db())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM vitam_tenants WHERE tenant_id = $1")
            .bind(tenant.db())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(tenant.db())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.signals.announce_auth_change().await;
        Ok(Some(removed))
    }

    /// Deletes one project of a tenant and everything in it. `Ok(None)`: no such project.
    pub async fn delete_project(
        &self,
        tenant: TenantId,
        project: ProjectId,
    ) -> Result<Option<Removed>> {
        if !self.project_exists(tenant, project).await? {
            return Ok(None);
        }
        let removed = self.delete_projects(&[project]).await?;
        self.signals.announce_auth_change().await;
        Ok(Some(removed))
    }

    /// The projects' breakout tables are dropped first (they may live in another
    /// database); then, in one transaction, their outbox, events, idempotency records and
    /// registered dictionaries, and the projects themselves, whose operations, batches,
    /// webhooks, push workers and project tokens go with them.
    async fn delete_projects(&self, projects: &[ProjectId]) -> Result<Removed> {
        let mut removed = Removed::default();
        for project in projects {
            let dropped = self.breakout.drop_tables_of_project(*project).await?;
            removed.breakout_tables.extend(dropped);
        }
        let mut tx = self.pool.begin().await?;
        for project in projects {
            let p = project.db();
            let count = |sql: &'static str| sqlx::query(sql).bind(p.clone());
            for (total, sql) in [
                (
                    &mut removed.operations,
                    "SELECT COUNT(*) AS n FROM operations WHERE project_id = $1",
                ),
                (
                    &mut removed.webhooks,
                    "SELECT COUNT(*) AS n FROM webhooks WHERE project_id = $1",
                ),
            ] {
                let n: i64 = count(sql).fetch_one(&mut *tx).await?.try_get("n")?;
                *total += n.max(0) as u64;
            }
            for sql in [
                "DELETE FROM webhook_progress WHERE webhook_id IN \
                 (SELECT id FROM webhooks WHERE project_id = $1)",
                "DELETE FROM delivery_attempts WHERE project_id = $1",
                "DELETE FROM idempotency_keys WHERE project_id = $1",
                "DELETE FROM breakout_dictionaries WHERE project_id = $1",
                "DELETE FROM breakout_uploads WHERE project_id = $1",
            ] {
                count(sql).execute(&mut *tx).await?;
            }
            removed.deliveries += count("DELETE FROM deliveries WHERE project_id = $1")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            removed.events += count("DELETE FROM events WHERE project_id = $1")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            removed.tokens += count("DELETE FROM api_tokens WHERE project_id = $1")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            removed.projects += count("DELETE FROM projects WHERE id = $1")
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(removed)
    }
}
