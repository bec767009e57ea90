//! Push workers: HTTP endpoints Relais sends tasks to.

use chrono::{DateTime, Utc};

use super::ids::{ProjectId, PushWorkerId, TenantId};
use super::operation::checked_operation_types;
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
    /// What signs its tasks; `Err` says why the stored secret cannot be opened (it was
    /// sealed under a key this process was not given, or is damaged).
    pub secret: Result<String, String>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct PushWorkerSpec {
    pub url: url::Url,
    pub name: String,
    pub operation_types: Vec<String>,
    pub max_concurrency: u32,
    /// `None`: generate one.
    pub secret: Option<String>,
}

/// The types a push worker runs: at least one, each checked; a repeated one counts once.
pub fn checked_worker_types(types: &[String], field: &str) -> Result<Vec<String>, FieldError> {
    if types.is_empty() {
        return Err(FieldError::new(
            field,
            "must list at least one operation type",
        ));
    }
    checked_operation_types(types, field)
}

/// How many tasks a push worker is sent at once: 1 to [`MAX_CONCURRENCY`].
pub fn checked_max_concurrency(n: i64, field: &str) -> Result<u32, FieldError> {
    if !(1..=MAX_CONCURRENCY).contains(&n) {
        return Err(FieldError::new(
            field,
            format!("must be between 1 and {MAX_CONCURRENCY}"),
        ));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_types_and_concurrency_are_checked() {
        let types = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            checked_worker_types(&types(&["A", "A", "B"]), "operationTypes").unwrap(),
            ["A", "B"]
        );
        assert_eq!(
            checked_worker_types(&[], "operationTypes")
                .unwrap_err()
                .field,
            "operationTypes"
        );
        assert_eq!(
            checked_worker_types(&types(&["A", "a b"]), "operationTypes")
                .unwrap_err()
                .field,
            "operationTypes[1]"
        );
        assert_eq!(checked_max_concurrency(MAX_CONCURRENCY, "m").unwrap(), 1000);
        assert!(checked_max_concurrency(0, "m").is_err());
        assert!(checked_max_concurrency(MAX_CONCURRENCY + 1, "m").is_err());
    }

    #[test]
    fn lease_names_identify_the_worker() {
        let id = PushWorkerId::new();
        assert_eq!(PushWorker::holder_of(&PushWorker::lease_name(id)), Some(id));
        assert_eq!(PushWorker::holder_of("w-7"), None);
    }
}
