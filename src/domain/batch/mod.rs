//! Batches: operations with dependencies between them (a DAG), submitted together. This
//! module turns the submitted body into a checked graph and holds the rules that decide
//! what a member's failure does to the others and how the batch ends. What follows from
//! members finishing is decided in [`settle`]; what a batch retry runs again, in [`rerun`].

pub mod rerun;
#[cfg(test)]
mod scheduling_tests;
pub mod settle;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::domain::event::{EventDraft, EventType};
use crate::domain::ids::{BatchId, ProjectId, TenantId};
use crate::domain::operation::{CancelRequest, Operation, OperationStatus, Priority};
use crate::domain::requests::{
    http_url, Callbacks, Notifications, OperationSpec, StartOperationBody,
};
use crate::domain::retry::{RetryPolicy, RetryPolicyBody};
use crate::domain::FieldError;

/// Members per batch. Large pipelines are what batches are for; beyond this, split them.
pub const MAX_MEMBERS: usize = 10_000;
const MAX_KEY_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchStatus {
    /// No member has started yet.
    Initiated,
    Running,
    /// Every member completed.
    Completed,
    /// Every member is finished and at least one did not complete.
    Failed,
    /// The batch was cancelled; members that had completed keep their results.
    Cancelled,
}

impl BatchStatus {
    pub const ALL: [BatchStatus; 5] = [
        Self::Initiated,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "Initiated",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FailurePolicy {
    /// A member failing for good cancels every member still pending or running.
    pub stop_on_first_failure: bool,
    /// Members that do not depend on a failed member go on; when false, members that
    /// have not started yet are skipped (running ones finish).
    pub continue_independent_operations: bool,
    /// Members are retried under the batch's retry policy; when false each gets one attempt.
    pub retry_failed_operations: bool,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            stop_on_first_failure: false,
            continue_independent_operations: true,
            retry_failed_operations: true,
        }
    }
}

/// What a member's final failure does to the rest of the batch, beyond skipping the
/// members that depend on it (which always happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    Continue,
    SkipUnstarted,
    CancelEverything,
}

impl FailurePolicy {
    pub fn after_failure(self) -> AfterFailure {
        if self.stop_on_first_failure {
            AfterFailure::CancelEverything
        } else if self.continue_independent_operations {
            AfterFailure::Continue
        } else {
            AfterFailure::SkipUnstarted
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchCallbacks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_batch_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_operation_complete: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_batch_complete: Option<String>,
}

/// `POST …/async/batch`, as seed 001 shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitBatchBody {
    pub batch_name: String,
    pub batch_description: Option<String>,
    pub operations: Vec<MemberBody>,
    pub batch_callbacks: Option<BatchCallbacks>,
    pub failure_policy: Option<FailurePolicy>,
    pub retry_policy: Option<RetryPolicyBody>,
}

/// A member: `POST …/async/operation`'s body with a key and its dependencies. (Listed
/// field by field rather than flattened, so that a bad value's error names its path.)
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberBody {
    pub operation_key: String,
    #[serde(default)]
    pub dependencies: Vec<String>,
    pub operation_type: String,
    pub operation_name: String,
    pub operation_description: Option<String>,
    pub priority: Option<Priority>,
    pub parameters: Option<Value>,
    pub callbacks: Option<Callbacks>,
    pub notifications: Option<Notifications>,
    pub timeout: Option<i64>,
    pub retry_policy: Option<RetryPolicyBody>,
}

impl MemberBody {
    fn into_parts(self) -> (String, Vec<String>, StartOperationBody) {
        let operation = StartOperationBody {
            operation_type: self.operation_type,
            operation_name: self.operation_name,
            operation_description: self.operation_description,
            priority: self.priority,
            parameters: self.parameters,
            callbacks: self.callbacks,
            notifications: self.notifications,
            timeout: self.timeout,
            retry_policy: self.retry_policy,
        };
        (self.operation_key, self.dependencies, operation)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberSpec {
    pub key: String,
    /// Keys of the members this one waits for, in the order given.
    pub dependencies: Vec<String>,
    pub spec: OperationSpec,
}

/// A dependency: `downstream` runs only once `upstream` completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub upstream: String,
    pub downstream: String,
}

/// Members that may still change state: waiting, claimable or running.
pub const LIVE: [OperationStatus; 3] = [
    OperationStatus::Pending,
    OperationStatus::Initiated,
    OperationStatus::Running,
];

/// Members that have not started: waiting for dependencies, or claimable.
pub const UNSTARTED: [OperationStatus; 2] = [OperationStatus::Pending, OperationStatus::Initiated];

/// A checked batch: keys unique, every dependency known, no cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    pub name: String,
    pub description: Option<String>,
    pub members: Vec<MemberSpec>,
    pub callbacks: BatchCallbacks,
    pub failure_policy: FailurePolicy,
    pub retry_policy: RetryPolicy,
}

impl TryFrom<SubmitBatchBody> for BatchSpec {
    type Error = FieldError;

