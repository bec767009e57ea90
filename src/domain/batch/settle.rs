//! One pass of the batch scheduler, decided without I/O. Members finish in transactions
//! of their own (a complete, a fail, a lease expiry…), which only flag them unsettled;
//! a pass then acts on what they finished, under the batch's lock: it releases the
//! members whose last dependency completed, skips what depends on a failure, applies the
//! failure policy, emits the batch events, settles the finished members and ends the
//! batch once every member is final and settled.
//!
//! The store reads only what a pass needs, in steps: the finished-unsettled members
//! (at most [`OUTCOMES_PER_PASS`]), the graph around them ([`graph_needed`]), the
//! members the pass may change ([`members_needed`]), and the members' counts only when
//! the batch may end ([`may_end`]) and none of them is live. [`settle`] turns that
//! [`Snapshot`] into the [`Plan`] the store writes in the same transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{blocks_dependents, counts, final_status, AfterFailure, Batch, Edge, LIVE, UNSTARTED};
use crate::domain::event::EventDraft;
use crate::domain::ids::OperationId;
use crate::domain::operation::{CancelRequest, Operation, OperationError, OperationStatus};

/// Member outcomes one pass acts on, per batch, so that a pass stays a short transaction
/// however many members finished at once; the rest are left to the next pass.
pub const OUTCOMES_PER_PASS: usize = 2_000;

/// What a pass reads of the graph, given the members that finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNeeded {
    /// Members that ended without completing (failed, cancelled, timed out): every edge
    /// below them, breadth first, since none of their dependents can run any more.
    pub failed: Vec<String>,
    /// Members that completed: the edges out of them, each with its dependent's `waiting`.
    pub completed: Vec<String>,
}

/// The graph around the finished members, as the store read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// The edges below [`GraphNeeded::failed`], breadth first from them, in the order read.
    pub below_failed: Vec<Edge>,
    /// The edges out of [`GraphNeeded::completed`], each with how many dependencies its
    /// downstream member still waited for before this pass.
    pub out_of_completed: Vec<(Edge, i64)>,
}

/// The members a pass may change, for the store to load (and lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersNeeded {
    pub statuses: &'static [OperationStatus],
    /// Only the members with these keys; `None`: every member in those states.
    pub keys: Option<Vec<String>>,
}

/// Everything a pass decides from, read under the batch's lock.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub batch: Batch,
    /// Members that reached a final state and that no pass acted on yet, in id order.
    pub finished: Vec<Operation>,
    pub graph: Graph,
    /// The members [`members_needed`] names (more do no harm: each rule checks states).
    pub members: Vec<Operation>,
    /// Every member's status before this pass, counted; read only when the batch
    /// [`may_end`] and no member is [`LIVE`] (before then, counting would be wasted).
    pub counts: Option<Vec<(OperationStatus, i64)>>,
}

/// What one pass writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The batch as it is to be stored (ended, if it ended).
    pub batch: Batch,
    /// Members changed, each with the events its change causes: the skipped dependents
    /// of failures first, then those the failure policy stopped, then the released.
    pub changes: Vec<(Operation, Vec<EventDraft>)>,
    /// How much each member's `waiting` goes down, by key, in key order.
    pub count_down: Vec<(String, i64)>,
    /// The finished members this pass acted on: no pass acts on them again.
    pub settled: Vec<OperationId>,
    /// Events of the batch itself, in order.
    pub batch_events: Vec<EventDraft>,
}

pub fn graph_needed(finished: &[Operation]) -> GraphNeeded {
    GraphNeeded {
        failed: failed(finished).map(|op| key_of(op).to_owned()).collect(),
        completed: completed(finished)
            .map(|op| key_of(op).to_owned())
            .collect(),
    }
}

