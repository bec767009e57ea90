//! Seed 002's worker tasks (`/v1/tasks`). A task is an operation whose type is its step's
//! name and whose phases are the step's actions, in order; every operation of a project
//! can be read as one. What the facade decides is here: the step a client submits and the
//! operation it becomes, how an operation's state reads as a task's (`state` and
//! `task_status`), how its failure reads (the seed's `error`), how this instance reports
//! itself (`/v1/status`), and, in `query`, which tasks a list selects and how it pages.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::fields::{checked_name, MAX_NAME_LEN};
use super::ids::{OperationId, ProjectId, TenantId};
use super::operation::{
    checked_operation_type, Operation, OperationError, OperationSpec, OperationStatus, Phase,
    Priority, DEFAULT_TIMEOUT_SECONDS,
};
use super::retry::RetryPolicy;
use super::FieldError;

mod query;

pub use query::{
    checked_paging, page, parse_query, PageStart, PredicateError, StepMatch, TaskFilter, TaskPage,
    TaskPaging, DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, MAX_QUERY_LEN,
};

/// Actions of one step: each is a phase, and the phases are kept in the operation's row.
pub const MAX_ACTIONS: usize = 200;

/// A step as a client submitted it, checked: its name (the operation type, so the
/// workers of that type run it), its actions' names in order, and the step itself as
/// sent, which the worker is handed as the operation's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub actions: Vec<String>,
    pub submitted: Value,
}

impl Step {
    /// `name` is `Step`; `actions` the `action` of each of `actions[]`, in order.
    pub fn new(name: &str, actions: &[&str], submitted: Value) -> Result<Self, FieldError> {
        let name = checked_operation_type(name, "Step")?;
        if actions.is_empty() {
            return Err(FieldError::new("actions", "a step has at least one action"));
        }
        if actions.len() > MAX_ACTIONS {
            return Err(FieldError::new(
                "actions",
                format!("a step has at most {MAX_ACTIONS} actions"),
            ));
        }
        let mut checked: Vec<String> = Vec::with_capacity(actions.len());
        for (i, action) in actions.iter().enumerate() {
            let field = format!("actions[{i}].action");
            let action = checked_name(action, &field, MAX_NAME_LEN)?;
            if action.chars().any(char::is_control) {
                return Err(FieldError::new(
                    field,
                    "must not contain control characters",
                ));
            }
            // Workers report on an action by its name: two of one name would be one phase.
            if let Some(first) = checked.iter().position(|a| *a == action) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "is also the name of actions[{first}]: each action of a step needs its own"
                    ),
                ));
            }
            checked.push(action);
        }
        Ok(Step {
            name,
            actions: checked,
            submitted,
        })
    }

    /// The operation that runs the step: its phases are the actions, all `Pending` from
    /// the start, so a worker reporting on an action by name moves that phase.
    pub fn into_operation(
        self,
        id: OperationId,
        tenant: TenantId,
        project: ProjectId,
        now: DateTime<Utc>,
    ) -> Operation {
        let spec = OperationSpec {
            operation_type: self.name.clone(),
            operation_name: self.name,
            description: None,
            priority: Priority::Normal,
            parameters: self.submitted,
            callbacks: Default::default(),
            notifications: Default::default(),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECONDS as u64),
            retry_policy: RetryPolicy::OPERATION_DEFAULT,
        };
        let mut op = Operation::new(id, tenant, project, spec, now);
        op.progress.total_phases = Some(self.actions.len() as u32);
        op.phases = self.actions.into_iter().map(Phase::pending).collect();
        op
    }
}

/// A time of an action as the seed writes them (`1990-12-31T23:59:60Z`, a leap second
/// included): RFC 3339.
pub fn checked_action_time(value: &str, field: &str) -> Result<(), FieldError> {
    DateTime::parse_from_rfc3339(value)
        .map(|_| ())
        .map_err(|e| FieldError::new(field, format!("is not an RFC 3339 time: {e}")))
}

/// Where a task is in its life: waiting to start, under way, or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Done,
    Cancelled,
}

