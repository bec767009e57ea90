//! `POST …/async/workers`: registering a push worker.

use serde::Deserialize;
use utoipa::ToSchema;

use super::present;
use crate::domain::fields::{check_signing_secret, http_url};
use crate::domain::worker::{checked_max_concurrency, checked_worker_types, PushWorkerSpec};
use crate::domain::FieldError;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushWorkerBody {
    pub url: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    pub operation_types: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub max_concurrency: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub secret: Option<String>,
}

impl TryFrom<PushWorkerBody> for PushWorkerSpec {
    type Error = FieldError;

    fn try_from(body: PushWorkerBody) -> Result<Self, FieldError> {
        let url = http_url(&body.url, "url")?;
        let operation_types = checked_worker_types(&body.operation_types, "operationTypes")?;
        let max_concurrency = match body.max_concurrency {
            None => 10,
            Some(n) => checked_max_concurrency(n, "maxConcurrency")?,
        };
        if let Some(secret) = &body.secret {
            check_signing_secret(secret, "secret")?;
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
    use serde_json::json;

    use super::*;

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
}
