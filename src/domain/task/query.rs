//! Which tasks `GET /v1/tasks` lists, and how it pages. The seed's `query` is a string of
//! predicates joined by `&`, as in `name='abcdef*'&since>'2015-07-14'`; Relais reads:
//!
//! | predicate | operators | selects |
//! |---|---|---|
//! | `name` | `=` | tasks of this step; a trailing `*` matches every step that starts so |
//! | `since` | `>`, `>=` | tasks submitted after (or at) the time: an RFC 3339 time, or a date (its midnight UTC) |
//! | `until` | `<`, `<=` | tasks submitted before (or at) the time |
//! | `state` | `=` | `pending`, `running` or `done` |
//! | `task_status` | `=` | `waiting`, `started`, `running`, `commit`, `ko`, `cancelled`, `timeout` or `skipped` |
//!
//! Values are quoted with `'` (a quote inside is written twice) or bare. Without `state`
//! or `task_status`, the tasks under way are listed (`pending` and `running`), as the
//! seed says: "lister les tâches en cours". Each predicate is given once; anything else
//! is refused, naming what is wrong, rather than ignored.

use chrono::{DateTime, NaiveDate, Utc};

use super::{task_state, TaskState, TaskStatus};
use crate::domain::ids::OperationId;
use crate::domain::operation::OperationStatus;
use crate::domain::FieldError;

pub const MAX_QUERY_LEN: usize = 2_000;
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 100;
/// Far beyond any list a client pages through; bounded so the number stays a number.
pub const MAX_OFFSET: i64 = 1_000_000_000;

/// A predicate of the query that Relais cannot apply: the request is a 412, as the seed
/// says of predicates that are not right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PredicateError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, PredicateError> {
    Err(PredicateError(message.into()))
}

/// Which steps a list shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMatch {
    Is(String),
    StartsWith(String),
}

/// The tasks a query selects. `statuses` may be empty (`state='done'&task_status='running'`
/// selects nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFilter {
    pub statuses: Vec<OperationStatus>,
    pub step: Option<StepMatch>,
    /// Submitted at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Submitted at or before this time.
    pub created_to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
        }
    }
}

const FIELDS: [&str; 5] = ["name", "since", "until", "state", "task_status"];

pub fn parse_query(text: &str) -> Result<TaskFilter, PredicateError> {
    if text.chars().count() > MAX_QUERY_LEN {
        return refuse(format!("is longer than {MAX_QUERY_LEN} characters"));
    }
    if text.chars().any(char::is_control) {
        return refuse("must not contain control characters");
    }
    let mut filter = TaskFilter {
        statuses: Vec::new(),
        step: None,
        created_from: None,
        created_to: None,
    };
    let (mut state, mut task_status) = (None, None);
    let mut seen: Vec<&str> = Vec::new();
    for predicate in predicates(text)? {
        let (field, op, value) = split(predicate)?;
        if seen.contains(&field) {
            return refuse(format!(
                "`{field}` is given twice: give each predicate once"
            ));
        }
        seen.push(field);
        let expect = |ops: &[Op]| -> Result<(), PredicateError> {
            if ops.contains(&op) {
                return Ok(());
            }
            let allowed: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
            refuse(format!(
                "`{field}` takes {}, not `{}`",
                allowed.join(" or "),
                op.as_str()
            ))
        };
        match field {
            "name" => {
                expect(&[Op::Eq])?;
                filter.step = step_match(&value)?;
            }
            "since" => {
                expect(&[Op::Gt, Op::Ge])?;
                let t = time(field, &value)?;
                filter.created_from = Some(match op {
                    Op::Gt => t + chrono::Duration::milliseconds(1),
                    _ => t,
                });
            }
            "until" => {
                expect(&[Op::Lt, Op::Le])?;
                let t = time(field, &value)?;
                filter.created_to = Some(match op {
                    Op::Lt => t - chrono::Duration::milliseconds(1),
                    _ => t,
                });
            }
            "state" => {
                expect(&[Op::Eq])?;
                state = Some(TaskState::parse(&value).map_or_else(
                    || {
                        let known: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                        refuse(format!(
                            "`state` is one of {}, not '{value}'",
                            known.join(", ")
                        ))
                    },
                    Ok,
                )?);
            }
            "task_status" => {
                expect(&[Op::Eq])?;
                task_status = Some(TaskStatus::parse(&value).map_or_else(
                    || {
                        let known: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
                        refuse(format!(
                            "`task_status` is one of {}, not '{value}'",
                            known.join(", ")
                        ))
                    },
                    Ok,
                )?);
            }
            _ => unreachable!("split() returns known fields only"),
        }
    }
    filter.statuses = OperationStatus::ALL
        .into_iter()
        .filter(|status| {
            let (s, ts) = task_state(*status);
            match (state, task_status) {
                (None, None) => !matches!(s, TaskState::Done | TaskState::Cancelled),
                _ => {
                    state.is_none_or(|want| want == s) && task_status.is_none_or(|want| want == ts)
                }
            }
        })
        .collect();
    Ok(filter)
}

