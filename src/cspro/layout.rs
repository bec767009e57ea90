//! The tables a dictionary breaks out into, as a plan rather than SQL, so one store can
//! write it as PostgreSQL, SQLite or MySQL DDL and bind rows without re-deriving anything.
//!
//! The plan is CSWeb's own, so that the queries and dashboards its users wrote against the
//! tables CSWeb creates run unchanged on Relais's. For a dictionary whose name minus
//! `_DICT`, lower-cased, is `p`:
//! - `p_cases`: one row per case, keyed by the case GUID `id` (unique), with `key`,
//!   `label`, `deleted`, `verified`, the revision and partial-save state a `.csdb` keeps;
//! - `"p_level-1"`: `"level-1-id"`, `"case-id"` (→ `p_cases.id`), the first level's id
//!   items; `"p_level-n"` for each deeper level, whose rows point at their parent node
//!   (`"level-(n-1)-id"`) and carry their `occ` among its children and their own id items;
//! - one table per record, `p_<record>`: `"<record>-id"`, `"level-n-id"` of the node it
//!   belongs to, `occ` (its occurrence within that node, 1…n) only when the record
//!   repeats, then one column per item and subitem in dictionary order, a repeating item
//!   as `"name(1)"` … `"name(n)"`;
//! - bookkeeping: `p_cspro_jobs` (one row per run), `p_cspro_meta` (the dictionary) and
//!   `p_notes` (the notes of a `.csdb`'s cases).
//!
//! Every reference is a foreign key with `ON DELETE CASCADE`, so deleting a case (or a
//! `"p_level-1"` row) takes its nodes, records and notes with it. Numeric items are
//! `Decimal { precision: length, scale: decimals }` (the length counts the decimal
//! character when it is written), alpha items `Text`; all nullable. CSPro's special values
//! (missing, default, refused) fit no decimal column and are written as NULL, like a blank.
//!
//! Names from the dictionary must be plain (letters, digits, underscores): anything else,
//! two tables or columns of one name, or a name over PostgreSQL's 63 bytes is refused with
//! an error naming it, never silently renamed. The store still quotes every identifier:
//! an item may be called `ORDER`, and the generated names hold `-` and `(`.

use sha1::{Digest, Sha1};

use super::data::{Case, Note, Number, RecordRow, Value};
use super::dictionary::{Dictionary, Item, ItemKind};

#[cfg(test)]
mod tests;

