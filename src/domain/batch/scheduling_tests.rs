//! The scheduler's decisions over whole batches: a small in-memory stand-in for the store
//! reads what each step asks for, exactly as `store::batches` does (the finished and
//! unsettled members in id order, the edges breadth first, the members named, the counts
//! only when the batch may end and none is live), and writes each plan back.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::rerun::{rerun, RUN_AGAIN};
use super::settle::{self, Graph, MembersNeeded, Plan, Snapshot, OUTCOMES_PER_PASS};
use super::{
    stop_members, Batch, BatchCallbacks, BatchFinished, BatchStatus, Edge, FailurePolicy, LIVE,
    UNSTARTED,
};
use crate::domain::event::{EventDraft, EventType};
use crate::domain::ids::{BatchId, OperationId, ProjectId, TenantId};
use crate::domain::operation::{
    AttemptStart, Backoff, BatchMembership, Callbacks, Notifications, Operation, OperationError,
    OperationResult, OperationSpec, OperationStatus, Priority,
};
use crate::domain::retry::RetryPolicy;

use OperationStatus::*;

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn policy(stop_on_first_failure: bool, continue_independent_operations: bool) -> FailurePolicy {
    FailurePolicy {
        stop_on_first_failure,
        continue_independent_operations,
        retry_failed_operations: false,
    }
}

const CONTINUE: (bool, bool) = (false, true);
const SKIP_UNSTARTED: (bool, bool) = (false, false);
const STOP: (bool, bool) = (true, true);

fn spec(key: &str) -> OperationSpec {
    OperationSpec {
        operation_type: "Job".into(),
        operation_name: key.into(),
        description: None,
        priority: Priority::Normal,
        parameters: json!({}),
        callbacks: Callbacks::default(),
        notifications: Notifications::default(),
        timeout: Duration::from_secs(3600),
        retry_policy: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::OPERATION_DEFAULT
        },
    }
}

/// A batch as the store holds it: the operation standing for each key, the edges, each
/// member's `waiting`, and which finished members a pass has settled.
struct Sim {
    batch: Batch,
    members: Vec<Operation>,
    index: HashMap<String, usize>,
    edges: Vec<Edge>,
    dependents: HashMap<String, Vec<usize>>,
    waiting: HashMap<String, i64>,
    settled: HashSet<OperationId>,
    clock: i64,
}

impl Sim {
    fn new((stop, go_on): (bool, bool), graph: &[(&str, &[&str])]) -> Sim {
        let (tenant, project) = (TenantId::new(), ProjectId::new());
        let batch = Batch {
            id: BatchId::new(),
            tenant_id: tenant,
            project_id: project,
            name: "test".into(),
            description: None,
            status: BatchStatus::Initiated,
            failure_policy: policy(stop, go_on),
            callbacks: BatchCallbacks::default(),
            retry_policy: RetryPolicy::OPERATION_DEFAULT,
            notifications: Default::default(),
            total: graph.len() as u32,
            cancel_requested: false,
            retry_number: 0,
            event_seq: 0,
            created_at: t(0),
            updated_at: t(0),
            finished_at: None,
        };
        let mut sim = Sim {
            batch,
            members: Vec::new(),
            index: HashMap::new(),
            edges: Vec::new(),
            dependents: HashMap::new(),
            waiting: HashMap::new(),
            settled: HashSet::new(),
            clock: 0,
        };
        for (key, deps) in graph {
            let membership = BatchMembership {
                batch_id: sim.batch.id,
                key: key.to_string(),
                inputs: None,
            };
            let op = Operation::member(
                OperationId::new(),
                tenant,
                project,
                spec(key),
                membership,
                !deps.is_empty(),
                t(0),
            );
            sim.index.insert(key.to_string(), sim.members.len());
            sim.members.push(op);
            sim.waiting.insert(key.to_string(), deps.len() as i64);
            for dep in *deps {
                sim.dependents
                    .entry(dep.to_string())
                    .or_default()
                    .push(sim.edges.len());
                sim.edges.push(Edge {
                    upstream: dep.to_string(),
                    downstream: key.to_string(),
                });
            }
        }
        sim
    }

    fn now(&mut self) -> DateTime<Utc> {
        self.clock += 1;
        t(self.clock)
    }

    fn op(&self, key: &str) -> &Operation {
        &self.members[self.index[key]]
    }

    fn op_mut(&mut self, key: &str) -> &mut Operation {
        &mut self.members[self.index[key]]
    }

