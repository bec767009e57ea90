//! An attempt under a lease: handing the operation to a worker, its reports (progress,
//! which is also the heartbeat; completion; failure, retried with backoff), and taking
//! the lease back when the worker goes silent.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Number, Value};

use super::{
    AttemptRecord, Operation, OperationError, OperationResult, OperationStatus, Phase, PhaseStatus,
    TransitionError,
};
use crate::domain::event::{EventDraft, EventType};
use crate::domain::ids::{ExecutionId, LeaseToken};
use crate::domain::FieldError;

pub const MAX_LEASE_BATCH: u32 = 100;
pub const MAX_WAIT_SECONDS: u32 = 60;

#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub token: LeaseToken,
    pub worker_id: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// When a lease granted or renewed at `now` for `ttl` expires: `now + ttl` rounded up to a
/// step of a tenth of the TTL, at most a second. A lease is never shorter than promised,
/// and at most a step longer. Why the step: a worker reporting progress many times a
/// second would otherwise move the expiry, an indexed column, on every report, and
/// PostgreSQL could not rewrite the row in place (a HOT update); with the step, the
/// reports within one leave every indexed column as it was, and the row's many indexes
/// get no new entry.
pub fn lease_expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    let exact = now + ttl;
    let step = (ttl.as_millis() / 10).clamp(1, 1_000) as i64;
    // Whole milliseconds, rounded up: a clock's `now` has nanoseconds.
    let ms = exact.timestamp_millis() + i64::from(exact.timestamp_subsec_nanos() % 1_000_000 != 0);
    let rounded = ms.div_euclid(step) * step + if ms.rem_euclid(step) == 0 { 0 } else { step };
    DateTime::from_timestamp_millis(rounded)
        .filter(|t| *t >= exact)
        .unwrap_or(exact)
}

/// A pull worker's checked request for work.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRequest {
    /// Empty: any type.
    pub operation_types: Vec<String>,
    pub max: u32,
    pub wait: Duration,
    pub worker_id: Option<String>,
}

/// How many operations one request may lease at once: 1 to [`MAX_LEASE_BATCH`].
pub fn checked_lease_batch(max: i64, field: &str) -> Result<u32, FieldError> {
    if !(1..=MAX_LEASE_BATCH as i64).contains(&max) {
        return Err(FieldError::new(
            field,
            format!("must be between 1 and {MAX_LEASE_BATCH}"),
        ));
    }
    Ok(max as u32)
}

