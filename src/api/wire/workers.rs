//! The worker protocol's bodies: lease, progress (the heartbeat), complete, fail.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use utoipa::ToSchema;

use super::{present, present_json};
use crate::domain::fields::{checked_name, MAX_NAME_LEN};
use crate::domain::operation::{
    checked_lease_batch, checked_lease_wait, checked_operation_types, checked_percentage,
    checked_phase_counters, checked_phase_details, LeaseRequest, OperationError, OperationResult,
    PhaseReport, PhaseStatus, ProgressReport, MAX_TYPE_LEN,
};
use crate::domain::FieldError;

/// `POST …/async/workers/lease`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseBody {
    #[serde(default)]
    pub operation_types: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub max: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub wait_seconds: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub worker_id: Option<String>,
}

impl TryFrom<LeaseBody> for LeaseRequest {
    type Error = FieldError;

    fn try_from(body: LeaseBody) -> Result<Self, FieldError> {
        let operation_types = checked_operation_types(&body.operation_types, "operationTypes")?;
        let max = match body.max {
            None => 1,
            Some(n) => checked_lease_batch(n, "max")?,
        };
        let wait = match body.wait_seconds {
            None => Duration::ZERO,
            Some(w) => checked_lease_wait(w, "waitSeconds")?,
        };
        let worker_id = body
            .worker_id
            .map(|w| checked_name(&w, "workerId", MAX_TYPE_LEN))
            .transpose()?;
        Ok(LeaseRequest {
            operation_types,
            max,
            wait,
            worker_id,
        })
    }
}

/// `POST …/operation/{id}/progress`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProgressBody {
    pub lease_token: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub percentage: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub current_phase: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub total_phases: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub processed_records: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub total_records: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub phase: Option<PhaseBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhaseBody {
    pub phase_name: String,
    #[schema(example = "Running")]
    pub status: PhaseStatus,
    #[serde(default, deserialize_with = "present_json")]
    #[schema(nullable = false)]
    pub results: Option<Value>,
    #[serde(default, deserialize_with = "present_json")]
    #[schema(nullable = false)]
    pub checkpoint: Option<Value>,
    /// The phase's own percentage, 0 to 100.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub progress: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub current_activity: Option<String>,
    /// The phase's own counts by name (`{"modelsTraining": 3}`), shown flat in `phases[]`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    #[schema(value_type = Option<Object>)]
    pub counters: Option<BTreeMap<String, Number>>,
    /// The phase's other values by name, of any JSON type (`{"validationResults": {…}}`,
    /// `{"estimatedStartTime": "…"}` on a pending phase), shown flat in `phases[]` as the
    /// counters are.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    #[schema(value_type = Option<Object>)]
    pub details: Option<BTreeMap<String, Value>>,
}

impl ProgressBody {
    /// The lease token the report is made under, and the report.
    pub fn into_report(self) -> Result<(String, ProgressReport), FieldError> {
        let percentage = self
            .percentage
            .map(|p| checked_percentage(p, "percentage"))
            .transpose()?;
        let total_phases =
            count(self.total_phases, "totalPhases")?.map(|n| n.min(u32::MAX as u64) as u32);
        let processed_records = count(self.processed_records, "processedRecords")?;
        let total_records = count(self.total_records, "totalRecords")?;
        let current_phase = self
            .current_phase
            .map(|p| checked_name(&p, "currentPhase", MAX_NAME_LEN))
            .transpose()?;
        let phase = match self.phase {
            Some(p) => {
                let counters =
                    checked_phase_counters(p.counters.unwrap_or_default(), "phase.counters")?;
                Some(PhaseReport {
                    phase_name: checked_name(&p.phase_name, "phase.phaseName", MAX_NAME_LEN)?,
                    status: p.status,
                    results: p.results,
                    checkpoint: p.checkpoint,
                    progress: p
                        .progress
                        .map(|v| checked_percentage(v, "phase.progress"))
                        .transpose()?,
                    current_activity: p
                        .current_activity
                        .map(|a| checked_name(&a, "phase.currentActivity", MAX_NAME_LEN))
                        .transpose()?,
                    details: checked_phase_details(
                        p.details.unwrap_or_default(),
                        &counters,
                        "phase.details",
                    )?,
                    counters,
                })
            }
            None => None,
        };
        Ok((
            self.lease_token,
            ProgressReport {
                percentage,
                current_phase,
                total_phases,
                processed_records,
                total_records,
                phase,
            },
        ))
    }
}

