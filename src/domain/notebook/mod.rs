//! Notebooks (seed 003): a project's saved pipelines. A notebook is an ordered set of
//! blocks, each an operation template (`blockType` is the operation type, its
//! `configuration` the parameters); running it submits one batch whose members are its
//! enabled blocks. This module holds the rules of notebooks and blocks, how a run's
//! batch is drawn from the blocks ([`run_spec`]), and what the blocks' statistics read
//! from their runs; [`schedule`], the cron ticks.

pub mod schedule;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::batch::{check_graph, BatchCallbacks, BatchSpec, FailurePolicy, MemberSpec};
use crate::domain::fields::{checked_name, MAX_NAME_LEN};
use crate::domain::ids::{BlockId, NotebookId, NotebookRunId, ProjectId, TenantId};

use crate::domain::operation::{
    Callbacks, Notifications, OperationSpec, OperationStatus, Priority, DEFAULT_TIMEOUT_SECONDS,
};
use crate::domain::retry::RetryPolicy;
use crate::domain::FieldError;

pub use schedule::Schedule;

/// Blocks per notebook: a run is one batch, and a notebook is a pipeline people read.
pub const MAX_BLOCKS: usize = 1_000;
pub const MAX_DESCRIPTION_LEN: usize = 10_000;
/// A block's configuration is a JSON text: kept to what a pipeline step needs.
pub const MAX_CONFIGURATION_LEN: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Notebook {
    pub id: NotebookId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub name: String,
    pub description: Option<String>,
    pub schedule: Option<Schedule>,
    /// The zone of the schedule's ticks (kept without a schedule too, for the next one).
    pub timezone: String,
    pub schedule_paused: bool,
    pub notifications: Notifications,
    pub callbacks: BatchCallbacks,
    pub failure_policy: FailurePolicy,
    /// The first tick not yet claimed: `None` without a schedule.
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
    pub modified_by: String,
}

/// A notebook's settings as checked from a request; on an update, `None` leaves a
/// setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotebookChange {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Some(None)`: the schedule is removed.
    pub schedule: Option<Option<String>>,
    pub timezone: Option<String>,
    pub schedule_paused: Option<bool>,
    pub notifications: Option<Notifications>,
    pub callbacks: Option<BatchCallbacks>,
    pub failure_policy: Option<FailurePolicy>,
}

pub fn checked_notebook_name(name: &str) -> Result<String, FieldError> {
    checked_text(name, "notebookName", MAX_NAME_LEN)
}

pub fn checked_description(text: &str, field: &str) -> Result<String, FieldError> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    no_controls(text, field, true)?;
    Ok(text.to_owned())
}

/// A name people read: not blank, bounded, no control characters.
fn checked_text(text: &str, field: &str, max: usize) -> Result<String, FieldError> {
    let text = checked_name(text, field, max)?;
    no_controls(&text, field, false)?;
    Ok(text)
}

