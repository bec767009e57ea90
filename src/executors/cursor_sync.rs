//! `CursorSync` (seed 004): pages through a cursor-paginated GraphQL or JSON API and turns
//! each record into a `sync.record.changed` event, so a polled API becomes pushed, signed
//! webhooks. Parameters: see `domain::sync::spec`.
//!
//! The cursor lives in the database, written with each page's events in one transaction,
//! only over the version the page was asked from: a crash re-asks at most the page in
//! flight, and no page is written twice. A run holds its sync while it pages; a second
//! run of the same sync waits for the first to end.

use std::time::Duration;

use serde_json::{json, Value};

use super::{ExecutionError, Executor, Run, Task};
use crate::clock;
use crate::domain::operation::{OperationResult, PhaseReport, PhaseStatus, ProgressReport};
use crate::domain::retry::RetryPolicy;
use crate::domain::sync::credential::{Credential, Secret};
use crate::domain::sync::{
    self, answer_excerpt, cursor_after, next_page, read_page, source_retry_delay, source_status,
    Method, PageRequest, SourceStatus, SyncSpec, EXCERPT_BYTES,
};
use crate::domain::FieldError;
use crate::outbound::client::{refused_by_guard, root_cause};
use crate::outbound::OutboundClient;
use crate::store::{SyncState, Taken};

pub const OPERATION_TYPE: &str = "CursorSync";
const PHASE: &str = "sync";
/// How often a run waiting for another run of its sync looks again.
const BUSY_POLL: Duration = Duration::from_secs(1);

pub struct CursorSync;

impl Executor for CursorSync {
    fn operation_type(&self) -> &'static str {
        OPERATION_TYPE
    }

    fn validate(&self, parameters: &Value) -> Result<(), FieldError> {
        SyncSpec::parse(parameters).map(|_| ())
    }

    fn targets(&self, parameters: &Value) -> Vec<(String, url::Url)> {
        SyncSpec::parse(parameters)
            .map(|spec| vec![("parameters.endpoint".to_owned(), spec.endpoint)])
            .unwrap_or_default()
    }

    fn run(&self, task: Task) -> Run {
        Box::pin(async move {
            let spec = SyncSpec::parse(&task.parameters)
                .map_err(|e| ExecutionError::new("INVALID_PARAMETERS", e.to_string(), false))?;
            let secret = credential(&task, &spec).await?;
            let mut state = take(&task, &spec).await?;
            let outcome = Paging::new(&task, &spec, secret.as_ref().map(|c| &c.secret))
                .pages(&mut state)
                .await;
            let error = outcome.as_ref().err().map(|e| e.error.message.clone());
            // Whatever happened, the sync is free for the next run (a crash frees it when
            // the operation ends).
            if let Err(e) = task
                .sync
                .release(
                    &spec.name,
                    task.operation_id,
                    error.as_deref(),
                    clock::now(),
                )
                .await
            {
                tracing::warn!(error = %e, sync = %spec.name, "could not release the sync; it frees itself when the operation ends");
            }
            outcome?;
            Ok(OperationResult {
                summary: json!({
                    "syncName": spec.name.as_str(),
                    "pages": state.run_pages,
                    "records": state.run_records,
                    "cursor": state.cursor,
                }),
                phase_results: Vec::new(),
                artifacts: Vec::new(),
                extra: Default::default(),
            })
        })
    }
}

/// The sync's credential, if it names one, and only if it may go to the sync's endpoint.
async fn credential(task: &Task, spec: &SyncSpec) -> Result<Option<Credential>, ExecutionError> {
    let Some(name) = &spec.credential else {
        return Ok(None);
    };
    let credential = task
        .sync
        .credential(name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ExecutionError::new(
                "CREDENTIAL_NOT_FOUND",
                format!(
                    "no credential `{name}` in this project: PUT …/async/credentials/{name} first"
                ),
                false,
            )
        })?;
    if !credential.allows(&spec.endpoint) {
        return Err(ExecutionError::new(
            "CREDENTIAL_ORIGIN",
            format!(
                "credential `{name}` may only be sent to {}, not to {}",
                credential.origins.join(", "),
                spec.endpoint.origin().ascii_serialization()
            ),
            false,
        ));
    }
    Ok(Some(credential))
}