    fn status(&self, key: &str) -> OperationStatus {
        self.op(key).status
    }

    fn statuses(&self, keys: &[&str]) -> Vec<OperationStatus> {
        keys.iter().map(|k| self.status(k)).collect()
    }

    /// The error of a skipped member: its code and the key it blames.
    fn blame(&self, key: &str) -> (String, String) {
        let error = self.op(key).error.clone().expect("an error");
        let blamed = error.details.expect("details")["failedOperationKey"]
            .as_str()
            .unwrap()
            .to_owned();
        (error.code, blamed)
    }

    fn start(&mut self, key: &str) {
        let now = self.now();
        self.op_mut(key)
            .start_attempt(
                now,
                AttemptStart {
                    execution_id: crate::domain::ids::ExecutionId::new(),
                    lease_token: crate::domain::ids::LeaseToken::generate(),
                    worker_id: None,
                },
                Duration::from_secs(60),
            )
            .expect("leaseable");
    }

    fn lease_of(&mut self, key: &str) -> String {
        if self.status(key) != Running {
            self.start(key);
        }
        self.op(key)
            .lease
            .as_ref()
            .unwrap()
            .token
            .as_str()
            .to_owned()
    }

    fn complete(&mut self, key: &str) {
        let token = self.lease_of(key);
        let now = self.now();
        let result = OperationResult {
            summary: json!({ "of": key }),
            ..Default::default()
        };
        self.op_mut(key)
            .complete(now, &token, result)
            .expect("completes");
    }

    fn fail(&mut self, key: &str) {
        let token = self.lease_of(key);
        let now = self.now();
        let error = OperationError {
            code: "BOOM".into(),
            message: "boom".into(),
            details: None,
        };
        self.op_mut(key)
            .fail(now, &token, error, false, Backoff::EXACT)
            .expect("fails");
        assert_eq!(self.status(key), Failed);
    }

    fn unsettled(&self) -> Vec<Operation> {
        let mut finished: Vec<Operation> = self
            .members
            .iter()
            .filter(|op| op.status.is_terminal() && !self.settled.contains(&op.id))
            .cloned()
            .collect();
        finished.sort_by_key(|op| op.id);
        finished.truncate(OUTCOMES_PER_PASS);
        finished
    }

    /// What the store reads for a pass, as it reads it.
    fn snapshot(&self) -> (Snapshot, Option<MembersNeeded>) {
        let finished = self.unsettled();
        let needed = settle::graph_needed(&finished);
        let mut below_failed = Vec::new();
        let mut reached: HashSet<String> = needed.failed.iter().cloned().collect();
        let mut frontier = needed.failed.clone();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for key in &frontier {
                for &e in self.dependents.get(key).into_iter().flatten() {
                    let edge = self.edges[e].clone();
                    if reached.insert(edge.downstream.clone()) {
                        next.push(edge.downstream.clone());
                    }
                    below_failed.push(edge);
                }
            }
            frontier = next;
        }
        let out_of_completed = needed
            .completed
            .iter()
            .flat_map(|key| self.dependents.get(key).into_iter().flatten())
            .map(|&e| {
                let edge = self.edges[e].clone();
                let waiting = self.waiting[&edge.downstream];
                (edge, waiting)
            })
            .collect();
        let graph = Graph {
            below_failed,
            out_of_completed,
        };
        let wanted = settle::members_needed(&self.batch, &finished, &graph);
        let mut members: Vec<Operation> = match &wanted {
            None => Vec::new(),
            Some(wanted) => {
                let keys: Option<HashSet<&String>> =
                    wanted.keys.as_ref().map(|keys| keys.iter().collect());
                self.members
                    .iter()
                    .filter(|op| wanted.statuses.contains(&op.status))
                    .filter(|op| {
                        keys.as_ref()
                            .is_none_or(|keys| keys.contains(&op.batch.as_ref().unwrap().key))
                    })
                    .cloned()
                    .collect()
            }
        };
        members.sort_by_key(|op| op.id);
        let live = self.members.iter().any(|op| LIVE.contains(&op.status));
        let counts = (settle::may_end(&self.batch, &finished) && !live).then(|| {
            let mut counts: HashMap<OperationStatus, i64> = HashMap::new();
            for op in &self.members {
                *counts.entry(op.status).or_default() += 1;
            }
            counts.into_iter().collect()
        });
        let snapshot = Snapshot {
            batch: self.batch.clone(),
            finished,
            graph,
            members,
            counts,
        };
        (snapshot, wanted)
    }

    /// One scheduler pass, if some member's end is unsettled (the engine visits only
    /// those batches); the plan it wrote.
    fn pass(&mut self) -> Option<Plan> {
        if self.unsettled().is_empty() {
            return None;
        }
        let (snapshot, _) = self.snapshot();
        let now = self.now();
        let plan = settle::settle(snapshot, now);
        self.write(&plan);
        Some(plan)
    }

    fn write(&mut self, plan: &Plan) {
        for (op, _) in &plan.changes {
            let i = self.index[&op.batch.as_ref().unwrap().key];
            self.members[i] = op.clone();
        }
        for (key, decrement) in &plan.count_down {
            *self.waiting.get_mut(key).unwrap() -= decrement;
        }
        self.settled.extend(plan.settled.iter().copied());
        self.batch = plan.batch.clone();
    }

    /// Passes until nothing is left to settle; the batch events they emitted.
    fn settle_all(&mut self) -> Vec<EventType> {
        let mut events = Vec::new();
        while let Some(plan) = self.pass() {
            events.extend(plan.batch_events.iter().map(|e| e.event_type));
        }
        events
    }
}