    fn try_from(body: SubmitBatchBody) -> Result<Self, FieldError> {
        let name = body.batch_name.trim();
        if name.is_empty() {
            return Err(FieldError::new("batchName", "must not be blank"));
        }
        if body.operations.is_empty() {
            return Err(FieldError::new(
                "operations",
                "must list at least one operation",
            ));
        }
        if body.operations.len() > MAX_MEMBERS {
            return Err(FieldError::new(
                "operations",
                format!(
                    "lists {} operations; a batch holds at most {MAX_MEMBERS}",
                    body.operations.len()
                ),
            ));
        }
        let callbacks = body.batch_callbacks.unwrap_or_default();
        for (field, url) in [
            ("onBatchStart", &callbacks.on_batch_start),
            ("onOperationComplete", &callbacks.on_operation_complete),
            ("onBatchComplete", &callbacks.on_batch_complete),
        ] {
            if let Some(url) = url {
                http_url(url, &format!("batchCallbacks.{field}"))?;
            }
        }
        let failure_policy = body.failure_policy.unwrap_or_default();
        let retry_policy = if failure_policy.retry_failed_operations {
            body.retry_policy
                .unwrap_or_default()
                .into_policy(RetryPolicy::OPERATION_DEFAULT, "retryPolicy")?
        } else {
            RetryPolicy {
                max_retries: 0,
                ..RetryPolicy::OPERATION_DEFAULT
            }
        };

        let mut positions: HashMap<&str, usize> = HashMap::with_capacity(body.operations.len());
        for (i, member) in body.operations.iter().enumerate() {
            let key = member.operation_key.as_str();
            let field = format!("operations[{i}].operationKey");
            if key.trim().is_empty() || key.len() > MAX_KEY_LEN {
                return Err(FieldError::new(
                    field,
                    format!("must be 1 to {MAX_KEY_LEN} characters"),
                ));
            }
            if let Some(first) = positions.insert(key, i) {
                return Err(FieldError::new(
                    field,
                    format!("`{key}` is already the key of operations[{first}]"),
                ));
            }
        }
        for (i, member) in body.operations.iter().enumerate() {
            for (j, dependency) in member.dependencies.iter().enumerate() {
                let field = format!("operations[{i}].dependencies[{j}]");
                if *dependency == member.operation_key {
                    return Err(FieldError::new(
                        field,
                        "an operation cannot depend on itself",
                    ));
                }
                if !positions.contains_key(dependency.as_str()) {
                    return Err(FieldError::new(
                        field,
                        format!("no operation in this batch has the key `{dependency}`"),
                    ));
                }
                if member.dependencies[..j].contains(dependency) {
                    return Err(FieldError::new(
                        field,
                        format!("`{dependency}` is listed twice"),
                    ));
                }
            }
        }
        let graph: Vec<(&str, &[String])> = body
            .operations
            .iter()
            .map(|m| (m.operation_key.as_str(), m.dependencies.as_slice()))
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            return Err(FieldError::new(
                "operations",
                format!(
                    "the dependencies form a cycle: {}",
                    cycle
                        .iter()
                        .chain(cycle.first())
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(" → ")
                ),
            ));
        }

