//! The tables a dictionary breaks out into, as a plan rather than SQL, so one store can
//! write it as PostgreSQL or SQLite DDL and bind rows without re-deriving anything.
//!
//! Choices, and why:
//! - **Names.** Tables are prefixed with the dictionary name lower-cased, minus a trailing
//!   `_DICT` (`EVAL_DICT` → `eval_cases`, `eval_<record>`), as the CSWeb community fork
//!   does; a name without `_DICT` is used whole (`CEN2000` → `cen2000_cases`). Columns are
//!   item names lower-cased. CSPro names are letters, digits and underscores, so every
//!   identifier here is plain; names that are not (a hand-edited JSON dictionary), that
//!   collide, or that pass PostgreSQL's 63-byte limit are refused with an error naming
//!   them, never silently renamed. The store must still quote identifiers: an item may be
//!   called `ORDER` or `USER`.
//! - **Repeating items** become one column per occurrence, `name_1 … name_n` (CSWeb
//!   writes `name(1)`, which needs quoting in every query an analyst writes); a subitem of
//!   a repeating item repeats with it. Subitems are columns of their own, next to their
//!   parent, because analysts query them directly.
//! - **Keys.** `case_id` is the case's 1-based position in its source file: unique even
//!   when a file repeats a case key, which CSPro's own key is not. `case_key` keeps CSPro's
//!   key and `case_uuid` the `.csdb` UUID. Record rows carry `case_id`, and for records
//!   below the first level `level_node` (the node's number among the case's nodes of that
//!   level) with the id items of each level down to theirs, then `occ`. The primary key
//!   `(case_id, [level_node,] occ)` needs no id value, so a blank id cannot break it, and
//!   its first column serves both joins to the cases table and deleting a chunk's cases
//!   before writing them again.
//! - **Types.** Numeric items are `Decimal { precision, scale }` from their length and
//!   decimals (the decimal character, when written, is not a digit), alpha items `Text`,
//!   the synthetic columns `Integer`. CSPro's special values (missing, default, refused)
//!   fit no decimal column and are written as NULL, like "not applicable".

use super::data::{Case, Number, RecordRow, Value};
use super::dictionary::{Dictionary, Item, ItemKind};

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
    Integer,
    Text,
    Decimal { precision: u8, scale: u8 },
}

/// Where a column's value comes from in a [`Case`] and its [`RecordRow`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnSource {
    CaseNumber,
    CaseKey,
    CaseUuid,
    /// Index into `Case::ids`.
    CaseId(usize),
    LevelNode,
    /// Index into `RecordRow::level_ids`.
    LevelId(usize),
    Occurrence,
    /// Index into `RecordRow::values` (and `Record::fields`).
    Field(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub column_type: ColumnType,
    pub nullable: bool,
    pub source: ColumnSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Cases,
    /// Index into `Dictionary::records`.
    Record(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Unique across the database (PostgreSQL index names are per schema).
    pub name: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub kind: TableKind,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
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
    /// The cases table first, then one table per record in `Dictionary::records` order.
    pub tables: Vec<Table>,
}

/// The table name prefix for a dictionary name: lower-cased, without a `_DICT` suffix.
pub fn table_prefix(dictionary_name: &str) -> String {
    let lower = dictionary_name.to_ascii_lowercase();
    match lower.strip_suffix("_dict") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => lower,
    }
}