fn store_error(e: crate::store::StoreError) -> ExecutionError {
    ExecutionError::new("STORE_UNAVAILABLE", e.to_string(), true)
}

fn stopped(_: crate::lease::Stopped) -> ExecutionError {
    ExecutionError::stopped()
}

/// The `sync` phase, running, doing `activity`; with the run's figures once it pages.
fn report(activity: String, state: Option<&SyncState>) -> ProgressReport {
    ProgressReport {
        current_phase: Some(PHASE.to_owned()),
        processed_records: state.map(|s| s.run_records.max(0) as u64),
        phase: Some(PhaseReport {
            phase_name: PHASE.to_owned(),
            status: PhaseStatus::Running,
            results: None,
            checkpoint: None,
            progress: None,
            current_activity: Some(activity),
            counters: state
                .map(|s| {
                    [
                        ("pages".to_owned(), s.run_pages.into()),
                        ("records".to_owned(), s.run_records.into()),
                    ]
                    .into()
                })
                .unwrap_or_default(),
            details: Default::default(),
        }),
        ..Default::default()
    }
}

/// Takes the sync for this run, waiting while another live run has it.
async fn take(task: &Task, spec: &SyncSpec) -> Result<SyncState, ExecutionError> {
    let mut told = None;
    loop {
        match task
            .sync
            .take(&spec.name, task.operation_id, clock::now())
            .await
            .map_err(store_error)?
        {
            Taken::Held(state) => return Ok(state),
            Taken::Busy(holder) => {
                if told != Some(holder) {
                    let waiting = report(
                        format!(
                            "waiting for operation {holder}, which runs sync `{}`",
                            spec.name
                        ),
                        None,
                    );
                    task.reporter.report(waiting).await.map_err(stopped)?;
                    told = Some(holder);
                }
                tokio::select! {
                    _ = tokio::time::sleep(BUSY_POLL) => {}
                    _ = task.reporter.stopped() => return Err(ExecutionError::stopped()),
                }
            }
        }
    }
}

/// Why a page could not be had this time.
enum Unanswered {
    /// Busy or unreachable: asked again after a wait.
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    Failed(ExecutionError),
}

/// One attempt's paging.
struct Paging<'a> {
    task: &'a Task,
    spec: &'a SyncSpec,
    header: Option<(String, String)>,
}

impl<'a> Paging<'a> {
    fn new(task: &'a Task, spec: &'a SyncSpec, secret: Option<&Secret>) -> Self {
        Paging {
            task,
            spec,
            header: secret.map(Secret::header),
        }
    }

    async fn pages(&self, state: &mut SyncState) -> Result<(), ExecutionError> {
        loop {
            let asked_from = state.cursor.clone();
            let answer = self
                .answer(&self.spec.page_request(asked_from.as_deref()))
                .await?;
            let page = read_page(self.spec, answer)
                .map_err(|e| ExecutionError::new(e.code(), e.to_string(), false))?;
            let more = next_page(asked_from.as_deref(), &page)
                .map_err(|e| ExecutionError::new(e.code(), e.to_string(), false))?;
            let cursor = cursor_after(asked_from.as_deref(), &page);
            let count = page.records.len();
            let events = page
                .records
                .into_iter()
                .map(|r| sync::record_event(&self.spec.name, self.task.operation_id, r))
                .collect();
            let written = self
                .task
                .sync
                .write_page(
                    &self.spec.name,
                    self.task.operation_id,
                    state,
                    cursor,
                    events,
                    clock::now(),
                )
                .await
                .map_err(store_error)?;
            if !written {
                // The cursor moved under this attempt (reset, or written by an attempt
                // that lost its lease): a new attempt starts from where it is now.
                return Err(ExecutionError::new(
                    "SYNC_CURSOR_MOVED",
                    "the sync's cursor changed while this attempt paged; the next attempt goes on from it",
                    true,
                ));
            }
            let activity = format!("page {}: {count} records", state.run_pages);
            self.task
                .reporter
                .report(report(activity, Some(state)))
                .await
                .map_err(stopped)?;
            if !more {
                return Ok(());
            }
        }
    }