fn types(events: &[EventDraft]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

fn count_of(event: &EventDraft, status: OperationStatus) -> u64 {
    event.data["counts"][status.as_str()].as_u64().unwrap()
}

#[test]
fn a_diamond_releases_each_member_once_its_last_dependency_completed() {
    let mut sim = Sim::new(
        CONTINUE,
        &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])],
    );
    assert_eq!(
        sim.statuses(&["a", "b", "c", "d"]),
        [Initiated, Pending, Pending, Pending]
    );

    sim.complete("a");
    let plan = sim.pass().unwrap();
    assert_eq!(
        sim.statuses(&["b", "c", "d"]),
        [Initiated, Initiated, Pending]
    );
    assert_eq!(plan.count_down, [("b".into(), 1), ("c".into(), 1)]);
    assert_eq!(
        types(&plan.batch_events),
        [EventType::BatchOperationCompleted]
    );
    assert_eq!(plan.batch_events[0].data["operationKey"], "a");
    assert_eq!(
        plan.batch_events[0].data["operation"]["result"]["summary"],
        json!({"of": "a"})
    );

    sim.complete("b");
    sim.pass().unwrap();
    assert_eq!(sim.status("d"), Pending, "c has not completed yet");
    assert_eq!(sim.waiting["d"], 1);

    sim.complete("c");
    sim.pass().unwrap();
    assert_eq!(sim.status("d"), Initiated);
    assert_eq!(
        sim.batch.status,
        BatchStatus::Initiated,
        "not ended: d is live"
    );

    sim.complete("d");
    let plan = sim.pass().unwrap();
    assert_eq!(
        types(&plan.batch_events),
        [
            EventType::BatchOperationCompleted,
            EventType::BatchCompleted
        ]
    );
    assert_eq!(count_of(&plan.batch_events[1], Completed), 4);
    assert_eq!(sim.batch.status, BatchStatus::Completed);
    assert_eq!(sim.batch.finished_at, Some(t(sim.clock)));
}

#[test]
fn two_dependencies_finishing_in_the_same_pass_release_their_dependent_once() {
    let mut sim = Sim::new(
        CONTINUE,
        &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])],
    );
    sim.complete("a");
    sim.pass();
    sim.complete("b");
    sim.complete("c");
    let plan = sim.pass().unwrap();
    assert_eq!(plan.count_down, [("d".into(), 2)]);
    let released: Vec<&str> = plan
        .changes
        .iter()
        .map(|(op, _)| op.batch.as_ref().unwrap().key.as_str())
        .collect();
    assert_eq!(released, ["d"]);
    assert_eq!(sim.status("d"), Initiated);
    assert_eq!(sim.waiting["d"], 0);
    assert_eq!(plan.batch_events.len(), 2, "one event per completed member");
}

