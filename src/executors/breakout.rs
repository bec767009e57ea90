//! `CsproBreakout`: turns the data of registered CSPro dictionaries into SQL tables (one
//! table of cases, one per record type), as CSWeb's breakout does. Parameters:
//!
//! ```json
//! {"dictionaries": ["EVAL_DICT"], "threads": 3, "overwrite": false,
//!  "strict": false, "chunk_size": 1000}
//! ```
//!
//! Cases are read in chunks of `chunk_size`; `threads` workers write chunks in parallel,
//! each in one transaction that deletes the chunk's cases, inserts their rows and records
//! the chunk with a fingerprint of its cases. A chunk whose fingerprint is already
//! recorded is not written again: so a later attempt (after a crash or a lost lease)
//! resumes where the killed one stopped, and a later run over new data writes only the
//! chunks that changed (appended cases, edited ones; a case inserted in the middle shifts
//! the numbers of all that follow, so their chunks are written again). Rows of cases the
//! data no longer has are deleted at the end. `overwrite` drops the tables first. Bad lines never abort the run (unless `strict`):
//! they are counted, and the first ones are listed with their case and line in the
//! results.
//!
//! Memory stays bounded whatever the data: files are read as they come (see [`input`]
//! for which files are read at all), and a chunk closes early once its cases weigh
//! [`MAX_CHUNK_WEIGHT`], so a job holds at most `3 × threads + 1` chunks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;

use super::{ExecutionError, Executor, Reporter, Run, Task};
use crate::cspro::csdb::{CsdbFile, CsdbReader};
use crate::cspro::data::{Case, DatReader, IssueKind, ReadOptions};
use crate::cspro::dictionary::Dictionary;
use crate::cspro::layout::{case_guid, Layout};
use crate::domain::breakout::gone_cases;
use crate::domain::ids::OperationId;
use crate::domain::operation::{OperationResult, ProgressReport};
use crate::domain::FieldError;
use crate::store::breakout::{
    BreakoutData, BreakoutDictionary, BreakoutSink, ChunkKey, DataKind, RunEnd, RunStart,
    UploadError,
};
use crate::store::StoreError;

pub mod input;

use input::RegularFile;

pub const OPERATION_TYPE: &str = "CsproBreakout";
pub const MAX_THREADS: u32 = 10;
pub const DEFAULT_CHUNK_SIZE: usize = 1000;
const MAX_CHUNK_SIZE: usize = 100_000;
/// Issues listed by name in the results (all are counted).
pub const ISSUES_LISTED: usize = 50;
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// A chunk closes before `chunk_size` cases once its cases weigh this much.
pub const MAX_CHUNK_WEIGHT: usize = 16 * 1024 * 1024;
/// Bytes read from a text data file at a time.
const READ_BUFFER: usize = 64 * 1024;

/// Chunk transactions in flight at once in this process, over all jobs: each holds a
/// database connection for its duration, and the API and the engine need some too (the
/// PostgreSQL pool has 16; SQLite has one connection, shared in turn).
static WRITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

pub struct Breakout;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub dictionaries: Vec<String>,
    #[serde(default = "one")]
    pub threads: u32,
    #[serde(default)]
    pub overwrite: bool,
    #[serde(default)]
    pub strict: bool,
    pub chunk_size: Option<usize>,
}

fn one() -> u32 {
    1
}

pub fn params(parameters: &Value) -> Result<Params, FieldError> {
    let params: Params = serde_path_to_error::deserialize(parameters).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "parameters".to_owned()
        } else {
            format!("parameters.{path}")
        };
        FieldError::new(field, e.into_inner().to_string())
    })?;
    if params.dictionaries.is_empty() {
        return Err(FieldError::new(
            "parameters.dictionaries",
            "name at least one dictionary",
        ));
    }
    if !(1..=MAX_THREADS).contains(&params.threads) {
        return Err(FieldError::new(
            "parameters.threads",
            format!("must be between 1 and {MAX_THREADS}"),
        ));
    }
    if params
        .chunk_size
        .is_some_and(|n| !(1..=MAX_CHUNK_SIZE).contains(&n))
    {
        return Err(FieldError::new(
            "parameters.chunk_size",
            format!("must be between 1 and {MAX_CHUNK_SIZE}"),
        ));
    }
    Ok(params)
}