    /// One page's answer, asked again while the source is busy, within the operation's
    /// retry policy.
    async fn answer(&self, request: &PageRequest) -> Result<Value, ExecutionError> {
        let policy: &RetryPolicy = &self.task.retry_policy;
        let mut failures = 0;
        loop {
            let (reason, retry_after) = match self.ask(request).await {
                Ok(answer) => return Ok(answer),
                Err(Unanswered::Failed(e)) => return Err(e),
                Err(Unanswered::Unavailable {
                    reason,
                    retry_after,
                }) => (reason, retry_after),
            };
            failures += 1;
            let Some(wait) =
                source_retry_delay(policy, failures, retry_after, self.task.retry_time_scale)
            else {
                return Err(ExecutionError::new(
                    "SOURCE_UNAVAILABLE",
                    format!(
                        "the source did not answer after {failures} tries (the operation's retryPolicy allows {}): {reason}",
                        policy.max_retries + 1
                    ),
                    false,
                ));
            };
            tracing::info!(sync = %self.spec.name, %reason, wait_ms = wait.as_millis() as u64, "the source is unavailable; asking again");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.task.reporter.stopped() => return Err(ExecutionError::stopped()),
            }
        }
    }

    async fn ask(&self, request: &PageRequest) -> Result<Value, Unanswered> {
        let http: &OutboundClient = &self.task.http;
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let refused = |reason: String| {
            Unanswered::Failed(ExecutionError::new("TARGET_REFUSED", reason, false))
        };
        let mut builder = http
            .request(method, request.url.as_str())
            .map_err(|e| refused(e.to_string()))?
            .header("accept", "application/json");
        if let Some((name, value)) = &self.header {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let mut response = match builder.send().await {
            Ok(r) => r,
            Err(e) if refused_by_guard(&e) => return Err(refused(root_cause(&e))),
            Err(e) => {
                return Err(Unanswered::Unavailable {
                    reason: if e.is_timeout() {
                        "the source did not answer in time".to_owned()
                    } else {
                        format!("request failed: {}", root_cause(&e))
                    },
                    retry_after: None,
                })
            }
        };
        let status = response.status().as_u16();
        let verdict = source_status(status);
        let answered = verdict == SourceStatus::Answered;
        let limit = self.spec.max_page_bytes;
        let too_large = || {
            Unanswered::Failed(ExecutionError::new(
                "PAGE_TOO_LARGE",
                format!("a page of the source is larger than maxPageBytes ({limit} bytes): ask for fewer records with pageSize, or raise maxPageBytes"),
                false,
            ))
        };
        if answered && response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::domain::delivery::parse_retry_after(v, clock::now()));
        // Any other answer is read only as far as its excerpt in the error.
        let read_limit = if answered {
            limit
        } else {
            EXCERPT_BYTES as u64
        };
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > read_limit {
                        if answered {
                            return Err(too_large());
                        }
                        let room = read_limit as usize - body.len();
                        body.extend_from_slice(&chunk[..room]);
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Unanswered::Unavailable {
                        reason: format!("the answer was cut: {}", root_cause(&e)),
                        retry_after: None,
                    })
                }
            }
        }
        match verdict {
            SourceStatus::Answered => serde_json::from_slice(&body).map_err(|e| {
                Unanswered::Failed(ExecutionError::new(
                    "SOURCE_INVALID_JSON",
                    format!("the source's answer is not JSON: {e}"),
                    false,
                ))
            }),
            SourceStatus::Unavailable => Err(Unanswered::Unavailable {
                reason: format!("HTTP {status}: {}", answer_excerpt(&body)),
                retry_after,
            }),
            SourceStatus::Refused => Err(Unanswered::Failed(ExecutionError::new(
                "SOURCE_REFUSED",
                format!(
                    "the source answered HTTP {status}{}: {}",
                    if matches!(status, 401 | 403) {
                        " (check the sync's credential)"
                    } else {
                        ""
                    },
                    answer_excerpt(&body)
                ),
                false,
            ))),
        }
    }
}
