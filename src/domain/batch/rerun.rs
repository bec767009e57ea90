//! A batch retry: every member that ended without completing runs again, as a new
//! operation that takes its key; completed members and their results stay. A member run
//! again waits for those of its dependencies that run again too; the others completed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::Edge;
use crate::domain::ids::OperationId;
use crate::domain::operation::{BatchMembership, Operation, OperationSpec, OperationStatus};

/// Members a batch retry runs again: those that ended without completing.
pub const RUN_AGAIN: [OperationStatus; 4] = [
    OperationStatus::Failed,
    OperationStatus::Cancelled,
    OperationStatus::Timeout,
    OperationStatus::Skipped,
];

/// A member run again.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerun {
    pub key: String,
    /// The operation that stood for the key until now.
    pub replaces: OperationId,
    /// The new operation: claimable at once, or `Pending` while it waits.
    pub operation: Operation,
    /// How many of its dependencies it waits for.
    pub waiting: i64,
}

/// The new runs of `old` (the batch's members in [`RUN_AGAIN`] states), in the same
/// order; `edges_into` holds (at least) every edge whose downstream is one of them.
/// `new_id` names each new operation.
pub fn rerun(
    old: &[Operation],
    edges_into: &[Edge],
    mut new_id: impl FnMut() -> OperationId,
    now: DateTime<Utc>,
) -> Vec<Rerun> {
    let again: HashSet<&str> = old
        .iter()
        .filter_map(|op| op.batch.as_ref().map(|b| b.key.as_str()))
        .collect();
    let mut waits: HashMap<&str, i64> = HashMap::new();
    for edge in edges_into {
        if again.contains(edge.downstream.as_str()) && again.contains(edge.upstream.as_str()) {
            *waits.entry(edge.downstream.as_str()).or_default() += 1;
        }
    }
    old.iter()
        .filter_map(|op| {
            let membership = op.batch.as_ref()?;
            let waiting = waits.get(membership.key.as_str()).copied().unwrap_or(0);
            let mut new = Operation::member(
                new_id(),
                op.tenant_id,
                op.project_id,
                spec_of(op),
                BatchMembership {
                    batch_id: membership.batch_id,
                    key: membership.key.clone(),
                    inputs: None,
                },
                waiting > 0,
                now,
            );
            new.retry_of = Some(op.id);
            new.retry_number = op.retry_number + 1;
            Some(Rerun {
                key: membership.key.clone(),
                replaces: op.id,
                operation: new,
                waiting,
            })
        })
        .collect()
}

/// What `op` was started with.
fn spec_of(op: &Operation) -> OperationSpec {
    OperationSpec {
        operation_type: op.operation_type.clone(),
        operation_name: op.operation_name.clone(),
        description: op.description.clone(),
        priority: op.priority,
        parameters: op.parameters.clone(),
        callbacks: op.callbacks.clone(),
        notifications: op.notifications.clone(),
        timeout: op.timeout,
        retry_policy: op.retry_policy,
    }
}