impl Executor for Breakout {
    fn operation_type(&self) -> &'static str {
        OPERATION_TYPE
    }

    fn validate(&self, parameters: &Value) -> Result<(), FieldError> {
        params(parameters).map(|_| ())
    }

    fn run(&self, task: Task) -> Run {
        Box::pin(async move {
            let location = task.breakout.location().to_owned();
            break_out(task).await.map_err(|mut e| {
                if e.error.code == "DB_CONNECTION_ERROR" {
                    e.error.details = Some(json!(location));
                }
                e
            })
        })
    }
}

async fn break_out(task: Task) -> Result<OperationResult, ExecutionError> {
    let params = params(&task.parameters)
        .map_err(|e| ExecutionError::new("INVALID_PARAMETERS", e.to_string(), false))?;
    let sink = task.breakout.clone();
    let mut tables_created = Vec::new();
    let (mut total_cases, mut written, mut unchanged) = (0, 0, 0);
    let mut issues = Vec::new();
    for name in &params.dictionaries {
        let registered = sink
            .dictionary(name)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ExecutionError::new(
                    "DICTIONARY_NOT_FOUND",
                    format!("no dictionary named '{name}' is registered"),
                    false,
                )
            })?;
        let committed = sink.committed_chunks(name).await.map_err(db_error)?;
        // An earlier attempt of this job already replaced the tables: resume.
        let resuming = committed
            .iter()
            .any(|c| c.operation_id == task.operation_id.db());
        let replace = params.overwrite && !resuming;
        let known: HashMap<i64, String> = if replace {
            HashMap::new()
        } else {
            committed
                .into_iter()
                .map(|c| (c.chunk, c.fingerprint))
                .collect()
        };
        let job = Job {
            sink: sink.clone(),
            operation: task.operation_id,
            reporter: task.reporter.clone(),
            threads: params.threads as usize,
            chunk_size: params.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
            strict: params.strict,
        };
        let outcome = job.run(&registered, replace, resuming, known).await?;
        tables_created.extend(outcome.tables);
        total_cases += outcome.cases;
        written += outcome.written;
        unchanged += outcome.unchanged;
        for chunk in sink.committed_chunks(name).await.map_err(db_error)? {
            issues.push((name.clone(), chunk.issues));
        }
    }
    let issues = merge_issues(issues.iter().map(|(d, i)| (d.as_str(), i.as_str())));
    Ok(OperationResult {
        summary: json!({
            "dictionaries_processed": params.dictionaries,
            "total_cases": total_cases,
            "tables_created": tables_created,
            "cases_written": written,
            "cases_unchanged": unchanged,
            "issues": issues,
        }),
        phase_results: Vec::new(),
        artifacts: Vec::new(),
        extra: Default::default(),
    })
}

struct Job {
    sink: BreakoutSink,
    operation: OperationId,
    reporter: Reporter,
    threads: usize,
    chunk_size: usize,
    strict: bool,
}

struct Chunk {
    index: i64,
    fingerprint: String,
    cases: Vec<Case>,
    /// The first serial id of each table its rows take.
    first_ids: Vec<i64>,
}

struct Outcome {
    tables: Vec<String>,
    cases: u64,
    written: u64,
    unchanged: u64,
}

/// Fingerprints of the chunks already in the tables, by chunk number.
type Known = HashMap<i64, String>;

