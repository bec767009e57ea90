//! A project's Slack integration (its incoming-webhook URL, sealed: whoever holds it can
//! post to the channel) and its alert contacts.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::sealed::{slack_place, Sealer};
use super::{from_json, from_ms, to_json, to_ms, Result, StoreError};
use crate::domain::ids::{ProjectId, TenantId};
use crate::domain::notify::AlertContacts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationStatus {
    Active,
    /// Slack said the channel is gone; a new `PUT` turns it on again.
    Disabled,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Disabled => "Disabled",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "Active" => Ok(Self::Active),
            "Disabled" => Ok(Self::Disabled),
            other => Err(StoreError::corrupt(format!("integration status {other}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackIntegration {
    pub project_id: ProjectId,
    /// Opened: the API masks it before showing it.
    pub webhook_url: String,
    pub status: IntegrationStatus,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlertContacts {
    pub contacts: AlertContacts,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Integrations {
    pool: AnyPool,
    sealer: Sealer,
}

impl Integrations {
    pub(super) fn new(pool: AnyPool, sealer: Sealer) -> Self {
        Integrations { pool, sealer }
    }

    /// Sets the project's Slack URL, active again if it was disabled.
    pub async fn put_slack(
        &self,
        tenant: TenantId,
        project: ProjectId,
        webhook_url: &str,
        now: DateTime<Utc>,
    ) -> Result<SlackIntegration> {
        let sealed = self.sealer.seal(webhook_url, &slack_place(&project.db()))?;
        sqlx::query(
            "INSERT INTO slack_integrations (project_id, tenant_id, webhook_url, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (project_id) DO UPDATE SET webhook_url = excluded.webhook_url,
                 status = excluded.status, disabled_reason = NULL, disabled_at = NULL,
                 updated_at = excluded.updated_at",
        )
        .bind(project.db())
        .bind(tenant.db())
        .bind(sealed)
        .bind(IntegrationStatus::Active.as_str())
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        self.slack(project)
            .await?
            .ok_or_else(|| StoreError::corrupt("the Slack integration just written is gone"))
    }

    pub async fn slack(&self, project: ProjectId) -> Result<Option<SlackIntegration>> {
        let row = sqlx::query(
            "SELECT project_id, webhook_url, status, disabled_reason, disabled_at, created_at, updated_at
             FROM slack_integrations WHERE project_id = $1",
        )
        .bind(project.db())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| self.decode_slack(&row)).transpose()
    }

    /// Whether a notification to Slack can be accepted for the project now.
    pub async fn slack_active(&self, project: ProjectId) -> Result<bool> {
        let row = sqlx::query("SELECT status FROM slack_integrations WHERE project_id = $1")
            .bind(project.db())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => {
                IntegrationStatus::parse(&row.try_get::<String, _>("status")?)?
                    == IntegrationStatus::Active
            }
            None => false,
        })
    }

    pub async fn delete_slack(&self, project: ProjectId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM slack_integrations WHERE project_id = $1")
            .bind(project.db())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn put_alerts(
        &self,
        tenant: TenantId,
        project: ProjectId,
        contacts: &AlertContacts,
        now: DateTime<Utc>,
    ) -> Result<StoredAlertContacts> {
        sqlx::query(
            "INSERT INTO alert_contacts (project_id, tenant_id, email, slack, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project_id) DO UPDATE SET email = excluded.email,
                 slack = excluded.slack, updated_at = excluded.updated_at",
        )
        .bind(project.db())
        .bind(tenant.db())
        .bind(to_json(&contacts.email))
        .bind(i64::from(contacts.slack))
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        Ok(StoredAlertContacts {
            contacts: contacts.clone(),
            updated_at: now,
        })
    }

    pub async fn alerts(&self, project: ProjectId) -> Result<Option<StoredAlertContacts>> {
        let row = sqlx::query(
            "SELECT email, slack, updated_at FROM alert_contacts WHERE project_id = $1",
        )
        .bind(project.db())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(StoredAlertContacts {
                contacts: decode_contacts(&row)?,
                updated_at: from_ms(row.try_get("updated_at")?)?,
            })
        })
        .transpose()
    }

    pub async fn delete_alerts(&self, project: ProjectId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM alert_contacts WHERE project_id = $1")
            .bind(project.db())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    fn decode_slack(&self, row: &AnyRow) -> Result<SlackIntegration> {
        let project: String = row.try_get("project_id")?;
        Ok(SlackIntegration {
            webhook_url: self.sealer.open(
                &row.try_get::<String, _>("webhook_url")?,
                &slack_place(&project),
            )?,
            project_id: project.parse().map_err(StoreError::corrupt)?,
            status: IntegrationStatus::parse(&row.try_get::<String, _>("status")?)?,
            disabled_reason: row.try_get("disabled_reason")?,
            disabled_at: row
                .try_get::<Option<i64>, _>("disabled_at")?
                .map(from_ms)
                .transpose()?,
            created_at: from_ms(row.try_get("created_at")?)?,
            updated_at: from_ms(row.try_get("updated_at")?)?,
        })
    }
}

pub(super) fn decode_contacts(row: &AnyRow) -> Result<AlertContacts> {
    Ok(AlertContacts {
        email: from_json(&row.try_get::<String, _>("email")?, "email")?,
        slack: row.try_get::<i64, _>("slack")? != 0,
    })
}
