//! Writes of one transaction that read nothing back and need nothing from one another
//! (the operations a group changed, their events, the deliveries those queue): on
//! PostgreSQL they go as one statement, each but the last a data-modifying `WITH` clause,
//! so the group costs one round trip and one statement's fixed cost instead of one per
//! write. SQLite has no writes inside `WITH`; there they run one after the other.
//!
//! The clauses of one statement all see the database as it was before it, so a write
//! whose rows another must see (an operation a later lookup in the same transaction
//! reads) is executed on its own first.
//!
//! Rows of one table ([`Rows`]) go to PostgreSQL as a `VALUES` list while they are few,
//! and beyond [`FEW_ROWS`] as a single JSON parameter read by `json_to_recordset`. A
//! `VALUES` list has a text of its own for each row count, which each connection parses
//! and plans anew: about a millisecond for a lease's 50 operations, more than executing
//! it. The JSON statement's text is the same for any number of rows, so it is planned a
//! few times and then reused. But PostgreSQL cannot see how many rows a JSON array
//! holds: for the one to a few rows of most writes its guess leads it to read a whole
//! table rather than its index, and a plan it keeps for reuse keeps that choice while
//! the table grows. Few rows keep the `VALUES` list, whose count it sees.

use std::fmt::Write as _;

use sqlx::any::AnyArguments;
use sqlx::error::BoxDynError;
use sqlx::{Any, Arguments, Encode, Transaction, Type};

use super::{Backend, Result};

/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMETERS: usize = 65_535;
/// Parameters of one SQLite statement. Its limit is 32,766, but the driver looks up each
/// parameter's name in a list as long as the statement's, so binding costs the square of
/// their number: with 30,000 a statement, `relais bench batch` spent 95% of its time
/// there and took twice as long.
const SQLITE_PARAMETERS: usize = 1_000;
/// Rows written as a `VALUES` list on PostgreSQL; more go as one JSON parameter.
pub(super) const FEW_ROWS: usize = 8;

/// One value of a row written with [`Writes::push_rows`]; its variant is its SQL type,
/// also when it is `NULL`.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Float(Option<f64>),
}

impl Cell {
    fn sql_type(&self) -> &'static str {
        match self {
            Cell::Text(_) => "text",
            Cell::Int(_) => "bigint",
            Cell::Float(_) => "double precision",
        }
    }

    fn bind(self, binds: &mut Binds<'_>) {
        match self {
            Cell::Text(v) => binds.bind(v),
            Cell::Int(v) => binds.bind(v),
            Cell::Float(v) => binds.bind(v),
        };
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Text(None) | Cell::Int(None) | Cell::Float(None) => {
                out.extend_from_slice(b"null")
            }
            Cell::Text(Some(text)) => {
                serde_json::to_writer(&mut *out, text).expect("a string always serializes")
            }
            Cell::Int(Some(n)) => {
                // Writing into a `Vec` cannot fail.
                let _ = std::io::Write::write_fmt(out, format_args!("{n}"));
            }
            // JSON has no NaN or infinity; PostgreSQL reads them from these strings.
            Cell::Float(Some(f)) if f.is_nan() => out.extend_from_slice(b"\"NaN\""),
            Cell::Float(Some(f)) if f.is_infinite() && *f > 0.0 => {
                out.extend_from_slice(b"\"Infinity\"")
            }
            Cell::Float(Some(f)) if f.is_infinite() => out.extend_from_slice(b"\"-Infinity\""),
            Cell::Float(Some(f)) => out.extend_from_slice(format!("{f:?}").as_bytes()),
        }
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(Some(v))
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Self {
        Cell::Text(v)
    }
}
impl From<Option<&str>> for Cell {
    fn from(v: Option<&str>) -> Self {
        Cell::Text(v.map(str::to_owned))
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(Some(v))
    }
}
impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Self {
        Cell::Int(v)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Float(Some(v))
    }
}

/// Rows of one table for [`Writes::push_rows`]: the columns named once, each row's
/// values in their order. A column's type is that of its value in the first row.
pub(super) struct Rows {
    columns: &'static [&'static str],
    cells: Vec<Cell>,
}

