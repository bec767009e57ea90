//! Cases read from a CSPro SQLite data file (`.csdb`), into the same [`Case`]s the text
//! reader produces, so a breakout does not care which file a project registered.
//!
//! A `.csdb` comes in two shapes, told apart by `meta.schema_version`:
//! - version 3 and later (CSPro 7.4+) are relational: a `level-1` table per case, one
//!   `level-N` table per deeper level, one table per record whose rows point at their level
//!   node, numbers stored as SQLite numbers (floating point when they have decimals) and
//!   CSPro's special values as the huge doubles CSPro uses for them (1e50 missing, 1e51 not
//!   applicable, 1e52 default, 1e55 refused);
//! - earlier versions keep each case as the text of its `.dat` lines in
//!   `cases.questionnaire`, which goes through the text reader's line parser.
//!
//! Cases are read in `file_order` (the order CSPro shows them), deleted ones too, flagged
//! (CSPro keeps them as tombstones for synchronisation, and CSWeb's breakout keeps them
//! with `deleted = 1`), with their label, revision, partial-save state and notes; reading
//! goes by chunks of
//! cases with a handful of queries per chunk, so a large file neither fills memory nor
//! costs one query per case. The file is opened read-only.

use std::collections::HashMap;
use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow, SqliteValueRef};
use sqlx::{Connection, Row, TypeInfo, ValueRef};

use super::data::{
    case_from_lines, not_numeric, parse_field, Case, CaseMeta, DataError, Issue, IssueKind, Note,
    Number, ReadOptions, RecordRow, Special, Value, MAX_CASE_BYTES,
};
use super::dictionary::{Dictionary, Item, ItemKind};

#[derive(Debug, thiserror::Error)]
pub enum CsdbError {
    #[error("cannot open {path} as a CSPro data file: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("not a CSPro data file: {0}")]
    NotCspro(String),
    #[error("reading {what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the dictionary in the file is {size} bytes, over the limit of {limit} bytes")]
    DictionaryTooLarge { size: u64, limit: usize },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// The first relational schema version.
const RELATIONAL_SCHEMA: i64 = 3;
/// Bound parameters per `IN (…)` list, well under SQLite's limit.
const IN_BATCH: usize = 500;

/// An open `.csdb` file.
pub struct CsdbFile {
    conn: SqliteConnection,
    schema_version: i64,
    dictionary_text: String,
    cspro_version: String,
    /// Which of [`CASE_META`] the `cases` table has (older files lack some).
    meta_columns: Vec<bool>,
    has_notes: bool,
}

/// The columns of `cases` a breakout keeps beside the data, in `CaseMeta` order.
const CASE_META: [&str; 10] = [
    "label",
    "deleted",
    "verified",
    "last_modified_revision",
    "partial_save_mode",
    "partial_save_field_name",
    "partial_save_level_key",
    "partial_save_record_occurrence",
    "partial_save_item_occurrence",
    "partial_save_subitem_occurrence",
];

impl CsdbFile {
    /// Opens a file whose dictionary text is at most `max_dictionary` bytes.
    pub async fn open(
        path: impl AsRef<Path>,
        max_dictionary: usize,
    ) -> Result<CsdbFile, CsdbError> {
        Self::open_with(path.as_ref(), Some(max_dictionary)).await
    }

    /// Opens a file to read its cases, leaving its dictionary unread (a breakout has the
    /// one registered with the data): [`CsdbFile::dictionary_text`] is then empty.
    pub async fn open_for_cases(path: impl AsRef<Path>) -> Result<CsdbFile, CsdbError> {
        Self::open_with(path.as_ref(), None).await
    }

