//! Built-in operation types, run inside Relais. Each implements [`Executor`]; the engine's
//! runner claims their operations under a lease, as a worker would, and a [`Reporter`]
//! carries progress back (it is also the heartbeat, and says when to stop). An executor
//! sees nothing more of Relais than its [`Task`]: the breakout writes its tables through
//! the task's [`BreakoutSink`], never through the store, and a sync its pages through
//! its [`SyncSink`].

pub mod breakout;
pub mod cursor_sync;
pub mod echo;
pub mod sleep;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::domain::ids::OperationId;
use crate::domain::ids::{ProjectId, TenantId};
use crate::domain::operation::{OperationError, OperationResult, ProgressReport};
use crate::domain::retry::RetryPolicy;
use crate::domain::FieldError;
use crate::lease::{Failure, HeldLease};
use crate::outbound::OutboundClient;
use crate::store::breakout::BreakoutSink;
use crate::store::{Breakout, SyncSink, Syncs};

pub use crate::lease::Stopped;

pub type Run = Pin<Box<dyn Future<Output = Result<OperationResult, ExecutionError>> + Send>>;

pub trait Executor: Send + Sync + 'static {
    /// The `operationType` this executor runs.
    fn operation_type(&self) -> &'static str;

    /// Checks parameters when an operation is started, so bad input is a 400 at once
    /// rather than a failed run later. Fields are named relative to `parameters`.
    fn validate(&self, parameters: &Value) -> Result<(), FieldError>;

    /// The URLs of valid `parameters` that the run will call, with the fields that hold
    /// them, so that a private address is a 400 at start like any other target.
    fn targets(&self, _parameters: &Value) -> Vec<(String, url::Url)> {
        Vec::new()
    }

    /// Runs one attempt. The future is dropped if the operation is cancelled or times out.
    fn run(&self, task: Task) -> Run;
}

/// A failed attempt: retried under the operation's policy when `retryable`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionError {
    pub error: OperationError,
    pub retryable: bool,
}

impl ExecutionError {
    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        ExecutionError {
            error: OperationError {
                code: code.into(),
                message: message.into(),
                details: None,
            },
            retryable,
        }
    }

    /// What an executor answers once its reporter says the operation was stopped.
    pub fn stopped() -> Self {
        Self::new("STOPPED", "the operation was cancelled or timed out", false)
    }
}

impl From<ExecutionError> for Failure {
    fn from(e: ExecutionError) -> Self {
        Failure {
            error: e.error,
            retryable: e.retryable,
        }
    }
}

/// What an attempt is given.
pub struct Task {
    pub operation_id: OperationId,
    pub parameters: Value,
    pub attempt: u32,
    /// Checkpoints of the phases already completed (by earlier attempts, or by the run a
    /// resumed retry came from), by phase name.
    pub checkpoints: HashMap<String, Value>,
    /// For a batch member: the results of the members it depends on, by their keys.
    pub dependency_results: Value,
    /// The operation's retry policy, which also bounds the retries an executor makes
    /// inside an attempt (a busy source), and the scale of its delays (below 1 in tests).
    pub retry_policy: RetryPolicy,
    pub retry_time_scale: f64,
    pub reporter: Reporter,
    /// Where a breakout reads its dictionaries and writes its tables, in the operation's
    /// project.
    pub breakout: BreakoutSink,
    /// The operation's project's syncs and credentials.
    pub sync: SyncSink,
    /// For requests to tenants' sources, under the address guard.
    pub http: OutboundClient,
}

/// What the runner hands executors, besides the operation: the store's narrow handles,
/// the outbound client, and the scale of retry delays.
#[derive(Clone)]
pub struct Tools {
    pub breakout: Breakout,
    pub syncs: Syncs,
    pub http: OutboundClient,
    pub retry_time_scale: f64,
}

impl Tools {
    pub fn breakout_sink(&self, project: ProjectId) -> BreakoutSink {
        self.breakout.sink(project)
    }

    pub fn sync_sink(&self, tenant: TenantId, project: ProjectId) -> SyncSink {
        self.syncs.sink(tenant, project)
    }
}

/// Reports an attempt's progress under its lease (each report also renews it), and says
/// when the attempt must stop.
#[derive(Clone)]
pub struct Reporter {
    lease: HeldLease,
}

impl Reporter {
    pub fn new(lease: HeldLease) -> Self {
        Reporter { lease }
    }

    /// Records progress and renews the lease. `Err(Stopped)` means: stop now.
    pub async fn report(&self, report: ProgressReport) -> Result<(), Stopped> {
        self.lease.report(report).await
    }

    /// Resolves once the attempt has been told to stop.
    pub async fn stopped(&self) {
        self.lease.stopped().await
    }
}

/// The built-in executors, by operation type.
#[derive(Clone)]
pub struct Registry {
    executors: HashMap<&'static str, Arc<dyn Executor>>,
}

impl Registry {
    pub fn builtin() -> Self {
        let mut executors: HashMap<&'static str, Arc<dyn Executor>> = HashMap::new();
        let builtins: [Arc<dyn Executor>; 4] = [
            Arc::new(sleep::Sleep),
            Arc::new(echo::Echo),
            Arc::new(breakout::Breakout),
            Arc::new(cursor_sync::CursorSync),
        ];
        for executor in builtins {
            executors.insert(executor.operation_type(), executor);
        }
        Registry { executors }
    }

    pub fn get(&self, operation_type: &str) -> Option<&Arc<dyn Executor>> {
        self.executors.get(operation_type)
    }

    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.executors.keys().map(|t| t.to_string()).collect();
        types.sort();
        types
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_count_every_built_in_type_by_name() {
        let mut counted: Vec<String> = crate::store::COUNTED_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect();
        counted.sort();
        assert_eq!(Registry::builtin().types(), counted);
    }
}