impl Layout {
    pub fn new(dictionary: &Dictionary) -> Result<Layout, LayoutError> {
        let prefix = table_prefix(&dictionary.name);
        check_name(&prefix)?;

        let mut tables = Vec::with_capacity(dictionary.records.len() + 1);
        let cases_name = format!("{prefix}_cases");
        let mut cases = TableBuilder::new(&cases_name, TableKind::Cases)?;
        cases.push(
            "case_id",
            ColumnType::Integer,
            false,
            ColumnSource::CaseNumber,
        )?;
        cases.push("case_key", ColumnType::Text, false, ColumnSource::CaseKey)?;
        cases.push("case_uuid", ColumnType::Text, true, ColumnSource::CaseUuid)?;
        for (index, item) in dictionary.levels[0].id_items.iter().enumerate() {
            cases.push_item(item, None, ColumnSource::CaseId(index))?;
        }
        let mut cases = cases.finish(&["case_id"]);
        cases.indexes.push(index(&cases_name, &["case_key"])?);
        tables.push(cases);

        for (record_index, record) in dictionary.records.iter().enumerate() {
            let name = format!("{prefix}_{}", record.name.to_ascii_lowercase());
            if tables.iter().any(|t: &Table| t.name == name) {
                return Err(LayoutError::DuplicateTable { table: name });
            }
            let mut table = TableBuilder::new(&name, TableKind::Record(record_index))?;
            table.push(
                "case_id",
                ColumnType::Integer,
                false,
                ColumnSource::CaseNumber,
            )?;
            if record.level > 0 {
                table.push(
                    "level_node",
                    ColumnType::Integer,
                    false,
                    ColumnSource::LevelNode,
                )?;
                let deeper = dictionary.levels[1..=record.level]
                    .iter()
                    .flat_map(|l| &l.id_items);
                for (index, item) in deeper.enumerate() {
                    table.push_item(item, None, ColumnSource::LevelId(index))?;
                }
            }
            table.push("occ", ColumnType::Integer, false, ColumnSource::Occurrence)?;
            for (index, field) in record.fields().iter().enumerate() {
                table.push_item(
                    record.item(field),
                    field.occurrence,
                    ColumnSource::Field(index),
                )?;
            }
            let key: &[&str] = if record.level > 0 {
                &["case_id", "level_node", "occ"]
            } else {
                &["case_id", "occ"]
            };
            tables.push(table.finish(key));
        }
        Ok(Layout { prefix, tables })
    }

    pub fn cases_table(&self) -> &Table {
        &self.tables[0]
    }

    /// The table of a record (an index into `Dictionary::records`).
    pub fn record_table(&self, record: usize) -> &Table {
        &self.tables[record + 1]
    }

    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|t| t.name.as_str())
    }

    /// A case's rows in one table: one row in the cases table, one per record read in a
    /// record's table.
    pub fn table_rows<'a>(
        &'a self,
        table: &'a Table,
        case: &'a Case,
    ) -> impl Iterator<Item = Row<'a>> + 'a {
        let (case_row, record) = match table.kind {
            TableKind::Cases => (true, usize::MAX),
            TableKind::Record(record) => (false, record),
        };
        let head = case_row.then_some(Row {
            table,
            case,
            record: None,
        });
        let records = case
            .records
            .iter()
            .filter(move |r| !case_row && r.record == record)
            .map(move |r| Row {
                table,
                case,
                record: Some(r),
            });
        head.into_iter().chain(records)
    }

    /// All of a case's rows: its cases row, then its records in the order they were read.
    pub fn rows<'a>(&'a self, case: &'a Case) -> impl Iterator<Item = Row<'a>> + 'a {
        let head = Row {
            table: self.cases_table(),
            case,
            record: None,
        };
        std::iter::once(head).chain(case.records.iter().map(move |r| Row {
            table: self.record_table(r.record),
            case,
            record: Some(r),
        }))
    }
}

/// One value to bind; borrowed from the case, so producing rows allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    Number(Number),
    Text(&'a str),
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

/// A row of one table, read straight from the case.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub table: &'a Table,
    case: &'a Case,
    record: Option<&'a RecordRow>,
}

impl<'a> Row<'a> {
    pub fn record(&self) -> Option<&'a RecordRow> {
        self.record
    }

    /// The row's values in the table's column order.
    pub fn cells(&self) -> impl Iterator<Item = Cell<'a>> + 'a {
        let (case, record) = (self.case, self.record);
        self.table
            .columns
            .iter()
            .map(move |column| cell(case, record, column.source))
    }
}

