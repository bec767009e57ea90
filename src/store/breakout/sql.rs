//! The SQL of breakout tables in each database an analytics target may be: PostgreSQL,
//! SQLite or MySQL/MariaDB. The rest of the store writes its queries once, with `$n`
//! placeholders and `"quoted"` names; what differs is here.

use crate::cspro::layout::{Cell, ColumnDefault, ColumnType, ForeignKey, Table};

/// The database breakout tables are written into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
    Mysql,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Self::Mysql)
        } else {
            None
        }
    }

    /// An identifier, quoted: `"name"`, or `` `name` `` on MySQL.
    pub fn quote(self, name: &str) -> String {
        match self {
            Self::Mysql => format!("`{}`", name.replace('`', "``")),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// A statement written with `$1, $2…` (each once, in order) as this database takes
    /// it: MySQL knows only `?`.
    pub fn sql(self, text: &str) -> String {
        if self != Self::Mysql {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out
    }

    /// `INSERT …` followed by this: on a row with the same `keys`, update `columns`.
    pub fn upsert(self, keys: &[&str], columns: &[&str]) -> String {
        match self {
            Self::Mysql => {
                let set: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect();
                format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
            }
            _ => {
                let set: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    keys.join(", "),
                    set.join(", ")
                )
            }
        }
    }

    /// A placeholder whose bound Unix seconds become a timestamp.
    fn time(self, placeholder: &str) -> String {
        match self {
            Self::Postgres => {
                format!("CAST(to_timestamp(CAST({placeholder} AS BIGINT)) AS TIMESTAMP)")
            }
            Self::Sqlite => format!("datetime({placeholder}, 'unixepoch')"),
            Self::Mysql => format!("FROM_UNIXTIME({placeholder})"),
        }
    }

    /// The `n`th placeholder of a statement (1-based) as this database numbers them.
    /// SQLite gets anonymous `?`s too: it finds a named one (`$7`) by a linear search,
    /// which makes binding a statement of thousands of them quadratic.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Self::Postgres => format!("${n}"),
            Self::Sqlite | Self::Mysql => "?".to_owned(),
        }
    }

    /// `"name"` in the database's current schema, `"schema"."name"` in a project's own.
    pub fn qualified(self, schema: Option<&str>, name: &str) -> String {
        match schema {
            Some(schema) => format!("{}.{}", self.quote(schema), self.quote(name)),
            None => self.quote(name),
        }
    }

    fn column_type(self, t: ColumnType) -> String {
        use ColumnType as T;
        match (t, self) {
            (T::Serial, Self::Postgres) => "SERIAL PRIMARY KEY".into(),
            (T::Serial, Self::Sqlite) => "INTEGER PRIMARY KEY NOT NULL".into(),
            (T::Serial, Self::Mysql) => "INT NOT NULL AUTO_INCREMENT PRIMARY KEY".into(),
            (T::Integer, Self::Mysql) => "INT".into(),
            (T::Integer, _) => "INTEGER".into(),
            (T::Key, Self::Mysql) => "VARCHAR(255)".into(),
            (T::LongText, Self::Mysql) => "LONGTEXT".into(),
            (T::Text | T::Key | T::LongText, _) => "TEXT".into(),
            (T::Timestamp, Self::Mysql) => "DATETIME".into(),
            (T::Timestamp, _) => "TIMESTAMP".into(),
            (T::Decimal { precision, scale }, _) => {
                let precision = precision.max(1);
                format!("NUMERIC({precision}, {})", scale.min(precision))
            }
        }
    }

    /// `CREATE TABLE` and `CREATE INDEX` statements for one table (in `schema`, if given).
    /// MySQL has no `CREATE INDEX IF NOT EXISTS`: its indexes are part of the table.
    pub fn table_ddl(self, table: &Table, schema: Option<&str>) -> Vec<String> {
        let q = |name: &str| self.quote(name);
        let mut parts: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                let mut column = format!("{} {}", q(&c.name), self.column_type(c.column_type));
                if !c.nullable && c.column_type != ColumnType::Serial {
                    column.push_str(" NOT NULL");
                }
                match c.default {
                    Some(ColumnDefault::Zero) => column.push_str(" DEFAULT 0"),
                    Some(ColumnDefault::One) => column.push_str(" DEFAULT 1"),
                    Some(ColumnDefault::Now) => column.push_str(" DEFAULT CURRENT_TIMESTAMP"),
                    None => {}
                }
                column
            })
            .collect();
        let columns = |cols: &[String]| cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
        if self == Self::Mysql {
            for index in &table.indexes {
                parts.push(format!(
                    "{}KEY {} ({})",
                    if index.unique { "UNIQUE " } else { "" },
                    q(&index.name),
                    columns(&index.columns)
                ));
            }
        }
        // SQLite cannot add a foreign key to a table; the others get theirs once loaded.
        if self == Self::Sqlite {
            for key in &table.foreign_keys {
                parts.push(self.reference(key, schema));
            }
        }
        let mut statements = vec![format!(
            "CREATE TABLE IF NOT EXISTS {} ({}){}",
            self.qualified(schema, &table.name),
            parts.join(", "),
            if self == Self::Mysql {
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            } else {
                ""
            }
        )];
        if self != Self::Mysql {
            for index in &table.indexes {
                // PostgreSQL puts an index in its table's schema, unqualified.
                statements.push(format!(
                    "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                    if index.unique { "UNIQUE " } else { "" },
                    q(&index.name),
                    self.qualified(schema, &table.name),
                    columns(&index.columns)
                ));
            }
        }
        statements
    }

    fn reference(self, key: &ForeignKey, schema: Option<&str>) -> String {
        format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE CASCADE",
            self.quote(&key.column),
            self.qualified(schema, &key.table),
            self.quote(&key.references)
        )
    }

    /// The foreign keys of a table as constraints added to it, with their names, on
    /// PostgreSQL and MySQL: a load into tables without them skips a check per row (on
    /// PostgreSQL a trigger and a row lock on the parent), which costs more than the
    /// load itself; adding them afterwards checks every row in one pass.
    pub fn foreign_key_ddl(self, table: &Table, schema: Option<&str>) -> Vec<(String, String)> {
        if self == Self::Sqlite {
            return Vec::new();
        }
        table
            .foreign_keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                // Unique per schema, and within the 63 bytes PostgreSQL keeps.
                let stem: String = table.name.chars().take(56).collect();
                let name = format!("{stem}-fk{}", i + 1);
                let sql = format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {}",
                    self.qualified(schema, &table.name),
                    self.quote(&name),
                    self.reference(key, schema)
                );
                (name, sql)
            })
            .collect()
    }

    /// The placeholders of one row whose first parameter is number `first`: numeric
    /// values with decimals are cast from their exact text on PostgreSQL; times are Unix
    /// seconds.
    fn row_placeholders(self, table: &Table, first: usize) -> String {
        let cells: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p = self.placeholder(first + i);
                match (c.column_type, self) {
                    (ColumnType::Decimal { scale, .. }, Self::Postgres) if scale > 0 => {
                        format!("CAST({p} AS {})", self.column_type(c.column_type))
                    }
                    (ColumnType::Timestamp, _) => self.time(&p),
                    _ => p,
                }
            })
            .collect();
        format!("({})", cells.join(", "))
    }

    /// A multi-row `INSERT` of `rows` rows, every column given.
    pub fn insert_sql(self, table: &Table, schema: Option<&str>, rows: usize) -> String {
        let columns: Vec<String> = table.columns.iter().map(|c| self.quote(&c.name)).collect();
        let n = table.columns.len();
        let values: Vec<String> = (0..rows)
            .map(|r| self.row_placeholders(table, 1 + r * n))
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.qualified(schema, &table.name),
            columns.join(", "),
            values.join(", ")
        )
    }

    /// A Unix-seconds parameter as a timestamp, for statements written by hand.
    pub fn time_param(self, n: usize) -> String {
        self.time(&self.placeholder(n))
    }
}