    async fn open_with(path: &Path, max_dictionary: Option<usize>) -> Result<CsdbFile, CsdbError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false);
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(|source| CsdbError::Open {
                path: path.display().to_string(),
                source,
            })?;
        // The size first: a dictionary is read only once it is known to be small.
        let meta = sqlx::query(
            "SELECT schema_version, CASE WHEN octet_length(dictionary) <= ? THEN dictionary END,
               octet_length(dictionary), CAST(cspro_version AS TEXT) FROM meta LIMIT 1",
        )
        .bind(max_dictionary.unwrap_or(0) as i64)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| CsdbError::NotCspro(format!("no readable meta table ({e})")))?
        .ok_or_else(|| CsdbError::NotCspro("the meta table is empty".into()))?;
        let schema_version: i64 = meta
            .try_get(0)
            .map_err(|e| CsdbError::NotCspro(format!("meta.schema_version: {e}")))?;
        let size: Option<i64> = meta
            .try_get(2)
            .map_err(|e| CsdbError::NotCspro(format!("meta.dictionary: {e}")))?;
        let size = size.ok_or_else(|| CsdbError::NotCspro("meta.dictionary is empty".into()))?;
        let cspro_version: Option<String> = meta.try_get(3).unwrap_or(None);
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('cases')")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| CsdbError::NotCspro(format!("no readable cases table ({e})")))?;
        let meta_columns = CASE_META
            .iter()
            .map(|c| columns.iter().any(|n| n == c))
            .collect();
        let has_notes: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'notes'",
        )
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| sql_error("sqlite_master", e))?;
        let mut file = CsdbFile {
            conn,
            schema_version,
            dictionary_text: String::new(),
            cspro_version: cspro_version.unwrap_or_default(),
            meta_columns,
            has_notes: has_notes.is_some(),
        };
        let Some(max_dictionary) = max_dictionary else {
            return Ok(file);
        };
        if size as u64 > max_dictionary as u64 {
            return Err(CsdbError::DictionaryTooLarge {
                size: size as u64,
                limit: max_dictionary,
            });
        }
        file.dictionary_text = text_column(&meta, 1)
            .map_err(|e| CsdbError::NotCspro(format!("meta.dictionary: {e}")))?;
        Ok(file)
    }

    /// The CSPro version that wrote the file (`meta.cspro_version`).
    pub fn cspro_version(&self) -> &str {
        &self.cspro_version
    }

    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    pub fn is_relational(&self) -> bool {
        self.schema_version >= RELATIONAL_SCHEMA
    }

    /// The dictionary CSPro stored in the file (text or JSON form), for
    /// [`Dictionary::parse`] when no `.dcf` comes with the data.
    pub fn dictionary_text(&self) -> &str {
        &self.dictionary_text
    }

    /// Every case, deleted ones included (they are broken out as such).
    pub async fn count_cases(&mut self) -> Result<u64, CsdbError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases")
            .fetch_one(&mut self.conn)
            .await
            .map_err(|source| sql_error("cases", source))?;
        Ok(count as u64)
    }

    pub async fn close(self) -> Result<(), CsdbError> {
        self.conn
            .close()
            .await
            .map_err(|source| sql_error("closing the file", source))
    }
}

fn sql_error(what: &str, source: sqlx::Error) -> CsdbError {
    CsdbError::Sql {
        what: what.to_string(),
        source,
    }
}

/// Reads a file's cases chunk by chunk, numbering them from 1 in `file_order`.
pub struct CsdbReader<'d> {
    file: CsdbFile,
    dictionary: &'d Dictionary,
    options: ReadOptions,
    queries: Option<Queries>,
    last_file_order: Option<f64>,
    next_number: u64,
}

impl<'d> CsdbReader<'d> {
    pub fn new(file: CsdbFile, dictionary: &'d Dictionary, options: ReadOptions) -> Self {
        let queries = file.is_relational().then(|| Queries::new(dictionary));
        CsdbReader {
            file,
            dictionary,
            options,
            queries,
            last_file_order: None,
            next_number: 1,
        }
    }

    pub fn file(&mut self) -> &mut CsdbFile {
        &mut self.file
    }

    pub fn into_file(self) -> CsdbFile {
        self.file
    }

    /// The next cases, at most `max_cases` of them; empty once every case has been read.
    pub async fn next_chunk(&mut self, max_cases: usize) -> Result<Vec<Case>, CsdbError> {
        let relational = self.queries.is_some();
        // A case's text is read only once it is known to fit the limit of a case.
        let meta: Vec<String> = CASE_META
            .iter()
            .zip(&self.file.meta_columns)
            .map(|(c, there)| {
                if *there {
                    c.to_string()
                } else {
                    format!("NULL AS {c}")
                }
            })
            .collect();
        let sql = format!(
            "SELECT id, key, file_order, {}{} FROM cases \
             WHERE file_order > ? ORDER BY file_order LIMIT ?",
            meta.join(", "),
            if relational {
                ""
            } else {
                ", CASE WHEN octet_length(questionnaire) <= ? THEN questionnaire END, \
                 octet_length(questionnaire)"
            }
        );
        let mut query = sqlx::query(&sql);
        if !relational {
            query = query.bind(MAX_CASE_BYTES as i64);
        }
        let rows = query
            .bind(self.last_file_order.unwrap_or(f64::NEG_INFINITY))
            .bind(max_cases.max(1) as i64)
            .fetch_all(&mut self.file.conn)
            .await
            .map_err(|source| sql_error("cases", source))?;
        let mut heads = Vec::with_capacity(rows.len());
        let mut metas = Vec::with_capacity(rows.len());
        for row in &rows {
            let uuid: String = row.try_get(0).map_err(|e| sql_error("cases.id", e))?;
            let key: String = row.try_get(1).map_err(|e| sql_error("cases.key", e))?;
            let file_order: f64 = row
                .try_get(2)
                .map_err(|e| sql_error("cases.file_order", e))?;
            self.last_file_order = Some(file_order);
            heads.push((uuid, key));
            metas.push(case_meta(row).map_err(|e| sql_error("cases", e))?);
        }

        let mut cases = Vec::with_capacity(heads.len());
        match &self.queries {
            None => {
                for ((uuid, key), row) in heads.into_iter().zip(&rows) {
                    let size: Option<i64> = row
                        .try_get(QUESTIONNAIRE + 1)
                        .map_err(|e| sql_error("cases.questionnaire", e))?;
                    if size.unwrap_or(0) as u64 > MAX_CASE_BYTES as u64 {
                        return Err(DataError::CaseTooLarge {
                            case_key: key,
                            limit: MAX_CASE_BYTES,
                        }
                        .into());
                    }
                    let text = text_column(row, QUESTIONNAIRE)
                        .map_err(|e| sql_error("cases.questionnaire", e))?;
                    cases.push(case_from_lines(
                        self.dictionary,
                        &text,
                        self.next_number,
                        key,
                        Some(uuid),
                    ));
                    self.next_number += 1;
                }
            }
            Some(queries) => {
                let mut chunk = queries
                    .read_chunk(&mut self.file.conn, self.dictionary, &heads)
                    .await?;
                for (uuid, key) in heads {
                    cases.push(chunk.assemble(self.dictionary, self.next_number, uuid, key));
                    self.next_number += 1;
                }
            }
        }

        for (case, meta) in cases.iter_mut().zip(metas) {
            case.meta = meta;
        }
        if self.file.has_notes && !cases.is_empty() {
            self.read_notes(&mut cases).await?;
        }
        if self.options.strict {
            if let Some(case) = cases.iter().find(|c| !c.issues.is_empty()) {
                return Err(DataError::Strict {
                    case_key: case.key.clone(),
                    issue: case.issues[0].clone(),
                }
                .into());
            }
        }
        Ok(cases)
    }
}

