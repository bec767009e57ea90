//! Batches: operations with dependencies between them (a DAG), submitted together. This
//! module holds the rules a submitted graph must obey (keys, dependencies, no cycle) and
//! those that decide what a member's failure does to the others and how the batch ends. What follows from
//! members finishing is decided in [`settle`]; what a batch retry runs again, in [`rerun`].

pub mod rerun;
#[cfg(test)]
mod scheduling_tests;
pub mod settle;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::domain::event::{Event, EventDraft, EventType};
use crate::domain::fields::http_url;
use crate::domain::ids::{BatchId, ProjectId, TenantId};
use crate::domain::notify::{self, Ending, Notice, Notify, SubjectKind};
use crate::domain::operation::{
    CancelRequest, Notifications, Operation, OperationSpec, OperationStatus,
};
use crate::domain::retry::RetryPolicy;
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
    /// The policy members run under: the one the batch asks for (read only then, so a
    /// policy that will not apply is not checked either) while failed members are
    /// retried, else a single attempt.
    pub fn retry_policy<E>(
        self,
        asked: impl FnOnce() -> Result<RetryPolicy, E>,
    ) -> Result<RetryPolicy, E> {
        if self.retry_failed_operations {
            asked()
        } else {
            Ok(RetryPolicy {
                max_retries: 0,
                ..RetryPolicy::OPERATION_DEFAULT
            })
        }
    }

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

impl BatchCallbacks {
    /// Every callback given is an http(s) URL; `field` is where the callbacks are.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        for (name, url) in [
            ("onBatchStart", &self.on_batch_start),
            ("onOperationComplete", &self.on_operation_complete),
            ("onBatchComplete", &self.on_batch_complete),
        ] {
            if let Some(url) = url {
                http_url(url, &format!("{field}.{name}"))?;
            }
        }
        Ok(())
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
    /// Who hears of the batch's end by mail or Slack.
    pub notifications: Notifications,
}

/// A batch's name: anything but blank.
pub fn checked_batch_name(name: &str, field: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new(field, "must not be blank"));
    }
    Ok(name.to_owned())
}

/// A batch has one to [`MAX_MEMBERS`] members; `field` is where they are listed.
pub fn check_member_count(count: usize, field: &str) -> Result<(), FieldError> {
    if count == 0 {
        return Err(FieldError::new(field, "must list at least one operation"));
    }
    if count > MAX_MEMBERS {
        return Err(FieldError::new(
            field,
            format!("lists {count} operations; a batch holds at most {MAX_MEMBERS}"),
        ));
    }
    Ok(())
}