/// A text column of a row: MySQL hands `TEXT` columns over as blobs, which the `Any`
/// driver will not read as strings.
pub(super) fn text(row: &sqlx::any::AnyRow, column: &str) -> Result<String, sqlx::Error> {
    use sqlx::Row;
    match row.try_get::<String, _>(column) {
        Ok(text) => Ok(text),
        Err(e) => match row.try_get::<Vec<u8>, _>(column) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| e),
            Err(_) => Err(e),
        },
    }
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

pub(super) fn bind_cell<'q>(
    query: AnyQuery<'q>,
    column: ColumnType,
    cell: Cell<'q>,
) -> AnyQuery<'q> {
    let integer = |cell: Cell<'_>| match cell {
        Cell::Integer(i) | Cell::Time(i) => Some(i),
        Cell::Number(n) => n.as_i64(),
        Cell::Text(t) => t.trim().parse().ok(),
        Cell::Null => None,
    };
    match column {
        ColumnType::Serial | ColumnType::Integer => query.bind(integer(cell)),
        // Whole numbers go as integers (PostgreSQL assigns `bigint` to `numeric` itself,
        // and parses no text); fractions as their exact decimal text.
        ColumnType::Decimal { scale: 0, .. } => query.bind(integer(cell)),
        ColumnType::Decimal { .. } => query.bind(match cell {
            Cell::Integer(i) | Cell::Time(i) => Some(i.to_string()),
            Cell::Number(n) => Some(n.to_string()),
            Cell::Text(t) => Some(t.trim().to_owned()).filter(|t| !t.is_empty()),
            Cell::Null => None,
        }),
        ColumnType::Timestamp => query.bind(match cell {
            Cell::Time(i) => Some(i),
            _ => None,
        }),
        ColumnType::Text | ColumnType::Key | ColumnType::LongText => match cell {
            Cell::Text(t) => query.bind(Some(t)),
            Cell::Integer(i) | Cell::Time(i) => query.bind(Some(i.to_string())),
            Cell::Number(n) => query.bind(Some(n.to_string())),
            Cell::Null => query.bind(None::<String>),
        },
    }
}