/// The predicates, split at each `&` outside quotes; none for a blank query.
fn predicates(text: &str) -> Result<Vec<&str>, PredicateError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            // A doubled quote inside quotes toggles twice: it stays quoted.
            '\'' => quoted = !quoted,
            '&' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return refuse("a quote is not closed");
    }
    parts.push(&text[start..]);
    for part in &parts {
        if part.trim().is_empty() {
            return refuse("holds an empty predicate (`&` at an end, or twice in a row)");
        }
    }
    Ok(parts)
}

/// `field op value`, the value unquoted.
fn split(predicate: &str) -> Result<(&'static str, Op, String), PredicateError> {
    let predicate = predicate.trim();
    let name_len = predicate
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(predicate.len());
    let (name, rest) = predicate.split_at(name_len);
    let Some(field) = FIELDS.into_iter().find(|f| *f == name) else {
        let shown: String = name.chars().take(40).collect();
        return refuse(format!(
            "`{shown}` is not a predicate Relais knows: use {}",
            FIELDS.join(", ")
        ));
    };
    let rest = rest.trim_start();
    let (op, value) = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
    ]
    .into_iter()
    .find_map(|(text, op)| rest.strip_prefix(text).map(|value| (op, value)))
    .map_or_else(
        || {
            refuse(format!(
                "`{field}` needs an operator (=, >, >=, <, <=) and a value"
            ))
        },
        Ok,
    )?;
    Ok((field, op, unquote(field, value.trim())?))
}

fn unquote(field: &str, value: &str) -> Result<String, PredicateError> {
    match value.strip_prefix('\'') {
        Some(inner) => match inner.strip_suffix('\'') {
            Some(inner) if !inner.replace("''", "").contains('\'') => Ok(inner.replace("''", "'")),
            _ => refuse(format!(
                "the value of `{field}` is not one quoted string ('…', a quote inside written twice)"
            )),
        },
        None if value.is_empty() => refuse(format!("`{field}` needs a value")),
        None if value.contains(['\'', ' ', '\t']) => refuse(format!(
            "the value of `{field}` is not one value: quote it ('…')"
        )),
        None => Ok(value.to_owned()),
    }
}

fn step_match(value: &str) -> Result<Option<StepMatch>, PredicateError> {
    let (head, wildcard) = match value.strip_suffix('*') {
        Some(head) => (head, true),
        None => (value, false),
    };
    if head.contains('*') {
        return refuse("`name` takes `*` only at its end, for the steps that start so");
    }
    Ok(match (head.is_empty(), wildcard) {
        (true, true) => None,
        (true, false) => return refuse("`name` needs a step name"),
        (false, true) => Some(StepMatch::StartsWith(head.to_owned())),
        (false, false) => Some(StepMatch::Is(head.to_owned())),
    })
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, PredicateError> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc());
        }
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .or_else(|_| {
            refuse(format!(
                "`{field}` takes a date (2015-07-14) or an RFC 3339 time, not '{value}'"
            ))
        })
}

/// Where a page starts: after `offset` tasks, or at a task a previous page named `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStart {
    Offset(u64),
    At(OperationId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPaging {
    pub start: PageStart,
    pub limit: u32,
}

/// `offset` and `limit` as the seed's `hits` name them, or `next`, the id a previous page
/// ended with: paging by it stays right while tasks come and go.
pub fn checked_paging(
    offset: Option<i64>,
    limit: Option<i64>,
    next: Option<&str>,
) -> Result<TaskPaging, FieldError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as u32,
        Some(_) => {
            return Err(FieldError::new(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            ))
        }
    };
    let start = match (offset, next) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "next",
                "starts a page, as `offset` does: give one of them",
            ))
        }
        (Some(n), None) if (0..=MAX_OFFSET).contains(&n) => PageStart::Offset(n as u64),
        (Some(_), None) => {
            return Err(FieldError::new(
                "offset",
                format!("must be a whole number from 0 to {MAX_OFFSET}"),
            ))
        }
        (None, Some(id)) => PageStart::At(
            id.parse()
                .map_err(|e| FieldError::new("next", format!("{e}")))?,
        ),
        (None, None) => PageStart::Offset(0),
    };
    Ok(TaskPaging { start, limit })
}

/// One page of a list, as the seed's `hits` and `results` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPage {
    pub results: Vec<OperationId>,
    /// Every task the query selects.
    pub total: u64,
    /// How many of them come before this page.
    pub offset: u64,
    pub limit: u32,
    /// The first task of the next page, if there is one.
    pub next: Option<OperationId>,
}