/// How long a request may wait for work to appear: 0 to [`MAX_WAIT_SECONDS`] seconds.
pub fn checked_lease_wait(seconds: f64, field: &str) -> Result<Duration, FieldError> {
    if !(seconds.is_finite() && (0.0..=MAX_WAIT_SECONDS as f64).contains(&seconds)) {
        return Err(FieldError::new(
            field,
            format!("must be between 0 and {MAX_WAIT_SECONDS}"),
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The report with which a worker ended its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseReport {
    Complete,
    Fail,
}

/// The lease whose holder ended an attempt with its own report, and where that report
/// left the operation. The worker may never have seen the answer (a dropped connection, a
/// crash) and send the same report again, maybe to another replica: the repeat changes
/// nothing and is answered from here, as the first was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndedLease {
    pub token: LeaseToken,
    pub report: LeaseReport,
    pub status: OperationStatus,
    pub attempt: u32,
    /// When the next attempt could start, after a failure that is retried.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What a new attempt is given: its ids, minted by the caller, and who runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptStart {
    pub execution_id: ExecutionId,
    pub lease_token: LeaseToken,
    pub worker_id: Option<String>,
}

/// How the wait before a retry is drawn: `jitter` in [0, 1) spreads retries ±10%;
/// `scale` multiplies the policy's delays (1 in production; small in tests).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub jitter: f64,
    pub scale: f64,
}

impl Backoff {
    /// No jitter, real time: for tests that need exact instants.
    pub const EXACT: Backoff = Backoff {
        jitter: 0.5,
        scale: 1.0,
    };
}

/// A worker's progress report, already parsed and range-checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressReport {
    pub percentage: Option<f64>,
    pub current_phase: Option<String>,
    pub total_phases: Option<u32>,
    pub processed_records: Option<u64>,
    pub total_records: Option<u64>,
    pub phase: Option<PhaseReport>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhaseReport {
    pub phase_name: String,
    pub status: PhaseStatus,
    pub results: Option<Value>,
    pub checkpoint: Option<Value>,
    /// The phase's own percentage (checked with [`checked_percentage`]).
    pub progress: Option<f64>,
    pub current_activity: Option<String>,
    /// Counts that change the phase's counters of the same names; the others are kept.
    pub counters: BTreeMap<String, Number>,
    /// Values of any JSON type (`validationResults`, `estimatedStartTime`, …) that change
    /// the phase's details of the same names; the others are kept.
    pub details: BTreeMap<String, Value>,
}

/// At most this many counters per phase, and as many details, so that `phases[]` stays
/// readable.
pub const MAX_PHASE_COUNTERS: usize = 32;
const MAX_COUNTER_NAME_LEN: usize = 64;

/// A phase's counters: shown beside the phase's own fields, so named like a JSON field
/// (letters, digits, `_`) and not like one of them.
pub fn checked_phase_counters(
    counters: BTreeMap<String, Number>,
    field: &str,
) -> Result<BTreeMap<String, Number>, FieldError> {
    check_flat_names(counters.keys(), counters.len(), field)?;
    Ok(counters)
}

/// A phase's details: shown beside its own fields and its counters, as its counters are,
/// so named by the same rules, and never the name of a counter of the same report (which
/// of the two would be shown?). `null` is refused as in the results: leave the key out.
pub fn checked_phase_details(
    details: BTreeMap<String, Value>,
    counters: &BTreeMap<String, Number>,
    field: &str,
) -> Result<BTreeMap<String, Value>, FieldError> {
    check_flat_names(details.keys(), details.len(), field)?;
    for (name, value) in &details {
        let at = format!("{field}.{name}");
        if counters.contains_key(name) {
            return Err(FieldError::new(
                at,
                "is also reported as a counter; report the value once",
            ));
        }
        if value.is_null() {
            return Err(FieldError::new(at, "must not be null: leave the key out"));
        }
    }
    Ok(details)
}

fn check_flat_names<'a>(
    names: impl Iterator<Item = &'a String>,
    count: usize,
    field: &str,
) -> Result<(), FieldError> {
    if count > MAX_PHASE_COUNTERS {
        return Err(FieldError::new(
            field,
            format!("may hold at most {MAX_PHASE_COUNTERS} values"),
        ));
    }
    for name in names {
        let at = format!("{field}.{name}");
        let well_formed = !name.is_empty()
            && name.len() <= MAX_COUNTER_NAME_LEN
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(FieldError::new(
                at,
                format!("a name shown beside the phase's fields starts with a letter and has at most {MAX_COUNTER_NAME_LEN} letters, digits or `_`"),
            ));
        }
        if Phase::FIELDS.contains(&name.as_str()) {
            return Err(FieldError::new(
                at,
                "is the name of a field Relais sets on a phase; use another name",
            ));
        }
    }
    Ok(())
}

/// A percentage of progress, or a step between two: from 0 to 100.
pub fn checked_percentage(value: f64, field: &str) -> Result<f64, FieldError> {
    if !(value.is_finite() && (0.0..=100.0).contains(&value)) {
        return Err(FieldError::new(field, "must be between 0 and 100"));
    }
    Ok(value)
}

impl Operation {
    /// The lease must be held with this token by a live attempt.
    fn check_lease(&self, token: &str) -> Result<(), TransitionError> {
        match &self.lease {
            Some(lease)
                if lease.token.as_str() == token && self.status == OperationStatus::Running =>
            {
                Ok(())
            }
            _ => Err(TransitionError::LeaseLost {
                status: self.status,
            }),
        }
    }

    /// Whether `token` is the lease the operation had when it was cancelled or timed out:
    /// that worker is told to stop rather than told it lost the lease.
    pub fn stopped_under_lease(&self, token: &str) -> bool {
        matches!(
            self.status,
            OperationStatus::Cancelled | OperationStatus::Timeout
        ) && self
            .lease
            .as_ref()
            .is_some_and(|l| l.token.as_str() == token)
    }

    /// Whether the worker holding the operation must stop: it was cancelled or timed out.
    pub fn stop_requested(&self) -> bool {
        matches!(
            self.status,
            OperationStatus::Cancelled | OperationStatus::Timeout
        )
    }