impl CsdbReader<'_> {
    /// The notes of these cases, in the order they were written.
    async fn read_notes(&mut self, cases: &mut [Case]) -> Result<(), CsdbError> {
        let mut by_case: HashMap<String, usize> = HashMap::new();
        for (i, case) in cases.iter().enumerate() {
            if let Some(uuid) = &case.uuid {
                by_case.insert(uuid.clone(), i);
            }
        }
        let ids: Vec<String> = by_case.keys().cloned().collect();
        for batch in ids.chunks(IN_BATCH) {
            let sql = format!(
                "SELECT case_id, field_name, level_key, record_occurrence, item_occurrence, \
                 subitem_occurrence, content, operator_id, modified_time FROM notes \
                 WHERE case_id IN ({}) ORDER BY rowid",
                vec!["?"; batch.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in batch {
                query = query.bind(id);
            }
            let rows = query
                .fetch_all(&mut self.file.conn)
                .await
                .map_err(|e| sql_error("notes", e))?;
            for row in rows {
                let note = |e| sql_error("notes", e);
                let case: String = row.try_get(0).map_err(note)?;
                let Some(&i) = by_case.get(&case) else {
                    continue;
                };
                cases[i].notes.push(Note {
                    field_name: row.try_get(1).map_err(note)?,
                    level_key: row.try_get(2).map_err(note)?,
                    record_occurrence: row.try_get(3).map_err(note)?,
                    item_occurrence: row.try_get(4).map_err(note)?,
                    subitem_occurrence: row.try_get(5).map_err(note)?,
                    content: text_column(&row, 6).map_err(note)?,
                    operator_id: row.try_get(7).map_err(note)?,
                    modified_time: row.try_get(8).map_err(note)?,
                });
            }
        }
        Ok(())
    }
}

/// Where `questionnaire` is in a row of `next_chunk`'s query: after the id, key, file
/// order and [`CASE_META`].
const QUESTIONNAIRE: usize = 3 + CASE_META.len();

fn case_meta(row: &SqliteRow) -> Result<CaseMeta, sqlx::Error> {
    let at = |i: usize| 3 + i;
    let flag = |i: usize| -> Result<bool, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(at(i))?.unwrap_or(0) != 0)
    };
    let label: Option<String> = row.try_get(at(0))?;
    Ok(CaseMeta {
        label: label.filter(|l| !l.trim().is_empty()),
        deleted: flag(1)?,
        verified: flag(2)?,
        last_modified_revision: row.try_get(at(3))?,
        partial_save_mode: row.try_get(at(4))?,
        partial_save_field_name: row.try_get(at(5))?,
        partial_save_level_key: row.try_get(at(6))?,
        partial_save_record_occurrence: row.try_get(at(7))?,
        partial_save_item_occurrence: row.try_get(at(8))?,
        partial_save_subitem_occurrence: row.try_get(at(9))?,
    })
}

fn text_column(row: &SqliteRow, index: usize) -> Result<String, sqlx::Error> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(String::new());
    }
    match raw.type_info().name() {
        "BLOB" => {
            let bytes: Vec<u8> = row.try_get(index)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => row.try_get(index),
    }
}