#[test]
fn a_failure_skips_its_dependents_transitively_and_independent_members_go_on() {
    let mut sim = Sim::new(
        CONTINUE,
        &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &["c", "x"]),
            ("x", &[]),
        ],
    );
    sim.start("x");
    sim.fail("a");
    let (_, wanted) = sim.snapshot();
    assert_eq!(
        wanted,
        Some(MembersNeeded {
            statuses: &[Pending],
            keys: Some(vec!["b".into(), "c".into(), "d".into()]),
        }),
        "only the pending members below the failure are read"
    );
    let plan = sim.pass().unwrap();
    assert_eq!(
        sim.statuses(&["b", "c", "d", "x"]),
        [Skipped, Skipped, Skipped, Running]
    );
    for key in ["b", "c", "d"] {
        assert_eq!(sim.blame(key), ("UPSTREAM_FAILED".into(), "a".into()));
    }
    assert!(plan.changes.iter().all(|(_, events)| events.is_empty()));
    assert!(plan.batch_events.is_empty());

    assert!(sim.settle_all().is_empty(), "x is still running");
    sim.complete("x");
    assert_eq!(
        sim.settle_all(),
        [EventType::BatchOperationCompleted, EventType::BatchFailed]
    );
    assert_eq!(sim.batch.status, BatchStatus::Failed);
}

#[test]
fn without_continuing_independent_members_unstarted_ones_are_skipped() {
    let mut sim = Sim::new(
        SKIP_UNSTARTED,
        &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &[]),
            ("d", &[]),
            ("e", &["d"]),
            ("f", &[]),
            ("g", &["f"]),
        ],
    );
    sim.start("c");
    // f completes in the same pass as a fails: its dependent is not released.
    sim.complete("f");
    sim.fail("a");
    let (_, wanted) = sim.snapshot();
    assert_eq!(
        wanted,
        Some(MembersNeeded {
            statuses: &UNSTARTED,
            keys: None
        })
    );
    let plan = sim.pass().unwrap();
    assert_eq!(
        sim.statuses(&["b", "c", "d", "e", "g"]),
        [Skipped, Running, Skipped, Skipped, Skipped]
    );
    assert_eq!(sim.blame("b"), ("UPSTREAM_FAILED".into(), "a".into()));
    for key in ["d", "e", "g"] {
        assert_eq!(sim.blame(key), ("BATCH_HALTED".into(), "a".into()));
    }
    assert_eq!(
        plan.count_down,
        [("g".into(), 1)],
        "the countdown still happens"
    );

    sim.complete("c");
    assert_eq!(
        sim.settle_all(),
        [EventType::BatchOperationCompleted, EventType::BatchFailed]
    );
}

#[test]
fn stop_on_first_failure_cancels_every_live_member() {
    let mut sim = Sim::new(
        STOP,
        &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &[]),
            ("d", &[]),
            ("e", &["d"]),
        ],
    );
    sim.start("c");
    sim.fail("a");
    let (_, wanted) = sim.snapshot();
    assert_eq!(
        wanted,
        Some(MembersNeeded {
            statuses: &LIVE,
            keys: None
        })
    );
    let plan = sim.pass().unwrap();
    assert_eq!(
        sim.status("b"),
        Skipped,
        "what depends on the failure is skipped"
    );
    assert_eq!(
        sim.statuses(&["c", "d", "e"]),
        [Cancelled, Cancelled, Cancelled]
    );
    for (op, events) in plan.changes.iter().filter(|(op, _)| op.status == Cancelled) {
        assert_eq!(types(events), [EventType::OperationCancelled]);
        let cancellation = op.cancellation.as_ref().unwrap();
        assert_eq!(cancellation.cancelled_by, "batch");
        let reason = cancellation.reason.as_deref().unwrap();
        assert!(
            reason.starts_with("stopOnFirstFailure: batch member `a`"),
            "{reason}"
        );
        assert!(cancellation.preserve_partial_results);
    }
    assert!(sim.op("c").cancellation.as_ref().unwrap().was_running);

    let events = sim.settle_all();
    assert_eq!(
        events,
        [EventType::BatchFailed],
        "not cancelled: no one cancelled the batch"
    );
}

