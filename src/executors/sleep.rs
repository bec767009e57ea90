//! `Sleep`: waits through named phases, reporting real progress. For demos, tests and
//! benchmarks. Parameters:
//!
//! ```json
//! {"phases": [{"name": "load", "seconds": 2}, {"name": "crunch", "seconds": 5}],
//!  "failAtPhase": "crunch", "failRetryable": true, "failAttempts": 1}
//! ```
//!
//! Without `phases`, one phase named `sleep` lasts `seconds` (default 1). `failAtPhase`
//! makes the attempt fail when it reaches that phase (only the first `failAttempts`
//! attempts, if given). Phases already completed are skipped, so a retry resumes.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ExecutionError, Executor, Run, Task};
use crate::domain::operation::{OperationResult, PhaseReport, PhaseStatus, ProgressReport};
use crate::domain::FieldError;

const MAX_PHASE_SECONDS: f64 = 3600.0;
const MAX_PHASES: usize = 100;

pub struct Sleep;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    #[serde(default)]
    phases: Vec<PhaseParams>,
    seconds: Option<f64>,
    fail_at_phase: Option<String>,
    #[serde(default)]
    fail_retryable: bool,
    fail_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseParams {
    name: String,
    seconds: f64,
}

struct Plan {
    phases: Vec<(String, Duration)>,
    fail_at: Option<String>,
    fail_retryable: bool,
    fail_attempts: Option<u32>,
}

fn plan(parameters: &Value) -> Result<Plan, FieldError> {
    let params: Params = serde_path_to_error::deserialize(parameters).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "parameters".to_owned()
        } else {
            format!("parameters.{path}")
        };
        FieldError::new(field, e.into_inner().to_string())
    })?;
    let seconds_ok = |s: f64| s.is_finite() && (0.0..=MAX_PHASE_SECONDS).contains(&s);
    let phases: Vec<(String, Duration)> = if params.phases.is_empty() {
        let seconds = params.seconds.unwrap_or(1.0);
        if !seconds_ok(seconds) {
            return Err(FieldError::new(
                "parameters.seconds",
                format!("must be between 0 and {MAX_PHASE_SECONDS}"),
            ));
        }
        vec![("sleep".to_owned(), Duration::from_secs_f64(seconds))]
    } else {
        if params.phases.len() > MAX_PHASES {
            return Err(FieldError::new(
                "parameters.phases",
                format!("at most {MAX_PHASES} phases"),
            ));
        }
        let mut seen = HashSet::new();
        let mut phases = Vec::new();
        for (i, p) in params.phases.iter().enumerate() {
            if p.name.trim().is_empty() || !seen.insert(p.name.as_str()) {
                return Err(FieldError::new(
                    format!("parameters.phases[{i}].name"),
                    "must be non-empty and unique",
                ));
            }
            if !seconds_ok(p.seconds) {
                return Err(FieldError::new(
                    format!("parameters.phases[{i}].seconds"),
                    format!("must be between 0 and {MAX_PHASE_SECONDS}"),
                ));
            }
            phases.push((p.name.clone(), Duration::from_secs_f64(p.seconds)));
        }
        phases
    };
    if let Some(name) = &params.fail_at_phase {
        if !phases.iter().any(|(n, _)| n == name) {
            return Err(FieldError::new(
                "parameters.failAtPhase",
                "must name one of the phases",
            ));
        }
    }
    Ok(Plan {
        phases,
        fail_at: params.fail_at_phase,
        fail_retryable: params.fail_retryable,
        fail_attempts: params.fail_attempts,
    })
}

impl Executor for Sleep {
    fn operation_type(&self) -> &'static str {
        "Sleep"
    }

    fn validate(&self, parameters: &Value) -> Result<(), FieldError> {
        plan(parameters).map(|_| ())
    }

    fn run(&self, task: Task) -> Run {
        Box::pin(async move {
            let plan = plan(&task.parameters)
                .map_err(|e| ExecutionError::new("INVALID_PARAMETERS", e.to_string(), false))?;
            let total = plan.phases.len();
            let (mut ran, mut skipped) = (0, 0);
            for (i, (name, duration)) in plan.phases.iter().enumerate() {
                if task.checkpoints.contains_key(name) {
                    skipped += 1;
                    continue;
                }
                let started = ProgressReport {
                    current_phase: Some(name.clone()),
                    total_phases: Some(total as u32),
                    phase: Some(PhaseReport {
                        phase_name: name.clone(),
                        status: PhaseStatus::Running,
                        results: None,
                        checkpoint: None,
                        progress: None,
                        current_activity: None,
                        counters: Default::default(),
                        details: Default::default(),
                    }),
                    ..Default::default()
                };
                task.reporter
                    .report(started)
                    .await
                    .map_err(|_| ExecutionError::stopped())?;
                let failing = plan.fail_at.as_deref() == Some(name.as_str())
                    && plan.fail_attempts.is_none_or(|n| task.attempt <= n);
                if failing {
                    return Err(ExecutionError::new(
                        "SLEEP_FAILED",
                        format!(
                            "failed at phase `{name}` as asked (attempt {})",
                            task.attempt
                        ),
                        plan.fail_retryable,
                    ));
                }
                tokio::select! {
                    _ = tokio::time::sleep(*duration) => {}
                    _ = task.reporter.stopped() => return Err(ExecutionError::stopped()),
                }
                let done = ProgressReport {
                    percentage: Some(((i + 1) as f64 / total as f64 * 100.0 * 10.0).round() / 10.0),
                    processed_records: Some((i + 1) as u64),
                    total_records: Some(total as u64),
                    phase: Some(PhaseReport {
                        phase_name: name.clone(),
                        status: PhaseStatus::Completed,
                        results: Some(json!({"sleptSeconds": duration.as_secs_f64()})),
                        checkpoint: Some(json!({"completed": name})),
                        progress: None,
                        current_activity: None,
                        counters: Default::default(),
                        details: Default::default(),
                    }),
                    ..Default::default()
                };
                task.reporter
                    .report(done)
                    .await
                    .map_err(|_| ExecutionError::stopped())?;
                ran += 1;
            }
            Ok(OperationResult {
                summary: json!({"phases": total, "phasesRun": ran, "phasesSkipped": skipped}),
                phase_results: Vec::new(),
                artifacts: Vec::new(),
                extra: Default::default(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_with_their_path_named() {
        let field = |v: Value| plan(&v).err().map(|e| e.field);
        assert_eq!(field(json!({})), None);
        assert_eq!(
            field(json!({"seconds": -1})),
            Some("parameters.seconds".into())
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a", "seconds": "x"}]})),
            Some("parameters.phases[0].seconds".into())
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a", "seconds": 1}, {"name": "a", "seconds": 1}]})),
            Some("parameters.phases[1].name".into())
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a", "seconds": 1}], "failAtPhase": "b"})),
            Some("parameters.failAtPhase".into())
        );
        assert_eq!(
            field(json!({"sleepy": true})),
            Some("parameters.sleepy".into())
        );
        let p = plan(&json!({"seconds": 0.5})).unwrap();
        assert_eq!(
            p.phases,
            vec![("sleep".to_owned(), Duration::from_millis(500))]
        );
    }
}