impl Rows {
    pub(super) fn new(columns: &'static [&'static str]) -> Self {
        Rows {
            columns,
            cells: Vec::new(),
        }
    }

    /// Adds a row: one value per column, in the columns' order.
    pub(super) fn add(&mut self, row: impl IntoIterator<Item = Cell>) {
        let before = self.cells.len();
        self.cells.extend(row);
        assert_eq!(
            self.cells.len() - before,
            self.columns.len(),
            "a row has one value per column"
        );
        if let Some(first) = self.cells.get(..self.columns.len()) {
            let added = &self.cells[before..];
            debug_assert!(
                first
                    .iter()
                    .zip(added)
                    .all(|(a, b)| a.sql_type() == b.sql_type()),
                "a column keeps one type"
            );
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    fn len(&self) -> usize {
        self.cells.len() / self.columns.len()
    }

    /// `[{"column": value, …}, …]`
    fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(self.cells.len() * 24);
        out.push(b'[');
        for (i, row) in self.cells.chunks(self.columns.len()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            for (j, (column, cell)) in self.columns.iter().zip(row).enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(column.as_bytes());
                out.extend_from_slice(b"\":");
                cell.write_json(&mut out);
            }
            out.push(b'}');
        }
        out.push(b']');
        String::from_utf8(out).expect("JSON written from strings is UTF-8")
    }

    /// Many rows as the row source: the JSON parameter `$first` as a table `v`. PostgreSQL
    /// guesses 100 rows for a JSON array; the `LIMIT` of `$first + 1`, the number of
    /// rows, tells it their number (or, in a plan made for any parameters, makes it guess
    /// 10), so that it looks rows up by index.
    fn recordset(&self, first: usize) -> RowSource {
        let definitions: Vec<String> = self
            .columns
            .iter()
            .zip(&self.cells)
            .map(|(column, cell)| format!("{column} {}", cell.sql_type()))
            .collect();
        RowSource {
            from: format!(
                "(SELECT * FROM json_to_recordset(${first}::json) AS r({}) LIMIT ${}) AS v",
                definitions.join(", "),
                first + 1
            ),
            values: None,
            columns: self.columns,
        }
    }

    /// A `VALUES` list as the row source: `rows` rows of placeholders from `$first`.
    fn values(columns: &'static [&'static str], first: usize, rows: usize) -> RowSource {
        let values = super::values_placeholders(rows, columns.len(), first);
        let named: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, column)| format!("column{} AS {column}", i + 1))
            .collect();
        RowSource {
            from: format!(
                "(SELECT {} FROM (VALUES {values}) AS r) AS v",
                named.join(", ")
            ),
            values: Some(values),
            columns,
        }
    }
}

/// Where a statement of [`Writes::push_rows`] reads its rows: a table `v` whose columns
/// are named as the [`Rows`]' columns.
struct RowSource {
    from: String,
    /// The `VALUES` rows, when the backend takes an insert's rows that way.
    values: Option<String>,
    columns: &'static [&'static str],
}

/// The statement of a [`Writes::push_rows`].
pub(super) enum RowWrite<'a> {
    /// `INSERT INTO table (the rows' columns, then computed's columns)`, each row
    /// followed by `computed`'s SQL expressions, then `suffix` (an `ON CONFLICT`).
    Insert {
        table: &'a str,
        computed: &'a [(&'a str, &'a str)],
        suffix: &'a str,
    },
    /// `UPDATE table SET {set} FROM rows AS v WHERE {condition}`: `set` and `condition`
    /// read the rows' values as `v.column`.
    Update {
        table: &'a str,
        set: &'a str,
        condition: &'a str,
    },
}

impl RowWrite<'_> {
    fn statement(&self, source: &RowSource) -> String {
        match self {
            RowWrite::Insert {
                table,
                computed,
                suffix,
            } => {
                let mut columns = source.columns.join(", ");
                for (column, _) in *computed {
                    columns.push_str(", ");
                    columns.push_str(column);
                }
                let expressions: String =
                    computed.iter().map(|(_, sql)| format!(", {sql}")).collect();
                match &source.values {
                    // SQLite: plain rows, whose expressions are evaluated row by row.
                    Some(values) => {
                        let rows = if expressions.is_empty() {
                            values.clone()
                        } else {
                            values.replace(')', &format!("{expressions})"))
                        };
                        format!("INSERT INTO {table} ({columns}) VALUES {rows}{suffix}")
                    }
                    None => format!(
                        "INSERT INTO {table} ({columns}) SELECT {}{expressions} FROM {}{suffix}",
                        source.columns.join(", "),
                        source.from
                    ),
                }
            }
            RowWrite::Update {
                table,
                set,
                condition,
            } => format!(
                "UPDATE {table} SET {set} FROM {} WHERE {condition}",
                source.from
            ),
        }
    }
}