/// What became of it, finer than its state: a done task committed (completed), aborted
/// (failed), was cancelled, timed out, or was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// A batch member waiting for its dependencies.
    Waiting,
    Started,
    Running,
    Commit,
    Ko,
    Cancelled,
    Timeout,
    Skipped,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [Self::Pending, Self::Running, Self::Done, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 8] = [
        Self::Waiting,
        Self::Started,
        Self::Running,
        Self::Commit,
        Self::Ko,
        Self::Cancelled,
        Self::Timeout,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Started => "started",
            Self::Running => "running",
            Self::Commit => "commit",
            Self::Ko => "ko",
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// The one mapping from an operation's status to a task's `state` and `task_status`
/// (README, "Worker tasks").
pub fn task_state(status: OperationStatus) -> (TaskState, TaskStatus) {
    use OperationStatus as S;
    match status {
        S::Pending => (TaskState::Pending, TaskStatus::Waiting),
        S::Initiated => (TaskState::Pending, TaskStatus::Started),
        S::Running => (TaskState::Running, TaskStatus::Running),
        S::Completed => (TaskState::Done, TaskStatus::Commit),
        S::Failed => (TaskState::Done, TaskStatus::Ko),
        S::Cancelled => (TaskState::Cancelled, TaskStatus::Cancelled),
        S::Timeout => (TaskState::Done, TaskStatus::Timeout),
        S::Skipped => (TaskState::Done, TaskStatus::Skipped),
    }
}

/// One failure, as the seed's `error` shows it (the task's type is its `code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub http_code: u16,
    /// The error's code, as the worker (or Relais) gave it: `File_Not_Found`, `TIMEOUT`.
    pub state: String,
    pub message: String,
    pub description: String,
}

/// Why a task failed, and why its earlier attempts did, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailures {
    pub last: TaskFailure,
    pub earlier: Vec<TaskFailure>,
}

/// A task that failed, timed out or was skipped says why; one that committed, or was
/// cancelled (asked for, not a failure), or has not ended, says nothing.
pub fn failures(op: &Operation) -> Option<TaskFailures> {
    if !matches!(
        op.status,
        OperationStatus::Failed | OperationStatus::Timeout | OperationStatus::Skipped
    ) {
        return None;
    }
    let error = op.error.as_ref()?;
    // The attempt that failed the task is its last one, with the same error: shown once.
    let shown_above = match op.attempts.last() {
        Some(last) if last.error == *error => op.attempts.len() - 1,
        _ => op.attempts.len(),
    };
    Some(TaskFailures {
        last: failure(error, op.status),
        earlier: op.attempts[..shown_above]
            .iter()
            .map(|a| failure(&a.error, OperationStatus::Failed))
            .collect(),
    })
}

/// A worker says which HTTP status its failure is with `details.http_code` (the seed's
/// name; `httpCode` too), 100 to 599; otherwise a time-out is 408, a skipped task 424
/// (Failed Dependency: a task it depended on failed), anything else 500. The description
/// is `details.description` when the worker gave one, else the message.
fn failure(error: &OperationError, status: OperationStatus) -> TaskFailure {
    let details = error.details.as_ref();
    let detail = |name: &str| details.and_then(|d| d.get(name));
    let given = ["http_code", "httpCode"]
        .into_iter()
        .find_map(|name| detail(name).and_then(Value::as_u64))
        .filter(|code| (100..=599).contains(code));
    let http_code = match (given, status) {
        (Some(code), _) => code as u16,
        (None, OperationStatus::Skipped) => 424,
        (None, _) if error.code == "TIMEOUT" => 408,
        (None, _) => 500,
    };
    TaskFailure {
        http_code,
        state: error.code.clone(),
        message: error.message.clone(),
        description: detail("description")
            .and_then(Value::as_str)
            .unwrap_or(&error.message)
            .to_owned(),
    }
}

/// How an instance reports itself on `/v1/status`. `Unreachable`: its database does not
/// answer, so it can take no work. `Inactive`, which the seed lists too, is never
/// answered: an instance that runs is active or stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum InstanceStatus {
    Active,
    Inactive,
    ShutdownInProgress,
    Unreachable,
}

