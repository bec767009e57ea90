//! Writes of one transaction that read nothing back and need nothing from one another
//! (the operations a group changed, their events, the deliveries those queue): on
//! PostgreSQL they go as one statement, each but the last a data-modifying `WITH` clause,
//! so the group costs one round trip and one statement's fixed cost instead of one per
//! write. SQLite has no writes inside `WITH`; there they run one after the other.
//!
//! The clauses of one statement all see the database as it was before it, so a write
//! whose rows another must see (an operation a later lookup in the same transaction
//! reads) is executed on its own first.

use std::fmt::Write as _;

use sqlx::any::AnyArguments;
use sqlx::error::BoxDynError;
use sqlx::{Any, Arguments, Encode, Transaction, Type};

use super::{Backend, Result};

/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMETERS: usize = 65_535;

pub(super) struct Writes<'q> {
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
            combine: backend == Backend::Postgres,
            ready: Vec::new(),
            parts: Vec::new(),
            binds: Binds::default(),
        }
    }

    /// Each write its own statement, on either backend: for callers whose writes must
    /// see one another's rows.
    pub(super) fn one_at_a_time() -> Self {
        Writes::new(Backend::Sqlite)
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
}
