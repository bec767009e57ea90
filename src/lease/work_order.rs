//! The work order: what a worker is handed for an attempt, whether it pulled it (the
//! lease answer) or is pushed it (the task body, which adds how to report back).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::ids::{LeaseToken, OperationId};
use crate::domain::operation::{Operation, Phase, PhaseStatus, Priority};

/// The operation, its lease, and what earlier runs left: checkpoints by phase, the
/// completed phases and where to resume. Borrows the operation, which it is written from
/// at once.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrder<'a> {
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub operation_type: &'a str,
    pub operation_name: &'a str,
    pub priority: Priority,
    #[schema(value_type = Object)]
    pub parameters: &'a Value,
    pub attempt: u32,
    pub max_attempts: u32,
    #[schema(value_type = String)]
    pub lease_token: &'a LeaseToken,
    #[serde(serialize_with = "opt_millis")]
    #[schema(value_type = Option<String>)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Seconds within which the worker must report (progress is the heartbeat).
    pub heartbeat_timeout: f64,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String)]
    pub timeout_at: DateTime<Utc>,
    /// Each phase's last checkpoint, by phase name.
    #[schema(value_type = Object)]
    pub checkpoints: BTreeMap<&'a str, &'a Value>,
    #[schema(value_type = Vec<Object>)]
    pub completed_phases: Vec<&'a Phase>,
    pub resume_from_phase: Option<&'a str>,
    /// The results of the batch members this one depends on, by their keys.
    #[schema(value_type = Object)]
    pub dependency_results: Cow<'a, Value>,
}

impl<'a> WorkOrder<'a> {
    pub fn new(op: &'a Operation, lease: &'a LeaseToken, heartbeat: Duration) -> Self {
        WorkOrder {
            operation_id: op.id,
            operation_type: &op.operation_type,
            operation_name: &op.operation_name,
            priority: op.priority,
            parameters: &op.parameters,
            attempt: op.attempt,
            max_attempts: op.max_attempts(),
            lease_token: lease,
            lease_expires_at: op.lease.as_ref().map(|l| l.expires_at),
            heartbeat_timeout: heartbeat.as_secs_f64(),
            timeout_at: op.timeout_at,
            checkpoints: op
                .phases
                .iter()
                .filter_map(|p| Some((p.phase_name.as_str(), p.checkpoint.as_ref()?)))
                .collect(),
            completed_phases: op
                .phases
                .iter()
                .filter(|p| p.status == PhaseStatus::Completed)
                .collect(),
            resume_from_phase: op.resume_from_phase.as_deref(),
            dependency_results: match op.batch.as_ref().and_then(|b| b.inputs.as_ref()) {
                Some(inputs) => Cow::Borrowed(inputs),
                None => Cow::Owned(Value::Object(Default::default())),
            },
        }
    }
}

/// Workers parse these times; milliseconds are what the database keeps.
fn millis<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn opt_millis<S: Serializer>(time: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => millis(time, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::ids::{BatchId, ProjectId, TenantId};
    use crate::domain::operation::{
        BatchMembership, Callbacks, Lease, Notifications, OperationSpec,
    };
    use crate::domain::retry::RetryPolicy;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 250_000_000).unwrap()
    }

    fn leased() -> (Operation, LeaseToken) {
        let spec = OperationSpec {
            operation_type: "Report".into(),
            operation_name: "monthly".into(),
            description: None,
            priority: Priority::High,
            parameters: json!({"month": 3}),
            callbacks: Callbacks::default(),
            notifications: Notifications::default(),
            timeout: Duration::from_secs(60),
            retry_policy: RetryPolicy::OPERATION_DEFAULT,
        };
        let mut op = Operation::new(
            OperationId::new(),
            TenantId::new(),
            ProjectId::new(),
            spec,
            t(0),
        );
        let token = LeaseToken::generate();
        op.attempt = 2;
        op.lease = Some(Lease {
            token: token.clone(),
            worker_id: Some("w".into()),
            expires_at: t(30),
        });
        op.resume_from_phase = Some("load".into());
        op.phases = vec![
            Phase {
                phase_name: "extract".into(),
                status: PhaseStatus::Completed,
                start_time: Some(t(1)),
                end_time: Some(t(2)),
                results: Some(json!({"rows": 5})),
                checkpoint: Some(json!({"offset": 5})),
                progress: None,
                current_activity: None,
                counters: Default::default(),
                details: Default::default(),
            },
            Phase {
                phase_name: "load".into(),
                status: PhaseStatus::Running,
                start_time: Some(t(2)),
                end_time: None,
                results: None,
                checkpoint: Some(json!({"offset": 2})),
                progress: None,
                current_activity: None,
                counters: Default::default(),
                details: Default::default(),
            },
        ];
        (op, token)
    }

    #[test]
    fn the_order_carries_the_lease_and_what_earlier_runs_left() {
        let (op, token) = leased();
        let order =
            serde_json::to_value(WorkOrder::new(&op, &token, Duration::from_millis(400))).unwrap();
        assert_eq!(
            order,
            json!({
                "operationId": op.id,
                "operationType": "Report",
                "operationName": "monthly",
                "priority": "High",
                "parameters": {"month": 3},
                "attempt": 2,
                "maxAttempts": 4,
                "leaseToken": token.as_str(),
                "leaseExpiresAt": "2023-11-14T22:13:50.250Z",
                "heartbeatTimeout": 0.4,
                "timeoutAt": "2023-11-14T22:14:20.250Z",
                "checkpoints": {"extract": {"offset": 5}, "load": {"offset": 2}},
                "completedPhases": [{
                    "phaseName": "extract", "status": "Completed",
                    "startTime": "2023-11-14T22:13:21.250Z", "endTime": "2023-11-14T22:13:22.250Z",
                    "results": {"rows": 5}, "checkpoint": {"offset": 5}
                }],
                "resumeFromPhase": "load",
                "dependencyResults": {},
            })
        );
    }

    #[test]
    fn a_batch_member_gets_its_dependencies_results() {
        let (mut op, token) = leased();
        op.lease = None;
        op.batch = Some(BatchMembership {
            batch_id: BatchId::new(),
            key: "b".into(),
            inputs: Some(json!({"a": {"summary": 1}})),
        });
        let order =
            serde_json::to_value(WorkOrder::new(&op, &token, Duration::from_secs(30))).unwrap();
        assert_eq!(order["dependencyResults"], json!({"a": {"summary": 1}}));
        assert_eq!(order["leaseExpiresAt"], Value::Null);
    }
}