/// The members this pass may change, given the graph read; `None` when it changes none.
pub fn members_needed(
    batch: &Batch,
    finished: &[Operation],
    graph: &Graph,
) -> Option<MembersNeeded> {
    if failed(finished).next().is_some() && !batch.cancel_requested {
        // Both halting policies act on every pending member, the doomed ones included.
        match batch.failure_policy.after_failure() {
            AfterFailure::Continue => {}
            AfterFailure::SkipUnstarted => {
                return Some(MembersNeeded {
                    statuses: &UNSTARTED,
                    keys: None,
                })
            }
            AfterFailure::CancelEverything => {
                return Some(MembersNeeded {
                    statuses: &LIVE,
                    keys: None,
                })
            }
        }
    }
    let failed_roots: HashSet<&str> = failed(finished).map(key_of).collect();
    let mut seen = HashSet::new();
    let mut keys: Vec<String> = graph
        .below_failed
        .iter()
        .map(|edge| edge.downstream.as_str())
        .filter(|key| !failed_roots.contains(key) && seen.insert(*key))
        .map(str::to_owned)
        .collect();
    if !halting(batch, finished) {
        let (_, ready) = count_down(&graph.out_of_completed);
        keys.extend(
            ready
                .into_iter()
                .filter(|key| seen.insert(key))
                .map(str::to_owned),
        );
    }
    (!keys.is_empty()).then_some(MembersNeeded {
        statuses: &[OperationStatus::Pending],
        keys: Some(keys),
    })
}

/// Whether this pass may end the batch. A batch ends once every member is final and
/// settled; a full pass may have left finished members for the next one.
pub fn may_end(batch: &Batch, finished: &[Operation]) -> bool {
    !batch.status.is_terminal() && finished.len() < OUTCOMES_PER_PASS
}

pub fn settle(snapshot: Snapshot, now: DateTime<Utc>) -> Plan {
    let Snapshot {
        mut batch,
        finished,
        graph,
        members,
        counts: member_counts,
    } = snapshot;
    let failures: Vec<&Operation> = failed(&finished).collect();
    let origin = origins(&failures, &graph.below_failed);
    let (count_down, ready) = count_down(&graph.out_of_completed);
    let mut changes: Vec<(Operation, Vec<EventDraft>)> = Vec::new();

    // What can no longer run: the dependents, transitively, of each failure.
    let mut untouched = Vec::with_capacity(members.len());
    for mut op in members {
        let cause = origin
            .get(key_of(&op))
            .filter(|(root, _)| *root != key_of(&op));
        match cause {
            Some((root, id))
                if op.status == OperationStatus::Pending
                    && op.skip(upstream_failed(root, *id), now).is_ok() =>
            {
                changes.push((op, Vec::new()))
            }
            _ => untouched.push(op),
        }
    }
    let members = untouched;

    // The failure policy, unless the failures are the batch's own cancellation.
    let mut untouched = Vec::with_capacity(members.len());
    let policy = match (failures.first(), batch.cancel_requested) {
        (Some(first), false) => Some((first, batch.failure_policy.after_failure())),
        _ => None,
    };
    for mut op in members {
        match policy {
            Some((first, AfterFailure::SkipUnstarted))
                if UNSTARTED.contains(&op.status)
                    && op.lease.is_none()
                    && op.skip(halted_by(key_of(first), first.id), now).is_ok() =>
            {
                changes.push((op, Vec::new()))
            }
            Some((first, AfterFailure::CancelEverything)) if LIVE.contains(&op.status) => {
                let request = CancelRequest {
                    reason: Some(format!(
                        "stopOnFirstFailure: batch member `{}` ({}) failed",
                        key_of(first),
                        first.id
                    )),
                    preserve_partial_results: true,
                    force_termination: false,
                    notify_callbacks: true,
                };
                match op.cancel(now, request, "batch".into()) {
                    Ok(drafts) => changes.push((op, drafts)),
                    Err(_) => untouched.push(op),
                }
            }
            _ => untouched.push(op),
        }
    }

    // A member whose last dependency completed is released, unless the batch is halting.
    if !halting(&batch, &finished) {
        for mut op in untouched {
            if op.status == OperationStatus::Pending
                && ready.contains(key_of(&op))
                && op.release(now).is_ok()
            {
                changes.push((op, Vec::new()));
            }
        }
    }

    let mut batch_events: Vec<EventDraft> = completed(&finished)
        .map(|op| {
            let mut data = op.snapshot();
            data["result"] = op.result.as_ref().map(|r| json!(r)).unwrap_or(Value::Null);
            batch.member_completed_event(key_of(op), data)
        })
        .collect();

    // The counts are read before this pass and only when no member is live, so a member
    // this pass makes final was live then: the batch ends in the next pass, once that
    // member is settled. So a retry, which needs the batch ended, never races with a
    // pass still acting on the members it replaces.
    if let (Some(member_counts), true) = (member_counts, may_end(&batch, &finished)) {
        let statuses = member_counts
            .iter()
            .flat_map(|(status, n)| std::iter::repeat_n(*status, (*n).max(0) as usize));
        if let Some(status) = final_status(statuses.clone(), batch.cancel_requested) {
            batch_events.push(batch.finish(status, counts(statuses), now));
        }
    }

    Plan {
        batch,
        changes,
        count_down,
        settled: finished.iter().map(|op| op.id).collect(),
        batch_events,
    }
}