/// The submitted graph, as a [`BatchSpec`] must hold it: keys unique and of 1 to
/// `MAX_KEY_LEN` characters, every dependency another member's key and listed once, no
/// cycle. `graph` lists each member's key with the keys it depends on, in the order
/// submitted; `field` is where the members are listed, and an error names the member's
/// `operationKey` or `dependencies[j]` under it.
pub fn check_graph(graph: &[(&str, &[String])], field: &str) -> Result<(), FieldError> {
    let mut positions: HashMap<&str, usize> = HashMap::with_capacity(graph.len());
    for (i, &(key, _)) in graph.iter().enumerate() {
        let at = format!("{field}[{i}].operationKey");
        if key.trim().is_empty() || key.len() > MAX_KEY_LEN {
            return Err(FieldError::new(
                at,
                format!("must be 1 to {MAX_KEY_LEN} characters"),
            ));
        }
        if let Some(first) = positions.insert(key, i) {
            return Err(FieldError::new(
                at,
                format!("`{key}` is already the key of {field}[{first}]"),
            ));
        }
    }
    for (i, &(key, dependencies)) in graph.iter().enumerate() {
        for (j, dependency) in dependencies.iter().enumerate() {
            let at = format!("{field}[{i}].dependencies[{j}]");
            if dependency == key {
                return Err(FieldError::new(at, "an operation cannot depend on itself"));
            }
            if !positions.contains_key(dependency.as_str()) {
                return Err(FieldError::new(
                    at,
                    format!("no operation in this batch has the key `{dependency}`"),
                ));
            }
            if dependencies[..j].contains(dependency) {
                return Err(FieldError::new(
                    at,
                    format!("`{dependency}` is listed twice"),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        return Err(FieldError::new(
            field,
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
    Ok(())
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
    pub notifications: Notifications,
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
            notifications: spec.notifications.clone(),
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

    /// The notice of the batch's end, with its members' counts, for whoever its
    /// submission asked to notify.
    pub fn notify_of(&self, event: &Event) -> Option<Notify> {
        if !notify::is_ending(event.event_type) || self.notifications.is_empty() {
            return None;
        }
        let ended_at = self.finished_at.unwrap_or(event.timestamp);
        self.notifications.notify(Notice::Ended(Ending {
            kind: SubjectKind::Batch,
            id: self.id.to_string(),
            name: self.name.clone(),
            operation_type: None,
            status: self.status.as_str().to_owned(),
            duration_seconds: Some((ended_at - self.created_at).num_milliseconds() as f64 / 1000.0),
            error_code: None,
            error_message: None,
            tracking_path: format!(
                "/api/{}/{}/async/batch/{}",
                self.tenant_id, self.project_id, self.id
            ),
            members: event.data.get("counts").cloned(),
            ended_at,
        }))
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
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_graph_rules_name_the_member_at_fault() {
        let (none, a, ghost, twice) =
            (keys(&[]), keys(&["a"]), keys(&["ghost"]), keys(&["a", "a"]));
        let refused = |graph: &[(&str, &[String])]| check_graph(graph, "operations").unwrap_err();
        assert_eq!(
            refused(&[("a", &none), ("a", &none)]).field,
            "operations[1].operationKey"
        );
        assert_eq!(refused(&[(" ", &none)]).field, "operations[0].operationKey");
        assert_eq!(
            refused(&[("a", &ghost)]).field,
            "operations[0].dependencies[0]"
        );
        assert!(refused(&[("a", &a)]).message.contains("itself"));
        assert_eq!(
            refused(&[("a", &none), ("b", &twice)]).field,
            "operations[1].dependencies[1]"
        );
        let (b, c) = (keys(&["b"]), keys(&["c"]));
        let cycle = refused(&[("a", &b), ("b", &c), ("c", &a)]);
        assert_eq!(cycle.field, "operations");
        assert!(
            cycle.message.ends_with("a → b → c → a"),
            "{}",
            cycle.message
        );
        assert_eq!(
            check_graph(&[("a", &none), ("b", &a)], "operations"),
            Ok(())
        );
    }

    #[test]
    fn a_batch_has_a_name_and_one_to_max_members() {
        assert_eq!(checked_batch_name(" b ", "batchName").unwrap(), "b");
        assert_eq!(
            checked_batch_name(" ", "batchName").unwrap_err().field,
            "batchName"
        );
        assert!(check_member_count(0, "operations").is_err());
        assert!(check_member_count(MAX_MEMBERS, "operations").is_ok());
        assert!(check_member_count(MAX_MEMBERS + 1, "operations").is_err());
    }

    #[test]
    fn without_retries_the_asked_policy_is_not_even_read() {
        let no_retries = FailurePolicy {
            retry_failed_operations: false,
            ..FailurePolicy::default()
        };
        let single = no_retries
            .retry_policy(|| Err::<RetryPolicy, _>("not read"))
            .unwrap();
        assert_eq!(single.max_attempts(), 1);
        let asked = FailurePolicy::default()
            .retry_policy(|| Ok::<_, ()>(RetryPolicy::WEBHOOK_DEFAULT))
            .unwrap();
        assert_eq!(asked, RetryPolicy::WEBHOOK_DEFAULT);
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