/// PostgreSQL truncates longer identifiers, which would make two names one.
pub const MAX_IDENTIFIER_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("{name:?} is not a plain SQL name (letters, digits and underscores, starting with a letter)")]
    InvalidName { name: String },
    #[error("{name:?} is longer than {MAX_IDENTIFIER_LEN} characters")]
    NameTooLong { name: String },
    #[error("two tables would be called {table:?}")]
    DuplicateTable { table: String },
    #[error("table {table:?} would have two columns called {column:?}")]
    DuplicateColumn { table: String, column: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// An integer primary key the database numbers (`SERIAL`); the breakout gives the
    /// values itself, so that the rows of a chunk can point at each other.
    Serial,
    Integer,
    Text,
    /// Text that is indexed or referenced (MySQL cannot index `TEXT` whole).
    Key,
    /// Text that may be megabytes long (MySQL's `TEXT` stops at 64 KiB).
    LongText,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnDefault {
    Zero,
    One,
    Now,
}

/// The fields of [`crate::cspro::data::CaseMeta`] and [`Note`] that are text, or numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaText {
    PartialSaveMode,
    PartialSaveFieldName,
    PartialSaveLevelKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaNumber {
    Revision,
    Deleted,
    Verified,
    PartialSaveRecordOccurrence,
    PartialSaveItemOccurrence,
    PartialSaveSubitemOccurrence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteField {
    FieldName,
    LevelKey,
    RecordOccurrence,
    ItemOccurrence,
    SubitemOccurrence,
    Content,
    OperatorId,
    ModifiedTime,
}

/// Where a column's value comes from in a [`Case`] and its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnSource {
    /// Not from the data: NULL in a data row (bookkeeping tables are written apart).
    Nothing,
    CaseGuid,
    CaseKey,
    /// The CSPro case label, else the key.
    CaseLabel,
    MetaText(MetaText),
    MetaNumber(MetaNumber),
    /// The row's own serial id.
    RowId,
    /// The serial id of the node the row belongs to.
    ParentId,
    Occurrence,
    /// Index into the node's own id values.
    IdItem(usize),
    /// Index into `RecordRow::values` (and `Record::fields`).
    Field(usize),
    Note(NoteField),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub column_type: ColumnType,
    pub nullable: bool,
    pub default: Option<ColumnDefault>,
    pub source: ColumnSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Cases,
    /// Index into `Dictionary::levels`.
    Level(usize),
    /// Index into `Dictionary::records`.
    Record(usize),
    Jobs,
    Meta,
    Notes,
}

impl TableKind {
    /// What the table is, as the tables listing says it.
    pub fn role(self) -> &'static str {
        match self {
            Self::Cases => "main",
            Self::Level(_) => "level",
            Self::Record(_) => "record",
            Self::Jobs => "jobs",
            Self::Meta => "meta",
            Self::Notes => "notes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Unique across the database (PostgreSQL index names are per schema).
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

/// `column` references `table`(`references`), rows deleted with the row they point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub column: String,
    pub table: String,
    pub references: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub kind: TableKind,
    pub columns: Vec<Column>,
    /// The `Serial` column, if the table has one.
    pub primary_key: Option<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub indexes: Vec<Index>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub prefix: String,
    /// The cases table, the level tables, one table per record in `Dictionary::records`
    /// order, then the jobs, meta and notes tables: every table after the ones it
    /// references.
    pub tables: Vec<Table>,
    levels: usize,
    records: usize,
    /// Per record, its level.
    record_levels: Vec<usize>,
    /// Per level, where its own ids start in `RecordRow::level_ids` and how many there are.
    level_ids: Vec<(usize, usize)>,
}

/// The table name prefix for a dictionary name: lower-cased, without a `_DICT` suffix.
pub fn table_prefix(dictionary_name: &str) -> String {
    let lower = dictionary_name.to_ascii_lowercase();
    match lower.strip_suffix("_dict") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => lower,
    }
}

/// The GUID of a case of a text data file, which has none: a UUID v5 (SHA-1, in the URL
/// namespace) of `cspro:<dictionary>:<key>`, so a rerun over the same data gives each
/// case the same id. A key the file repeats gets `:<n>` for its n-th case (n ≥ 2).
pub fn case_guid(dictionary: &str, key: &str, repeat: u32) -> String {
    let name = if repeat > 1 {
        format!("cspro:{dictionary}:{key}:{repeat}")
    } else {
        format!("cspro:{dictionary}:{key}")
    };
    let mut hasher = Sha1::new();
    hasher.update(uuid::Uuid::NAMESPACE_URL.as_bytes());
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn level_table_name(prefix: &str, level: usize) -> String {
    format!("{prefix}_level-{}", level + 1)
}

fn level_id(level: usize) -> String {
    format!("level-{}-id", level + 1)
}

impl Layout {
    pub fn new(dictionary: &Dictionary) -> Result<Layout, LayoutError> {
        let prefix = table_prefix(&dictionary.name);
        check_plain(&prefix)?;
        let mut tables: Vec<Table> = Vec::new();
        let add = |tables: &mut Vec<Table>, table: Table| {
            if tables.iter().any(|t| t.name == table.name) {
                return Err(LayoutError::DuplicateTable { table: table.name });
            }
            tables.push(table);
            Ok(())
        };

        let cases_name = format!("{prefix}_cases");
        let mut cases = TableBuilder::new(&cases_name, TableKind::Cases)?;
        use ColumnSource as S;
        use ColumnType as T;
        cases.push("id", T::Key, false, None, S::CaseGuid)?;
        cases.push("key", T::Text, false, None, S::CaseKey)?;
        cases.push("label", T::Text, true, None, S::CaseLabel)?;
        cases.push("questionnaire", T::LongText, true, None, S::Nothing)?;
        let number = |m| S::MetaNumber(m);
        cases.push(
            "last_modified_revision",
            T::Integer,
            true,
            None,
            number(MetaNumber::Revision),
        )?;
        let zero = Some(ColumnDefault::Zero);
        cases.push(
            "deleted",
            T::Integer,
            false,
            zero,
            number(MetaNumber::Deleted),
        )?;
        cases.push(
            "verified",
            T::Integer,
            false,
            zero,
            number(MetaNumber::Verified),
        )?;
        for (name, field) in [
            ("partial_save_mode", MetaText::PartialSaveMode),
            ("partial_save_field_name", MetaText::PartialSaveFieldName),
            ("partial_save_level_key", MetaText::PartialSaveLevelKey),
        ] {
            cases.push(name, T::Text, true, None, S::MetaText(field))?;
        }
        for (name, field) in [
            (
                "partial_save_record_occurrence",
                MetaNumber::PartialSaveRecordOccurrence,
            ),
            (
                "partial_save_item_occurrence",
                MetaNumber::PartialSaveItemOccurrence,
            ),
            (
                "partial_save_subitem_occurrence",
                MetaNumber::PartialSaveSubitemOccurrence,
            ),
        ] {
            cases.push(name, T::Integer, true, None, number(field))?;
        }
        cases.index(&["id"], true)?;
        cases.index(&["deleted"], false)?;
        add(&mut tables, cases.finish())?;

        let mut level_ids = Vec::new();
        let mut offset = 0;
        for (level, definition) in dictionary.levels.iter().enumerate() {
            let name = level_table_name(&prefix, level);
            let mut table = TableBuilder::new(&name, TableKind::Level(level))?;
            table.serial(&level_id(level))?;
            if level == 0 {
                table.push("case-id", T::Key, false, None, S::CaseGuid)?;
                table.reference("case-id", &cases_name, "id")?;
                table.index(&["case-id"], true)?;
            } else {
                let parent = level_id(level - 1);
                table.push(&parent, T::Integer, false, None, S::ParentId)?;
                table.reference(&parent, &level_table_name(&prefix, level - 1), &parent)?;
                table.index(&[&parent], false)?;
                table.push(
                    "occ",
                    T::Integer,
                    false,
                    Some(ColumnDefault::One),
                    S::Occurrence,
                )?;
            }
            for (index, item) in definition.id_items.iter().enumerate() {
                table.push_item(item, None, S::IdItem(index))?;
            }
            add(&mut tables, table.finish())?;
            let own = if level == 0 {
                0
            } else {
                definition.id_items.len()
            };
            level_ids.push((offset, own));
            offset += own;
        }

        for (record_index, record) in dictionary.records.iter().enumerate() {
            let lower = record.name.to_ascii_lowercase();
            check_plain(&lower)?;
            let name = format!("{prefix}_{lower}");
            let mut table = TableBuilder::new(&name, TableKind::Record(record_index))?;
            table.serial(&format!("{lower}-id"))?;
            let parent = level_id(record.level);
            table.push(&parent, T::Integer, false, None, S::ParentId)?;
            table.reference(&parent, &level_table_name(&prefix, record.level), &parent)?;
            table.index(&[&parent], false)?;
            if record.max_occurrences > 1 {
                table.push(
                    "occ",
                    T::Integer,
                    false,
                    Some(ColumnDefault::One),
                    S::Occurrence,
                )?;
            }
            for (index, field) in record.fields().iter().enumerate() {
                table.push_item(record.item(field), field.occurrence, S::Field(index))?;
            }
            add(&mut tables, table.finish())?;
        }

        let now = Some(ColumnDefault::Now);
        let mut jobs = TableBuilder::new(&format!("{prefix}_cspro_jobs"), TableKind::Jobs)?;
        jobs.serial("id")?;
        for (name, t) in [
            ("start_caseid", T::Text),
            ("start_revision", T::Integer),
            ("end_caseid", T::Text),
            ("end_revision", T::Integer),
            ("cases_to_process", T::Integer),
            ("cases_processed", T::Integer),
            ("status", T::Integer),
        ] {
            jobs.push(name, t, true, None, S::Nothing)?;
        }
        jobs.push("created_time", T::Timestamp, true, now, S::Nothing)?;
        jobs.push("modified_time", T::Timestamp, true, now, S::Nothing)?;
        add(&mut tables, jobs.finish())?;

        let mut meta = TableBuilder::new(&format!("{prefix}_cspro_meta"), TableKind::Meta)?;
        meta.serial("id")?;
        meta.push("cspro_version", T::Text, true, None, S::Nothing)?;
        meta.push("dictionary", T::LongText, true, None, S::Nothing)?;
        meta.push("source_modified_time", T::Timestamp, true, None, S::Nothing)?;
        meta.push("created_time", T::Timestamp, true, now, S::Nothing)?;
        meta.push("modified_time", T::Timestamp, true, now, S::Nothing)?;
        add(&mut tables, meta.finish())?;

        let mut notes = TableBuilder::new(&format!("{prefix}_notes"), TableKind::Notes)?;
        notes.push("case_id", T::Key, false, None, S::CaseGuid)?;
        notes.reference("case_id", &cases_name, "id")?;
        notes.index(&["case_id"], false)?;
        for (name, t, field) in [
            ("field_name", T::Text, NoteField::FieldName),
            ("level_key", T::Text, NoteField::LevelKey),
            ("record_occurrence", T::Integer, NoteField::RecordOccurrence),
            ("item_occurrence", T::Integer, NoteField::ItemOccurrence),
            (
                "subitem_occurrence",
                T::Integer,
                NoteField::SubitemOccurrence,
            ),
            ("content", T::LongText, NoteField::Content),
            ("operator_id", T::Text, NoteField::OperatorId),
            ("modified_time", T::Timestamp, NoteField::ModifiedTime),
        ] {
            notes.push(name, t, true, None, S::Note(field))?;
        }
        add(&mut tables, notes.finish())?;

        Ok(Layout {
            prefix,
            tables,
            levels: dictionary.levels.len(),
            records: dictionary.records.len(),
            record_levels: dictionary.records.iter().map(|r| r.level).collect(),
            level_ids,
        })
    }

    pub fn cases_table(&self) -> &Table {
        &self.tables[0]
    }

    /// The table of a level (an index into `Dictionary::levels`).
    pub fn level_table(&self, level: usize) -> &Table {
        &self.tables[1 + level]
    }

    /// The table of a record (an index into `Dictionary::records`).
    pub fn record_table(&self, record: usize) -> &Table {
        &self.tables[1 + self.levels + record]
    }

    pub fn jobs_table(&self) -> &Table {
        &self.tables[1 + self.levels + self.records]
    }

    pub fn meta_table(&self) -> &Table {
        &self.tables[2 + self.levels + self.records]
    }

    pub fn notes_table(&self) -> &Table {
        &self.tables[3 + self.levels + self.records]
    }

    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|t| t.name.as_str())
    }

    /// How many serial ids of each table (by index in `tables`) these cases take.
    pub fn ids_taken(&self, cases: &[Case]) -> Vec<i64> {
        let mut next = vec![0; self.tables.len()];
        self.chunk_rows(cases, &mut next);
        next
    }

    /// The rows of these cases, per table (by index in `tables`; none for the jobs and
    /// meta tables), each with its serial id taken from `next`, which moves past them.
    pub fn chunk_rows<'a>(&'a self, cases: &'a [Case], next: &mut [i64]) -> Vec<Vec<Row<'a>>> {
        let mut rows: Vec<Vec<Row<'a>>> = vec![Vec::new(); self.tables.len()];
        let mut take = |table: usize| {
            let id = next[table];
            next[table] += 1;
            id
        };
        for case in cases {
            rows[0].push(Row::new(&self.tables[0], case, What::Case));
            let level_one = take(1);
            let mut row = Row::new(&self.tables[1], case, What::Node(&case.ids));
            row.id = level_one;
            rows[1].push(row);
            // The deeper nodes, in the order their first record comes: (level, number,
            // serial id, parent's id).
            let mut nodes: Vec<(usize, u32, i64, i64)> = Vec::new();
            let node_id = |nodes: &[(usize, u32, i64, i64)], level: usize, number: u32| {
                if level == 0 {
                    return Some(level_one);
                }
                nodes
                    .iter()
                    .find(|n| n.0 == level && n.1 == number)
                    .map(|n| n.2)
            };
            for record in &case.records {
                let level = self.record_levels[record.record];
                for depth in 1..=level.min(record.path.len()) {
                    let number = record.path[depth - 1];
                    if node_id(&nodes, depth, number).is_some() {
                        continue;
                    }
                    let parent_number = if depth == 1 {
                        1
                    } else {
                        record.path[depth - 2]
                    };
                    let parent = node_id(&nodes, depth - 1, parent_number).unwrap_or(level_one);
                    let table = 1 + depth;
                    let id = take(table);
                    let (start, len) = self.level_ids[depth];
                    let ids = record.level_ids.get(start..start + len).unwrap_or(&[]);
                    let occ = nodes
                        .iter()
                        .filter(|n| n.0 == depth && n.3 == parent)
                        .count() as u32
                        + 1;
                    nodes.push((depth, number, id, parent));
                    let mut row = Row::new(&self.tables[table], case, What::Node(ids));
                    (row.id, row.parent, row.occ) = (id, parent, occ);
                    rows[table].push(row);
                }
                let table = 1 + self.levels + record.record;
                let parent = node_id(&nodes, level, record.node).unwrap_or(level_one);
                let mut row = Row::new(&self.tables[table], case, What::Record(record));
                (row.id, row.parent, row.occ) = (take(table), parent, record.occurrence);
                rows[table].push(row);
            }
            let notes = 3 + self.levels + self.records;
            for note in &case.notes {
                rows[notes].push(Row::new(&self.tables[notes], case, What::Note(note)));
            }
        }
        rows
    }
}