pub(super) struct Writes<'q> {
    backend: Backend,
    combine: bool,
    /// Statements complete, in order.
    ready: Vec<(String, AnyArguments<'q>)>,
    /// The writes of the statement being gathered, and their values.
    parts: Vec<String>,
    binds: Binds<'q>,
}

/// The values of a statement's placeholders, bound in their order.
#[derive(Default)]
pub(super) struct Binds<'q> {
    arguments: AnyArguments<'q>,
    /// The first value that could not be encoded: the write fails with it.
    error: Option<BoxDynError>,
}

impl<'q> Binds<'q> {
    pub(super) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, Any> + Type<Any>,
    {
        if self.error.is_none() {
            if let Err(e) = self.arguments.add(value) {
                self.error = Some(e);
            }
        }
        self
    }
}

impl<'q> Writes<'q> {
    pub(super) fn new(backend: Backend) -> Self {
        Writes {
            backend,
            combine: backend == Backend::Postgres,
            ready: Vec::new(),
            parts: Vec::new(),
            binds: Binds::default(),
        }
    }

    /// Each write its own statement, on either backend: for callers whose writes must
    /// see one another's rows.
    pub(super) fn one_at_a_time(backend: Backend) -> Self {
        Writes {
            combine: false,
            ..Writes::new(backend)
        }
    }

    /// Adds a write of rows of one table: a `VALUES` list (on SQLite in as many
    /// statements as its parameter limit asks), or on PostgreSQL, beyond a few rows, one
    /// JSON parameter.
    pub(super) fn push_rows(&mut self, write: RowWrite<'_>, rows: Rows) {
        if rows.is_empty() {
            return;
        }
        match self.backend {
            Backend::Postgres if rows.len() > FEW_ROWS => {
                let json = rows.to_json();
                let count = rows.len() as i64;
                self.push(
                    2,
                    |first| write.statement(&rows.recordset(first)),
                    |binds| {
                        binds.bind(json).bind(count);
                    },
                );
            }
            Backend::Postgres | Backend::Sqlite => {
                let per_statement = (SQLITE_PARAMETERS / rows.columns.len()).max(1);
                let mut left = rows.len();
                let mut cells = rows.cells.into_iter();
                while left > 0 {
                    let count = left.min(per_statement);
                    left -= count;
                    let values = count * rows.columns.len();
                    self.push(
                        values,
                        |first| write.statement(&Rows::values(rows.columns, first, count)),
                        |binds| {
                            for cell in cells.by_ref().take(values) {
                                cell.bind(binds);
                            }
                        },
                    );
                }
            }
        }
    }