fn no_controls(text: &str, field: &str, lines_allowed: bool) -> Result<(), FieldError> {
    let allowed = |c: char| lines_allowed && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

impl Notebook {
    /// A new notebook from a create request's change, whose name is required.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        id: NotebookId,
        tenant_id: TenantId,
        project_id: ProjectId,
        change: NotebookChange,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldError> {
        let name = change
            .name
            .clone()
            .ok_or_else(|| FieldError::new("notebookName", "is required"))?;
        let mut notebook = Notebook {
            id,
            tenant_id,
            project_id,
            name,
            description: None,
            schedule: None,
            timezone: schedule::DEFAULT_TIMEZONE.to_owned(),
            schedule_paused: false,
            notifications: Notifications::default(),
            callbacks: BatchCallbacks::default(),
            failure_policy: FailurePolicy::default(),
            next_run_at: None,
            last_run_at: None,
            created_at: now,
            updated_at: now,
            created_by: by.to_owned(),
            modified_by: by.to_owned(),
        };
        notebook.apply(change, by, now)?;
        Ok(notebook)
    }

    /// Applies the settings given; the next tick is computed afresh from `now` when the
    /// schedule, its zone or its pause change, so ticks due while paused never run.
    pub fn apply(
        &mut self,
        change: NotebookChange,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), FieldError> {
        let expression = match change.schedule {
            Some(expression) => expression,
            None => self.schedule.as_ref().map(|s| s.expression().to_owned()),
        };
        let timezone = change.timezone.unwrap_or_else(|| self.timezone.clone());
        let schedule = match &expression {
            Some(expression) => Some(Schedule::parse(expression, &timezone)?),
            None => {
                schedule::checked_timezone(&timezone, "timezone")?;
                None
            }
        };
        let paused = change.schedule_paused.unwrap_or(self.schedule_paused);
        let timing_changed = schedule != self.schedule || paused != self.schedule_paused;
        if let Some(name) = change.name {
            self.name = name;
        }
        if let Some(description) = change.description {
            self.description = Some(description);
        }
        if let Some(notifications) = change.notifications {
            self.notifications = notifications;
        }
        if let Some(callbacks) = change.callbacks {
            self.callbacks = callbacks;
        }
        if let Some(policy) = change.failure_policy {
            self.failure_policy = policy;
        }
        self.timezone = schedule
            .as_ref()
            .map_or(timezone.trim().to_owned(), |s| s.timezone().to_owned());
        self.schedule = schedule;
        self.schedule_paused = paused;
        if timing_changed || self.next_run_at.is_none() {
            self.next_run_at = match (&self.schedule, paused) {
                (Some(schedule), false) => schedule.next_after(now),
                _ => None,
            };
        }
        self.updated_at = now;
        self.modified_by = by.to_owned();
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub id: BlockId,
    pub notebook_id: NotebookId,
    pub block_type: String,
    pub title: String,
    pub description: Option<String>,
    pub order: i32,
    /// The operation's parameters as the JSON text given: a JSON object.
    pub configuration: String,
    /// Blocks of the same notebook this one runs after.
    pub dependencies: Vec<BlockId>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
    pub modified_by: String,
}

/// A block's configuration: a JSON text holding an object, as the operation's parameters.
pub fn checked_configuration(text: &str, field: &str) -> Result<Value, FieldError> {
    if text.len() > MAX_CONFIGURATION_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_CONFIGURATION_LEN} bytes"),
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(FieldError::new(
            field,
            "must be a JSON object written as a string, such as \"{\\\"key\\\": 1}\"",
        )),
        Err(e) => Err(FieldError::new(
            field,
            format!("must be a JSON object written as a string: {e}"),
        )),
    }
}

pub fn checked_block_title(title: &str) -> Result<String, FieldError> {
    checked_text(title, "blockTitle", MAX_NAME_LEN)
}

/// `blockOrder`: 0 or more, within a 32-bit integer as the seed's clients hold it.
pub fn checked_block_order(order: i64) -> Result<i32, FieldError> {
    i32::try_from(order)
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| FieldError::new("blockOrder", format!("must be 0 to {}", i32::MAX)))
}

/// What a block's create or update asks for; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockChange {
    pub block_type: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub order: Option<i32>,
    pub configuration: Option<String>,
    pub dependencies: Option<Vec<BlockId>>,
    pub disabled: Option<bool>,
}