    /// Hands the operation to a worker for a new attempt.
    pub fn start_attempt(
        &mut self,
        now: DateTime<Utc>,
        start: AttemptStart,
        lease_ttl: Duration,
    ) -> Result<(LeaseToken, Vec<EventDraft>), TransitionError> {
        let AttemptStart {
            execution_id,
            lease_token: token,
            worker_id,
        } = start;
        if !self.is_leaseable(now) {
            return Err(TransitionError::Illegal {
                from: self.status,
                to: OperationStatus::Running,
            });
        }
        self.become_(OperationStatus::Running, now)?;
        if self.started_at.is_none() {
            self.started_at = Some(now);
            self.timeout_at = now + self.timeout;
        }
        self.attempt += 1;
        self.execution_id = Some(execution_id);
        self.lease = Some(Lease {
            token: token.clone(),
            worker_id,
            expires_at: lease_expiry(now, lease_ttl),
        });
        let event = EventDraft::new(EventType::OperationStarted, self.snapshot());
        Ok((token, vec![event]))
    }

    /// Applies a worker's report; renews the lease (a report is also the heartbeat).
    /// Reporting to a cancelled operation changes nothing: the answer tells the worker.
    pub fn report_progress(
        &mut self,
        now: DateTime<Utc>,
        token: &str,
        report: ProgressReport,
        lease_ttl: Duration,
    ) -> Result<Vec<EventDraft>, TransitionError> {
        if self.stopped_under_lease(token) {
            return Ok(Vec::new());
        }
        self.check_lease(token)?;
        if let Some(lease) = &mut self.lease {
            lease.expires_at = lease_expiry(now, lease_ttl);
        }
        self.updated_at = now;

        let before = self.progress.clone();
        let mut events = Vec::new();
        if let Some(p) = report.percentage {
            self.progress.percentage = Some(p);
        }
        if let Some(name) = report.current_phase {
            self.progress.current_phase = Some(name);
        }
        if let Some(n) = report.total_phases {
            self.progress.total_phases = Some(n);
        }
        if let Some(n) = report.processed_records {
            self.progress.processed_records = Some(n);
        }
        if let Some(n) = report.total_records {
            self.progress.total_records = Some(n);
        }
        let mut phase_completed = None;
        if let Some(phase) = report.phase {
            if phase.status == PhaseStatus::Running {
                self.progress.current_phase = Some(phase.phase_name.clone());
            }
            let index = self.upsert_phase(phase, now);
            if self.phases[index].status == PhaseStatus::Completed {
                phase_completed = Some(index);
            }
        }
        if self.progress != before {
            events.push(EventDraft::new(
                EventType::OperationProgress,
                self.snapshot(),
            ));
        }
        if let Some(index) = phase_completed {
            let mut data = self.snapshot();
            data["phase"] = serde_json::to_value(&self.phases[index]).unwrap_or(Value::Null);
            events.push(EventDraft::new(EventType::OperationPhaseCompleted, data));
        }
        Ok(events)
    }

    fn upsert_phase(&mut self, report: PhaseReport, now: DateTime<Utc>) -> usize {
        let index = match self
            .phases
            .iter()
            .position(|p| p.phase_name == report.phase_name)
        {
            Some(i) => i,
            None => {
                self.phases.push(Phase::pending(report.phase_name));
                self.phases.len() - 1
            }
        };
        let phase = &mut self.phases[index];
        phase.status = report.status;
        if phase.start_time.is_none() && report.status != PhaseStatus::Pending {
            phase.start_time = Some(now);
        }
        if matches!(
            report.status,
            PhaseStatus::Completed | PhaseStatus::Failed | PhaseStatus::Skipped
        ) {
            phase.end_time = Some(now);
        }
        if report.results.is_some() {
            phase.results = report.results;
        }
        if report.checkpoint.is_some() {
            phase.checkpoint = report.checkpoint;
        }
        match report.progress {
            Some(p) => phase.progress = Some(p),
            // A phase that reported its own progress and then completed is all done.
            None if report.status == PhaseStatus::Completed && phase.progress.is_some() => {
                phase.progress = Some(100.0)
            }
            None => {}
        }
        if report.current_activity.is_some() {
            phase.current_activity = report.current_activity;
        }
        // A name is a counter or a detail, whichever was reported last, so that the flat
        // view of the phase never holds it twice.
        for name in report.details.keys() {
            phase.counters.remove(name);
        }
        for name in report.counters.keys() {
            phase.details.remove(name);
        }
        phase.counters.extend(report.counters);
        phase.details.extend(report.details);
        index
    }