/// SHA-256 of the cases as read (every value, issue and position).
fn fingerprint(cases: &[Case]) -> String {
    let mut hasher = Sha256::new();
    for case in cases {
        hasher.update(format!("{case:?}").as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What a source read: its cases, in how many chunks, with what the jobs table and the
/// removal of the cases the data no longer has need.
#[derive(Debug, Clone, Default)]
struct Read {
    cases: u64,
    chunks: i64,
    ids: HashSet<String>,
    first: Option<String>,
    last: Option<String>,
    revisions: Option<(i64, i64)>,
}

type Source =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Read, ExecutionError>> + Send>>;

/// The data file of a run, opened; an uploaded one is a copy, removed after the run.
struct Input {
    file: RegularFile,
    _copy: Option<tempfile::TempPath>,
}

impl Job {
    /// Opens the registered data: a server file only if it is still the regular file it
    /// was at registration, an upload by copying it out of the database.
    async fn open_input(&self, registered: &BreakoutDictionary) -> Result<Input, ExecutionError> {
        let upload = match &registered.data {
            BreakoutData::ServerFile(path) => {
                let file = input::reopen_registered(path)
                    .await
                    .map_err(|e| unreadable(path, e))?;
                return Ok(Input { file, _copy: None });
            }
            BreakoutData::Upload(upload) => *upload,
        };
        let copy_failed = |e: std::io::Error| {
            ExecutionError::new(
                "DATA_NOT_READABLE",
                format!("cannot copy the uploaded data into a temporary file: {e}"),
                true,
            )
        };
        let (mut out, copy) = input::temporary_file().map_err(copy_failed)?;
        match self.sink.copy_upload(upload, &mut out).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(unreadable(
                    "(uploaded)",
                    "the uploaded data is gone: the dictionary was registered again or deleted",
                ))
            }
            Err(UploadError::Store(e)) => return Err(db_error(e)),
            Err(UploadError::File(e)) => return Err(copy_failed(e)),
        }
        drop(out);
        let file = input::open_regular(copy.to_path_buf())
            .await
            .map_err(|e| unreadable("(uploaded)", e))?;
        Ok(Input {
            file,
            _copy: Some(copy),
        })
    }

    async fn run(
        &self,
        registered: &BreakoutDictionary,
        replace: bool,
        resuming: bool,
        known: Known,
    ) -> Result<Outcome, ExecutionError> {
        let dictionary = Arc::new(
            Dictionary::parse(&registered.dictionary)
                .map_err(|e| ExecutionError::new("INVALID_DICTIONARY", e.to_string(), false))?,
        );
        let layout = Arc::new(
            Layout::new(&dictionary)
                .map_err(|e| ExecutionError::new("INVALID_DICTIONARY", e.to_string(), false))?,
        );
        let foreign = self
            .sink
            .foreign_tables(&registered.name, &layout)
            .await
            .map_err(db_error)?;
        if !foreign.is_empty() {
            let mut error = ExecutionError::new(
                "TABLES_ALREADY_EXIST",
                foreign.describe(&registered.name),
                false,
            );
            error.error.details = Some(json!({"existing_tables": foreign.named}));
            return Err(error);
        }
        // Before any table is created: data that cannot be read leaves nothing behind.
        let input = self.open_input(registered).await?;
        let new = self
            .sink
            .create_tables(
                &registered.name,
                &layout,
                replace,
                self.operation,
                crate::clock::now(),
            )
            .await
            .map_err(db_error)?;
        // Rows already there are rewritten through the cascade of their foreign keys:
        // tables only this job has written into get theirs at the end.
        if !new && !resuming {
            self.sink
                .ensure_foreign_keys(&layout)
                .await
                .map_err(db_error)?;
        }
        // Without them (a load into new tables, or its next attempt), the tables hold no
        // row of a chunk still to write.
        let rewrite = !new
            && self
                .sink
                .has_foreign_keys(&layout)
                .await
                .map_err(db_error)?;

        let mut next_ids = self.sink.next_ids(&layout).await.map_err(db_error)?;
        let jobs = layout
            .tables
            .iter()
            .position(|t| t.name == layout.jobs_table().name)
            .unwrap_or_default();
        let job_row = next_ids[jobs];
        next_ids[jobs] += 1;
        let source_modified = match &registered.data {
            BreakoutData::ServerFile(_) => input
                .file
                .file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
            BreakoutData::Upload(_) => Some(registered.created_at.timestamp()),
        };
        let options = ReadOptions {
            strict: self.strict,
        };
        let (sender, receiver) = mpsc::channel::<Chunk>(self.threads * 2);
        let processed = Arc::new(AtomicU64::new(0));
        let unchanged = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let skip = Skip {
            known,
            processed: processed.clone(),
            unchanged: unchanged.clone(),
        };
        let shown = match &registered.data {
            BreakoutData::ServerFile(path) => path.as_str(),
            BreakoutData::Upload(_) => "(uploaded)",
        };
        // Text data have no case ids: each case gets one from its key.
        let guids = (registered.data_kind == DataKind::Dat).then(|| registered.name.clone());
        let chunker = Chunker::new(self.chunk_size, skip, layout.clone(), next_ids, guids);
        let (total, cspro_version, source) = match registered.data_kind {
            DataKind::Dat => {
                // Counted in a first pass for the progress reports, then read again.
                let (counted, file) = {
                    let (dictionary, file) = (dictionary.clone(), input.file.file);
                    tokio::task::spawn_blocking(move || {
                        let reader = std::io::BufReader::with_capacity(READ_BUFFER, &file);
                        let counted =
                            DatReader::from_reader(&dictionary, reader, ReadOptions::default())
                                .take_while(Result::is_ok)
                                .count() as u64;
                        std::io::Seek::rewind(&mut &file).map(|_| (counted, file))
                    })
                    .await
                    .map_err(|_| internal())?
                    .map_err(|e| unreadable(shown, e))?
                };
                let source = dat_source(dictionary.clone(), file, options, chunker, sender);
                (counted, dictionary.version.clone(), source)
            }
            DataKind::Csdb => {
                let mut file = CsdbFile::open_for_cases(&input.file.path)
                    .await
                    .map_err(|e| unreadable(shown, e))?;
                // SQLite opened the path itself: it must still be the file checked.
                input
                    .file
                    .still_in_place()
                    .await
                    .map_err(|e| unreadable(shown, e))?;
                let counted = file.count_cases().await.map_err(|e| unreadable(shown, e))?;
                let version = file.cspro_version().to_owned();
                let source = csdb_source(dictionary.clone(), file, options, chunker, sender);
                (counted, version, source)
            }
        };

        self.sink
            .start_run(
                &layout,
                RunStart {
                    job: job_row,
                    cases_to_process: total,
                    cspro_version: &cspro_version,
                    dictionary_text: &registered.dictionary,
                    source_modified,
                },
            )
            .await
            .map_err(db_error)?;
        let receiver = Arc::new(Mutex::new(receiver));
        let mut source = tokio::spawn(source);
        let mut read = None;
        let mut tasks = JoinSet::new();
        for _ in 0..self.threads {
            let (sink, layout, receiver, processed, written) = (
                self.sink.clone(),
                layout.clone(),
                receiver.clone(),
                processed.clone(),
                written.clone(),
            );
            let (operation, dictionary) = (self.operation, registered.name.clone());
            tasks.spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some(chunk) = next else {
                        return Ok(());
                    };
                    if chunk.cases.is_empty() {
                        continue;
                    }
                    let issues = chunk_issues(&chunk.cases).to_string();
                    let _writing = WRITERS.acquire().await.map_err(|_| internal())?;
                    sink.write_chunk(
                        &layout,
                        ChunkKey {
                            dictionary: &dictionary,
                            operation,
                            chunk: chunk.index,
                            fingerprint: &chunk.fingerprint,
                        },
                        &chunk.cases,
                        &chunk.first_ids,
                        &issues,
                        rewrite,
                    )
                    .await
                    .map_err(db_error)?;
                    processed.fetch_add(chunk.cases.len() as u64, Ordering::Relaxed);
                    written.fetch_add(chunk.cases.len() as u64, Ordering::Relaxed);
                }
            });
        }

        let report = |processed: u64| ProgressReport {
            percentage: Some(if total == 0 {
                100.0
            } else {
                ((processed as f64 / total as f64) * 1000.0).round() / 10.0
            }),
            current_phase: Some(registered.name.clone()),
            processed_records: Some(processed),
            total_records: Some(total),
            ..Default::default()
        };
        let mut tick = tokio::time::interval(REPORT_EVERY);
        let stop = |tasks: &mut JoinSet<_>, source: &tokio::task::JoinHandle<_>| {
            tasks.abort_all();
            source.abort();
        };
        loop {
            tokio::select! {
                done = &mut source, if read.is_none() => match done {
                    Ok(Ok(done)) => read = Some(done),
                    Ok(Err(e)) => {
                        stop(&mut tasks, &source);
                        return Err(e);
                    }
                    Err(_) => {
                        stop(&mut tasks, &source);
                        return Err(internal());
                    }
                },
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        stop(&mut tasks, &source);
                        return Err(e);
                    }
                    Some(Err(_)) => {
                        stop(&mut tasks, &source);
                        return Err(internal());
                    }
                },
                _ = tick.tick() => {
                    if self.reporter.report(report(processed.load(Ordering::Relaxed))).await.is_err() {
                        stop(&mut tasks, &source);
                        return Err(ExecutionError::stopped());
                    }
                }
                _ = self.reporter.stopped() => {
                    stop(&mut tasks, &source);
                    return Err(ExecutionError::stopped());
                }
            }
        }
        // Every writer is done, so the source has finished too.
        let read = match read {
            Some(read) => read,
            None => source.await.map_err(|_| internal())??,
        };
        self.sink
            .ensure_foreign_keys(&layout)
            .await
            .map_err(db_error)?;
        let stored = self.sink.stored_cases(&layout).await.map_err(db_error)?;
        let gone = gone_cases(stored, &read.ids);
        self.sink
            .finish(
                &layout,
                &registered.name,
                &gone,
                read.chunks,
                RunEnd {
                    job: job_row,
                    start_caseid: read.first.as_deref(),
                    start_revision: read.revisions.map(|r| r.0),
                    end_caseid: read.last.as_deref(),
                    end_revision: read.revisions.map(|r| r.1),
                    cases_processed: read.cases,
                },
            )
            .await
            .map_err(db_error)?;
        self.reporter
            .report(report(processed.load(Ordering::Relaxed)))
            .await
            .map_err(|_| ExecutionError::stopped())?;
        Ok(Outcome {
            tables: layout.table_names().map(str::to_owned).collect(),
            cases: read.cases,
            written: written.load(Ordering::Relaxed),
            unchanged: unchanged.load(Ordering::Relaxed),
        })
    }
}