fn key_of(op: &Operation) -> &str {
    op.batch.as_ref().map_or("", |b| b.key.as_str())
}

/// Members that ended without completing by themselves (a skipped member's dependents
/// were dealt with when it was skipped).
fn failed(finished: &[Operation]) -> impl Iterator<Item = &Operation> {
    finished
        .iter()
        .filter(|op| blocks_dependents(op.status) && op.status != OperationStatus::Skipped)
}

fn completed(finished: &[Operation]) -> impl Iterator<Item = &Operation> {
    finished
        .iter()
        .filter(|op| op.status == OperationStatus::Completed)
}

/// Whether the batch releases nothing more: it is being cancelled, or a failure stops it.
fn halting(batch: &Batch, finished: &[Operation]) -> bool {
    batch.cancel_requested
        || (failed(finished).next().is_some()
            && batch.failure_policy.after_failure() != AfterFailure::Continue)
}

/// For each failed member and each member below one, the failure it is blamed on: the
/// first that reached it, breadth first.
fn origins<'a>(
    failures: &[&'a Operation],
    below: &'a [Edge],
) -> HashMap<&'a str, (&'a str, OperationId)> {
    let mut origin: HashMap<&str, (&str, OperationId)> = failures
        .iter()
        .map(|op| (key_of(op), (key_of(op), op.id)))
        .collect();
    for edge in below {
        if origin.contains_key(edge.downstream.as_str()) {
            continue;
        }
        if let Some(cause) = origin.get(edge.upstream.as_str()).copied() {
            origin.insert(edge.downstream.as_str(), cause);
        }
    }
    origin
}

/// Each completion lowers its dependents' `waiting` by one: the decrement per key, and
/// the keys whose last dependency just completed. Exact, because only the scheduler,
/// under the batch's lock, counts down, and each outcome is counted once (then settled).
fn count_down(out_of_completed: &[(Edge, i64)]) -> (Vec<(String, i64)>, HashSet<&str>) {
    let mut counted: HashMap<&str, (i64, i64)> = HashMap::new();
    for (edge, waiting) in out_of_completed {
        counted
            .entry(edge.downstream.as_str())
            .or_insert((*waiting, 0))
            .1 += 1;
    }
    let ready = counted
        .iter()
        .filter(|(_, (waiting, decrement))| waiting - decrement == 0)
        .map(|(key, _)| *key)
        .collect();
    let mut decrements: Vec<(String, i64)> = counted
        .into_iter()
        .map(|(key, (_, decrement))| (key.to_owned(), decrement))
        .collect();
    decrements.sort_unstable();
    (decrements, ready)
}

fn upstream_failed(key: &str, id: OperationId) -> OperationError {
    OperationError {
        code: "UPSTREAM_FAILED".into(),
        message: format!("skipped: batch member `{key}` ({id}) did not complete"),
        details: Some(json!({"failedOperationKey": key, "failedOperationId": id})),
    }
}

fn halted_by(key: &str, id: OperationId) -> OperationError {
    OperationError {
        code: "BATCH_HALTED".into(),
        message: format!(
            "skipped: batch member `{key}` ({id}) failed and the batch does not continue independent operations"
        ),
        details: Some(json!({"failedOperationKey": key, "failedOperationId": id})),
    }
}
