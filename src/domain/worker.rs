//! Push workers: HTTP endpoints Relais sends tasks to.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::ids::{ProjectId, PushWorkerId, TenantId};
use super::requests::{checked_operation_type, http_url};
use super::FieldError;

pub const MAX_CONCURRENCY: i64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct PushWorker {
    pub id: PushWorkerId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub name: String,
    pub url: String,
    pub operation_types: Vec<String>,
    pub max_concurrency: u32,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

impl PushWorker {
    /// The `lease_worker` of the operations this worker holds.
    pub fn lease_name(id: PushWorkerId) -> String {
        format!("push:{id}")
    }

    pub fn holder_of(lease_worker: &str) -> Option<PushWorkerId> {
        lease_worker.strip_prefix("push:")?.parse().ok()
    }
}

/// `POST …/async/workers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushWorkerBody {
    pub url: String,
    pub name: Option<String>,
    pub operation_types: Vec<String>,
    pub max_concurrency: Option<i64>,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PushWorkerSpec {
    pub url: url::Url,
    pub name: String,
    pub operation_types: Vec<String>,
    pub max_concurrency: u32,
    /// `None`: generate one.
    pub secret: Option<String>,
}

impl TryFrom<PushWorkerBody> for PushWorkerSpec {
    type Error = FieldError;

    fn try_from(body: PushWorkerBody) -> Result<Self, FieldError> {
        let url = http_url(&body.url, "url")?;
        if body.operation_types.is_empty() {
            return Err(FieldError::new(
                "operationTypes",
                "must list at least one operation type",
            ));
        }
        let mut operation_types = Vec::new();
        for (i, t) in body.operation_types.iter().enumerate() {
            let t = checked_operation_type(t, &format!("operationTypes[{i}]"))?;
            if !operation_types.contains(&t) {
                operation_types.push(t);
            }
        }
        let max_concurrency = match body.max_concurrency {
            None => 10,
            Some(n) if (1..=MAX_CONCURRENCY).contains(&n) => n as u32,
            Some(_) => {
                return Err(FieldError::new(
                    "maxConcurrency",
                    format!("must be between 1 and {MAX_CONCURRENCY}"),
                ))
            }
        };
        if let Some(s) = &body.secret {
            if s.len() < 8 || s.len() > 256 {
                return Err(FieldError::new("secret", "must be 8 to 256 characters"));
            }
        }
        Ok(PushWorkerSpec {
            name: body
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| url.host_str().unwrap_or("worker").to_owned()),
            url,
            operation_types,
            max_concurrency,
            secret: body.secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registrations_are_checked() {
        let spec = |v: serde_json::Value| {
            PushWorkerSpec::try_from(serde_json::from_value::<PushWorkerBody>(v).unwrap())
        };
        let ok = spec(json!({"url": "https://w.example/run", "operationTypes": ["A", "A", "B"], "maxConcurrency": 3})).unwrap();
        assert_eq!(ok.operation_types, ["A", "B"]);
        assert_eq!(ok.max_concurrency, 3);
        let field = |v| spec(v).unwrap_err().field;
        assert_eq!(
            field(json!({"url": "ftp://w", "operationTypes": ["A"]})),
            "url"
        );
        assert_eq!(
            field(json!({"url": "https://w.example", "operationTypes": []})),
            "operationTypes"
        );
        assert_eq!(
            field(
                json!({"url": "https://w.example", "operationTypes": ["A"], "maxConcurrency": 0})
            ),
            "maxConcurrency"
        );
        assert_eq!(
            field(json!({"url": "https://w.example", "operationTypes": ["a b"]})),
            "operationTypes[0]"
        );
    }

    #[test]
    fn lease_names_identify_the_worker() {
        let id = PushWorkerId::new();
        assert_eq!(PushWorker::holder_of(&PushWorker::lease_name(id)), Some(id));
        assert_eq!(PushWorker::holder_of("w-7"), None);
    }
}