impl InstanceStatus {
    /// Shutting down outranks everything: the instance will not take new work whatever
    /// its database says. Without its database it cannot take any either.
    pub fn of(shutting_down: bool, database_answers: bool) -> Self {
        match (shutting_down, database_answers) {
            (true, _) => Self::ShutdownInProgress,
            (false, false) => Self::Unreachable,
            (false, true) => Self::Active,
        }
    }

    /// Whether the instance takes work: what a load balancer asks.
    pub fn serves(self) -> bool {
        self == Self::Active
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::operation::{AttemptRecord, PhaseStatus};

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_step_becomes_an_operation_of_its_name_with_one_pending_phase_per_action() {
        let body = json!({"Step": "ingest", "otherInfo": "x", "actions": [{"action": "a"}, {"action": "b"}]});
        let step = Step::new(" ingest ", &["a", " b "], body.clone()).unwrap();
        let op = step.into_operation(OperationId::new(), TenantId::new(), ProjectId::new(), t(0));
        assert_eq!(op.operation_type, "ingest");
        assert_eq!(op.status, OperationStatus::Initiated);
        assert_eq!(op.parameters, body, "the worker is handed the step as sent");
        let phases: Vec<(&str, PhaseStatus)> = op
            .phases
            .iter()
            .map(|p| (p.phase_name.as_str(), p.status))
            .collect();
        assert_eq!(
            phases,
            [("a", PhaseStatus::Pending), ("b", PhaseStatus::Pending)]
        );
        assert_eq!(op.progress.total_phases, Some(2));
    }

    #[test]
    fn a_step_names_the_field_it_refuses() {
        let field =
            |name: &str, actions: &[&str]| Step::new(name, actions, json!({})).unwrap_err().field;
        assert_eq!(field("has space", &["a"]), "Step");
        assert_eq!(field("", &["a"]), "Step");
        assert_eq!(field("s", &[]), "actions");
        assert_eq!(field("s", &["a", " "]), "actions[1].action");
        assert_eq!(field("s", &["a", "b", " a"]), "actions[2].action");
        assert_eq!(field("s", &["a", "b\u{7}"]), "actions[1].action");
        let many: Vec<&str> = (0..=MAX_ACTIONS).map(|_| "x").collect();
        assert_eq!(field("s", &many), "actions");
    }

    #[test]
    fn action_times_are_rfc3339_leap_seconds_included() {
        assert!(checked_action_time("1990-12-31T23:59:60Z", "t").is_ok());
        assert!(checked_action_time("2014-01-10T03:06:17.396+01:00", "t").is_ok());
        for bad in ["1990-12-31", "yesterday", "1990-12-31T25:00:00Z", ""] {
            assert_eq!(checked_action_time(bad, "t").unwrap_err().field, "t");
        }
    }

    #[test]
    fn every_status_reads_as_exactly_one_state_and_task_status() {
        use OperationStatus as S;
        let expected = [
            (S::Pending, "pending", "waiting"),
            (S::Initiated, "pending", "started"),
            (S::Running, "running", "running"),
            (S::Completed, "done", "commit"),
            (S::Failed, "done", "ko"),
            (S::Cancelled, "cancelled", "cancelled"),
            (S::Timeout, "done", "timeout"),
            (S::Skipped, "done", "skipped"),
        ];
        assert_eq!(expected.len(), S::ALL.len());
        for (status, state, task_status) in expected {
            let (s, ts) = task_state(status);
            assert_eq!(
                (s.as_str(), ts.as_str()),
                (state, task_status),
                "{status:?}"
            );
            assert_eq!(TaskState::parse(state), Some(s));
            assert_eq!(TaskStatus::parse(task_status), Some(ts));
            assert_eq!(serde_json::to_value(s).unwrap(), state);
            assert_eq!(serde_json::to_value(ts).unwrap(), task_status);
            assert_eq!(
                matches!(s, TaskState::Done | TaskState::Cancelled),
                status.is_terminal()
            );
        }
        let statuses: Vec<TaskStatus> = S::ALL.iter().map(|s| task_state(*s).1).collect();
        assert!(TaskStatus::ALL.iter().all(|ts| statuses.contains(ts)));
    }

    fn failed_op(attempt_errors: &[OperationError], last: OperationError) -> Operation {
        let step = Step::new("ingest", &["a"], json!({})).unwrap();
        let mut op =
            step.into_operation(OperationId::new(), TenantId::new(), ProjectId::new(), t(0));
        op.status = OperationStatus::Failed;
        op.attempts = attempt_errors
            .iter()
            .enumerate()
            .map(|(i, e)| AttemptRecord {
                attempt: i as u32 + 1,
                started_at: None,
                ended_at: t(i as i64),
                worker_id: None,
                error: e.clone(),
            })
            .collect();
        op.error = Some(last);
        op
    }

    fn error(code: &str, details: Option<Value>) -> OperationError {
        OperationError {
            code: code.into(),
            message: format!("{code} happened"),
            details,
        }
    }

    #[test]
    fn a_failure_reads_as_the_seeds_error_with_the_workers_http_code_and_description() {
        let not_found = error(
            "File_Not_Found",
            Some(json!({"http_code": 404, "description": "file xxx is not found"})),
        );
        let earlier = error("LEASE_EXPIRED", None);
        let op = failed_op(&[earlier, not_found.clone()], not_found);
        let failures = failures(&op).unwrap();
        assert_eq!(
            failures.last,
            TaskFailure {
                http_code: 404,
                state: "File_Not_Found".into(),
                message: "File_Not_Found happened".into(),
                description: "file xxx is not found".into(),
            }
        );
        assert_eq!(failures.earlier.len(), 1, "the last attempt is shown once");
        assert_eq!(failures.earlier[0].state, "LEASE_EXPIRED");
        assert_eq!(failures.earlier[0].http_code, 500);
        assert_eq!(failures.earlier[0].description, "LEASE_EXPIRED happened");
    }

    #[test]
    fn http_codes_follow_the_kind_of_failure_unless_the_worker_gave_a_valid_one() {
        let code = |e: OperationError, status: OperationStatus| failure(&e, status).http_code;
        assert_eq!(
            code(
                error("X", Some(json!({"httpCode": 415}))),
                OperationStatus::Failed
            ),
            415
        );
        for invalid in [
            json!(99),
            json!(600),
            json!(-404),
            json!("404"),
            json!(404.5),
        ] {
            let e = error("X", Some(json!({ "http_code": invalid })));
            assert_eq!(code(e, OperationStatus::Failed), 500, "{invalid}");
        }
        assert_eq!(code(error("TIMEOUT", None), OperationStatus::Timeout), 408);
        assert_eq!(
            code(error("UPSTREAM_FAILED", None), OperationStatus::Skipped),
            424
        );
        assert_eq!(code(error("POISONED", None), OperationStatus::Failed), 500);
    }

    #[test]
    fn a_timeout_lists_every_attempt_before_it_and_success_or_cancellation_no_error() {
        let mut op = failed_op(&[error("LEASE_EXPIRED", None)], error("TIMEOUT", None));
        op.status = OperationStatus::Timeout;
        let failures = failures(&op).unwrap();
        assert_eq!(failures.last.http_code, 408);
        assert_eq!(failures.earlier.len(), 1);
        for status in [
            OperationStatus::Completed,
            OperationStatus::Cancelled,
            OperationStatus::Running,
        ] {
            op.status = status;
            assert_eq!(super::failures(&op), None, "{status:?}");
        }
    }

    #[test]
    fn an_instance_shutting_down_says_so_whatever_its_database_says() {
        assert_eq!(InstanceStatus::of(false, true), InstanceStatus::Active);
        assert_eq!(
            InstanceStatus::of(false, false),
            InstanceStatus::Unreachable
        );
        assert_eq!(
            InstanceStatus::of(true, true),
            InstanceStatus::ShutdownInProgress
        );
        assert_eq!(
            InstanceStatus::of(true, false),
            InstanceStatus::ShutdownInProgress
        );
        assert!(InstanceStatus::Active.serves());
        assert!(!InstanceStatus::ShutdownInProgress.serves());
        assert_eq!(
            serde_json::to_value(InstanceStatus::ShutdownInProgress).unwrap(),
            "ShutdownInProgress"
        );
    }
}