        let mut members = Vec::with_capacity(body.operations.len());
        for (i, member) in body.operations.into_iter().enumerate() {
            let (key, dependencies, mut operation) = member.into_parts();
            let own_policy = operation.retry_policy.take();
            let mut spec = OperationSpec::try_from(operation)
                .map_err(|e| FieldError::new(format!("operations[{i}].{}", e.field), e.message))?;
            spec.retry_policy = match own_policy {
                Some(policy) if failure_policy.retry_failed_operations => {
                    policy.into_policy(retry_policy, &format!("operations[{i}].retryPolicy"))?
                }
                _ => retry_policy,
            };
            members.push(MemberSpec {
                key,
                dependencies,
                spec,
            });
        }
        Ok(BatchSpec {
            name: name.to_owned(),
            description: body.batch_description,
            members,
            callbacks,
            failure_policy,
            retry_policy,
        })
    }
}

/// A batch as stored: what its members share. The members are operations.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub name: String,
    pub description: Option<String>,
    /// Stored once final; `Initiated`/`Running` are told apart from the members.
    pub status: BatchStatus,
    pub failure_policy: FailurePolicy,
    pub callbacks: BatchCallbacks,
    pub retry_policy: RetryPolicy,
    pub total: u32,
    pub cancel_requested: bool,
    pub retry_number: u32,
    pub event_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Batch {
    pub fn new(
        id: BatchId,
        tenant_id: TenantId,
        project_id: ProjectId,
        spec: &BatchSpec,
        now: DateTime<Utc>,
    ) -> Self {
        Batch {
            id,
            tenant_id,
            project_id,
            name: spec.name.clone(),
            description: spec.description.clone(),
            status: BatchStatus::Initiated,
            failure_policy: spec.failure_policy,
            callbacks: spec.callbacks.clone(),
            retry_policy: spec.retry_policy,
            total: spec.members.len() as u32,
            cancel_requested: false,
            retry_number: 0,
            event_seq: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }

    /// The status to show: the final one once reached, else whether any member started.
    pub fn status_given(&self, members: impl IntoIterator<Item = OperationStatus>) -> BatchStatus {
        if self.status.is_terminal() {
            return self.status;
        }
        let started = members.into_iter().any(|s| !UNSTARTED.contains(&s));
        if started || self.retry_number > 0 {
            BatchStatus::Running
        } else {
            BatchStatus::Initiated
        }
    }

    /// Records the batch's end; the event to emit for it.
    pub fn finish(&mut self, status: BatchStatus, counts: Value, now: DateTime<Utc>) -> EventDraft {
        self.status = status;
        self.finished_at = Some(now);
        self.updated_at = now;
        let event_type = match status {
            BatchStatus::Completed => EventType::BatchCompleted,
            BatchStatus::Cancelled => EventType::BatchCancelled,
            _ => EventType::BatchFailed,
        };
        let mut data = self.snapshot();
        data["counts"] = counts;
        EventDraft::new(event_type, data)
    }

    /// Runs the batch again after a retry of some of its members.
    pub fn reopen(&mut self, now: DateTime<Utc>) -> Result<(), BatchNotFinished> {
        if !self.status.is_terminal() {
            return Err(BatchNotFinished(self.status));
        }
        self.status = BatchStatus::Running;
        self.finished_at = None;
        self.cancel_requested = false;
        self.retry_number += 1;
        self.updated_at = now;
        Ok(())
    }

    /// Records a user's cancel; the members still live are then stopped with
    /// [`stop_members`], and the scheduler ends the batch `Cancelled` once they are final.
    pub fn request_cancel(&mut self, now: DateTime<Utc>) -> Result<(), BatchFinished> {
        if self.status.is_terminal() {
            return Err(BatchFinished(self.status));
        }
        self.cancel_requested = true;
        self.updated_at = now;
        Ok(())
    }

    pub fn started_event(&self) -> EventDraft {
        EventDraft::new(EventType::BatchStarted, self.snapshot())
    }

    pub fn member_completed_event(&self, key: &str, operation: Value) -> EventDraft {
        let mut data = self.snapshot();
        data["operationKey"] = json!(key);
        data["operation"] = operation;
        EventDraft::new(EventType::BatchOperationCompleted, data)
    }

    /// The batch callback that an event of this type goes to, if the batch set one.
    pub fn callback_for(&self, event_type: EventType) -> Option<&String> {
        match event_type {
            EventType::BatchStarted => self.callbacks.on_batch_start.as_ref(),
            EventType::BatchOperationCompleted => self.callbacks.on_operation_complete.as_ref(),
            EventType::BatchCompleted | EventType::BatchFailed | EventType::BatchCancelled => {
                self.callbacks.on_batch_complete.as_ref()
            }
            _ => None,
        }
    }

    fn snapshot(&self) -> Value {
        json!({
            "batchId": self.id,
            "batchName": self.name,
            "status": self.status,
            "totalOperations": self.total,
            "retryNumber": self.retry_number,
        })
    }
}

/// A finished batch cannot be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batch is already {}", .0.as_str())]
pub struct BatchFinished(pub BatchStatus);

/// Cancels the [`LIVE`] members of a cancelled batch, keeping what they have done so far;
/// each cancelled member with the events its cancel causes. Completed members keep
/// their results.
pub fn stop_members(
    members: Vec<Operation>,
    cancelled_by: &str,
    now: DateTime<Utc>,
) -> Vec<(Operation, Vec<EventDraft>)> {
    members
        .into_iter()
        .filter_map(|mut op| {
            let request = CancelRequest {
                reason: Some("the batch was cancelled".into()),
                preserve_partial_results: true,
                force_termination: false,
                notify_callbacks: true,
            };
            let drafts = op.cancel(now, request, cancelled_by.to_owned()).ok()?;
            Some((op, drafts))
        })
        .collect()
}

/// Only a finished batch can be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batch is {}; only a finished batch can be retried", .0.as_str())]
pub struct BatchNotFinished(pub BatchStatus);

/// The keys of one cycle, in dependency order (each depends on the next, the last on the
/// first), if the graph has one. `graph` lists each key with the keys it depends on;
/// every dependency must be one of the keys. Iterative, so a 10,000-long chain is fine.
pub fn find_cycle(graph: &[(&str, &[String])]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let index: HashMap<&str, usize> = graph
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (*k, i))
        .collect();
    let mut marks = vec![Mark::New; graph.len()];
    for root in 0..graph.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // (node, next dependency to look at)
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let dependencies = graph[node].1;
            if *next == dependencies.len() {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            }
            let dependency = index[dependencies[*next].as_str()];
            *next += 1;
            match marks[dependency] {
                Mark::Done => {}
                Mark::New => {
                    marks[dependency] = Mark::OnPath;
                    path.push((dependency, 0));
                }
                Mark::OnPath => {
                    let start = path.iter().position(|(n, _)| *n == dependency)?;
                    return Some(
                        path[start..]
                            .iter()
                            .map(|(n, _)| graph[*n].0.to_owned())
                            .collect(),
                    );
                }
            }
        }
    }
    None
}