/// The record of what was written into breakout tables lives beside them: in a separate
/// analytics database, these are created there (the main database has them by migration).
pub(super) fn bookkeeping(dialect: Dialect) -> [String; 2] {
    // MySQL indexes no TEXT whole: keys are VARCHARs there.
    let (key, long) = match dialect {
        Dialect::Mysql => ("VARCHAR(255)", "LONGTEXT"),
        _ => ("TEXT", "TEXT"),
    };
    [
        format!(
            "CREATE TABLE IF NOT EXISTS breakout_outputs (
                project_id {key} NOT NULL,
                dictionary {key} NOT NULL,
                tables {long} NOT NULL,
                operation_id {key} NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (project_id, dictionary)
            )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS breakout_chunks (
                project_id {key} NOT NULL,
                dictionary {key} NOT NULL,
                chunk BIGINT NOT NULL,
                operation_id {key} NOT NULL,
                fingerprint {key} NOT NULL,
                cases BIGINT NOT NULL,
                issues {long} NOT NULL,
                committed_at BIGINT NOT NULL,
                PRIMARY KEY (project_id, dictionary, chunk)
            )"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cspro::dictionary::Dictionary;
    use crate::cspro::layout::Layout;

    fn popstan() -> Layout {
        let text = include_str!("../../../fixtures/cspro/jhandley_PopstanCensus_CEN2000.dcf");
        Layout::new(&Dictionary::parse(text).unwrap()).unwrap()
    }

    #[test]
    fn placeholders_for_mysql() {
        assert_eq!(
            Dialect::Mysql.sql("SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '$'"),
            "SELECT a FROM t WHERE b = ? AND c = ? AND d = '$'"
        );
        assert_eq!(Dialect::Postgres.sql("x = $1"), "x = $1");
    }

    #[test]
    fn ddl_quotes_names_types_numbers_exactly_and_references_with_cascade() {
        let layout = popstan();
        let ddl = Dialect::Postgres.table_ddl(layout.level_table(0), None);
        assert!(
            ddl[0].starts_with(
                "CREATE TABLE IF NOT EXISTS \"cen2000_level-1\" (\"level-1-id\" SERIAL PRIMARY KEY, \"case-id\" TEXT NOT NULL"
            ),
            "{}",
            ddl[0]
        );
        assert!(
            !ddl[0].contains("FOREIGN KEY"),
            "added once loaded: {}",
            ddl[0]
        );
        let keys = Dialect::Postgres.foreign_key_ddl(layout.level_table(0), None);
        assert_eq!(
            keys,
            [(
                "cen2000_level-1-fk1".to_owned(),
                "ALTER TABLE \"cen2000_level-1\" ADD CONSTRAINT \"cen2000_level-1-fk1\" FOREIGN KEY (\"case-id\") REFERENCES \"cen2000_cases\" (\"id\") ON DELETE CASCADE".to_owned()
            )]
        );
        let sqlite = Dialect::Sqlite.table_ddl(layout.level_table(0), None);
        assert!(sqlite[0].ends_with(
            "FOREIGN KEY (\"case-id\") REFERENCES \"cen2000_cases\" (\"id\") ON DELETE CASCADE)"
        ));
        assert!(Dialect::Sqlite
            .foreign_key_ddl(layout.level_table(0), None)
            .is_empty());
        assert!(ddl[1].starts_with("CREATE UNIQUE INDEX IF NOT EXISTS \"cen2000_level-1-case-id\""));
        let cases = Dialect::Postgres.table_ddl(layout.cases_table(), None);
        assert!(
            cases[0].contains("\"deleted\" INTEGER NOT NULL DEFAULT 0"),
            "{}",
            cases[0]
        );

        let mysql = Dialect::Mysql.table_ddl(layout.record_table(0), Some("s"));
        assert_eq!(mysql.len(), 1, "MySQL's indexes are in the table");
        assert!(mysql[0].starts_with(
            "CREATE TABLE IF NOT EXISTS `s`.`cen2000_person` (`person-id` INT NOT NULL AUTO_INCREMENT PRIMARY KEY, `level-1-id` INT NOT NULL, `occ` INT NOT NULL DEFAULT 1"
        ), "{}", mysql[0]);
        assert!(mysql[0].contains("KEY `cen2000_person-level-1-id` (`level-1-id`)"));
        assert!(!mysql[0].contains("REFERENCES"), "added once loaded");
        let keys = Dialect::Mysql.foreign_key_ddl(layout.record_table(0), Some("s"));
        assert!(keys[0]
            .1
            .ends_with("REFERENCES `s`.`cen2000_level-1` (`level-1-id`) ON DELETE CASCADE"));
        let cases = Dialect::Mysql.table_ddl(layout.cases_table(), None);
        assert!(
            cases[0].contains("`id` VARCHAR(255) NOT NULL"),
            "{}",
            cases[0]
        );
        assert!(cases[0].contains("UNIQUE KEY `cen2000_cases-id` (`id`)"));

        let sqlite = Dialect::Sqlite.table_ddl(layout.record_table(0), None);
        assert!(sqlite[0].contains("\"person-id\" INTEGER PRIMARY KEY NOT NULL"));

        // Popstan's numbers are whole: bound as integers, no cast.
        let sql = Dialect::Postgres.insert_sql(layout.level_table(0), None, 2);
        assert!(!sql.contains("CAST") && sql.contains("$20"), "{sql}");
        let sql = Dialect::Mysql.insert_sql(layout.level_table(0), None, 1);
        assert!(!sql.contains('$') && sql.contains('?'), "{sql}");
        // An item with decimals is cast from its exact text; a note's time converted.
        let text = include_str!("../../../fixtures/cspro/cspro_ThreeLevelTest_HOUSEHOLD_DICT.dcf");
        let three = Layout::new(&Dictionary::parse(text).unwrap()).unwrap();
        let sql = Dialect::Postgres.insert_sql(three.record_table(0), None, 1);
        assert!(sql.contains("CAST($3 AS NUMERIC(15, 5))"), "{sql}");
        let sql = Dialect::Mysql.insert_sql(three.notes_table(), None, 1);
        assert!(sql.ends_with("FROM_UNIXTIME(?))"), "{sql}");
    }

    #[test]
    fn upserts() {
        assert_eq!(
            Dialect::Sqlite.upsert(&["a", "b"], &["c"]),
            " ON CONFLICT (a, b) DO UPDATE SET c = excluded.c"
        );
        assert_eq!(
            Dialect::Mysql.upsert(&["a"], &["c", "d"]),
            " ON DUPLICATE KEY UPDATE c = VALUES(c), d = VALUES(d)"
        );
    }
}