// ---------------------------------------------------------------------------------------
// Relational files

/// The SQL for one dictionary, built once per reader.
struct Queries {
    /// `level-1` rows of some cases: pk, case id, id items.
    first_level: String,
    /// For each deeper level: pk, parent pk, id items; `IN` on the parent pk.
    levels: Vec<String>,
    /// For each record (same indices as `Dictionary::records`), `None` when it has no
    /// field: pk of its level node, `occ` when it repeats, its fields.
    records: Vec<Option<RecordQuery>>,
}

struct RecordQuery {
    select: String,
    order: String,
    has_occ: bool,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn column_name(item: &Item, occurrence: Option<u32>) -> String {
    let name = item.name.to_ascii_lowercase();
    match occurrence {
        Some(n) => quote(&format!("{name}({n})")),
        None => quote(&name),
    }
}

impl Queries {
    fn new(dictionary: &Dictionary) -> Queries {
        let id_columns = |level: usize| -> String {
            dictionary.levels[level]
                .id_items
                .iter()
                .map(|item| format!(", {}", column_name(item, None)))
                .collect()
        };
        let first_level = format!(
            "SELECT \"level-1-id\", \"case-id\"{} FROM \"level-1\" WHERE \"case-id\" IN",
            id_columns(0)
        );
        let levels = (1..dictionary.levels.len())
            .map(|level| {
                format!(
                    "SELECT \"level-{n}-id\", \"level-{parent}-id\"{ids} FROM \"level-{n}\" \
                     WHERE \"level-{parent}-id\" IN",
                    n = level + 1,
                    parent = level,
                    ids = id_columns(level)
                )
            })
            .collect();
        let records = dictionary
            .records
            .iter()
            .map(|record| {
                if record.fields().is_empty() {
                    // CSPro keeps only a count for records without items: nothing to read.
                    return None;
                }
                let has_occ = record.max_occurrences > 1;
                let mut columns = String::new();
                for field in record.fields() {
                    columns.push_str(", ");
                    columns.push_str(&column_name(record.item(field), field.occurrence));
                }
                let table = quote(&record.name.to_ascii_lowercase());
                let level_pk = format!("\"level-{}-id\"", record.level + 1);
                let pk = quote(&format!("{}-id", record.name.to_ascii_lowercase()));
                Some(RecordQuery {
                    select: format!(
                        "SELECT {level_pk}{occ}{columns} FROM {table} WHERE {level_pk} IN",
                        occ = if has_occ { ", occ" } else { "" },
                    ),
                    // The record's own key orders the rows as CSPro wrote them.
                    order: format!("ORDER BY {pk}"),
                    has_occ,
                })
            })
            .collect();
        Queries {
            first_level,
            levels,
            records,
        }
    }

    async fn read_chunk(
        &self,
        conn: &mut SqliteConnection,
        dictionary: &Dictionary,
        heads: &[(String, String)],
    ) -> Result<Chunk, CsdbError> {
        let mut chunk = Chunk::default();
        let uuids: Vec<String> = heads.iter().map(|(uuid, _)| uuid.clone()).collect();

        let id_items = &dictionary.levels[0].id_items;
        let rows = fetch_in(conn, &self.first_level, "", &uuids, "level-1").await?;
        let mut level_pks = Vec::with_capacity(rows.len());
        for row in rows {
            let pk: i64 = row.try_get(0).map_err(|e| sql_error("level-1", e))?;
            let uuid: String = row.try_get(1).map_err(|e| sql_error("level-1", e))?;
            let mut issues = Vec::new();
            let ids = read_values(&row, 2, id_items.iter().map(|i| (i, None)), &mut issues)?;
            level_pks.push(pk);
            chunk.first_level.insert(uuid, (pk, ids, issues));
        }
        let mut all_pks = vec![level_pks];

        for (index, sql_text) in self.levels.iter().enumerate() {
            let level = index + 1;
            let what = format!("level-{}", level + 1);
            let id_items = &dictionary.levels[level].id_items;
            let rows = fetch_in(conn, sql_text, "ORDER BY 1", &all_pks[index], &what).await?;
            let mut pks = Vec::with_capacity(rows.len());
            for row in rows {
                let pk: i64 = row.try_get(0).map_err(|e| sql_error(&what, e))?;
                let parent: i64 = row.try_get(1).map_err(|e| sql_error(&what, e))?;
                let mut issues = Vec::new();
                let ids = read_values(&row, 2, id_items.iter().map(|i| (i, None)), &mut issues)?;
                pks.push(pk);
                chunk
                    .children
                    .entry((level, parent))
                    .or_default()
                    .push(LevelNode { pk, ids, issues });
            }
            all_pks.push(pks);
        }

        for (record_index, query) in self.records.iter().enumerate() {
            let Some(query) = query else { continue };
            let record = &dictionary.records[record_index];
            let what = record.name.to_ascii_lowercase();
            let rows = fetch_in(
                conn,
                &query.select,
                &query.order,
                &all_pks[record.level],
                &what,
            )
            .await?;
            let first_value = if query.has_occ { 2 } else { 1 };
            for row in rows {
                let node: i64 = row.try_get(0).map_err(|e| sql_error(&what, e))?;
                let occ: Option<i64> = if query.has_occ {
                    row.try_get(1).map_err(|e| sql_error(&what, e))?
                } else {
                    None
                };
                let mut issues = Vec::new();
                let fields = record
                    .fields()
                    .iter()
                    .map(|f| (record.item(f), f.occurrence));
                let values = read_values(&row, first_value, fields, &mut issues)?;
                chunk
                    .records
                    .entry((record_index, node))
                    .or_default()
                    .push(StoredRecord {
                        occ: occ.map(|o| o.max(1) as u32),
                        values,
                        issues,
                    });
            }
        }
        Ok(chunk)
    }
}

/// Runs `select … IN (…) suffix` over `keys` in batches; rows of one key stay in one batch.
async fn fetch_in<K>(
    conn: &mut SqliteConnection,
    select: &str,
    suffix: &str,
    keys: &[K],
    what: &str,
) -> Result<Vec<SqliteRow>, CsdbError>
where
    K: Clone + Send + Sync,
    for<'q> K: sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    let mut rows = Vec::new();
    for batch in keys.chunks(IN_BATCH) {
        let placeholders = vec!["?"; batch.len()].join(",");
        let text = format!("{select} ({placeholders}) {suffix}");
        let mut query = sqlx::query(&text);
        for key in batch {
            query = query.bind(key.clone());
        }
        rows.extend(
            query
                .fetch_all(&mut *conn)
                .await
                .map_err(|source| sql_error(what, source))?,
        );
    }
    Ok(rows)
}