/// The members' indexes, each after all of its dependencies. `graph` must be acyclic
/// (as a checked [`BatchSpec`] is) and name only its own keys.
pub fn topological_order(graph: &[(&str, &[String])]) -> Vec<usize> {
    let index: HashMap<&str, usize> = graph
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (*k, i))
        .collect();
    let mut waiting: Vec<usize> = graph.iter().map(|(_, deps)| deps.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); graph.len()];
    for (i, (_, deps)) in graph.iter().enumerate() {
        for d in *deps {
            dependents[index[d.as_str()]].push(i);
        }
    }
    let mut order: Vec<usize> = (0..graph.len()).filter(|i| waiting[*i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        for &dependent in &dependents[order[next]] {
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                order.push(dependent);
            }
        }
        next += 1;
    }
    order
}

/// How a batch ends once none of its members can change any more; `None` while some can.
pub fn final_status(
    members: impl IntoIterator<Item = OperationStatus>,
    cancel_requested: bool,
) -> Option<BatchStatus> {
    let mut all_completed = true;
    for status in members {
        if !status.is_terminal() {
            return None;
        }
        all_completed &= status == OperationStatus::Completed;
    }
    Some(if cancel_requested {
        BatchStatus::Cancelled
    } else if all_completed {
        BatchStatus::Completed
    } else {
        BatchStatus::Failed
    })
}