    /// A worker reports that its attempt succeeded. Completing again with the same lease
    /// changes nothing (see [`EndedLease`]).
    pub fn complete(
        &mut self,
        now: DateTime<Utc>,
        token: &str,
        result: OperationResult,
    ) -> Result<Vec<EventDraft>, TransitionError> {
        if self.repeats(token, LeaseReport::Complete) {
            return Ok(Vec::new());
        }
        self.check_lease(token)?;
        self.become_(OperationStatus::Completed, now)?;
        self.lease = None;
        self.record_ending(token, LeaseReport::Complete);
        self.progress.percentage = Some(100.0);
        self.close_phases(now);
        self.result = Some(result);
        let mut data = self.snapshot();
        if let Some(result) = &self.result {
            data["summary"] = result.summary.clone();
        }
        Ok(vec![EventDraft::new(EventType::OperationCompleted, data)])
    }

    /// A worker reports that its attempt failed. Failing again with the same lease
    /// changes nothing (see [`EndedLease`]).
    pub fn fail(
        &mut self,
        now: DateTime<Utc>,
        token: &str,
        error: OperationError,
        retryable: bool,
        backoff: Backoff,
    ) -> Result<Vec<EventDraft>, TransitionError> {
        if self.repeats(token, LeaseReport::Fail) {
            return Ok(Vec::new());
        }
        self.check_lease(token)?;
        // The worker lived to tell: whatever killed earlier attempts did not kill this one.
        self.lost_leases = 0;
        let events = self.end_attempt(now, error, retryable, backoff);
        self.record_ending(token, LeaseReport::Fail);
        Ok(events)
    }

    /// Whether `token` already ended its attempt with this very report. With the other
    /// report it is no repeat: that one is refused, as any report of a lost lease.
    fn repeats(&self, token: &str, report: LeaseReport) -> bool {
        self.ended_lease
            .as_ref()
            .is_some_and(|ended| ended.token.as_str() == token && ended.report == report)
    }

    fn record_ending(&mut self, token: &str, report: LeaseReport) {
        self.ended_lease = Some(EndedLease {
            token: LeaseToken::from_string(token.to_owned()),
            report,
            status: self.status,
            attempt: self.attempt,
            next_attempt_at: self.next_attempt_at(),
        });
    }

    /// How the attempt `token` held ended, if its holder ended it with a report.
    pub fn ended_by(&self, token: &str) -> Option<&EndedLease> {
        self.ended_lease
            .as_ref()
            .filter(|ended| ended.token.as_str() == token)
    }

    /// Takes back a lease whose holder stopped heartbeating; counts as a failed attempt.
    /// Does nothing if the lease was renewed or released in the meantime.
    ///
    /// A job that kills the process running it (a breakout over a huge file, say) would be
    /// claimed again after each expiry and kill the next process too, heartbeats and all
    /// until it died. So once `max_lost_leases` attempts in a row lost their lease, none
    /// ended by a report of its holder, the operation fails for good as `POISONED`
    /// (0: never).
    pub fn expire_lease(
        &mut self,
        now: DateTime<Utc>,
        backoff: Backoff,
        max_lost_leases: u32,
    ) -> Vec<EventDraft> {
        let expired = self
            .lease
            .as_ref()
            .is_some_and(|l| self.status == OperationStatus::Running && l.expires_at <= now);
        if !expired {
            return Vec::new();
        }
        self.lost_leases = self.lost_leases.saturating_add(1);
        if max_lost_leases > 0 && self.lost_leases >= max_lost_leases {
            let error = OperationError {
                code: "POISONED".into(),
                message: format!(
                    "{} attempts in a row lost their lease (the process running them died or hung before reporting how they ended): the job may be killing the process that runs it, so it is not tried again",
                    self.lost_leases
                ),
                details: Some(json!({"lostLeases": self.lost_leases})),
            };
            return self.end_attempt(now, error, false, backoff);
        }
        let error = OperationError {
            code: "LEASE_EXPIRED".into(),
            message: "the worker stopped reporting within the heartbeat timeout".into(),
            details: None,
        };
        self.end_attempt(now, error, true, backoff)
    }

    /// The worker gives the attempt back unfinished (its process is shutting down): the
    /// lease goes, the operation is offered again at once, and the attempt does not
    /// count against the retry policy. Only the lease's holder may; nothing is emitted,
    /// as the operation goes on.
    pub fn hand_back(&mut self, now: DateTime<Utc>, token: &str) -> Result<(), TransitionError> {
        let held = self.status == OperationStatus::Running
            && self
                .lease
                .as_ref()
                .is_some_and(|l| l.token.as_str() == token);
        if !held {
            return Err(TransitionError::LeaseLost {
                status: self.status,
            });
        }
        self.lease = None;
        self.attempt = self.attempt.saturating_sub(1);
        self.available_at = now;
        self.updated_at = now;
        Ok(())
    }