/// Column values from `first` on, one per `(item, occurrence)`.
fn read_values<'i>(
    row: &SqliteRow,
    first: usize,
    items: impl Iterator<Item = (&'i Item, Option<u32>)>,
    issues: &mut Vec<Issue>,
) -> Result<Vec<Value>, CsdbError> {
    let mut values = Vec::with_capacity(row.len().saturating_sub(first));
    for (offset, (item, occurrence)) in items.enumerate() {
        let raw = row
            .try_get_raw(first + offset)
            .map_err(|e| sql_error(&item.name.to_ascii_lowercase(), e))?;
        values.push(stored_value(
            row,
            first + offset,
            raw,
            item,
            occurrence,
            issues,
        )?);
    }
    Ok(values)
}

fn stored_value(
    row: &SqliteRow,
    index: usize,
    raw: SqliteValueRef<'_>,
    item: &Item,
    occurrence: Option<u32>,
    issues: &mut Vec<Issue>,
) -> Result<Value, CsdbError> {
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_string();
    let what = || item.name.to_ascii_lowercase();
    let value = match (item.kind, kind.as_str()) {
        (ItemKind::Numeric, "INTEGER") => {
            let n: i64 = row.try_get(index).map_err(|e| sql_error(&what(), e))?;
            Number::new(n, 0)
                .with_scale(item.decimals)
                .map(Value::Number)
        }
        (ItemKind::Numeric, "REAL") => {
            let n: f64 = row.try_get(index).map_err(|e| sql_error(&what(), e))?;
            stored_number(n, item.decimals)
        }
        (ItemKind::Numeric, _) => {
            let text = text_column(row, index).map_err(|e| sql_error(&what(), e))?;
            match parse_field(&text, item) {
                Ok(value) => Some(value),
                Err(()) => {
                    issues.push(not_numeric(item, occurrence, None, &text));
                    return Ok(Value::Null);
                }
            }
        }
        (_, "INTEGER") => {
            let n: i64 = row.try_get(index).map_err(|e| sql_error(&what(), e))?;
            Some(Value::Text(n.to_string()))
        }
        (_, "REAL") => {
            let n: f64 = row.try_get(index).map_err(|e| sql_error(&what(), e))?;
            Some(Value::Text(n.to_string()))
        }
        _ => {
            let text = text_column(row, index).map_err(|e| sql_error(&what(), e))?;
            Some(parse_field(&text, item).unwrap_or(Value::Null))
        }
    };
    Ok(value.unwrap_or_else(|| {
        issues.push(not_numeric(item, occurrence, None, "a number too large"));
        Value::Null
    }))
}

/// A number as CSPro stores it in SQLite, special values included.
fn stored_number(value: f64, decimals: u8) -> Option<Value> {
    if value >= 1e50 {
        // The special values are powers of ten; compare exponents, not doubles.
        return Some(match value.log10().round() as i64 {
            50 => Value::Special(Special::Missing),
            51 | 53 => Value::Null,
            55 => Value::Special(Special::Refused),
            _ => Value::Special(Special::Default),
        });
    }
    Number::from_f64(value, decimals).map(Value::Number)
}