/// Whether a member in this state ended without completing, so its dependents can never run.
pub fn blocks_dependents(status: OperationStatus) -> bool {
    matches!(
        status,
        OperationStatus::Failed
            | OperationStatus::Cancelled
            | OperationStatus::Timeout
            | OperationStatus::Skipped
    )
}

/// Counts of members per status, for status answers and events.
pub fn counts(statuses: impl IntoIterator<Item = OperationStatus>) -> Value {
    let mut counts: serde_json::Map<String, Value> = OperationStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), Value::from(0)))
        .collect();
    for status in statuses {
        let n = counts[status.as_str()].as_u64().unwrap_or(0);
        counts.insert(status.as_str().to_owned(), Value::from(n + 1));
    }
    Value::Object(counts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<BatchSpec, FieldError> {
        BatchSpec::try_from(serde_json::from_value::<SubmitBatchBody>(body).expect("shape"))
    }

    fn member(key: &str, deps: &[&str]) -> Value {
        json!({"operationKey": key, "operationName": key, "operationType": "Job", "dependencies": deps})
    }

    #[test]
    fn the_seed_body_is_accepted() {
        let spec = parse(json!({
            "batchName": "Monthly Process Mining Pipeline",
            "batchDescription": "Complete monthly analysis workflow with multiple datasets",
            "operations": [
                {"operationName": "Data Preparation", "operationType": "DataEnrichment", "priority": "High", "operationKey": "data-prep", "parameters": {"datasetId": "dataset-1"}},
                {"operationName": "Process Discovery", "operationType": "ProcessMiningAnalysis", "priority": "High", "operationKey": "discovery", "dependencies": ["data-prep"], "parameters": {}},
                {"operationName": "Performance Analysis", "operationType": "ProcessMiningAnalysis", "priority": "Normal", "operationKey": "performance", "dependencies": ["discovery"], "parameters": {}}
            ],
            "batchCallbacks": {"onBatchStart": "https://your-app.com/a", "onOperationComplete": "https://your-app.com/b", "onBatchComplete": "https://your-app.com/c"},
            "failurePolicy": {"stopOnFirstFailure": false, "continueIndependentOperations": true, "retryFailedOperations": true}
        }))
        .unwrap();
        assert_eq!(spec.members.len(), 3);
        assert_eq!(spec.members[2].dependencies, ["discovery"]);
        assert_eq!(spec.members[0].spec.operation_type, "DataEnrichment");
        assert_eq!(spec.failure_policy, FailurePolicy::default());
    }

    #[test]
    fn bad_graphs_are_refused_naming_the_field() {
        let refused = |members: Vec<Value>| {
            parse(json!({"batchName": "b", "operations": members})).unwrap_err()
        };
        assert_eq!(refused(vec![]).field, "operations");
        let e = refused(vec![member("a", &[]), member("a", &[])]);
        assert_eq!(e.field, "operations[1].operationKey");
        let e = refused(vec![member("a", &["ghost"])]);
        assert_eq!(e.field, "operations[0].dependencies[0]");
        assert!(e.message.contains("ghost"));
        let e = refused(vec![member("a", &["a"])]);
        assert!(e.message.contains("itself"));
        let e = refused(vec![member("a", &[]), member("b", &["a", "a"])]);
        assert_eq!(e.field, "operations[1].dependencies[1]");
    }

    #[test]
    fn a_cycle_is_reported_with_its_keys_in_order() {
        let e = parse(json!({"batchName": "b", "operations": [
            member("root", &[]), member("a", &["root", "c"]), member("b", &["a"]), member("c", &["b"])
        ]}))
        .unwrap_err();
        assert_eq!(e.field, "operations");
        assert!(e.message.ends_with("a → c → b → a"), "{}", e.message);
    }

    #[test]
    fn a_long_chain_has_no_cycle_and_does_not_exhaust_the_stack() {
        let keys: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("k{i}")).collect();
        let deps: Vec<Vec<String>> = (0..MAX_MEMBERS)
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    vec![keys[i - 1].clone()]
                }
            })
            .collect();
        let graph: Vec<(&str, &[String])> = keys
            .iter()
            .map(String::as_str)
            .zip(deps.iter().map(Vec::as_slice))
            .collect();
        assert_eq!(find_cycle(&graph), None);
    }

    #[test]
    fn members_are_ordered_after_their_dependencies() {
        let deps = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, b, c, d) = (deps(&["b", "c"]), deps(&["d"]), deps(&["d"]), deps(&[]));
        let graph: Vec<(&str, &[String])> = vec![("a", &a), ("b", &b), ("c", &c), ("d", &d)];
        let order = topological_order(&graph);
        assert_eq!(order.len(), 4);
        let at = |k: usize| order.iter().position(|i| *i == k).unwrap();
        assert!(at(3) < at(1) && at(3) < at(2) && at(1) < at(0) && at(2) < at(0));
    }

    #[test]
    fn too_many_members_are_refused() {
        let members: Vec<Value> = (0..=MAX_MEMBERS)
            .map(|i| member(&format!("k{i}"), &[]))
            .collect();
        let e = parse(json!({"batchName": "b", "operations": members})).unwrap_err();
        assert!(e.message.contains("at most 10000"), "{}", e.message);
    }

    #[test]
    fn member_errors_are_named_inside_the_batch() {
        let e = parse(json!({"batchName": "b", "operations": [
            {"operationKey": "a", "operationName": "a", "operationType": "Job", "timeout": 0}
        ]}))
        .unwrap_err();
        assert_eq!(e.field, "operations[0].timeout");
    }

    #[test]
    fn without_retries_each_member_gets_one_attempt() {
        let spec = parse(json!({"batchName": "b", "operations": [member("a", &[])],
            "failurePolicy": {"retryFailedOperations": false}}))
        .unwrap();
        assert_eq!(spec.members[0].spec.retry_policy.max_attempts(), 1);
    }

    #[test]
    fn the_batch_ends_once_every_member_is_final() {
        use OperationStatus::*;
        assert_eq!(final_status([Completed, Running], false), None);
        assert_eq!(
            final_status([Completed, Completed], false),
            Some(BatchStatus::Completed)
        );
        assert_eq!(
            final_status([Completed, Skipped, Failed], false),
            Some(BatchStatus::Failed)
        );
        assert_eq!(
            final_status([Completed, Cancelled], true),
            Some(BatchStatus::Cancelled)
        );
    }

    #[test]
    fn the_failure_policy_picks_what_happens_to_the_others() {
        let policy = |stop, go_on| FailurePolicy {
            stop_on_first_failure: stop,
            continue_independent_operations: go_on,
            retry_failed_operations: true,
        };
        assert_eq!(
            policy(true, true).after_failure(),
            AfterFailure::CancelEverything
        );
        assert_eq!(policy(false, true).after_failure(), AfterFailure::Continue);
        assert_eq!(
            policy(false, false).after_failure(),
            AfterFailure::SkipUnstarted
        );
    }
}