/// Counts arrive as JSON numbers of either sign.
fn count(value: Option<i64>, field: &str) -> Result<Option<u64>, FieldError> {
    match value {
        Some(n) if n < 0 => Err(FieldError::new(field, "must not be negative")),
        n => Ok(n.map(|n| n as u64)),
    }
}

/// `POST …/operation/{id}/complete`: the one body that takes fields of the worker's own
/// choosing (`performance`, `recommendations`, …), kept and returned with the results.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteBody {
    pub lease_token: String,
    #[serde(default, deserialize_with = "present_json")]
    #[schema(nullable = false)]
    pub summary: Option<Value>,
    #[serde(default)]
    pub phase_results: Vec<Value>,
    #[serde(default)]
    pub artifacts: Vec<Value>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}

impl CompleteBody {
    /// The lease token the result is reported under, and the result.
    pub fn into_result(self) -> Result<(String, OperationResult), FieldError> {
        let result = OperationResult {
            summary: self.summary.unwrap_or_default(),
            phase_results: self.phase_results,
            artifacts: self.artifacts,
            extra: self.extra,
        };
        result.check_extra()?;
        Ok((self.lease_token, result))
    }
}

/// `POST …/operation/{id}/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailBody {
    pub lease_token: String,
    pub error: ErrorBody,
    #[serde(default)]
    pub retryable: bool,
}

/// `error` of a failure report: `details` is free-form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ReportedError)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, deserialize_with = "present_json")]
    #[schema(nullable = false)]
    pub details: Option<Value>,
}

impl From<ErrorBody> for OperationError {
    fn from(body: ErrorBody) -> Self {
        OperationError {
            code: body.code,
            message: body.message,
            details: body.details,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::operation::MAX_LISTED_TYPES;

    #[test]
    fn lease_requests_are_bounded() {
        let lease = |body: Value| {
            LeaseRequest::try_from(serde_json::from_value::<LeaseBody>(body).unwrap())
        };
        assert_eq!(lease(json!({"max": 0})).unwrap_err().field, "max");
        assert_eq!(
            lease(json!({"waitSeconds": 3600})).unwrap_err().field,
            "waitSeconds"
        );
        assert_eq!(
            lease(json!({"operationTypes": ["A", "B\u{0}"]}))
                .unwrap_err()
                .field,
            "operationTypes[1]"
        );
        let many: Vec<String> = (0..=MAX_LISTED_TYPES).map(|i| format!("T{i}")).collect();
        assert_eq!(
            lease(json!({ "operationTypes": many })).unwrap_err().field,
            "operationTypes"
        );
        let repeated = vec!["A"; MAX_LISTED_TYPES + 1];
        let ok = lease(json!({"operationTypes": repeated, "max": 10, "waitSeconds": 20})).unwrap();
        assert_eq!(ok.operation_types, ["A"]);
        assert_eq!(ok.max, 10);
        assert_eq!(ok.wait, Duration::from_secs(20));
    }

    #[test]
    fn progress_reports_are_range_checked() {
        let report = |body: Value| {
            serde_json::from_value::<ProgressBody>(body)
                .unwrap()
                .into_report()
        };
        assert_eq!(
            report(json!({"leaseToken": "l", "percentage": 120}))
                .unwrap_err()
                .field,
            "percentage"
        );
        assert_eq!(
            report(json!({"leaseToken": "l", "processedRecords": -1}))
                .unwrap_err()
                .field,
            "processedRecords"
        );
        assert_eq!(
            report(
                json!({"leaseToken": "l", "phase": {"phaseName": "p", "status": "Running",
                "counters": {"rows": 1}, "details": {"rows": "one"}}})
            )
            .unwrap_err()
            .field,
            "phase.details.rows"
        );
        let (_, detailed) = report(
            json!({"leaseToken": "l", "phase": {"phaseName": "p", "status": "Pending",
            "details": {"estimatedStartTime": "2024-01-20T11:55:00Z"}}}),
        )
        .unwrap();
        assert_eq!(
            detailed.phase.unwrap().details["estimatedStartTime"],
            "2024-01-20T11:55:00Z"
        );
        let (token, ok) = report(json!({"leaseToken": "l", "percentage": 40, "phase": {"phaseName": "p", "status": "Running"}})).unwrap();
        assert_eq!(token, "l");
        assert_eq!(ok.phase.unwrap().status, PhaseStatus::Running);
    }
}