/// `rows`: the tasks from the page's start on, in list order, one more than `limit` when
/// there are more; `before`: how many selected tasks come before the start.
pub fn page(total: u64, before: u64, mut rows: Vec<OperationId>, limit: u32) -> TaskPage {
    let next = rows.get(limit as usize).copied();
    rows.truncate(limit as usize);
    TaskPage {
        results: rows,
        total,
        offset: before,
        limit,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> TaskFilter {
        parse_query(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_seeds_query_selects_steps_by_prefix_submitted_after_a_date() {
        let filter = parsed("name='abcdef*'&since>'2015-07-14'");
        assert_eq!(filter.step, Some(StepMatch::StartsWith("abcdef".into())));
        assert_eq!(
            filter.created_from,
            Some(at("2015-07-14T00:00:00.001Z")),
            "strictly after midnight"
        );
        assert_eq!(filter.created_to, None);
        use OperationStatus as S;
        assert_eq!(
            filter.statuses,
            [S::Pending, S::Initiated, S::Running],
            "the tasks under way"
        );
    }

    #[test]
    fn every_predicate_and_operator() {
        let filter =
            parsed(" name = ingest & since>='2024-01-01T10:00:00+02:00' & until<2024-02-01 ");
        assert_eq!(filter.step, Some(StepMatch::Is("ingest".into())));
        assert_eq!(filter.created_from, Some(at("2024-01-01T08:00:00Z")));
        assert_eq!(filter.created_to, Some(at("2024-01-31T23:59:59.999Z")));
        assert_eq!(
            parsed("until<='2024-02-01'").created_to,
            Some(at("2024-02-01T00:00:00Z"))
        );
        // Done: completed, failed, timed out, skipped; cancelled is its own state.
        assert_eq!(parsed("state='done'").statuses.len(), 4);
        assert_eq!(
            parsed("state='cancelled'").statuses,
            [OperationStatus::Cancelled]
        );
        assert_eq!(
            parsed("task_status='commit'").statuses,
            [OperationStatus::Completed]
        );
        assert_eq!(parsed("state=running").statuses, [OperationStatus::Running]);
        assert!(parsed("state='done'&task_status='running'")
            .statuses
            .is_empty());
        assert_eq!(parsed("name='*'").step, None, "every step");
        assert_eq!(
            parsed("name='it''s'").step,
            Some(StepMatch::Is("it's".into()))
        );
        assert_eq!(parsed("name='a&b'").step, Some(StepMatch::Is("a&b".into())));
        assert_eq!(parsed("").statuses.len(), 3);
        assert_eq!(parsed("   ").step, None);
    }

    #[test]
    fn what_cannot_be_applied_is_refused_naming_it() {
        for (query, says) in [
            ("color='red'", "`color` is not a predicate"),
            ("name>'a'", "`name` takes ="),
            ("since='2015-07-14'", "`since` takes > or >="),
            ("until>'2015-07-14'", "`until` takes < or <="),
            ("since>'last week'", "takes a date"),
            (
                "state='finished'",
                "`state` is one of pending, running, done",
            ),
            ("task_status='ok'", "`task_status` is one of"),
            ("name='a'&name='b'", "given twice"),
            ("name='a*b'", "only at its end"),
            ("name=''", "needs a step name"),
            ("name='open", "not closed"),
            ("name='a'&", "empty predicate"),
            ("&&", "empty predicate"),
            ("name", "needs an operator"),
            ("name=", "needs a value"),
            ("name=a b", "quote it"),
            ("name='a' 'b'", "one quoted string"),
            ("name='a\u{1}'", "control characters"),
        ] {
            let error = parse_query(query).unwrap_err().0;
            assert!(error.contains(says), "{query}: {error}");
        }
        assert!(parse_query(&"x".repeat(MAX_QUERY_LEN + 1)).is_err());
    }

    #[test]
    fn paging_takes_an_offset_or_the_next_task_and_a_bounded_limit() {
        assert_eq!(
            checked_paging(None, None, None).unwrap(),
            TaskPaging {
                start: PageStart::Offset(0),
                limit: DEFAULT_LIMIT
            }
        );
        let id = OperationId::new();
        assert_eq!(
            checked_paging(None, Some(3), Some(&id.to_string())).unwrap(),
            TaskPaging {
                start: PageStart::At(id),
                limit: 3
            }
        );
        let field = |offset, limit, next: Option<&str>| {
            checked_paging(offset, limit, next).unwrap_err().field
        };
        assert_eq!(field(None, Some(0), None), "limit");
        assert_eq!(field(None, Some(101), None), "limit");
        assert_eq!(field(None, Some(-1), None), "limit");
        assert_eq!(field(Some(-1), None, None), "offset");
        assert_eq!(field(Some(MAX_OFFSET + 1), None, None), "offset");
        assert_eq!(field(None, None, Some("async_id_next")), "next");
        assert_eq!(field(Some(0), None, Some(&id.to_string())), "next");
    }

    #[test]
    fn a_page_names_the_task_the_next_one_starts_at() {
        let ids: Vec<OperationId> = (0..4).map(|_| OperationId::new()).collect();
        let full = page(10, 2, ids.clone(), 3);
        assert_eq!(full.results, ids[..3]);
        assert_eq!(full.next, Some(ids[3]));
        assert_eq!((full.total, full.offset, full.limit), (10, 2, 3));
        let last = page(3, 0, ids[..3].to_vec(), 3);
        assert_eq!(last.next, None);
        assert_eq!(last.results.len(), 3);
        let beyond = page(3, 50, Vec::new(), 3);
        assert!(beyond.results.is_empty());
        assert_eq!(beyond.offset, 50);
    }
}