/// One value to bind; borrowed from the case, so producing rows allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    Number(Number),
    Text(&'a str),
    /// Unix seconds.
    Time(i64),
}

impl<'a> From<&'a Value> for Cell<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null | Value::Special(_) => Cell::Null,
            Value::Number(n) => Cell::Number(*n),
            Value::Text(t) => Cell::Text(t),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum What<'a> {
    Case,
    /// A level node, with its own id values.
    Node(&'a [Value]),
    Record(&'a RecordRow),
    Note(&'a Note),
}

/// A row of one table, read straight from the case.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub table: &'a Table,
    case: &'a Case,
    what: What<'a>,
    id: i64,
    parent: i64,
    occ: u32,
}

impl<'a> Row<'a> {
    fn new(table: &'a Table, case: &'a Case, what: What<'a>) -> Self {
        Row {
            table,
            case,
            what,
            id: 0,
            parent: 0,
            occ: 1,
        }
    }

    pub fn record(&self) -> Option<&'a RecordRow> {
        match self.what {
            What::Record(r) => Some(r),
            _ => None,
        }
    }

    /// The row's values in the table's column order.
    pub fn cells(&self) -> impl Iterator<Item = Cell<'a>> + 'a {
        let row = *self;
        self.table
            .columns
            .iter()
            .map(move |column| row.cell(column.source))
    }

    fn cell(&self, source: ColumnSource) -> Cell<'a> {
        let case = self.case;
        let meta = &case.meta;
        let text = |t: &'a Option<String>| t.as_deref().map(Cell::Text).unwrap_or(Cell::Null);
        let int = |n: Option<i64>| n.map(Cell::Integer).unwrap_or(Cell::Null);
        let value = |v: Option<&'a Value>| v.map(Cell::from).unwrap_or(Cell::Null);
        match (source, self.what) {
            (ColumnSource::Nothing, _) => Cell::Null,
            (ColumnSource::CaseGuid, _) => Cell::Text(case.uuid.as_deref().unwrap_or("")),
            (ColumnSource::CaseKey, _) => Cell::Text(&case.key),
            (ColumnSource::CaseLabel, _) => Cell::Text(meta.label.as_deref().unwrap_or(&case.key)),
            (ColumnSource::MetaText(field), _) => text(match field {
                MetaText::PartialSaveMode => &meta.partial_save_mode,
                MetaText::PartialSaveFieldName => &meta.partial_save_field_name,
                MetaText::PartialSaveLevelKey => &meta.partial_save_level_key,
            }),
            (ColumnSource::MetaNumber(field), _) => int(match field {
                MetaNumber::Revision => meta.last_modified_revision,
                MetaNumber::Deleted => Some(meta.deleted.into()),
                MetaNumber::Verified => Some(meta.verified.into()),
                MetaNumber::PartialSaveRecordOccurrence => meta.partial_save_record_occurrence,
                MetaNumber::PartialSaveItemOccurrence => meta.partial_save_item_occurrence,
                MetaNumber::PartialSaveSubitemOccurrence => meta.partial_save_subitem_occurrence,
            }),
            (ColumnSource::RowId, _) => Cell::Integer(self.id),
            (ColumnSource::ParentId, _) => Cell::Integer(self.parent),
            (ColumnSource::Occurrence, _) => Cell::Integer(self.occ.into()),
            (ColumnSource::IdItem(i), What::Node(ids)) => value(ids.get(i)),
            (ColumnSource::Field(i), What::Record(r)) => value(r.values.get(i)),
            (ColumnSource::Note(field), What::Note(note)) => match field {
                NoteField::FieldName => Cell::Text(&note.field_name),
                NoteField::LevelKey => Cell::Text(&note.level_key),
                NoteField::RecordOccurrence => Cell::Integer(note.record_occurrence),
                NoteField::ItemOccurrence => Cell::Integer(note.item_occurrence),
                NoteField::SubitemOccurrence => Cell::Integer(note.subitem_occurrence),
                NoteField::Content => Cell::Text(&note.content),
                NoteField::OperatorId => Cell::Text(&note.operator_id),
                NoteField::ModifiedTime => Cell::Time(note.modified_time),
            },
            _ => Cell::Null,
        }
    }
}