#[test]
fn a_cancelled_batch_stops_its_live_members_releases_nothing_and_ends_cancelled() {
    let mut sim = Sim::new(
        CONTINUE,
        &[("a", &[]), ("b", &["a"]), ("c", &[]), ("d", &["c"])],
    );
    sim.complete("a");
    sim.pass();
    sim.start("b");
    // c completes; the cancel comes before the pass that would release d.
    sim.complete("c");
    let now = sim.now();
    sim.batch.request_cancel(now).unwrap();
    let live: Vec<Operation> = sim
        .members
        .iter()
        .filter(|op| LIVE.contains(&op.status) && op.batch.as_ref().unwrap().key != "d")
        .cloned()
        .collect();
    let stopped = stop_members(live, "token-1", now);
    assert_eq!(stopped.len(), 1);
    let (op, events) = &stopped[0];
    assert_eq!(types(events), [EventType::OperationCancelled]);
    assert_eq!(op.cancellation.as_ref().unwrap().cancelled_by, "token-1");
    sim.write(&Plan {
        batch: sim.batch.clone(),
        changes: stopped,
        count_down: Vec::new(),
        settled: Vec::new(),
        batch_events: Vec::new(),
    });
    assert_eq!(sim.statuses(&["a", "b"]), [Completed, Cancelled]);

    let (_, wanted) = sim.snapshot();
    assert_eq!(wanted, None, "a cancelled batch releases nothing");
    sim.pass();
    assert_eq!(sim.status("d"), Pending);
    // Whatever the cancel missed is stopped by a second cancel; then the batch ends.
    let missed: Vec<Operation> = vec![sim.op("d").clone()];
    let stopped = stop_members(missed, "token-1", sim.now());
    sim.write(&Plan {
        batch: sim.batch.clone(),
        changes: stopped,
        count_down: Vec::new(),
        settled: Vec::new(),
        batch_events: Vec::new(),
    });
    let events = sim.settle_all();
    assert_eq!(events, [EventType::BatchCancelled]);
    assert_eq!(sim.batch.status, BatchStatus::Cancelled);
    assert_eq!(
        sim.batch.request_cancel(t(999)),
        Err(BatchFinished(BatchStatus::Cancelled))
    );
}

#[test]
fn the_batch_ends_only_once_every_member_is_final_and_settled() {
    let mut sim = Sim::new(CONTINUE, &[("a", &[]), ("b", &["a"])]);
    sim.fail("a");
    let plan = sim.pass().unwrap();
    assert_eq!(sim.statuses(&["a", "b"]), [Failed, Skipped]);
    assert!(
        plan.batch_events.is_empty(),
        "b became final in this pass: not settled yet"
    );
    assert!(!sim.batch.status.is_terminal());

    let plan = sim.pass().unwrap();
    assert_eq!(plan.settled, [sim.op("b").id]);
    assert_eq!(types(&plan.batch_events), [EventType::BatchFailed]);
    assert_eq!(count_of(&plan.batch_events[0], Failed), 1);
    assert_eq!(count_of(&plan.batch_events[0], Skipped), 1);
    assert_eq!(sim.pass().map(|_| ()), None, "nothing left to settle");

    // Without the counts (some member live, or not read), a pass never ends the batch.
    let mut sim = Sim::new(CONTINUE, &[("a", &[])]);
    sim.complete("a");
    let (mut snapshot, _) = sim.snapshot();
    snapshot.counts = None;
    let plan = settle::settle(snapshot, t(100));
    assert_eq!(
        types(&plan.batch_events),
        [EventType::BatchOperationCompleted]
    );
    assert_eq!(plan.batch.status, BatchStatus::Initiated);
}

#[test]
fn a_pass_acts_on_a_bounded_number_of_outcomes_and_ends_the_batch_after_the_last() {
    let keys: Vec<String> = (0..OUTCOMES_PER_PASS + 500)
        .map(|i| format!("k{i}"))
        .collect();
    let graph: Vec<(&str, &[&str])> = keys.iter().map(|k| (k.as_str(), &[][..])).collect();
    let mut sim = Sim::new(CONTINUE, &graph);
    for key in &keys {
        sim.complete(key);
    }
    let plan = sim.pass().unwrap();
    assert_eq!(plan.settled.len(), OUTCOMES_PER_PASS);
    assert_eq!(
        plan.batch_events.len(),
        OUTCOMES_PER_PASS,
        "no end: some are unsettled"
    );
    let plan = sim.pass().unwrap();
    assert_eq!(plan.settled.len(), 500);
    assert_eq!(
        plan.batch_events.last().unwrap().event_type,
        EventType::BatchCompleted
    );
}

