use sqlx::Row;

use super::{Result, Store};
use crate::domain::ids::ProjectId;

/// The first answer given to a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status_code: u16,
    pub body: String,
}

impl Store {
    pub async fn find_idempotent_response(
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
        row.map(|row| {
            Ok(StoredResponse {
                request_hash: row.try_get("request_hash")?,
                status_code: row.try_get::<i64, _>("status_code")? as u16,
                body: row.try_get("response")?,
            })
        })
        .transpose()
    }
}