/// Names taken from the dictionary: plain, so that no quoting rule of any database can
/// change their meaning.
fn check_plain(name: &str) -> Result<(), LayoutError> {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(LayoutError::InvalidName { name: name.into() });
    }
    check_len(name)
}

fn check_len(name: &str) -> Result<(), LayoutError> {
    if name.len() > MAX_IDENTIFIER_LEN {
        return Err(LayoutError::NameTooLong { name: name.into() });
    }
    Ok(())
}

fn item_type(item: &Item) -> ColumnType {
    match item.kind {
        ItemKind::Numeric => ColumnType::Decimal {
            precision: item.len.max(item.decimals as usize).clamp(1, 65) as u8,
            scale: item.decimals,
        },
        ItemKind::Alpha | ItemKind::Binary => ColumnType::Text,
    }
}

struct TableBuilder {
    table: Table,
}

impl TableBuilder {
    fn new(name: &str, kind: TableKind) -> Result<Self, LayoutError> {
        check_len(name)?;
        Ok(TableBuilder {
            table: Table {
                name: name.to_string(),
                kind,
                columns: Vec::new(),
                primary_key: None,
                foreign_keys: Vec::new(),
                indexes: Vec::new(),
            },
        })
    }

    fn push(
        &mut self,
        name: &str,
        column_type: ColumnType,
        nullable: bool,
        default: Option<ColumnDefault>,
        source: ColumnSource,
    ) -> Result<(), LayoutError> {
        check_len(name)?;
        if self.table.column(name).is_some() {
            return Err(LayoutError::DuplicateColumn {
                table: self.table.name.clone(),
                column: name.to_string(),
            });
        }
        self.table.columns.push(Column {
            name: name.to_string(),
            column_type,
            nullable,
            default,
            source,
        });
        Ok(())
    }