#[test]
fn a_retried_batch_reruns_what_did_not_complete_and_waits_only_for_reruns() {
    let mut sim = Sim::new(
        CONTINUE,
        &[("a", &[]), ("b", &["a"]), ("c", &["b", "x"]), ("x", &[])],
    );
    sim.complete("a");
    sim.complete("x");
    sim.pass();
    sim.fail("b");
    sim.settle_all();
    assert_eq!(
        sim.statuses(&["a", "b", "c", "x"]),
        [Completed, Failed, Skipped, Completed]
    );
    assert_eq!(sim.batch.status, BatchStatus::Failed);

    let now = sim.now();
    sim.batch.reopen(now).unwrap();
    let mut old: Vec<Operation> = sim
        .members
        .iter()
        .filter(|op| RUN_AGAIN.contains(&op.status))
        .cloned()
        .collect();
    old.sort_by_key(|op| op.id);
    let edges_into: Vec<Edge> = sim
        .edges
        .iter()
        .filter(|e| e.downstream == "b" || e.downstream == "c")
        .cloned()
        .collect();
    let ids = [OperationId::new(), OperationId::new()];
    let mut next = ids.iter().copied();
    let runs = rerun(&old, &edges_into, || next.next().unwrap(), now);

    let summary: Vec<(&str, OperationStatus, i64)> = runs
        .iter()
        .map(|r| (r.key.as_str(), r.operation.status, r.waiting))
        .collect();
    assert_eq!(
        summary,
        [("b", Initiated, 0), ("c", Pending, 1)],
        "b's dependency completed before; c waits for b only (x completed)"
    );
    for (run, old) in runs.iter().zip(&old) {
        assert_eq!(run.replaces, old.id);
        assert_eq!(run.operation.retry_of, Some(old.id));
        assert_eq!(run.operation.retry_number, 1);
        assert_eq!(run.operation.operation_name, old.operation_name);
        assert_eq!(run.operation.available_at, now);
    }
    assert_eq!([runs[0].operation.id, runs[1].operation.id], ids);

    for run in runs {
        sim.waiting.insert(run.key.clone(), run.waiting);
        let i = sim.index[&run.key];
        sim.members[i] = run.operation;
    }
    sim.complete("b");
    sim.pass();
    assert_eq!(sim.status("c"), Initiated);
    sim.complete("c");
    let events = sim.settle_all();
    assert_eq!(events.last(), Some(&EventType::BatchCompleted));
    assert_eq!(sim.batch.retry_number, 1);
}

#[test]
fn a_batch_retry_runs_again_exactly_what_blocks_its_dependents() {
    for status in OperationStatus::ALL {
        assert_eq!(
            RUN_AGAIN.contains(&status),
            super::blocks_dependents(status),
            "{status:?}"
        );
    }
}

#[test]
fn ten_thousand_members_are_planned_quickly() {
    const N: usize = super::MAX_MEMBERS;
    let keys: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();

    // A wide fan-out: the root completes and releases every other member at once.
    let root = [keys[0].clone()];
    let root_deps: Vec<&str> = root.iter().map(String::as_str).collect();
    let graph: Vec<(&str, &[&str])> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), if i == 0 { &[][..] } else { &root_deps[..] }))
        .collect();
    let mut sim = Sim::new(CONTINUE, &graph);
    sim.complete(&keys[0]);
    let (snapshot, _) = sim.snapshot();
    let started = Instant::now();
    let plan = settle::settle(snapshot, t(10));
    let fan_out = started.elapsed();
    assert_eq!(plan.changes.len(), N - 1);
    assert!(plan.changes.iter().all(|(op, _)| op.status == Initiated));

    // A long chain: the head fails and every other member is skipped, blamed on it.
    let deps: Vec<[&str; 1]> = keys.iter().map(|k| [k.as_str()]).collect();
    let graph: Vec<(&str, &[&str])> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), if i == 0 { &[][..] } else { &deps[i - 1][..] }))
        .collect();
    let mut sim = Sim::new(CONTINUE, &graph);
    sim.fail(&keys[0]);
    let (snapshot, wanted) = sim.snapshot();
    assert_eq!(wanted.unwrap().keys.unwrap().len(), N - 1);
    let started = Instant::now();
    let plan = settle::settle(snapshot, t(10));
    let chain = started.elapsed();
    assert_eq!(plan.changes.len(), N - 1);
    let blamed: HashSet<&str> = plan
        .changes
        .iter()
        .map(|(op, _)| {
            let details = op.error.as_ref().unwrap().details.as_ref().unwrap();
            details["failedOperationKey"].as_str().unwrap()
        })
        .collect();
    assert_eq!(blamed, HashSet::from(["k0"]));

    // Linear work takes milliseconds; anything quadratic would take minutes.
    let bound = Duration::from_secs(5);
    assert!(
        fan_out < bound && chain < bound,
        "fan-out {fan_out:?}, chain {chain:?}"
    );
}