    /// Adds a write of `parameters` placeholders: `sql` gives its text, numbering its
    /// placeholders from the one it is given; `bind` binds their values, in order.
    pub(super) fn push(
        &mut self,
        parameters: usize,
        sql: impl FnOnce(usize) -> String,
        bind: impl FnOnce(&mut Binds<'q>),
    ) {
        if !self.combine || self.binds.arguments.len() + parameters > MAX_PARAMETERS {
            self.seal();
        }
        let first = self.binds.arguments.len() + 1;
        self.parts.push(sql(first));
        bind(&mut self.binds);
    }

    /// Ends the statement being gathered.
    fn seal(&mut self) {
        if self.parts.is_empty() {
            return;
        }
        let parts = std::mem::take(&mut self.parts);
        let (last, clauses) = parts.split_last().expect("not empty");
        let mut sql = String::with_capacity(parts.iter().map(|p| p.len() + 12).sum());
        for (i, clause) in clauses.iter().enumerate() {
            sql.push_str(if i == 0 { "WITH " } else { ", " });
            let _ = write!(sql, "w{i} AS ({clause})");
        }
        if !clauses.is_empty() {
            sql.push(' ');
        }
        sql.push_str(last);
        let arguments = std::mem::take(&mut self.binds.arguments);
        self.ready.push((sql, arguments));
    }

    /// The statements, as they would be executed, with the number of values of each.
    #[cfg(test)]
    fn statements(mut self) -> Vec<(String, usize)> {
        self.seal();
        self.ready
            .into_iter()
            .map(|(sql, arguments)| (sql, arguments.len()))
            .collect()
    }

    /// Runs the writes on their own: a lone statement as it is (it is atomic by itself,
    /// and saves the round trips of `BEGIN` and `COMMIT`), several in one transaction.
    pub(super) async fn execute_atomically(mut self, pool: &sqlx::AnyPool) -> Result<()> {
        self.seal();
        if self.ready.len() == 1 && self.binds.error.is_none() {
            let (sql, arguments) = self.ready.pop().expect("one statement");
            sqlx::query_with(&sql, arguments).execute(pool).await?;
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        self.execute(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn execute(mut self, tx: &mut Transaction<'static, Any>) -> Result<()> {
        if let Some(error) = self.binds.error.take() {
            return Err(sqlx::Error::Encode(error).into());
        }
        self.seal();
        for (sql, arguments) in self.ready {
            sqlx::query_with(&sql, arguments).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(writes: &mut Writes<'_>, table: &str, value: i64) {
        writes.push(
            2,
            |first| format!("INSERT INTO {table} VALUES (${first}, ${})", first + 1),
            |binds| {
                binds.bind(value).bind(value + 1);
            },
        );
    }

    #[test]
    fn postgres_gets_one_statement_numbered_throughout() {
        let mut writes = Writes::new(Backend::Postgres);
        row(&mut writes, "a", 1);
        row(&mut writes, "b", 3);
        row(&mut writes, "c", 5);
        assert_eq!(
            writes.statements(),
            [(
                "WITH w0 AS (INSERT INTO a VALUES ($1, $2)), w1 AS (INSERT INTO b VALUES ($3, $4)) \
                 INSERT INTO c VALUES ($5, $6)"
                    .to_owned(),
                6
            )]
        );
    }

    #[test]
    fn sqlite_gets_one_statement_per_write() {
        let mut writes = Writes::new(Backend::Sqlite);
        row(&mut writes, "a", 1);
        row(&mut writes, "b", 3);
        assert_eq!(
            writes.statements(),
            [
                ("INSERT INTO a VALUES ($1, $2)".to_owned(), 2),
                ("INSERT INTO b VALUES ($1, $2)".to_owned(), 2)
            ]
        );
    }

    #[test]
    fn a_statement_never_takes_more_parameters_than_postgres_allows() {
        let mut writes = Writes::new(Backend::Postgres);
        let big = |writes: &mut Writes<'_>| {
            writes.push(
                40_000,
                |first| format!("INSERT INTO t VALUES (${first})"),
                |binds| {
                    for i in 0..40_000_i64 {
                        binds.bind(i);
                    }
                },
            )
        };
        big(&mut writes);
        big(&mut writes);
        row(&mut writes, "small", 1);
        let statements = writes.statements();
        assert_eq!(
            statements
                .iter()
                .map(|(_, values)| *values)
                .collect::<Vec<_>>(),
            [40_000, 40_002]
        );
        assert!(statements[1]
            .0
            .ends_with("INSERT INTO small VALUES ($40001, $40002)"));
    }

    #[test]
    fn nothing_to_write_is_no_statement() {
        assert!(Writes::new(Backend::Postgres).statements().is_empty());
    }

    const PAIR: &[&str] = &["id", "n"];

    fn pairs(count: i64) -> Rows {
        let mut rows = Rows::new(PAIR);
        for i in 0..count {
            rows.add([format!("r{i}").into(), i.into()]);
        }
        rows
    }

    const UPDATE: RowWrite<'static> = RowWrite::Update {
        table: "t",
        set: "n = v.n",
        condition: "t.id = v.id",
    };

    #[test]
    fn postgres_reads_any_number_of_rows_from_one_json_parameter_with_one_text() {
        let texts: Vec<Vec<(String, usize)>> = [FEW_ROWS as i64 + 1, 50, 1000]
            .into_iter()
            .map(|count| {
                let mut writes = Writes::new(Backend::Postgres);
                writes.push_rows(UPDATE, pairs(count));
                writes.statements()
            })
            .collect();
        assert_eq!(
            texts[0],
            [(
                "UPDATE t SET n = v.n FROM (SELECT * FROM json_to_recordset($1::json) \
                 AS r(id text, n bigint) LIMIT $2) AS v WHERE t.id = v.id"
                    .to_owned(),
                2
            )]
        );
        assert!(texts.iter().all(|t| *t == texts[0]), "{texts:?}");
    }

    #[test]
    fn postgres_takes_a_few_rows_as_values_whose_count_it_sees() {
        let mut writes = Writes::new(Backend::Postgres);
        writes.push_rows(UPDATE, pairs(2));
        writes.push_rows(UPDATE, pairs(FEW_ROWS as i64));
        let statements = writes.statements();
        assert_eq!(statements.len(), 1);
        assert!(statements[0].0.starts_with(
            "WITH w0 AS (UPDATE t SET n = v.n FROM (SELECT column1 AS id, column2 AS n FROM \
             (VALUES ($1, $2), ($3, $4)) AS r) AS v WHERE t.id = v.id) UPDATE t"
        ));
        assert_eq!(statements[0].1, 2 * 2 + 2 * FEW_ROWS);
    }

    #[test]
    fn sqlite_reads_rows_from_values_named_as_the_columns() {
        let mut writes = Writes::new(Backend::Sqlite);
        writes.push_rows(UPDATE, pairs(2));
        writes.push_rows(
            RowWrite::Insert {
                table: "t",
                computed: &[("at", "0")],
                suffix: " ON CONFLICT DO NOTHING",
            },
            pairs(2),
        );
        assert_eq!(
            writes.statements(),
            [
                (
                    "UPDATE t SET n = v.n FROM (SELECT column1 AS id, column2 AS n FROM \
                     (VALUES ($1, $2), ($3, $4)) AS r) AS v WHERE t.id = v.id"
                        .to_owned(),
                    4
                ),
                (
                    "INSERT INTO t (id, n, at) VALUES ($1, $2, 0), ($3, $4, 0) ON CONFLICT DO NOTHING"
                        .to_owned(),
                    4
                )
            ]
        );
    }

    #[test]
    fn postgres_inserts_select_the_rows_and_computed_columns() {
        let mut writes = Writes::new(Backend::Postgres);
        writes.push_rows(
            RowWrite::Insert {
                table: "t",
                computed: &[("at", "now()")],
                suffix: "",
            },
            pairs(FEW_ROWS as i64 + 1),
        );
        writes.push_rows(UPDATE, Rows::new(PAIR));
        assert_eq!(
            writes.statements(),
            [(
                "INSERT INTO t (id, n, at) SELECT id, n, now() FROM (SELECT * FROM \
                 json_to_recordset($1::json) AS r(id text, n bigint) LIMIT $2) AS v"
                    .to_owned(),
                2
            )]
        );
    }

    #[test]
    fn sqlite_splits_rows_into_statements_of_at_most_a_thousand_values() {
        let mut writes = Writes::new(Backend::Sqlite);
        writes.push_rows(UPDATE, pairs(1_201));
        let values: Vec<usize> = writes.statements().iter().map(|(_, n)| *n).collect();
        assert_eq!(values, [1_000, 1_000, 402]);
    }

    #[test]
    fn rows_become_json_objects_keeping_text_numbers_and_nulls_exact() {
        const COLUMNS: &[&str] = &["s", "i", "f", "none"];
        let mut rows = Rows::new(COLUMNS);
        rows.add([
            "quote \" backslash \\ nul \u{0} é".into(),
            i64::MIN.into(),
            0.1.into(),
            Cell::Text(None),
        ]);
        rows.add([
            "".into(),
            i64::MAX.into(),
            f64::NAN.into(),
            Cell::Text(None),
        ]);
        rows.add([
            "x".into(),
            0.into(),
            f64::NEG_INFINITY.into(),
            Cell::Text(None),
        ]);
        let json: serde_json::Value = serde_json::from_str(&rows.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"s": "quote \" backslash \\ nul \u{0} é", "i": i64::MIN, "f": 0.1, "none": null},
                {"s": "", "i": i64::MAX, "f": "NaN", "none": null},
                {"s": "x", "i": 0, "f": "-Infinity", "none": null},
            ])
        );
    }

    #[test]
    #[should_panic(expected = "one value per column")]
    fn a_row_short_of_a_value_is_refused() {
        Rows::new(PAIR).add(["only".into()]);
    }
}