    fn serial(&mut self, name: &str) -> Result<(), LayoutError> {
        self.push(name, ColumnType::Serial, false, None, ColumnSource::RowId)?;
        self.table.primary_key = Some(name.to_owned());
        Ok(())
    }

    fn reference(
        &mut self,
        column: &str,
        table: &str,
        references: &str,
    ) -> Result<(), LayoutError> {
        self.table.foreign_keys.push(ForeignKey {
            column: column.to_owned(),
            table: table.to_owned(),
            references: references.to_owned(),
        });
        Ok(())
    }

    fn index(&mut self, columns: &[&str], unique: bool) -> Result<(), LayoutError> {
        let name = format!("{}-{}", self.table.name, columns.join("-"));
        check_len(&name)?;
        self.table.indexes.push(Index {
            name,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            unique,
        });
        Ok(())
    }

    fn push_item(
        &mut self,
        item: &Item,
        occurrence: Option<u32>,
        source: ColumnSource,
    ) -> Result<(), LayoutError> {
        let base = item.name.to_ascii_lowercase();
        check_plain(&base)?;
        let name = match occurrence {
            Some(n) => format!("{base}({n})"),
            None => base,
        };
        self.push(&name, item_type(item), true, None, source)
    }

    fn finish(self) -> Table {
        self.table
    }
}
