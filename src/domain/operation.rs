//! The operation aggregate: its states, the transitions between them, and the events each
//! transition emits. Pure code: callers load an operation, apply one method, and persist
//! the result and the returned events in one transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Number, Value};

use super::event::{EventDraft, EventType};
use super::ids::{BatchId, ExecutionId, OperationId, ProjectId, TenantId};
use super::notify::{self, Ending, Notice, Notify, SubjectKind};
use super::retry::RetryPolicy;
use super::FieldError;

mod attempt;
mod spec;

pub use attempt::{
    checked_lease_batch, checked_lease_wait, checked_percentage, checked_phase_counters,
    checked_phase_details, AttemptStart, Backoff, EndedLease, Lease, LeaseReport, LeaseRequest,
    PhaseReport, ProgressReport, MAX_LEASE_BATCH, MAX_PHASE_COUNTERS, MAX_WAIT_SECONDS,
};
pub use spec::{
    checked_operation_type, checked_operation_types, checked_timeout, Callbacks, Notifications,
    SlackNotification, DEFAULT_TIMEOUT_SECONDS, MAX_LISTED_TYPES, MAX_TIMEOUT_SECONDS,
    MAX_TYPE_LEN,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationStatus {
    /// A batch member waiting for its dependencies.
    Pending,
    Initiated,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    /// A batch member that will not run because an upstream member failed.
    Skipped,
}

impl OperationStatus {
    pub const ALL: [OperationStatus; 8] = [
        Self::Pending,
        Self::Initiated,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::Timeout,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Initiated => "Initiated",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
            Self::Timeout => "Timeout",
            Self::Skipped => "Skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::Timeout | Self::Skipped
        )
    }

    /// The one place that says which state may follow which.
    pub fn can_become(self, next: OperationStatus) -> bool {
        use OperationStatus::*;
        matches!(
            (self, next),
            (Pending, Initiated | Cancelled | Skipped)
                | (Initiated, Running | Cancelled | Timeout | Skipped)
                | (Running, Running | Completed | Failed | Cancelled | Timeout)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    Low,
    Normal,
    High,
    Critical,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Self::Low, Self::Normal, Self::High, Self::Critical];

    /// Higher runs first; stored so the claim query can order by it.
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.rank() == rank)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Normal => "Normal",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhaseStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub phase_name: String,
    pub status: PhaseStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
    /// The phase's own percentage, as its worker last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// What the phase is doing now, in the worker's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_activity: Option<String>,
    /// The phase's own counts (`modelsTraining`, `recordsProcessed`, …), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, Number>,
    /// The phase's other values of the worker's choosing (`validationResults`,
    /// `estimatedStartTime`, …), by name; never a counter's name too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Value>,
}

impl Phase {
    /// The names a phase's own fields take, which its counters and details, shown beside them, may not.
    pub const FIELDS: [&'static str; 11] = [
        "phaseName",
        "status",
        "startTime",
        "endTime",
        "duration",
        "results",
        "checkpoint",
        "progress",
        "currentActivity",
        "counters",
        "details",
    ];

    /// A phase named before its worker has reported on it.
    pub fn pending(phase_name: String) -> Self {
        Phase {
            phase_name,
            status: PhaseStatus::Pending,
            start_time: None,
            end_time: None,
            results: None,
            checkpoint: None,
            progress: None,
            current_activity: None,
            counters: BTreeMap::new(),
            details: BTreeMap::new(),
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.status, PhaseStatus::Pending | PhaseStatus::Running)
    }
}