#[derive(Default)]
struct Chunk {
    /// case uuid → (level-1 pk, id values, issues)
    first_level: HashMap<String, (i64, Vec<Value>, Vec<Issue>)>,
    /// (level, parent pk) → child nodes in pk order
    children: HashMap<(usize, i64), Vec<LevelNode>>,
    /// (record, level node pk) → rows in pk order
    records: HashMap<(usize, i64), Vec<StoredRecord>>,
}

struct LevelNode {
    pk: i64,
    ids: Vec<Value>,
    issues: Vec<Issue>,
}

struct StoredRecord {
    occ: Option<u32>,
    values: Vec<Value>,
    issues: Vec<Issue>,
}

impl Chunk {
    fn assemble(
        &mut self,
        dictionary: &Dictionary,
        number: u64,
        uuid: String,
        key: String,
    ) -> Case {
        let mut case = Case {
            number,
            key,
            uuid: None,
            first_line: None,
            ids: Vec::new(),
            records: Vec::new(),
            issues: Vec::new(),
            meta: Default::default(),
            notes: Vec::new(),
        };
        if let Some((pk, ids, issues)) = self.first_level.remove(&uuid) {
            case.ids = ids;
            case.issues = issues;
            let mut counters = vec![0u32; dictionary.levels.len()];
            self.emit(
                dictionary,
                &mut case,
                (0, pk),
                Vec::new(),
                Vec::new(),
                &mut counters,
            );
        } else {
            case.ids = vec![Value::Null; dictionary.levels[0].id_items.len()];
        }
        case.uuid = Some(uuid);
        case
    }