impl Block {
    /// A new block of `notebook`, whose other blocks are `others`.
    pub fn create(
        id: BlockId,
        notebook: NotebookId,
        change: BlockChange,
        others: &[Block],
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldError> {
        if others.len() >= MAX_BLOCKS {
            return Err(FieldError::new(
                "notebookId",
                format!("this notebook has {MAX_BLOCKS} blocks, the most one holds"),
            ));
        }
        let block_type = change
            .block_type
            .clone()
            .ok_or_else(|| FieldError::new("blockType", "is required"))?;
        let title = change
            .title
            .clone()
            .ok_or_else(|| FieldError::new("blockTitle", "is required"))?;
        let mut block = Block {
            id,
            notebook_id: notebook,
            block_type,
            title,
            description: None,
            order: 0,
            configuration: "{}".to_owned(),
            dependencies: Vec::new(),
            disabled: false,
            created_at: now,
            updated_at: now,
            created_by: by.to_owned(),
            modified_by: by.to_owned(),
        };
        block.apply(change, others, by, now)?;
        Ok(block)
    }

    /// Applies the change; dependencies must be other blocks of the same notebook
    /// (`others`), each listed once, and must not close a cycle.
    pub fn apply(
        &mut self,
        change: BlockChange,
        others: &[Block],
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), FieldError> {
        if let Some(dependencies) = &change.dependencies {
            let known: HashSet<BlockId> = others.iter().map(|b| b.id).collect();
            for (i, dependency) in dependencies.iter().enumerate() {
                let field = format!("dependencies[{i}]");
                if *dependency == self.id {
                    return Err(FieldError::new(field, "a block cannot depend on itself"));
                }
                if !known.contains(dependency) {
                    return Err(FieldError::new(
                        field,
                        format!("no block of this notebook has the id {dependency}"),
                    ));
                }
                if dependencies[..i].contains(dependency) {
                    return Err(FieldError::new(
                        field,
                        format!("{dependency} is listed twice"),
                    ));
                }
            }
            let mut graph: Vec<(BlockId, Vec<BlockId>)> = others
                .iter()
                .filter(|b| b.id != self.id)
                .map(|b| (b.id, b.dependencies.clone()))
                .collect();
            graph.push((self.id, dependencies.clone()));
            check_acyclic(&graph)?;
            self.dependencies = dependencies.clone();
        }
        if let Some(block_type) = change.block_type {
            self.block_type = block_type;
        }
        if let Some(title) = change.title {
            self.title = title;
        }
        if let Some(description) = change.description {
            self.description = Some(description);
        }
        if let Some(order) = change.order {
            self.order = order;
        }
        if let Some(configuration) = change.configuration {
            self.configuration = configuration;
        }
        if let Some(disabled) = change.disabled {
            self.disabled = disabled;
        }
        self.updated_at = now;
        self.modified_by = by.to_owned();
        Ok(())
    }

    /// The block's parameters: its configuration, checked when it was written.
    pub fn parameters(&self) -> Value {
        serde_json::from_str(&self.configuration).unwrap_or(Value::Object(Default::default()))
    }
}

/// The blocks' dependencies form no cycle; the error names one, block by block.
fn check_acyclic(graph: &[(BlockId, Vec<BlockId>)]) -> Result<(), FieldError> {
    let keys: Vec<String> = graph.iter().map(|(id, _)| id.to_string()).collect();
    let deps: Vec<Vec<String>> = graph
        .iter()
        .map(|(_, deps)| deps.iter().map(ToString::to_string).collect())
        .collect();
    let as_graph: Vec<(&str, &[String])> = keys
        .iter()
        .map(String::as_str)
        .zip(deps.iter().map(Vec::as_slice))
        .collect();
    check_graph(&as_graph, "blocks").map_err(|e| FieldError::new("dependencies", e.message))
}

/// The member of a run's batch that stands for each block is keyed by the block's id.
pub fn member_key(block: BlockId) -> String {
    block.to_string()
}

/// The batch a run of `notebook` submits: one member per enabled block. Explicit
/// dependencies are kept; a dependency on a disabled block becomes a dependency on what
/// that block depended on. When no block has dependencies, `blockOrder` (then creation)
/// is the order: each enabled block runs after the previous one. `None` when no block is
/// enabled.
pub fn run_spec(notebook: &Notebook, blocks: &[Block]) -> Option<BatchSpec> {
    let mut enabled: Vec<&Block> = blocks.iter().filter(|b| !b.disabled).collect();
    if enabled.is_empty() {
        return None;
    }
    enabled.sort_by_key(|b| (b.order, b.created_at, b.id));
    let by_id: HashMap<BlockId, &Block> = blocks.iter().map(|b| (b.id, b)).collect();
    let chained = blocks.iter().all(|b| b.dependencies.is_empty());
    let retry_policy = notebook
        .failure_policy
        .retry_policy(|| Ok::<_, FieldError>(RetryPolicy::OPERATION_DEFAULT))
        .unwrap_or(RetryPolicy::OPERATION_DEFAULT);
    let members = enabled
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let dependencies: Vec<String> = if chained {
                i.checked_sub(1)
                    .map(|p| vec![member_key(enabled[p].id)])
                    .unwrap_or_default()
            } else {
                let mut resolved = Vec::new();
                enabled_dependencies(block, &by_id, &mut resolved, &mut HashSet::new());
                resolved.into_iter().map(member_key).collect()
            };
            MemberSpec {
                key: member_key(block.id),
                dependencies,
                spec: OperationSpec {
                    operation_type: block.block_type.clone(),
                    operation_name: block.title.clone(),
                    description: block.description.clone(),
                    priority: Priority::Normal,
                    parameters: block.parameters(),
                    callbacks: Callbacks::default(),
                    notifications: Notifications::default(),
                    timeout: std::time::Duration::from_secs(DEFAULT_TIMEOUT_SECONDS as u64),
                    retry_policy,
                },
            }
        })
        .collect();
    Some(BatchSpec {
        name: notebook.name.clone(),
        description: notebook.description.clone(),
        members,
        callbacks: notebook.callbacks.clone(),
        failure_policy: notebook.failure_policy,
        retry_policy,
        notifications: notebook.notifications.clone(),
    })
}