/// What the executor last reported; nothing here is ever guessed by Relais.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub percentage: Option<f64>,
    pub current_phase: Option<String>,
    pub total_phases: Option<u32>,
    pub processed_records: Option<u64>,
    pub total_records: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// One finished attempt, kept so status can show why earlier attempts failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub attempt: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    pub error: OperationError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancellation {
    pub reason: Option<String>,
    pub cancelled_at: DateTime<Utc>,
    pub cancelled_by: String,
    pub preserve_partial_results: bool,
    pub force_termination: bool,
    pub notify_callbacks: bool,
    pub progress_at_cancellation: Option<f64>,
    pub phase_at_cancellation: Option<String>,
    /// Whether a worker held the operation when it was cancelled (it learns on its next
    /// heartbeat).
    pub was_running: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationResult {
    #[serde(default)]
    pub summary: Value,
    #[serde(default)]
    pub phase_results: Vec<Value>,
    #[serde(default)]
    pub artifacts: Vec<Value>,
    /// Every other top-level value the worker reported (`performance`, `recommendations`,
    /// …): kept as given and returned beside the others.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OperationResult {
    /// The fields of the results document, which a worker's own values may not take.
    pub const FIELDS: [&'static str; 12] = [
        "operationId",
        "operationType",
        "operationName",
        "status",
        "success",
        "partial",
        "completionTime",
        "totalDuration",
        "summary",
        "phaseResults",
        "artifacts",
        "leaseToken",
    ];

    /// A worker's own values are shown beside the document's fields: none may take the
    /// name of one, or be `null` (which would say nothing).
    pub fn check_extra(&self) -> Result<(), FieldError> {
        for (name, value) in &self.extra {
            if Self::FIELDS.contains(&name.as_str()) {
                return Err(FieldError::new(
                    name.clone(),
                    "is a field of the results document and cannot be reported",
                ));
            }
            if value.is_null() {
                return Err(FieldError::new(
                    name.clone(),
                    "must not be null: leave the field out",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryMode {
    Resume,
    Restart,
}

/// A checked `POST …/operation/{id}/retry`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    pub mode: RetryMode,
    pub reason: Option<String>,
    /// A JSON merge patch (RFC 7386) applied to the original parameters.
    pub parameter_patch: Option<Value>,
    pub retry_policy: Option<RetryPolicy>,
    pub timeout: Option<Duration>,
}

/// What a resumed retry keeps from the original.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetrySummary {
    pub phases_preserved: usize,
    pub records_processed: Option<u64>,
    pub progress_saved: Option<f64>,
}

/// RFC 7386: objects merge key by key, `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CancelRequest {
    pub reason: Option<String>,
    pub preserve_partial_results: bool,
    pub force_termination: bool,
    pub notify_callbacks: bool,
}

/// A checked request to run an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationSpec {
    pub operation_type: String,
    pub operation_name: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub parameters: Value,
    pub callbacks: Callbacks,
    pub notifications: Notifications,
    pub timeout: Duration,
    pub retry_policy: RetryPolicy,
}

/// Which operations a listing shows.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationFilter {
    pub status: Option<OperationStatus>,
    pub operation_type: Option<String>,
    pub priority: Option<Priority>,
    pub date_from: Option<DateTime<Utc>>,
    pub date_to: Option<DateTime<Utc>>,
}

/// A checked listing: the filter and one page of what it selects.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    pub filter: OperationFilter,
    pub include_details: bool,
    pub page: u32,
    pub page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the lease is no longer held: the operation is {status:?}, and the lease token is not its current one")]
    LeaseLost { status: OperationStatus },
    #[error("the operation is {status:?} and can no longer change")]
    AlreadyTerminal { status: OperationStatus },
    #[error("only Failed, Cancelled or Timeout operations can be retried; this one is {status:?}")]
    NotRetryable { status: OperationStatus },
    #[error("an operation cannot go from {from:?} to {to:?}")]
    Illegal {
        from: OperationStatus,
        to: OperationStatus,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: OperationId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub operation_type: String,
    pub operation_name: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub status: OperationStatus,
    pub parameters: Value,
    pub callbacks: Callbacks,
    pub notifications: Notifications,
    pub timeout: Duration,
    pub retry_policy: RetryPolicy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub timeout_at: DateTime<Utc>,
    /// When the next attempt may be handed out (later than now while backing off).
    pub available_at: DateTime<Utc>,
    pub progress: Progress,
    pub phases: Vec<Phase>,
    /// Attempts started so far (0 until first leased).
    pub attempt: u32,
    pub attempts: Vec<AttemptRecord>,
    pub execution_id: Option<ExecutionId>,
    pub lease: Option<Lease>,
    /// The last lease whose holder ended its attempt with a report (complete or fail).
    pub ended_lease: Option<EndedLease>,
    /// Attempts in a row whose lease expired before a single report: what a job that
    /// kills its worker's process looks like (see [`Operation::expire_lease`]).
    pub lost_leases: u32,
    pub cancellation: Option<Cancellation>,
    pub result: Option<OperationResult>,
    pub error: Option<OperationError>,
    /// Sequence number of the last event emitted for this operation.
    pub event_seq: i64,
    /// The finished operation this one retries, and how many retries led here.
    pub retry_of: Option<OperationId>,
    pub retry_number: u32,
    /// The first phase a resumed run has to do; earlier ones are kept from the original.
    pub resume_from_phase: Option<String>,
    /// Rank in the queue: the priority, raised while the operation waits (aging).
    pub queue_rank: i64,
    /// Set when the operation is a member of a batch.
    pub batch: Option<BatchMembership>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchMembership {
    pub batch_id: BatchId,
    pub key: String,
    /// The results of the members it depends on, by their keys: looked up when the
    /// member is handed out, not stored with it (each member would carry a copy).
    pub inputs: Option<Value>,
}

impl Operation {
    pub fn belongs_to(&self, tenant: TenantId, project: ProjectId) -> bool {
        self.tenant_id == tenant && self.project_id == project
    }

    pub fn new(
        id: OperationId,
        tenant_id: TenantId,
        project_id: ProjectId,
        spec: OperationSpec,
        now: DateTime<Utc>,
    ) -> Self {
        let timeout_at = now + spec.timeout;
        Operation {
            id,
            tenant_id,
            project_id,
            operation_type: spec.operation_type,
            operation_name: spec.operation_name,
            description: spec.description,
            priority: spec.priority,
            status: OperationStatus::Initiated,
            parameters: spec.parameters,
            callbacks: spec.callbacks,
            notifications: spec.notifications,
            timeout: spec.timeout,
            retry_policy: spec.retry_policy,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            timeout_at,
            available_at: now,
            progress: Progress::default(),
            phases: Vec::new(),
            attempt: 0,
            attempts: Vec::new(),
            execution_id: None,
            lease: None,
            ended_lease: None,
            lost_leases: 0,
            cancellation: None,
            result: None,
            error: None,
            event_seq: 0,
            retry_of: None,
            retry_number: 0,
            resume_from_phase: None,
            queue_rank: spec.priority.rank(),
            batch: None,
        }
    }

    /// A batch member: it waits (`Pending`) until `release` unless it depends on nothing.
    pub fn member(
        id: OperationId,
        tenant_id: TenantId,
        project_id: ProjectId,
        spec: OperationSpec,
        membership: BatchMembership,
        waits: bool,
        now: DateTime<Utc>,
    ) -> Self {
        let mut op = Operation::new(id, tenant_id, project_id, spec, now);
        op.batch = Some(membership);
        if waits {
            op.status = OperationStatus::Pending;
        }
        op
    }

    /// Every dependency of this batch member completed: it may be handed out now.
    pub fn release(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.become_(OperationStatus::Initiated, now)?;
        self.available_at = now;
        Ok(())
    }

    /// This batch member will never run: `reason` says which failure upstream stopped it.
    pub fn skip(
        &mut self,
        reason: OperationError,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.become_(OperationStatus::Skipped, now)?;
        self.error = Some(reason);
        Ok(())
    }

    pub fn max_attempts(&self) -> u32 {
        self.retry_policy.max_attempts()
    }

    /// When an operation is waiting out a retry delay, the time the next attempt may start.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.status == OperationStatus::Running && self.lease.is_none())
            .then_some(self.available_at)
    }

    pub fn is_leaseable(&self, now: DateTime<Utc>) -> bool {
        matches!(
            self.status,
            OperationStatus::Initiated | OperationStatus::Running
        ) && self.lease.is_none()
            && self.available_at <= now
    }

    fn become_(
        &mut self,
        next: OperationStatus,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        if !self.status.can_become(next) {
            return Err(if self.status.is_terminal() {
                TransitionError::AlreadyTerminal {
                    status: self.status,
                }
            } else {
                TransitionError::Illegal {
                    from: self.status,
                    to: next,
                }
            });
        }
        self.status = next;
        self.updated_at = now;
        if next.is_terminal() {
            self.finished_at = Some(now);
        }
        Ok(())
    }

    /// Ends a run that outlived its `timeout` (counted from the first start). The lease is
    /// kept so the worker learns on its next report that it must stop.
    pub fn time_out(&mut self, now: DateTime<Utc>) -> Vec<EventDraft> {
        let overdue = self.status == OperationStatus::Running
            && self.started_at.is_some()
            && self.timeout_at <= now;
        if !overdue || self.become_(OperationStatus::Timeout, now).is_err() {
            return Vec::new();
        }
        self.error = Some(OperationError {
            code: "TIMEOUT".into(),
            message: format!(
                "the operation did not finish within its timeout of {} s",
                self.timeout.as_secs()
            ),
            details: None,
        });
        let mut data = self.snapshot();
        data["error"] = serde_json::to_value(&self.error).unwrap_or(Value::Null);
        vec![EventDraft::new(EventType::OperationTimeout, data)]
    }

    /// A completed operation completed every one of its phases, also those its worker
    /// counted in `totalPhases` but never reported by name.
    pub fn phases_completed(&self) -> usize {
        let reported = self
            .phases
            .iter()
            .filter(|p| p.status == PhaseStatus::Completed)
            .count();
        match (self.status, self.progress.total_phases) {
            (OperationStatus::Completed, Some(total)) => reported.max(total as usize),
            _ => reported,
        }
    }

    /// On completion: every phase still open completed with the operation, and no phase
    /// is current any more.
    fn close_phases(&mut self, now: DateTime<Utc>) {
        for phase in self.phases.iter_mut().filter(|p| p.is_open()) {
            phase.status = PhaseStatus::Completed;
            phase.end_time = Some(now);
            if phase.progress.is_some() {
                phase.progress = Some(100.0);
            }
        }
        if let Some(total) = self.progress.total_phases {
            self.progress.total_phases = Some(total.max(self.phases.len() as u32));
        }
        self.progress.current_phase = None;
    }

    pub fn cancel(
        &mut self,
        now: DateTime<Utc>,
        request: CancelRequest,
        cancelled_by: String,
    ) -> Result<Vec<EventDraft>, TransitionError> {
        let was_running = self.status == OperationStatus::Running && self.lease.is_some();
        self.become_(OperationStatus::Cancelled, now)?;
        self.cancellation = Some(Cancellation {
            reason: request.reason,
            cancelled_at: now,
            cancelled_by,
            preserve_partial_results: request.preserve_partial_results,
            force_termination: request.force_termination,
            notify_callbacks: request.notify_callbacks,
            progress_at_cancellation: self.progress.percentage,
            phase_at_cancellation: self.progress.current_phase.clone(),
            was_running,
        });
        let mut data = self.snapshot();
        data["cancellation"] = serde_json::to_value(&self.cancellation).unwrap_or(Value::Null);
        Ok(vec![EventDraft::new(EventType::OperationCancelled, data)])
    }

    /// A new operation that runs this finished one again. `Resume` keeps the phases that
    /// completed (their results and checkpoints) and starts at the first that did not.
    pub fn retry(
        &self,
        id: OperationId,
        spec: RetrySpec,
        now: DateTime<Utc>,
    ) -> Result<(Operation, RetrySummary), TransitionError> {
        if !matches!(
            self.status,
            OperationStatus::Failed | OperationStatus::Cancelled | OperationStatus::Timeout
        ) {
            return Err(TransitionError::NotRetryable {
                status: self.status,
            });
        }
        let mut parameters = self.parameters.clone();
        if let Some(patch) = &spec.parameter_patch {
            merge_patch(&mut parameters, patch);
        }
        let retry = OperationSpec {
            operation_type: self.operation_type.clone(),
            operation_name: self.operation_name.clone(),
            description: self.description.clone(),
            priority: self.priority,
            parameters,
            callbacks: self.callbacks.clone(),
            notifications: self.notifications.clone(),
            timeout: spec.timeout.unwrap_or(self.timeout),
            retry_policy: spec.retry_policy.unwrap_or(self.retry_policy),
        };
        let mut op = Operation::new(id, self.tenant_id, self.project_id, retry, now);
        op.retry_of = Some(self.id);
        op.retry_number = self.retry_number + 1;
        let mut summary = RetrySummary::default();
        if spec.mode == RetryMode::Resume {
            op.phases = self
                .phases
                .iter()
                .filter(|p| p.status == PhaseStatus::Completed)
                .cloned()
                .collect();
            op.resume_from_phase = self
                .phases
                .iter()
                .find(|p| p.status != PhaseStatus::Completed)
                .map(|p| p.phase_name.clone());
            op.progress.total_phases = self.progress.total_phases;
            summary = RetrySummary {
                phases_preserved: op.phases.len(),
                records_processed: self.progress.processed_records,
                progress_saved: self.progress.percentage,
            };
        }
        Ok((op, summary))
    }

    /// Results a client may read: the final ones, or the partial ones kept on cancel.
    pub fn readable_results(&self) -> Option<OperationResult> {
        if let Some(result) = &self.result {
            return Some(result.clone());
        }
        let preserved = self
            .cancellation
            .as_ref()
            .is_some_and(|c| c.preserve_partial_results);
        preserved.then(|| OperationResult {
            summary: Value::Null,
            phase_results: self
                .phases
                .iter()
                .filter(|p| p.status == PhaseStatus::Completed)
                .map(|p| json!({"phaseName": p.phase_name, "status": p.status, "results": p.results}))
                .collect(),
            artifacts: Vec::new(),
            extra: Default::default(),
        })
    }

    /// The `data` of every operation event: enough for a receiver to act without a lookup.
    /// The notice of this operation's end for whoever its start asked to notify; `None`
    /// for any other event, or when nobody asked.
    pub fn notify_of(&self, event_type: EventType, now: DateTime<Utc>) -> Option<Notify> {
        if !notify::is_ending(event_type) || self.notifications.is_empty() {
            return None;
        }
        let ended_at = self.finished_at.unwrap_or(now);
        self.notifications.notify(Notice::Ended(Ending {
            kind: SubjectKind::Operation,
            id: self.id.to_string(),
            name: self.operation_name.clone(),
            operation_type: Some(self.operation_type.clone()),
            status: self.status.as_str().to_owned(),
            duration_seconds: self
                .started_at
                .map(|s| (ended_at - s).num_milliseconds() as f64 / 1000.0),
            error_code: self.error.as_ref().map(|e| e.code.clone()),
            error_message: self.error.as_ref().map(|e| e.message.clone()),
            tracking_path: format!(
                "/api/{}/{}/async/operation/{}",
                self.tenant_id, self.project_id, self.id
            ),
            members: None,
            ended_at,
        }))
    }

    pub fn snapshot(&self) -> Value {
        let mut snapshot = json!({
            "operationId": self.id,
            "operationType": self.operation_type,
            "operationName": self.operation_name,
            "status": self.status,
            "priority": self.priority,
            "attempt": self.attempt,
            "progress": {
                "percentage": self.progress.percentage,
                "currentPhase": self.progress.current_phase,
                "phasesCompleted": self.phases_completed(),
                "totalPhases": self.progress.total_phases,
                "processedRecords": self.progress.processed_records,
                "totalRecords": self.progress.total_records,
            },
        });
        if let Some(batch) = &self.batch {
            snapshot["batchId"] = json!(batch.batch_id);
            snapshot["operationKey"] = json!(batch.key);
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn fresh(worker_id: Option<String>) -> AttemptStart {
        AttemptStart {
            execution_id: crate::domain::ids::ExecutionId::new(),
            lease_token: crate::domain::ids::LeaseToken::generate(),
            worker_id,
        }
    }

    fn op() -> Operation {
        let spec = OperationSpec {
            operation_type: "Report".into(),
            operation_name: "monthly".into(),
            description: None,
            priority: Priority::Normal,
            parameters: json!({}),
            callbacks: Callbacks::default(),
            notifications: Notifications::default(),
            timeout: Duration::from_secs(3600),
            retry_policy: RetryPolicy {
                max_retries: 1,
                retry_delay: 10.0,
                backoff_multiplier: 2.0,
                max_delay: 100.0,
            },
        };
        Operation::new(
            OperationId::new(),
            TenantId::new(),
            ProjectId::new(),
            spec,
            t(0),
        )
    }

    const TTL: Duration = Duration::from_secs(30);

    fn types(events: &[EventDraft]) -> Vec<EventType> {
        events.iter().map(|e| e.event_type).collect()
    }

    #[test]
    fn every_transition_out_of_a_terminal_state_is_illegal() {
        for from in OperationStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in OperationStatus::ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?} must be illegal");
            }
        }
    }

    #[test]
    fn the_transition_table_is_exactly_the_documented_one() {
        use OperationStatus::*;
        let allowed = [
            (Pending, Initiated),
            (Pending, Cancelled),
            (Pending, Skipped),
            (Initiated, Running),
            (Initiated, Cancelled),
            (Initiated, Timeout),
            (Initiated, Skipped),
            (Running, Running),
            (Running, Completed),
            (Running, Failed),
            (Running, Cancelled),
            (Running, Timeout),
        ];
        for from in OperationStatus::ALL {
            for to in OperationStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn a_leased_operation_runs_reports_and_completes() {
        let mut op = op();
        let (lease, events) = op
            .start_attempt(t(1), fresh(Some("w-1".into())), TTL)
            .unwrap();
        assert_eq!(types(&events), vec![EventType::OperationStarted]);
        assert_eq!(op.status, OperationStatus::Running);
        assert_eq!(op.attempt, 1);
        assert_eq!(
            op.timeout_at,
            t(3601),
            "timeout counts from the first start"
        );

        let report = ProgressReport {
            percentage: Some(50.0),
            phase: Some(PhaseReport {
                phase_name: "load".into(),
                status: PhaseStatus::Completed,
                results: Some(json!({"rows": 3})),
                checkpoint: Some(json!({"offset": 3})),
                progress: None,
                current_activity: None,
                counters: Default::default(),
                details: Default::default(),
            }),
            ..Default::default()
        };
        let events = op
            .report_progress(t(2), lease.as_str(), report, TTL)
            .unwrap();
        assert_eq!(
            types(&events),
            vec![
                EventType::OperationProgress,
                EventType::OperationPhaseCompleted
            ]
        );
        assert_eq!(op.lease.as_ref().unwrap().expires_at, t(32));
        assert!(!op.stop_requested(), "a running operation goes on");
        assert_eq!(op.phases_completed(), 1);

        let heartbeat = op
            .report_progress(t(3), lease.as_str(), ProgressReport::default(), TTL)
            .unwrap();
        assert!(heartbeat.is_empty(), "a bare heartbeat emits nothing");

        let events = op
            .complete(t(4), lease.as_str(), OperationResult::default())
            .unwrap();
        assert_eq!(types(&events), vec![EventType::OperationCompleted]);
        assert_eq!(op.status, OperationStatus::Completed);
        assert_eq!(op.finished_at, Some(t(4)));
    }

    #[test]
    fn a_stale_lease_token_changes_nothing() {
        let mut op = op();
        op.start_attempt(t(1), fresh(None), TTL).unwrap();
        let before = op.clone();
        let err = op
            .complete(t(2), "lease_forged", OperationResult::default())
            .unwrap_err();
        assert!(matches!(err, TransitionError::LeaseLost { .. }));
        assert_eq!(op, before);
    }

    #[test]
    fn an_attempt_handed_back_is_offered_again_at_once_and_not_counted() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(1), fresh(None), TTL).unwrap();
        assert_eq!(
            op.hand_back(t(2), "lease_forged"),
            Err(TransitionError::LeaseLost {
                status: OperationStatus::Running
            })
        );
        op.hand_back(t(2), lease.as_str()).unwrap();
        assert!(op.is_leaseable(t(2)));
        assert_eq!(op.attempt, 0);
        assert!(op.attempts.is_empty(), "no failed attempt is recorded");
        let (again, events) = op.start_attempt(t(2), fresh(None), TTL).unwrap();
        assert_eq!(op.attempt, 1);
        assert_eq!(types(&events), [EventType::OperationStarted]);
        // The old lease is gone for good.
        assert!(op.hand_back(t(3), lease.as_str()).is_err());
        op.hand_back(t(3), again.as_str()).unwrap();
    }

    #[test]
    fn a_retryable_failure_backs_off_then_the_last_attempt_fails_for_good() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        let error = OperationError {
            code: "X".into(),
            message: "boom".into(),
            details: None,
        };
        let events = op
            .fail(t(1), lease.as_str(), error.clone(), true, Backoff::EXACT)
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(op.status, OperationStatus::Running);
        assert_eq!(op.next_attempt_at(), Some(t(11)));
        assert!(!op.is_leaseable(t(10)));
        assert!(op.is_leaseable(t(11)));

        let (lease, _) = op.start_attempt(t(11), fresh(None), TTL).unwrap();
        assert_eq!(op.attempt, 2);
        let events = op
            .fail(t(12), lease.as_str(), error, true, Backoff::EXACT)
            .unwrap();
        assert_eq!(types(&events), vec![EventType::OperationFailed]);
        assert_eq!(op.status, OperationStatus::Failed);
        assert_eq!(op.attempts.len(), 2);
    }

    #[test]
    fn a_completion_repeated_with_its_lease_changes_nothing_and_a_failure_is_refused() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        let first = OperationResult {
            summary: json!({"rows": 1}),
            ..Default::default()
        };
        op.complete(t(1), lease.as_str(), first).unwrap();
        let ended = op.ended_by(lease.as_str()).unwrap().clone();
        assert_eq!(ended.report, LeaseReport::Complete);
        assert_eq!(ended.status, OperationStatus::Completed);
        let before = op.clone();
        let again = op
            .complete(t(2), lease.as_str(), OperationResult::default())
            .unwrap();
        assert!(again.is_empty(), "a repeat emits nothing");
        assert_eq!(op, before, "and keeps the first result");
        let error = OperationError {
            code: "X".into(),
            message: "late".into(),
            details: None,
        };
        let fail = op.fail(t(3), lease.as_str(), error, true, Backoff::EXACT);
        assert!(matches!(fail, Err(TransitionError::LeaseLost { .. })));
        let forged = op.complete(t(3), "lease_forged", OperationResult::default());
        assert!(matches!(forged, Err(TransitionError::LeaseLost { .. })));
        assert_eq!(op, before);
    }

    #[test]
    fn a_failure_repeated_after_the_next_attempt_started_is_answered_as_the_first() {
        let mut op = op();
        let (first, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        let error = OperationError {
            code: "X".into(),
            message: "boom".into(),
            details: None,
        };
        op.fail(t(1), first.as_str(), error.clone(), true, Backoff::EXACT)
            .unwrap();
        let ended = op.ended_by(first.as_str()).unwrap().clone();
        assert_eq!(
            (
                ended.report,
                ended.status,
                ended.attempt,
                ended.next_attempt_at
            ),
            (LeaseReport::Fail, OperationStatus::Running, 1, Some(t(11)))
        );
        let (second, _) = op.start_attempt(t(11), fresh(None), TTL).unwrap();
        let before = op.clone();
        let again = op
            .fail(t(12), first.as_str(), error.clone(), true, Backoff::EXACT)
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(op, before, "the second attempt's lease is untouched");
        assert_eq!(op.ended_by(first.as_str()), Some(&ended));
        let complete = op.complete(t(12), first.as_str(), OperationResult::default());
        assert!(matches!(complete, Err(TransitionError::LeaseLost { .. })));

        op.complete(t(13), second.as_str(), OperationResult::default())
            .unwrap();
        assert_eq!(op.ended_by(first.as_str()), None, "only the last is kept");
        let late = op.fail(t(14), first.as_str(), error, true, Backoff::EXACT);
        assert!(matches!(late, Err(TransitionError::LeaseLost { .. })));
    }

    #[test]
    fn an_expired_lease_ends_no_attempt_by_report() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        op.expire_lease(t(30), Backoff::EXACT, 3);
        assert_eq!(op.ended_by(lease.as_str()), None);
        let error = OperationError {
            code: "X".into(),
            message: "late".into(),
            details: None,
        };
        let late = op.fail(t(31), lease.as_str(), error, true, Backoff::EXACT);
        assert!(matches!(late, Err(TransitionError::LeaseLost { .. })));
    }

    #[test]
    fn a_non_retryable_failure_ends_at_once() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        let error = OperationError {
            code: "BAD_INPUT".into(),
            message: "no".into(),
            details: None,
        };
        op.fail(t(1), lease.as_str(), error, false, Backoff::EXACT)
            .unwrap();
        assert_eq!(op.status, OperationStatus::Failed);
        assert_eq!(op.attempt, 1);
    }

    #[test]
    fn an_expired_lease_is_taken_back_and_counts_as_an_attempt() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        assert!(op.expire_lease(t(29), Backoff::EXACT, 3).is_empty());
        assert!(op.lease.is_some(), "not expired yet");
        op.expire_lease(t(30), Backoff::EXACT, 3);
        assert!(op.lease.is_none());
        assert_eq!(op.attempts[0].error.code, "LEASE_EXPIRED");
        let err = op
            .report_progress(t(31), lease.as_str(), ProgressReport::default(), TTL)
            .unwrap_err();
        assert!(matches!(err, TransitionError::LeaseLost { .. }));
    }

    /// An operation retried at once, up to ten times.
    fn patient_op() -> Operation {
        let mut op = op();
        op.retry_policy = RetryPolicy {
            max_retries: 10,
            retry_delay: 0.0,
            backoff_multiplier: 1.0,
            max_delay: 0.0,
        };
        op
    }

    /// Starts an attempt at `at` whose worker dies before reporting; expires it.
    fn lose_the_lease(op: &mut Operation, at: i64, max_lost: u32) -> Vec<EventDraft> {
        op.start_attempt(t(at), fresh(None), TTL).unwrap();
        op.expire_lease(t(at + 30), Backoff::EXACT, max_lost)
    }

    #[test]
    fn attempts_that_keep_losing_their_lease_poison_the_operation() {
        let mut op = patient_op();
        assert!(lose_the_lease(&mut op, 0, 3).is_empty());
        assert!(lose_the_lease(&mut op, 100, 3).is_empty());
        assert_eq!(op.status, OperationStatus::Running, "retried so far");
        assert_eq!(op.lost_leases, 2);
        let events = lose_the_lease(&mut op, 200, 3);
        assert_eq!(types(&events), vec![EventType::OperationFailed]);
        assert_eq!(op.status, OperationStatus::Failed);
        let error = op.error.as_ref().unwrap();
        assert_eq!(error.code, "POISONED");
        assert!(
            error.message.starts_with("3 attempts in a row"),
            "{error:?}"
        );
        assert_eq!(op.attempts.len(), 3);
        assert_eq!(op.attempts[2].error.code, "POISONED");
        assert_eq!(op.attempts[1].error.code, "LEASE_EXPIRED");
    }

    #[test]
    fn heartbeats_do_not_save_a_job_that_kills_its_process_but_a_report_does() {
        let mut op = patient_op();
        lose_the_lease(&mut op, 0, 3);
        // This one heartbeats, then dies as the others did (a breakout running out of
        // memory): it counts.
        let (lease, _) = op.start_attempt(t(100), fresh(None), TTL).unwrap();
        op.report_progress(t(101), lease.as_str(), ProgressReport::default(), TTL)
            .unwrap();
        assert!(op.expire_lease(t(131), Backoff::EXACT, 3).is_empty());
        assert_eq!(op.lost_leases, 2);
        // A failure its worker lived to report starts the count again.
        let (lease, _) = op.start_attempt(t(500), fresh(None), TTL).unwrap();
        let error = OperationError {
            code: "X".into(),
            message: "reported".into(),
            details: None,
        };
        op.fail(t(501), lease.as_str(), error, true, Backoff::EXACT)
            .unwrap();
        assert_eq!(op.lost_leases, 0);
        assert!(lose_the_lease(&mut op, 600, 3).is_empty());
        assert!(lose_the_lease(&mut op, 700, 3).is_empty());
        assert_eq!(op.status, OperationStatus::Running);
        assert_eq!(lose_the_lease(&mut op, 800, 3).len(), 1, "poisoned");
        assert_eq!(op.error.as_ref().unwrap().code, "POISONED");
    }

    #[test]
    fn no_limit_on_lost_leases_leaves_it_to_the_retry_policy() {
        let mut op = patient_op();
        for attempt in 0..10 {
            assert!(lose_the_lease(&mut op, attempt * 100, 0).is_empty());
        }
        lose_the_lease(&mut op, 1000, 0);
        assert_eq!(op.status, OperationStatus::Failed);
        assert_eq!(op.error.as_ref().unwrap().code, "LEASE_EXPIRED");
        assert_eq!(op.lost_leases, 11);
    }

    #[test]
    fn cancelling_a_running_operation_tells_its_worker_and_refuses_its_completion() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        let events = op
            .cancel(t(1), CancelRequest::default(), "tok".into())
            .unwrap();
        assert_eq!(types(&events), vec![EventType::OperationCancelled]);
        assert!(op.cancellation.as_ref().unwrap().was_running);
        assert!(op.stopped_under_lease(lease.as_str()));
        assert!(op.stop_requested());
        let heartbeat = op
            .report_progress(t(2), lease.as_str(), ProgressReport::default(), TTL)
            .unwrap();
        assert!(heartbeat.is_empty());
        assert!(op
            .complete(t(3), lease.as_str(), OperationResult::default())
            .is_err());
        let again = op.cancel(t(4), CancelRequest::default(), "tok".into());
        assert_eq!(
            again.unwrap_err(),
            TransitionError::AlreadyTerminal {
                status: OperationStatus::Cancelled
            }
        );
    }

    #[test]
    fn an_overdue_run_times_out_and_its_worker_is_told_to_stop() {
        let mut op = op();
        assert!(
            op.time_out(t(10_000)).is_empty(),
            "never started: the clock has not begun"
        );
        let (lease, _) = op.start_attempt(t(100), fresh(None), TTL).unwrap();
        assert!(op.time_out(t(3699)).is_empty());
        let events = op.time_out(t(3700));
        assert_eq!(types(&events), vec![EventType::OperationTimeout]);
        assert_eq!(op.status, OperationStatus::Timeout);
        assert_eq!(op.error.as_ref().unwrap().code, "TIMEOUT");
        assert!(op.stopped_under_lease(lease.as_str()));
        assert!(op.stop_requested());
        assert!(op
            .report_progress(t(3701), lease.as_str(), ProgressReport::default(), TTL)
            .unwrap()
            .is_empty());
        let late = op.complete(t(3702), lease.as_str(), OperationResult::default());
        assert!(matches!(late, Err(TransitionError::LeaseLost { .. })));
        assert!(op.time_out(t(9999)).is_empty(), "only once");
    }

    fn failed_at_phase_three_of_four() -> Operation {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        for (name, status) in [
            ("p1", PhaseStatus::Completed),
            ("p2", PhaseStatus::Completed),
            ("p3", PhaseStatus::Running),
        ] {
            let report = ProgressReport {
                percentage: Some(60.0),
                processed_records: Some(600),
                total_phases: Some(4),
                phase: Some(PhaseReport {
                    phase_name: name.into(),
                    status,
                    results: Some(json!({"phase": name})),
                    checkpoint: Some(json!({"done": name})),
                    progress: None,
                    current_activity: None,
                    counters: Default::default(),
                    details: Default::default(),
                }),
                ..Default::default()
            };
            op.report_progress(t(1), lease.as_str(), report, TTL)
                .unwrap();
        }
        let error = OperationError {
            code: "X".into(),
            message: "boom".into(),
            details: None,
        };
        op.fail(t(2), lease.as_str(), error, false, Backoff::EXACT)
            .unwrap();
        op
    }

    #[test]
    fn a_resumed_retry_keeps_completed_phases_and_starts_at_the_first_unfinished() {
        let original = failed_at_phase_three_of_four();
        let spec = RetrySpec {
            mode: RetryMode::Resume,
            reason: None,
            parameter_patch: Some(json!({"extra": 1})),
            retry_policy: None,
            timeout: Some(Duration::from_secs(60)),
        };
        let (retry, summary) = original.retry(OperationId::new(), spec, t(10)).unwrap();
        assert_eq!(retry.status, OperationStatus::Initiated);
        assert_eq!(retry.retry_of, Some(original.id));
        assert_eq!(retry.retry_number, 1);
        assert_eq!(retry.resume_from_phase.as_deref(), Some("p3"));
        let kept: Vec<_> = retry.phases.iter().map(|p| p.phase_name.as_str()).collect();
        assert_eq!(kept, ["p1", "p2"]);
        assert_eq!(retry.phases[1].checkpoint, Some(json!({"done": "p2"})));
        assert_eq!(retry.parameters["extra"], 1);
        assert_eq!(retry.timeout, Duration::from_secs(60));
        assert_eq!(summary.phases_preserved, 2);
        assert_eq!(summary.records_processed, Some(600));
        assert_eq!(summary.progress_saved, Some(60.0));
    }

    #[test]
    fn a_restart_keeps_nothing_and_only_finished_operations_retry() {
        let original = failed_at_phase_three_of_four();
        let spec = RetrySpec {
            mode: RetryMode::Restart,
            reason: None,
            parameter_patch: None,
            retry_policy: None,
            timeout: None,
        };
        let (retry, summary) = original
            .retry(OperationId::new(), spec.clone(), t(10))
            .unwrap();
        assert!(retry.phases.is_empty());
        assert!(retry.resume_from_phase.is_none());
        assert_eq!(summary, RetrySummary::default());
        let running = op();
        assert!(matches!(
            running.retry(OperationId::new(), spec, t(10)),
            Err(TransitionError::NotRetryable { .. })
        ));
    }

    #[test]
    fn merge_patches_follow_rfc_7386() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut target,
            &json!({"a": null, "b": {"c": 20}, "e": [2], "f": "new"}),
        );
        assert_eq!(
            target,
            json!({"b": {"c": 20, "d": 3}, "e": [2], "f": "new"})
        );
    }

    fn phase(name: &str, status: PhaseStatus) -> PhaseReport {
        PhaseReport {
            phase_name: name.into(),
            status,
            results: None,
            checkpoint: None,
            progress: None,
            current_activity: None,
            counters: Default::default(),
            details: Default::default(),
        }
    }

    #[test]
    fn completion_closes_every_open_phase_and_the_counts_agree() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        let counted = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Number::from(*v)))
                .collect::<BTreeMap<_, _>>()
        };
        let running = PhaseReport {
            progress: Some(72.0),
            current_activity: Some("training".into()),
            counters: counted(&[("modelsTraining", 3), ("modelsCompleted", 2)]),
            ..phase("ml", PhaseStatus::Running)
        };
        for report in [
            ProgressReport {
                total_phases: Some(4),
                phase: Some(phase("load", PhaseStatus::Completed)),
                ..Default::default()
            },
            ProgressReport {
                phase: Some(running),
                ..Default::default()
            },
            ProgressReport {
                phase: Some(PhaseReport {
                    counters: counted(&[("modelsCompleted", 3)]),
                    ..phase("ml", PhaseStatus::Running)
                }),
                ..Default::default()
            },
            ProgressReport {
                phase: Some(phase("report", PhaseStatus::Pending)),
                ..Default::default()
            },
        ] {
            op.report_progress(t(1), lease.as_str(), report, TTL)
                .unwrap();
        }
        let ml = &op.phases[1];
        assert_eq!(
            ml.counters,
            counted(&[("modelsTraining", 3), ("modelsCompleted", 3)])
        );
        assert_eq!(ml.current_activity.as_deref(), Some("training"));
        assert_eq!(op.progress.current_phase.as_deref(), Some("ml"));
        assert_eq!(op.phases_completed(), 1);

        op.complete(t(2), lease.as_str(), OperationResult::default())
            .unwrap();
        assert!(op.phases.iter().all(|p| p.status == PhaseStatus::Completed));
        assert_eq!(op.phases[0].end_time, Some(t(1)), "ended when it completed");
        assert_eq!(op.phases[1].end_time, Some(t(2)));
        assert_eq!(op.phases[2].end_time, Some(t(2)));
        assert_eq!(op.phases[1].progress, Some(100.0));
        assert_eq!(op.progress.percentage, Some(100.0));
        assert_eq!(op.progress.current_phase, None);
        assert_eq!(
            (op.phases_completed(), op.progress.total_phases),
            (4, Some(4)),
            "a phase counted but never named completed with the operation"
        );
    }

    #[test]
    fn more_phases_than_announced_raise_the_total() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        for name in ["a", "b", "c"] {
            let report = ProgressReport {
                total_phases: Some(2),
                phase: Some(phase(name, PhaseStatus::Running)),
                ..Default::default()
            };
            op.report_progress(t(1), lease.as_str(), report, TTL)
                .unwrap();
        }
        op.complete(t(2), lease.as_str(), OperationResult::default())
            .unwrap();
        assert_eq!(
            (op.phases_completed(), op.progress.total_phases),
            (3, Some(3))
        );
    }

    #[test]
    fn counters_are_named_like_fields_and_not_like_a_phases_own() {
        let named = |name: &str| {
            let counters = [(name.to_owned(), Number::from(1))].into_iter().collect();
            checked_phase_counters(counters, "phase.counters").map_err(|e| e.field)
        };
        assert!(named("modelsTraining").is_ok());
        assert!(named("records_2").is_ok());
        for bad in ["status", "progress", "counters", "", "2nd", "a b", "ä"] {
            assert_eq!(named(bad).unwrap_err(), format!("phase.counters.{bad}"));
        }
        let many: BTreeMap<String, Number> = (0..=MAX_PHASE_COUNTERS)
            .map(|i| (format!("c{i}"), Number::from(i)))
            .collect();
        assert_eq!(
            checked_phase_counters(many, "phase.counters")
                .unwrap_err()
                .field,
            "phase.counters"
        );
    }

    #[test]
    fn details_of_any_type_are_kept_and_a_name_is_a_counter_or_a_detail() {
        let mut op = op();
        let (lease, _) = op.start_attempt(t(0), fresh(None), TTL).unwrap();
        let detailed = |status, details: Value| PhaseReport {
            details: serde_json::from_value(details).unwrap(),
            ..phase("report", status)
        };
        for report in [
            detailed(
                PhaseStatus::Pending,
                json!({"estimatedStartTime": "2024-01-20T11:55:00Z", "estimatedDuration": "8-10 minutes"}),
            ),
            detailed(
                PhaseStatus::Running,
                json!({"validationResults": {"validRecords": 187248, "dataQualityScore": 99.9}, "pages": 1}),
            ),
            PhaseReport {
                counters: [("pages".to_owned(), Number::from(2))]
                    .into_iter()
                    .collect(),
                ..phase("report", PhaseStatus::Running)
            },
        ] {
            let report = ProgressReport {
                phase: Some(report),
                ..Default::default()
            };
            op.report_progress(t(1), lease.as_str(), report, TTL)
                .unwrap();
        }
        let phase = &op.phases[0];
        assert_eq!(phase.start_time, Some(t(1)), "it started once it ran");
        assert_eq!(
            phase.details["estimatedStartTime"], "2024-01-20T11:55:00Z",
            "kept when later reports leave it out"
        );
        assert_eq!(phase.details["validationResults"]["dataQualityScore"], 99.9);
        assert_eq!(phase.counters["pages"], Number::from(2));
        assert!(
            !phase.details.contains_key("pages"),
            "the later counter took the detail's place"
        );
        let stored: Phase = serde_json::from_value(serde_json::to_value(phase).unwrap()).unwrap();
        assert_eq!(&stored, phase);
        let older: Phase =
            serde_json::from_value(json!({"phaseName": "p", "status": "Running"})).unwrap();
        assert!(
            older.details.is_empty(),
            "phases stored before details read"
        );
    }

    #[test]
    fn details_are_named_like_counters_never_null_and_never_a_counter_too() {
        let checked = |details: Value, counters: &[&str]| {
            let counters: BTreeMap<String, Number> = counters
                .iter()
                .map(|c| (c.to_string(), Number::from(1)))
                .collect();
            checked_phase_details(
                serde_json::from_value(details).unwrap(),
                &counters,
                "phase.details",
            )
            .map_err(|e| e.field)
        };
        assert!(checked(json!({"validationResults": {"a": [1, null]}}), &[]).is_ok());
        for (details, counters, field) in [
            (json!({"status": "Done"}), &[][..], "phase.details.status"),
            (json!({"details": 1}), &[], "phase.details.details"),
            (
                json!({"duration": "1 minute"}),
                &[],
                "phase.details.duration",
            ),
            (json!({"a b": 1}), &[], "phase.details.a b"),
            (json!({"note": null}), &[], "phase.details.note"),
            (json!({"pages": 2}), &["pages"], "phase.details.pages"),
        ] {
            assert_eq!(
                checked(details.clone(), counters).unwrap_err(),
                field,
                "{details}"
            );
        }
        let many: serde_json::Map<String, Value> = (0..=MAX_PHASE_COUNTERS)
            .map(|i| (format!("d{i}"), json!(i)))
            .collect();
        assert_eq!(
            checked(Value::Object(many), &[]).unwrap_err(),
            "phase.details"
        );
    }

    #[test]
    fn a_workers_own_results_may_not_take_a_documents_field_or_be_null() {
        let with = |name: &str, value: Value| OperationResult {
            extra: [(name.to_owned(), value)].into_iter().collect(),
            ..Default::default()
        };
        assert!(with("performance", json!({"efficiency": 87.2}))
            .check_extra()
            .is_ok());
        assert!(with("recommendations", json!([])).check_extra().is_ok());
        assert_eq!(
            with("status", json!("x")).check_extra().unwrap_err().field,
            "status"
        );
        assert_eq!(
            with("performance", Value::Null)
                .check_extra()
                .unwrap_err()
                .field,
            "performance"
        );
        let stored = serde_json::to_value(with("performance", json!(1))).unwrap();
        assert_eq!(
            stored["performance"], 1,
            "kept beside the others when stored"
        );
        let read: OperationResult = serde_json::from_value(stored).unwrap();
        assert_eq!(read.extra["performance"], 1);
    }

    #[test]
    fn partial_results_are_readable_only_when_preserved() {
        let mut op = op();
        op.cancel(t(1), CancelRequest::default(), "x".into())
            .unwrap();
        assert!(op.readable_results().is_none());
        let mut op2 = self::op();
        let request = CancelRequest {
            preserve_partial_results: true,
            ..Default::default()
        };
        op2.cancel(t(1), request, "x".into()).unwrap();
        assert!(op2.readable_results().is_some());
    }
}