    /// Appends a level node's records, then its children's, in the order CSPro writes a
    /// case as text, numbering nodes per level as the text reader does.
    fn emit(
        &mut self,
        dictionary: &Dictionary,
        case: &mut Case,
        (level, pk): (usize, i64),
        level_ids: Vec<Value>,
        mut path: Vec<u32>,
        counters: &mut [u32],
    ) {
        counters[level] += 1;
        let node = counters[level];
        if level > 0 {
            path.push(node);
        }
        for &record_index in &dictionary.levels[level].records {
            let Some(rows) = self.records.remove(&(record_index, pk)) else {
                continue;
            };
            let record = &dictionary.records[record_index];
            for (position, stored) in rows.into_iter().enumerate() {
                let occurrence = stored.occ.unwrap_or(position as u32 + 1);
                case.issues.extend(stored.issues);
                if occurrence > record.max_occurrences {
                    case.issues.push(Issue {
                        line: None,
                        kind: IssueKind::TooManyOccurrences {
                            record: record.name.clone(),
                        },
                        detail: format!(
                            "occurrence {occurrence}, the dictionary allows {}",
                            record.max_occurrences
                        ),
                    });
                }
                case.records.push(RecordRow {
                    record: record_index,
                    line: None,
                    node,
                    level_ids: level_ids.clone(),
                    path: path.clone(),
                    occurrence,
                    values: stored.values,
                });
            }
        }
        if level + 1 < dictionary.levels.len() {
            for child in self.children.remove(&(level + 1, pk)).unwrap_or_default() {
                case.issues.extend(child.issues);
                let mut ids = level_ids.clone();
                ids.extend(child.ids);
                self.emit(
                    dictionary,
                    case,
                    (level + 1, child.pk),
                    ids,
                    path.clone(),
                    counters,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cspro::data::tests::{three_level_lines, value};

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cspro")
            .join(name)
    }

    const THREE_LEVEL_DCF: &str =
        include_str!("../../fixtures/cspro/cspro_ThreeLevelTest_HOUSEHOLD_DICT.dcf");

    fn n(mantissa: i64) -> Value {
        Value::number(mantissa, 0)
    }

    async fn read_all(path: &Path, dictionary: &Dictionary, chunk: usize) -> Vec<Case> {
        let file = CsdbFile::open(path, 1 << 20).await.unwrap();
        let mut reader = CsdbReader::new(file, dictionary, ReadOptions::default());
        let mut cases = Vec::new();
        loop {
            let next = reader.next_chunk(chunk).await.unwrap();
            if next.is_empty() {
                break;
            }
            cases.extend(next);
        }
        cases
    }

    #[tokio::test]
    async fn three_level_relational_file() {
        let path = fixture("cspro_ThreeLevelTest.csdb");
        let mut file = CsdbFile::open(&path, 1 << 20).await.unwrap();
        assert_eq!(file.schema_version(), 3);
        assert!(file.is_relational());
        assert_eq!(file.count_cases().await.unwrap(), 1);
        // A dictionary over the limit is not read.
        assert!(matches!(
            CsdbFile::open(&path, 100).await,
            Err(CsdbError::DictionaryTooLarge { limit: 100, .. })
        ));
        // The dictionary inside the file is the fixture's .dcf.
        let embedded = Dictionary::parse(file.dictionary_text()).unwrap();
        let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
        assert_eq!(embedded, dictionary);
        file.close().await.unwrap();

        let cases = read_all(&path, &dictionary, 10).await;
        assert_eq!(cases.len(), 1);
        let case = &cases[0];
        assert_eq!(case.number, 1);
        assert_eq!(case.key, "01010010011 1");
        assert_eq!(
            case.uuid.as_deref(),
            Some("997f1b93-b3c7-468e-ba29-7c9b799a0281")
        );
        assert_eq!(case.ids, [n(1), n(1), Value::text("001"), n(1), n(1), n(1)]);
        assert!(case.issues.is_empty(), "{:?}", case.issues);

        // One node per level, one record of each kind.
        let shape: Vec<(&str, u32, Vec<Value>, u32)> = case
            .records
            .iter()
            .map(|r| {
                (
                    dictionary.records[r.record].name.as_str(),
                    r.node,
                    r.level_ids.clone(),
                    r.occurrence,
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("COMPOUND_INFO_REC", 1, vec![], 1),
                ("HOUSING_UNIT_REC", 1, vec![n(1)], 1),
                ("HOUSEHOLD_REC", 1, vec![n(1), n(1)], 1),
                ("PERSON_REC", 1, vec![n(1), n(1)], 1),
            ]
        );

        let compound = &case.records[0];
        // Stored as the integer 234 and the double 234234.567, read at 5 decimals.
        assert_eq!(
            value(&dictionary, compound, "LATITUDE", None),
            &Value::number(23_400_000, 5)
        );
        assert_eq!(
            value(&dictionary, compound, "LONGITUDE", None),
            &Value::number(23_423_456_700, 5)
        );
        let units: Vec<&Value> = (1..=5)
            .map(|o| value(&dictionary, compound, "HOUSING_UNITS", Some(o)))
            .collect();
        assert_eq!(units, [&n(1), &n(2), &n(3), &n(4), &n(5)]);

        let household = &case.records[2];
        assert_eq!(value(&dictionary, household, "H07_RENT", None), &n(123));

        let person = &case.records[3];
        assert_eq!(
            value(&dictionary, person, "FIRST_NAME", None),
            &Value::text("newdude")
        );
        assert_eq!(value(&dictionary, person, "LAST_NAME", None), &Value::Null);
        assert_eq!(
            value(&dictionary, person, "P10_HIGH_GR", None),
            &Value::Null
        );
        assert_eq!(
            value(
                &dictionary,
                person,
                "SINGLE_PARENT_OF_REPEATING_SUBITEM",
                None
            ),
            &Value::text("12*4")
        );
        assert_eq!(
            value(&dictionary, person, "REPEATING_SUBITEM", Some(1)),
            &n(1)
        );
        // Stored as CSPro's DEFAULT, 1e52.
        assert_eq!(
            value(&dictionary, person, "REPEATING_SUBITEM", Some(3)),
            &Value::Special(Special::Default)
        );
        assert_eq!(
            value(&dictionary, person, "REPEATING_PARENT", Some(2)),
            &Value::text("2")
        );
        assert_eq!(value(&dictionary, person, "SUB_ONE", Some(1)), &Value::Null);
        assert_eq!(value(&dictionary, person, "SUB_ONE", Some(2)), &n(2));
    }

    /// Builds an older (schema 2) file whose cases are questionnaire text.
    async fn write_text_form_file(
        path: &Path,
        dictionary_text: &str,
        cases: &[(&str, &str, f64, bool, &str)],
    ) {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query(
            "CREATE TABLE meta (schema_version INTEGER NOT NULL, cspro_version TEXT NOT NULL, dictionary TEXT NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TABLE cases (id TEXT NOT NULL, key TEXT NOT NULL, label TEXT, questionnaire TEXT NOT NULL, \
             last_modified_revision INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, file_order REAL NOT NULL UNIQUE)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("INSERT INTO meta VALUES (2, '7.2.1', ?)")
            .bind(dictionary_text)
            .execute(&mut conn)
            .await
            .unwrap();
        for (uuid, key, order, deleted, text) in cases {
            sqlx::query("INSERT INTO cases VALUES (?, ?, '', ?, 1, ?, ?)")
                .bind(uuid)
                .bind(key)
                .bind(text)
                .bind(*deleted as i64)
                .bind(order)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn.close().await.unwrap();
    }

    #[tokio::test]
    async fn text_form_file_matches_the_relational_one() {
        let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csdb");
        let lines = three_level_lines();
        // A compound record, an unknown record type, a person line without its household.
        let bad_lines = "201010010011 2\n901010010011 2\n401010010011 2 1".to_string();
        write_text_form_file(
            &path,
            THREE_LEVEL_DCF,
            &[
                ("b-second", "01010010011 1", 2.0, false, &lines),
                ("a-deleted", "01010010011 1", 1.0, true, &lines),
                ("c-bad", "01010010011 2", 3.0, false, &bad_lines),
            ],
        )
        .await;

        let mut file = CsdbFile::open(&path, 1 << 20).await.unwrap();
        assert!(!file.is_relational());
        assert_eq!(file.count_cases().await.unwrap(), 3);
        file.close().await.unwrap();

        // Chunks of one case: keyset paging over file_order.
        let mut old = read_all(&path, &dictionary, 1).await;
        assert_eq!(old.len(), 3, "the deleted case is read, flagged");
        let deleted = old.remove(0);
        assert_eq!(deleted.uuid.as_deref(), Some("a-deleted"));
        assert!(deleted.meta.deleted);
        assert_eq!(deleted.meta.last_modified_revision, Some(1));
        assert!(!deleted.records.is_empty(), "its records are kept");
        assert!(!old[0].meta.deleted);
        let relational = read_all(&fixture("cspro_ThreeLevelTest.csdb"), &dictionary, 10).await;

        let case = &old[0];
        assert_eq!((case.number, case.uuid.as_deref()), (2, Some("b-second")));
        assert!(case.issues.is_empty(), "{:?}", case.issues);
        assert_eq!(case.ids, relational[0].ids);
        assert_eq!(case.records.len(), relational[0].records.len());
        for (text_row, stored_row) in case.records.iter().zip(&relational[0].records) {
            assert_eq!(text_row.line.is_some(), stored_row.line.is_none());
            assert_eq!(
                (
                    text_row.record,
                    text_row.node,
                    &text_row.path,
                    &text_row.level_ids,
                    text_row.occurrence,
                    &text_row.values
                ),
                (
                    stored_row.record,
                    stored_row.node,
                    &stored_row.path,
                    &stored_row.level_ids,
                    stored_row.occurrence,
                    &stored_row.values
                ),
                "{}",
                dictionary.records[text_row.record].name
            );
        }

        // Bad lines in a stored case are reported with their line in the case's text.
        let bad = &old[1];
        assert_eq!(bad.number, 3);
        let kinds: Vec<(Option<usize>, &IssueKind)> =
            bad.issues.iter().map(|i| (i.line, &i.kind)).collect();
        assert_eq!(
            kinds,
            [
                (Some(2), &IssueKind::UnknownRecordType),
                (Some(3), &IssueKind::ShortLine)
            ]
        );
        assert_eq!(bad.records.len(), 1);

        // Strict turns them into an error.
        let file = CsdbFile::open(&path, 1 << 20).await.unwrap();
        let mut strict = CsdbReader::new(file, &dictionary, ReadOptions { strict: true });
        match strict.next_chunk(10).await {
            Err(CsdbError::Data(DataError::Strict { case_key, issue })) => {
                assert_eq!(case_key, "01010010011 2");
                assert_eq!(issue.line, Some(2));
            }
            other => panic!("{:?}", other.map(|c| c.len())),
        }
    }

    #[tokio::test]
    async fn a_stored_case_over_the_limit_is_not_read() {
        let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.csdb");
        let huge = "101010010011 1\n".repeat(MAX_CASE_BYTES / 15 + 1);
        write_text_form_file(
            &path,
            THREE_LEVEL_DCF,
            &[("huge", "01010010011 1", 1.0, false, &huge)],
        )
        .await;
        let file = CsdbFile::open(&path, 1 << 20).await.unwrap();
        let mut reader = CsdbReader::new(file, &dictionary, ReadOptions::default());
        assert!(matches!(
            reader.next_chunk(10).await,
            Err(CsdbError::Data(DataError::CaseTooLarge { .. }))
        ));
    }

    #[tokio::test]
    async fn not_a_csdb() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.csdb");
        assert!(matches!(
            CsdbFile::open(&missing, 1 << 20).await,
            Err(CsdbError::Open { .. })
        ));
        let empty = dir.path().join("empty.csdb");
        let options = SqliteConnectOptions::new()
            .filename(&empty)
            .create_if_missing(true);
        SqliteConnection::connect_with(&options)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        assert!(matches!(
            CsdbFile::open(&empty, 1 << 20).await,
            Err(CsdbError::NotCspro(_))
        ));
    }

    #[test]
    fn special_values() {
        assert_eq!(
            stored_number(1e50, 0),
            Some(Value::Special(Special::Missing))
        );
        assert_eq!(stored_number(1e51, 0), Some(Value::Null));
        assert_eq!(
            stored_number(9.999_999_999_999_999e51, 0),
            Some(Value::Special(Special::Default))
        );
        assert_eq!(
            stored_number(1e55, 0),
            Some(Value::Special(Special::Refused))
        );
        assert_eq!(stored_number(12.5, 2), Some(Value::number(1250, 2)));
    }
}