/// Which chunks need no writing: those whose fingerprint is already in the tables.
struct Skip {
    known: Known,
    processed: Arc<AtomicU64>,
    unchanged: Arc<AtomicU64>,
}

impl Skip {
    /// The chunk to write, or `None` when the tables already hold it.
    fn check(&self, index: i64, cases: Vec<Case>) -> Option<Chunk> {
        let fingerprint = fingerprint(&cases);
        if self.known.get(&index) == Some(&fingerprint) {
            let n = cases.len() as u64;
            self.processed.fetch_add(n, Ordering::Relaxed);
            self.unchanged.fetch_add(n, Ordering::Relaxed);
            return None;
        }
        Some(Chunk {
            index,
            fingerprint,
            cases,
            first_ids: Vec::new(),
        })
    }
}

/// Cases gathered into numbered chunks: `chunk_size` cases, or fewer once they weigh
/// [`MAX_CHUNK_WEIGHT`]. The cut depends on the data alone, so a run over the same data
/// makes the same chunks, and their fingerprints match. Reading is sequential, so this is
/// where each chunk to write gets its serial ids, and a text file's cases their GUIDs.
struct Chunker {
    size: usize,
    skip: Skip,
    layout: Arc<Layout>,
    next_ids: Vec<i64>,
    /// For text data, the dictionary name the GUIDs are made from, and how many times
    /// each key came so far.
    guids: Option<(String, HashMap<String, u32>)>,
    cases: Vec<Case>,
    weight: usize,
    read: Read,
}