/// The enabled blocks `block` waits for, looking through disabled ones, each once.
fn enabled_dependencies(
    block: &Block,
    by_id: &HashMap<BlockId, &Block>,
    out: &mut Vec<BlockId>,
    seen: &mut HashSet<BlockId>,
) {
    for dependency in &block.dependencies {
        if !seen.insert(*dependency) {
            continue;
        }
        match by_id.get(dependency) {
            Some(upstream) if upstream.disabled => enabled_dependencies(upstream, by_id, out, seen),
            Some(_) => out.push(*dependency),
            None => {}
        }
    }
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Schedule => "schedule",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Manual, Self::Schedule]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// A run: the batch submitted for a notebook, by hand or for a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct NotebookRun {
    pub id: NotebookRunId,
    pub notebook_id: NotebookId,
    pub batch_id: crate::domain::ids::BatchId,
    pub trigger: Trigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A block's last execution status, as the seed names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    Success,
    Failed,
    Cancelled,
    Skipped,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
            Self::Skipped => "Skipped",
        }
    }

    /// How a block's member ended; `None` while it has not.
    pub fn of(status: OperationStatus) -> Option<Self> {
        match status {
            OperationStatus::Completed => Some(Self::Success),
            OperationStatus::Failed | OperationStatus::Timeout => Some(Self::Failed),
            OperationStatus::Cancelled => Some(Self::Cancelled),
            OperationStatus::Skipped => Some(Self::Skipped),
            _ => None,
        }
    }
}

/// What a block's runs amount to: how many ended, and the last that did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockStats {
    pub execution_count: u64,
    pub last: Option<(DateTime<Utc>, ExecutionStatus)>,
}

impl BlockStats {
    /// From the block's members in its notebook's runs: `(status, ended at)` each.
    pub fn from_members(
        members: impl IntoIterator<Item = (OperationStatus, Option<DateTime<Utc>>)>,
    ) -> Self {
        let mut stats = BlockStats::default();
        for (status, ended) in members {
            let (Some(outcome), Some(ended)) = (ExecutionStatus::of(status), ended) else {
                continue;
            };
            stats.execution_count += 1;
            if stats.last.is_none_or(|(at, _)| ended >= at) {
                stats.last = Some((ended, outcome));
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests;