fn cell<'a>(case: &'a Case, record: Option<&'a RecordRow>, source: ColumnSource) -> Cell<'a> {
    let value = |v: Option<&'a Value>| v.map(Cell::from).unwrap_or(Cell::Null);
    match (source, record) {
        (ColumnSource::CaseNumber, _) => Cell::Integer(case.number as i64),
        (ColumnSource::CaseKey, _) => Cell::Text(&case.key),
        (ColumnSource::CaseUuid, _) => case.uuid.as_deref().map(Cell::Text).unwrap_or(Cell::Null),
        (ColumnSource::CaseId(i), _) => value(case.ids.get(i)),
        (ColumnSource::LevelNode, Some(r)) => Cell::Integer(r.node as i64),
        (ColumnSource::LevelId(i), Some(r)) => value(r.level_ids.get(i)),
        (ColumnSource::Occurrence, Some(r)) => Cell::Integer(r.occurrence as i64),
        (ColumnSource::Field(i), Some(r)) => value(r.values.get(i)),
        (_, None) => Cell::Null,
    }
}

fn check_name(name: &str) -> Result<(), LayoutError> {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(LayoutError::InvalidName { name: name.into() });
    }
    if name.len() > MAX_IDENTIFIER_LEN {
        return Err(LayoutError::NameTooLong { name: name.into() });
    }
    Ok(())
}

fn index(table: &str, columns: &[&str]) -> Result<Index, LayoutError> {
    let name = format!("{table}_{}_idx", columns.join("_"));
    check_name(&name)?;
    Ok(Index {
        name,
        columns: columns.iter().map(|c| c.to_string()).collect(),
    })
}

fn item_type(item: &Item) -> ColumnType {
    match item.kind {
        ItemKind::Numeric => {
            let digits = item.len - usize::from(item.decimal_char);
            ColumnType::Decimal {
                precision: digits.max(item.decimals as usize).max(1) as u8,
                scale: item.decimals,
            }
        }
        ItemKind::Alpha | ItemKind::Binary => ColumnType::Text,
    }
}

struct TableBuilder {
    table: Table,
}

impl TableBuilder {
    fn new(name: &str, kind: TableKind) -> Result<Self, LayoutError> {
        check_name(name)?;
        Ok(TableBuilder {
            table: Table {
                name: name.to_string(),
                kind,
                columns: Vec::new(),
                primary_key: Vec::new(),
                indexes: Vec::new(),
            },
        })
    }

    fn push(
        &mut self,
        name: &str,
        column_type: ColumnType,
        nullable: bool,
        source: ColumnSource,
    ) -> Result<(), LayoutError> {
        check_name(name)?;
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
            source,
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
        let name = match occurrence {
            Some(n) => format!("{base}_{n}"),
            None => base,
        };
        self.push(&name, item_type(item), true, source)
    }