impl Chunker {
    fn new(
        size: usize,
        skip: Skip,
        layout: Arc<Layout>,
        next_ids: Vec<i64>,
        guids: Option<String>,
    ) -> Self {
        Chunker {
            size,
            skip,
            layout,
            next_ids,
            guids: guids.map(|name| (name, HashMap::new())),
            cases: Vec::new(),
            weight: 0,
            read: Read::default(),
        }
    }

    /// Adds a case; gives the chunk it closed, if it needs writing.
    fn push(&mut self, mut case: Case) -> Option<Chunk> {
        if let Some((dictionary, seen)) = &mut self.guids {
            let repeat = seen.entry(case.key.clone()).or_default();
            *repeat += 1;
            case.uuid = Some(case_guid(dictionary, &case.key, *repeat));
        }
        let id = case.uuid.clone().unwrap_or_default();
        self.read.first.get_or_insert_with(|| id.clone());
        self.read.last = Some(id.clone());
        self.read.ids.insert(id);
        if let Some(revision) = case.meta.last_modified_revision {
            let (low, high) = self.read.revisions.unwrap_or((revision, revision));
            self.read.revisions = Some((low.min(revision), high.max(revision)));
        }
        self.weight += case.weight();
        self.cases.push(case);
        if self.cases.len() < self.size && self.weight < MAX_CHUNK_WEIGHT {
            return None;
        }
        self.close()
    }