    fn end_attempt(
        &mut self,
        now: DateTime<Utc>,
        error: OperationError,
        retryable: bool,
        backoff: Backoff,
    ) -> Vec<EventDraft> {
        let lease = self.lease.take();
        self.attempts.push(AttemptRecord {
            attempt: self.attempt,
            started_at: self.attempt_started_at(),
            ended_at: now,
            worker_id: lease.and_then(|l| l.worker_id),
            error: error.clone(),
        });
        self.updated_at = now;
        if retryable && self.attempt < self.max_attempts() {
            let delay = self
                .retry_policy
                .delay_after(self.attempt)
                .mul_f64(backoff.scale.max(0.0));
            // ±10% so that operations failing together do not retry in lockstep.
            let spread = delay.mul_f64(0.9 + 0.2 * backoff.jitter.clamp(0.0, 1.0));
            self.available_at =
                now + chrono::Duration::from_std(spread).unwrap_or(chrono::Duration::zero());
            self.queue_rank = self.priority.rank();
            return Vec::new();
        }
        self.status = OperationStatus::Failed;
        self.finished_at = Some(now);
        self.error = Some(error);
        let mut data = self.snapshot();
        data["error"] = serde_json::to_value(&self.error).unwrap_or(Value::Null);
        vec![EventDraft::new(EventType::OperationFailed, data)]
    }

    fn attempt_started_at(&self) -> Option<DateTime<Utc>> {
        // The lease was granted `lease_ttl` before it expires; we do not keep it, so the
        // operation's own first start is the best-known bound for the first attempt only.
        (self.attempt == 1).then_some(self.started_at).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_on_a_step_of_a_tenth_of_its_ttl_never_earlier_than_promised() {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
        let ttl = Duration::from_secs(30);
        // Steps of a second for a TTL of 10 s or more.
        assert_eq!(lease_expiry(at(1_000), ttl), at(31_000));
        assert_eq!(lease_expiry(at(1_001), ttl), at(32_000));
        assert_eq!(lease_expiry(at(1_999), ttl), at(32_000));
        // Reports within one step leave the expiry unchanged.
        let stored: std::collections::HashSet<_> = (1_001..=2_000)
            .map(|ms| lease_expiry(at(ms), ttl))
            .collect();
        assert_eq!(stored.len(), 1);
        // A clock's nanoseconds round up too, also just past a step's boundary.
        let nanos = |ms: i64, ns: i64| at(ms) + chrono::TimeDelta::nanoseconds(ns);
        assert_eq!(lease_expiry(nanos(1_000, 1), ttl), at(32_000));
        assert_eq!(lease_expiry(nanos(1_999, 999_999), ttl), at(32_000));
        let stored: std::collections::HashSet<_> = (0..2_000)
            .map(|i| lease_expiry(nanos(1_000, 1 + i * 499_999), ttl))
            .collect();
        assert_eq!(stored.len(), 1);
        // A short TTL has short steps: 200 ms, steps of 20 ms.
        let short = Duration::from_millis(200);
        assert_eq!(lease_expiry(at(1_005), short), at(1_220));
        assert_eq!(lease_expiry(at(1_020), short), at(1_220));
        // Before 1970 and sub-millisecond TTLs: never earlier than now + ttl.
        for now in [at(-1_234_567), at(0), at(-1)] {
            for ttl in [ttl, short, Duration::from_micros(300), Duration::ZERO] {
                let expiry = lease_expiry(now, ttl);
                assert!(expiry >= now + ttl, "{now} + {ttl:?} gave {expiry}");
                assert!(expiry - (now + ttl) <= chrono::TimeDelta::seconds(1));
            }
        }
    }

    #[test]
    fn lease_requests_and_percentages_are_bounded() {
        assert_eq!(
            checked_lease_batch(MAX_LEASE_BATCH as i64, "max").unwrap(),
            100
        );
        assert_eq!(checked_lease_batch(0, "max").unwrap_err().field, "max");
        assert!(checked_lease_batch(-1, "max").is_err());
        assert_eq!(
            checked_lease_wait(0.5, "w").unwrap(),
            Duration::from_millis(500)
        );
        assert!(checked_lease_wait(f64::NAN, "w").is_err());
        assert!(checked_lease_wait(-1.0, "w").is_err());
        assert_eq!(checked_percentage(100.0, "p").unwrap(), 100.0);
        assert!(checked_percentage(f64::INFINITY, "p").is_err());
        assert!(checked_percentage(-0.1, "p").is_err());
    }
}