    fn finish(mut self, key: &[&str]) -> Table {
        self.table.primary_key = key.iter().map(|c| c.to_string()).collect();
        self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cspro::csdb::{CsdbFile, CsdbReader};
    use crate::cspro::data::{DatReader, ReadOptions};

    const POPSTAN_DCF: &str =
        include_str!("../../fixtures/cspro/jhandley_PopstanCensus_CEN2000.dcf");
    const POPSTAN_DAT: &str = include_str!("../../fixtures/cspro/jhandley_PopstanCensus.dat");
    const THREE_LEVEL_DCF: &str =
        include_str!("../../fixtures/cspro/cspro_ThreeLevelTest_HOUSEHOLD_DICT.dcf");
    const TEST_DICT_JSON: &str = include_str!("../../fixtures/cspro/cspro_TestDict_json.dcf");

    fn names(table: &Table) -> Vec<&str> {
        table.columns.iter().map(|c| c.name.as_str()).collect()
    }

    fn decimal(precision: u8, scale: u8) -> ColumnType {
        ColumnType::Decimal { precision, scale }
    }

    #[test]
    fn prefixes() {
        assert_eq!(table_prefix("EVAL_DICT"), "eval");
        assert_eq!(table_prefix("KAIROS_DICT"), "kairos");
        assert_eq!(table_prefix("household_dict"), "household");
        assert_eq!(table_prefix("CEN2000"), "cen2000");
        assert_eq!(table_prefix("DICT"), "dict");
        assert_eq!(table_prefix("MY_DICT_2"), "my_dict_2");
    }

    #[test]
    fn popstan_plan() {
        let dictionary = Dictionary::parse(POPSTAN_DCF).unwrap();
        let layout = Layout::new(&dictionary).unwrap();
        assert_eq!(layout.prefix, "cen2000");
        assert_eq!(
            layout.table_names().collect::<Vec<_>>(),
            [
                "cen2000_cases",
                "cen2000_person",
                "cen2000_housing",
                "cen2000_interview_record"
            ]
        );

        let cases = layout.cases_table();
        assert_eq!(cases.kind, TableKind::Cases);
        assert_eq!(
            names(cases),
            [
                "case_id",
                "case_key",
                "case_uuid",
                "province",
                "district",
                "village",
                "ea",
                "ur",
                "building",
                "hu",
                "hh"
            ]
        );
        assert_eq!(cases.primary_key, ["case_id"]);
        assert_eq!(
            cases.indexes,
            [Index {
                name: "cen2000_cases_case_key_idx".into(),
                columns: vec!["case_key".into()]
            }]
        );
        let id = cases.column("case_id").unwrap();
        assert_eq!((id.column_type, id.nullable), (ColumnType::Integer, false));
        assert_eq!(cases.column("village").unwrap().column_type, decimal(3, 0));

        let person = layout.record_table(0);
        assert_eq!(person.kind, TableKind::Record(0));
        assert_eq!(person.primary_key, ["case_id", "occ"]);
        assert_eq!(&names(person)[..4], ["case_id", "occ", "line", "p02_rel"]);
        assert_eq!(person.columns.len(), 2 + 23);
        let occ = names(person);
        let parent = occ.iter().position(|c| *c == "p15_occ").unwrap();
        assert_eq!(occ[parent + 1], "p15a_occ", "a subitem follows its parent");

        let interview = layout.record_table(2);
        let enumerator = interview.column("enumerator").unwrap();
        assert_eq!(
            (enumerator.column_type, enumerator.nullable),
            (ColumnType::Text, true)
        );
        assert_eq!(
            interview.column("interview_date").unwrap().column_type,
            decimal(8, 0)
        );
    }

    #[test]
    fn three_level_and_json_plans() {
        let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
        let layout = Layout::new(&dictionary).unwrap();
        assert_eq!(
            layout.table_names().collect::<Vec<_>>(),
            [
                "household_cases",
                "household_compound_info_rec",
                "household_housing_unit_rec",
                "household_household_rec",
                "household_person_rec"
            ]
        );
        let compound = layout.record_table(0);
        assert_eq!(
            names(compound),
            [
                "case_id",
                "occ",
                "latitude",
                "longitude",
                "housing_units_1",
                "housing_units_2",
                "housing_units_3",
                "housing_units_4",
                "housing_units_5",
                "num_hus"
            ]
        );
        // 15 characters, one of them the decimal point.
        assert_eq!(
            compound.column("latitude").unwrap().column_type,
            decimal(14, 5)
        );
        assert_eq!(
            layout.cases_table().column("village").unwrap().column_type,
            ColumnType::Text
        );

        let unit = layout.record_table(1);
        assert_eq!(
            &names(unit)[..4],
            ["case_id", "level_node", "housing_unit_number", "occ"]
        );
        assert_eq!(unit.primary_key, ["case_id", "level_node", "occ"]);

        let person = layout.record_table(3);
        let columns = names(person);
        assert_eq!(
            &columns[..5],
            [
                "case_id",
                "level_node",
                "housing_unit_number",
                "household_number",
                "occ"
            ]
        );
        let tail: Vec<&str> = columns[columns.len() - 12..].to_vec();
        assert_eq!(
            tail,
            [
                "single_parent_of_repeating_subitem",
                "repeating_subitem_1",
                "repeating_subitem_2",
                "repeating_subitem_3",
                "not_repeating_subitem",
                "repeating_parent_1",
                "repeating_parent_2",
                "sub_one_1",
                "sub_one_2",
                "sub_two_1",
                "sub_two_2",
                "p25_more"
            ]
        );

        let json = Dictionary::parse(TEST_DICT_JSON).unwrap();
        let layout = Layout::new(&json).unwrap();
        assert_eq!(
            layout.table_names().collect::<Vec<_>>(),
            ["testdict_cases", "testdict_testdict_rec"]
        );
        // The image item has no column.
        assert_eq!(
            names(layout.record_table(0)),
            ["case_id", "occ", "test_item"]
        );
    }

    #[test]
    fn popstan_rows() {
        let dictionary = Dictionary::parse(POPSTAN_DCF).unwrap();
        let layout = Layout::new(&dictionary).unwrap();
        let cases: Vec<Case> = DatReader::new(&dictionary, POPSTAN_DAT, ReadOptions::default())
            .collect::<Result<_, _>>()
            .unwrap();

        let mut per_table = vec![0usize; layout.tables.len()];
        for case in &cases {
            for row in layout.rows(case) {
                assert_eq!(row.cells().count(), row.table.columns.len());
                let index = layout
                    .tables
                    .iter()
                    .position(|t| t.name == row.table.name)
                    .unwrap();
                per_table[index] += 1;
            }
            for table in &layout.tables {
                let rows = layout.table_rows(table, case).count();
                let expected = match table.kind {
                    TableKind::Cases => 1,
                    TableKind::Record(r) => case.rows_of(r).count(),
                };
                assert_eq!(rows, expected);
            }
        }
        assert_eq!(per_table, [294, 1262, 240, 294]);

        let first = &cases[0];
        let case_row: Vec<Cell> = layout
            .table_rows(layout.cases_table(), first)
            .next()
            .unwrap()
            .cells()
            .collect();
        let num = |n: i64| Cell::Number(Number::new(n, 0));
        assert_eq!(
            case_row,
            [
                Cell::Integer(1),
                Cell::Text("010100300110210011"),
                Cell::Null,
                num(1),
                num(1),
                num(3),
                num(1),
                num(1),
                num(21),
                num(1),
                num(1)
            ]
        );
        let interview = layout.record_table(2);
        let row = layout.table_rows(interview, first).next().unwrap();
        let cells: Vec<Cell> = row.cells().collect();
        let at = |name: &str| {
            cells[interview
                .columns
                .iter()
                .position(|c| c.name == name)
                .unwrap()]
        };
        assert_eq!(at("case_id"), Cell::Integer(1));
        assert_eq!(at("occ"), Cell::Integer(1));
        assert_eq!(at("enumerator"), Cell::Text("Lisa"));
        assert_eq!(at("interview_month"), num(12));

        let persons: Vec<Vec<Cell>> = layout
            .table_rows(layout.record_table(0), first)
            .map(|r| r.cells().take(2).collect())
            .collect();
        assert_eq!(
            persons,
            [
                [Cell::Integer(1), Cell::Integer(1)],
                [Cell::Integer(1), Cell::Integer(2)],
                [Cell::Integer(1), Cell::Integer(3)]
            ]
        );
    }

    #[tokio::test]
    async fn three_level_rows_from_csdb() {
        let dictionary = Dictionary::parse(THREE_LEVEL_DCF).unwrap();
        let layout = Layout::new(&dictionary).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cspro/cspro_ThreeLevelTest.csdb");
        let file = CsdbFile::open(&path, 1 << 20).await.unwrap();
        let mut reader = CsdbReader::new(file, &dictionary, ReadOptions::default());
        let cases = reader.next_chunk(100).await.unwrap();
        let case = &cases[0];

        let case_cells: Vec<Cell> = layout.rows(case).next().unwrap().cells().collect();
        assert_eq!(
            case_cells[2],
            Cell::Text("997f1b93-b3c7-468e-ba29-7c9b799a0281")
        );
        assert_eq!(case_cells[5], Cell::Text("001"));

        let person = layout.record_table(3);
        let row = layout.table_rows(person, case).next().unwrap();
        let cells: Vec<Cell> = row.cells().collect();
        let at = |name: &str| cells[person.columns.iter().position(|c| c.name == name).unwrap()];
        let num = |n: i64| Cell::Number(Number::new(n, 0));
        assert_eq!(
            [
                at("case_id"),
                at("level_node"),
                at("housing_unit_number"),
                at("household_number"),
                at("occ")
            ],
            [
                Cell::Integer(1),
                Cell::Integer(1),
                num(1),
                num(1),
                Cell::Integer(1)
            ]
        );
        assert_eq!(at("first_name"), Cell::Text("newdude"));
        assert_eq!(at("repeating_subitem_2"), num(2));
        // DEFAULT has no decimal value: NULL.
        assert_eq!(at("repeating_subitem_3"), Cell::Null);
        assert_eq!(at("repeating_parent_2"), Cell::Text("2"));

        let compound = layout.record_table(0);
        let row = layout.table_rows(compound, case).next().unwrap();
        let cells: Vec<Cell> = row.cells().collect();
        let longitude = cells[compound
            .columns
            .iter()
            .position(|c| c.name == "longitude")
            .unwrap()];
        match longitude {
            Cell::Number(n) => assert_eq!(n.to_string(), "234234.56700"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_that_cannot_be_tables_are_refused() {
        let dictionary = |name: &str, record: &str, items: &str| {
            Dictionary::parse(&format!(
                "[Dictionary]\nName={name}\nRecordTypeStart=1\nRecordTypeLen=1\n\
                 [Level]\nName=L\n[IdItems]\n[Item]\nName=ID\nStart=2\nLen=1\n\
                 [Record]\nName={record}\nRecordTypeValue='A'\n{items}"
            ))
            .unwrap()
        };
        let item = |name: &str, start: usize, extra: &str| {
            format!("[Item]\nName={name}\nStart={start}\nLen=1\n{extra}")
        };

        let ok = dictionary("EVAL_DICT", "PRODUCTEURS", &item("X", 3, ""));
        assert_eq!(
            Layout::new(&ok).unwrap().table_names().collect::<Vec<_>>(),
            ["eval_cases", "eval_producteurs"]
        );

        let cases = dictionary("EVAL_DICT", "CASES", &item("X", 3, ""));
        assert_eq!(
            Layout::new(&cases),
            Err(LayoutError::DuplicateTable {
                table: "eval_cases".into()
            })
        );

        let occ = dictionary("EVAL_DICT", "R", &item("OCC", 3, ""));
        assert_eq!(
            Layout::new(&occ),
            Err(LayoutError::DuplicateColumn {
                table: "eval_r".into(),
                column: "occ".into()
            })
        );

        let items = format!("{}{}", item("X", 3, "Occurrences=2\n"), item("X_1", 5, ""));
        let repeated = dictionary("EVAL_DICT", "R", &items);
        assert_eq!(
            Layout::new(&repeated),
            Err(LayoutError::DuplicateColumn {
                table: "eval_r".into(),
                column: "x_1".into()
            })
        );

        let long = "R".repeat(60);
        let too_long = dictionary("EVAL_DICT", &long, &item("X", 3, ""));
        assert!(matches!(
            Layout::new(&too_long),
            Err(LayoutError::NameTooLong { .. })
        ));

        let odd = dictionary("EVAL-DICT", "R", &item("X", 3, ""));
        assert_eq!(
            Layout::new(&odd),
            Err(LayoutError::InvalidName {
                name: "eval-dict".into()
            })
        );
    }
}