    fn close(&mut self) -> Option<Chunk> {
        if self.cases.is_empty() {
            return None;
        }
        let cases = std::mem::take(&mut self.cases);
        self.weight = 0;
        let index = self.read.chunks;
        self.read.chunks += 1;
        self.read.cases += cases.len() as u64;
        let mut chunk = self.skip.check(index, cases)?;
        chunk.first_ids = self.next_ids.clone();
        for (next, taken) in self
            .next_ids
            .iter_mut()
            .zip(self.layout.ids_taken(&chunk.cases))
        {
            *next += taken;
        }
        Some(chunk)
    }

    fn finish(mut self, sender: impl FnOnce(Chunk)) -> Read {
        if let Some(chunk) = self.close() {
            sender(chunk);
        }
        self.read
    }
}

fn invalid_data(e: impl std::fmt::Display) -> ExecutionError {
    ExecutionError::new("INVALID_DATA", e.to_string(), false)
}

/// Reads a `.dat` file on a blocking thread, as it comes, and sends the chunks to write.
fn dat_source(
    dictionary: Arc<Dictionary>,
    file: std::fs::File,
    options: ReadOptions,
    mut chunker: Chunker,
    sender: mpsc::Sender<Chunk>,
) -> Source {
    let reading = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::with_capacity(READ_BUFFER, file);
        for case in DatReader::from_reader(&dictionary, reader, options) {
            if let Some(chunk) = chunker.push(case.map_err(invalid_data)?) {
                if sender.blocking_send(chunk).is_err() {
                    return Ok(chunker.read);
                }
            }
        }
        Ok(chunker.finish(|chunk| {
            let _ = sender.blocking_send(chunk);
        }))
    });
    Box::pin(async move { reading.await.map_err(|_| internal())? })
}

/// Reads a `.csdb` file in chunks and sends those to write.
fn csdb_source(
    dictionary: Arc<Dictionary>,
    file: CsdbFile,
    options: ReadOptions,
    mut chunker: Chunker,
    sender: mpsc::Sender<Chunk>,
) -> Source {
    Box::pin(async move {
        let mut reader = CsdbReader::new(file, &dictionary, options);
        let size = chunker.size;
        'reading: loop {
            let cases = reader.next_chunk(size).await.map_err(invalid_data)?;
            if cases.is_empty() {
                break;
            }
            for case in cases {
                if let Some(chunk) = chunker.push(case) {
                    if sender.send(chunk).await.is_err() {
                        break 'reading;
                    }
                }
            }
        }
        let mut last = None;
        let read = chunker.finish(|chunk| last = Some(chunk));
        if let Some(chunk) = last {
            let _ = sender.send(chunk).await;
        }
        let _ = reader.into_file().close().await;
        Ok(read)
    })
}

fn kind_name(kind: &IssueKind) -> &'static str {
    match kind {
        IssueKind::UnknownRecordType => "unknown_record_type",
        IssueKind::ShortLine => "short_line",
        IssueKind::NotNumeric { .. } => "not_numeric",
        IssueKind::TooManyOccurrences { .. } => "too_many_occurrences",
    }
}

/// The issues of a chunk's cases: counts by kind, and the first ones with their case.
fn chunk_issues(cases: &[Case]) -> Value {
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let mut first = Vec::new();
    let (mut count, mut cases_with_issues) = (0u64, 0u64);
    for case in cases {
        if !case.issues.is_empty() {
            cases_with_issues += 1;
        }
        for issue in &case.issues {
            count += 1;
            *by_kind.entry(kind_name(&issue.kind)).or_default() += 1;
            if first.len() < ISSUES_LISTED {
                first.push(json!({
                    "case_id": case.number,
                    "case_key": case.key,
                    "line": issue.line,
                    "kind": kind_name(&issue.kind),
                    "message": issue.to_string(),
                }));
            }
        }
    }
    json!({"count": count, "cases": cases_with_issues, "by_kind": by_kind, "first": first})
}

/// The issues of every committed chunk, in chunk order.
fn merge_issues<'a>(chunks: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut first = Vec::new();
    let (mut count, mut cases) = (0u64, 0u64);
    for (dictionary, text) in chunks {
        let Ok(chunk) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        count += chunk["count"].as_u64().unwrap_or(0);
        cases += chunk["cases"].as_u64().unwrap_or(0);
        if let Some(kinds) = chunk["by_kind"].as_object() {
            for (k, v) in kinds {
                *by_kind.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
            }
        }
        for issue in chunk["first"].as_array().into_iter().flatten() {
            if first.len() < ISSUES_LISTED {
                let mut issue = issue.clone();
                issue["dictionary"] = json!(dictionary);
                first.push(issue);
            }
        }
    }
    json!({"count": count, "cases": cases, "by_kind": by_kind, "first": first})
}

fn db_error(e: StoreError) -> ExecutionError {
    if e.is_unavailable() {
        // `run` names the database in the details.
        ExecutionError::new(
            "DB_CONNECTION_ERROR",
            format!("cannot reach the database: {e}"),
            true,
        )
    } else {
        ExecutionError::new("DB_ERROR", e.to_string(), false)
    }
}

fn unreadable(path: &str, e: impl std::fmt::Display) -> ExecutionError {
    let mut error = ExecutionError::new(
        "DATA_NOT_READABLE",
        format!("cannot read the data file: {e}"),
        false,
    );
    error.error.details = Some(json!(format!("data file of the dictionary: {path}")));
    error
}

fn internal() -> ExecutionError {
    ExecutionError::new(
        "INTERNAL_ERROR",
        "a breakout task stopped unexpectedly",
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        let field = |v: Value| params(&v).err().map(|e| e.field);
        assert_eq!(field(json!({"dictionaries": ["A"]})), None);
        assert_eq!(
            field(json!({"dictionaries": []})),
            Some("parameters.dictionaries".into())
        );
        assert_eq!(
            field(json!({"dictionaries": ["A"], "threads": 11})),
            Some("parameters.threads".into())
        );
        assert_eq!(
            field(json!({"dictionaries": ["A"], "threads": 0})),
            Some("parameters.threads".into())
        );
        assert_eq!(
            field(json!({"dictionaries": ["A"], "chunk_size": 0})),
            Some("parameters.chunk_size".into())
        );
    }
}
