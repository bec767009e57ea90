//! Seed 004's cursor sync, as rules: what a source's page says (its records, the cursor
//! after it, whether more follow), where the sync's cursor moves, when a page is asked for
//! again, and the event each record becomes. The executor does the I/O around them.

pub mod credential;
pub mod spec;

use std::time::Duration;

use serde_json::{json, Value};

use super::event::{EventDraft, EventType};
use super::ids::OperationId;
use super::retry::RetryPolicy;
use super::FieldError;

pub use spec::{Method, PageRequest, SyncSpec};

const MAX_NAME_LEN: usize = 100;
const MAX_PATH_SEGMENTS: usize = 32;
/// Retry-After is honoured up to this long; a source that asks for longer is waited
/// for this long, then asked again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Most of a source's error message an operation keeps.
const MAX_SOURCE_MESSAGE: usize = 1000;
/// Bytes of an answer that is not a page read for its excerpt.
pub const EXCERPT_BYTES: usize = MAX_SOURCE_MESSAGE * 4;

/// A sync's or a credential's name: it is part of URLs (`…/syncs/{name}`), so letters,
/// digits, `-`, `_` and `.` only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncName(String);

impl SyncName {
    pub fn parse(value: &str, field: &str) -> Result<Self, FieldError> {
        let ok = !value.is_empty()
            && value.len() <= MAX_NAME_LEN
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(FieldError::new(
                field,
                format!("must be 1 to {MAX_NAME_LEN} letters, digits, `-`, `_` or `.`"),
            ));
        }
        Ok(SyncName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject of the sync's events: their `sequence` grows by one per record.
    pub fn subject(&self) -> String {
        format!("sync:{}", self.0)
    }
}

impl std::fmt::Display for SyncName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A place in a JSON answer, as dot-separated keys (`data.demarche.dossiers.nodes`); a
/// segment of digits also indexes an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotPath {
    text: String,
    segments: Vec<String>,
}

impl DotPath {
    pub fn parse(value: &str, field: &str) -> Result<Self, FieldError> {
        let segments: Vec<String> = value.split('.').map(str::to_owned).collect();
        let ok = !value.is_empty()
            && segments.len() <= MAX_PATH_SEGMENTS
            && segments
                .iter()
                .all(|s| !s.is_empty() && s.len() <= 200 && !s.chars().any(char::is_control));
        if !ok {
            return Err(FieldError::new(
                field,
                format!(
                    "must be dot-separated keys (like `data.items`), at most {MAX_PATH_SEGMENTS}, none empty"
                ),
            ));
        }
        Ok(DotPath {
            text: value.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn find<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(value, |at, segment| match at {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
            .filter(|v| !v.is_null())
    }

    /// Like `find`, but takes the value out of the answer, so a page's records are not
    /// copied.
    fn take(&self, value: &mut Value) -> Option<Value> {
        let mut at = value;
        for segment in &self.segments {
            at = match at {
                Value::Object(map) => map.get_mut(segment)?,
                Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at.take()).filter(|v| !v.is_null())
    }
}

/// One record of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// A string or a number, as the source gives it.
    pub id: Value,
    pub updated_at: Option<Value>,
    pub data: Value,
}

/// What a source's answer says.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}

/// Why an answer cannot be read as a page. None of these is retried: the source or the
/// sync's configuration must change first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("the source answered with GraphQL errors: {0}")]
    Graphql(String),
    #[error("the source's answer has nothing at `{path}` (the sync's `{parameter}`)")]
    Missing {
        path: String,
        parameter: &'static str,
    },
    #[error("`{path}` (the sync's `{parameter}`) must be {expected} in the source's answer")]
    Shape {
        path: String,
        parameter: &'static str,
        expected: &'static str,
    },
    #[error("the source said more pages follow but gave the cursor it was asked from again ({0:?}): asking again would loop")]
    CursorStuck(String),
}

impl PageError {
    /// The operation error code it fails with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Graphql(_) => "SOURCE_GRAPHQL_ERRORS",
            Self::Missing { .. } | Self::Shape { .. } => "SYNC_CONFIGURATION",
            Self::CursorStuck(_) => "SOURCE_CURSOR_STUCK",
        }
    }
}

fn truncated(text: &str) -> String {
    if text.len() <= MAX_SOURCE_MESSAGE {
        return text.to_owned();
    }
    let mut end = MAX_SOURCE_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Reads one answer of the source: a GraphQL `errors` array fails it, then the records
/// and the page info are taken where the spec says they are.
pub fn read_page(spec: &SyncSpec, mut answer: Value) -> Result<Page, PageError> {
    if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
        if !errors.is_empty() {
            let messages: Vec<String> = errors
                .iter()
                .map(|e| match e.get("message").and_then(Value::as_str) {
                    Some(m) => m.to_owned(),
                    None => e.to_string(),
                })
                .collect();
            return Err(PageError::Graphql(truncated(&messages.join("; "))));
        }
    }
    let missing = |path: &DotPath, parameter| PageError::Missing {
        path: path.as_str().to_owned(),
        parameter,
    };
    let shape = |path: &DotPath, parameter, expected| PageError::Shape {
        path: path.as_str().to_owned(),
        parameter,
        expected,
    };
    let info = spec
        .page_info_path
        .find(&answer)
        .ok_or_else(|| missing(&spec.page_info_path, "pageInfoPath"))?;
    let has_next_page = info
        .get("hasNextPage")
        .and_then(Value::as_bool)
        .ok_or_else(|| {
            shape(
                &spec.page_info_path,
                "pageInfoPath",
                "an object with a boolean `hasNextPage`",
            )
        })?;
    let end_cursor = match info.get("endCursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(shape(
                &spec.page_info_path,
                "pageInfoPath",
                "an object whose `endCursor` is a string or null",
            ))
        }
    };
    let nodes = match spec.nodes_path.take(&mut answer) {
        Some(Value::Array(nodes)) => nodes,
        Some(_) => return Err(shape(&spec.nodes_path, "nodesPath", "an array")),
        None => return Err(missing(&spec.nodes_path, "nodesPath")),
    };
    let mut records = Vec::with_capacity(nodes.len());
    for node in nodes {
        let id = match spec.id_path.find(&node) {
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            Some(_) => {
                return Err(shape(
                    &spec.id_path,
                    "idPath",
                    "a string or a number in every record",
                ))
            }
            None => return Err(missing(&spec.id_path, "idPath")),
        };
        let updated_at = match &spec.updated_at_path {
            Some(path) => Some(
                path.find(&node)
                    .cloned()
                    .ok_or_else(|| missing(path, "updatedAtPath"))?,
            ),
            None => None,
        };
        records.push(Record {
            id,
            updated_at,
            data: node,
        });
    }
    Ok(Page {
        records,
        end_cursor,
        has_next_page,
    })
}

/// Where the sync stands after a page: its end cursor, or, when it has none (an empty
/// last page), the cursor before it, as the seed keeps the last non-null cursor so that
/// the next run only sees what changed.
pub fn cursor_after(previous: Option<&str>, page: &Page) -> Option<String> {
    page.end_cursor
        .clone()
        .or_else(|| previous.map(str::to_owned))
}

/// Whether another page is asked for: the source says one follows and gave a cursor to
/// ask it from. A cursor that did not move would ask for the same page forever.
pub fn next_page(previous: Option<&str>, page: &Page) -> Result<bool, PageError> {
    match (&page.end_cursor, page.has_next_page) {
        (Some(end), true) if previous == Some(end.as_str()) => {
            Err(PageError::CursorStuck(end.clone()))
        }
        (Some(_), true) => Ok(true),
        _ => Ok(false),
    }
}

/// The `sync.record.changed` event of one record.
pub fn record_event(name: &SyncName, operation: OperationId, record: Record) -> EventDraft {
    EventDraft::new(
        EventType::SyncRecordChanged,
        json!({
            "syncName": name.as_str(),
            "operationId": operation,
            "recordId": record.id,
            "updatedAt": record.updated_at,
            "record": record.data,
        }),
    )
}

/// What a source's HTTP status means for the page asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    Answered,
    /// Busy or broken for now: asked again after a wait.
    Unavailable,
    /// Refused (bad credential, bad request): asking again would not help.
    Refused,
}

pub fn source_status(status: u16) -> SourceStatus {
    match status {
        200..=299 => SourceStatus::Answered,
        408 | 425 | 429 | 500..=599 => SourceStatus::Unavailable,
        _ => SourceStatus::Refused,
    }
}

/// The wait before asking again for a page that failed `failures` times in a row (1 for
/// the first failure), or `None` once the operation's retry policy is spent. The policy's
/// backoff (scaled by `time_scale`, below 1 in tests), or the source's `Retry-After` if
/// that is longer.
pub fn source_retry_delay(
    policy: &RetryPolicy,
    failures: u32,
    retry_after: Option<Duration>,
    time_scale: f64,
) -> Option<Duration> {
    if failures > policy.max_retries {
        return None;
    }
    let backoff = policy.delay_after(failures).mul_f64(time_scale.max(0.0));
    let asked = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
    Some(backoff.max(asked))
}

/// The first part of a source's answer body, for an error message.
pub fn answer_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    truncated(text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SyncSpec {
        SyncSpec::parse(&json!({
            "syncName": "d", "endpoint": "http://source.example/graphql",
            "query": "query { x }",
            "nodesPath": "data.demarche.dossiers.nodes",
            "pageInfoPath": "data.demarche.dossiers.pageInfo",
            "idPath": "number", "updatedAtPath": "dateDerniereModification"
        }))
        .unwrap()
    }

    fn answer(nodes: Value, end: Value, more: bool) -> Value {
        json!({"data": {"demarche": {"dossiers": {
            "pageInfo": {"endCursor": end, "hasNextPage": more}, "nodes": nodes}}}})
    }

    #[test]
    fn a_page_gives_its_records_and_cursor() {
        let page = read_page(
            &spec(),
            answer(
                json!([{"number": 7, "dateDerniereModification": "2024-01-01T00:00:00Z", "x": 1}]),
                json!("c7"),
                true,
            ),
        )
        .unwrap();
        assert_eq!(page.end_cursor.as_deref(), Some("c7"));
        assert!(page.has_next_page);
        assert_eq!(page.records[0].id, json!(7));
        assert_eq!(page.records[0].data["x"], 1);
        assert_eq!(
            page.records[0].updated_at,
            Some(json!("2024-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn an_answer_that_does_not_fit_names_what_is_wrong() {
        let s = spec();
        let err = read_page(
            &s,
            json!({"data": {"demarche": {"dossiers": {"nodes": []}}}}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PageError::Missing {
                path: "data.demarche.dossiers.pageInfo".into(),
                parameter: "pageInfoPath"
            }
        );
        assert_eq!(err.code(), "SYNC_CONFIGURATION");
        assert!(err.to_string().contains("data.demarche.dossiers.pageInfo"));
        let err = read_page(
            &s,
            json!({"data": null, "errors": [{"message": "Demarche not found"}, {"message": "second"}]}),
        )
        .unwrap_err();
        assert_eq!(err, PageError::Graphql("Demarche not found; second".into()));
        assert!(matches!(
            read_page(&s, answer(json!({"a": 1}), Value::Null, false)),
            Err(PageError::Shape {
                parameter: "nodesPath",
                ..
            })
        ));
        assert!(matches!(
            read_page(
                &s,
                answer(
                    json!([{"number": {"deep": 1}, "dateDerniereModification": "t"}]),
                    Value::Null,
                    false
                )
            ),
            Err(PageError::Shape {
                parameter: "idPath",
                ..
            })
        ));
        assert!(matches!(
            read_page(
                &s,
                answer(
                    json!([{"dateDerniereModification": "t"}]),
                    Value::Null,
                    false
                )
            ),
            Err(PageError::Missing {
                parameter: "idPath",
                ..
            })
        ));
        assert!(matches!(
            read_page(&s, answer(json!([{"number": 1}]), Value::Null, false)),
            Err(PageError::Missing {
                parameter: "updatedAtPath",
                ..
            })
        ));
        assert!(matches!(
            read_page(&s, answer(json!([]), json!({"x": 1}), false)),
            Err(PageError::Shape {
                parameter: "pageInfoPath",
                ..
            })
        ));
    }

    #[test]
    fn the_cursor_keeps_its_last_non_null_value() {
        let page = |end: Option<&str>, more| Page {
            records: vec![],
            end_cursor: end.map(str::to_owned),
            has_next_page: more,
        };
        assert_eq!(
            cursor_after(Some("a"), &page(Some("b"), true)).as_deref(),
            Some("b")
        );
        assert_eq!(
            cursor_after(Some("b"), &page(None, false)).as_deref(),
            Some("b")
        );
        assert_eq!(cursor_after(None, &page(None, false)), None);
        assert_eq!(next_page(Some("a"), &page(Some("b"), true)), Ok(true));
        assert_eq!(next_page(Some("a"), &page(Some("b"), false)), Ok(false));
        assert_eq!(next_page(Some("a"), &page(None, true)), Ok(false));
        assert_eq!(
            next_page(Some("b"), &page(Some("b"), true)),
            Err(PageError::CursorStuck("b".into()))
        );
    }

    #[test]
    fn a_busy_source_is_asked_again_within_the_policy() {
        let policy = RetryPolicy {
            max_retries: 2,
            retry_delay: 1.0,
            backoff_multiplier: 2.0,
            max_delay: 60.0,
        };
        assert_eq!(
            source_retry_delay(&policy, 1, None, 1.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            source_retry_delay(&policy, 2, None, 1.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(source_retry_delay(&policy, 3, None, 1.0), None);
        assert_eq!(
            source_retry_delay(&policy, 1, Some(Duration::from_secs(5)), 1.0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            source_retry_delay(&policy, 1, None, 0.01),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            source_retry_delay(&policy, 1, Some(Duration::from_secs(86_400)), 1.0),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(source_status(200), SourceStatus::Answered);
        assert_eq!(source_status(429), SourceStatus::Unavailable);
        assert_eq!(source_status(503), SourceStatus::Unavailable);
        assert_eq!(source_status(401), SourceStatus::Refused);
        assert_eq!(source_status(302), SourceStatus::Refused);
    }

    #[test]
    fn names_and_paths_are_checked() {
        assert!(SyncName::parse("dossiers-123_v2.x", "f").is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(101)] {
            assert!(SyncName::parse(bad, "f").is_err(), "{bad:?}");
        }
        let path = DotPath::parse("a.0.b", "f").unwrap();
        assert_eq!(path.find(&json!({"a": [{"b": 3}]})), Some(&json!(3)));
        assert_eq!(path.find(&json!({"a": {"0": {"b": 4}}})), Some(&json!(4)));
        assert_eq!(path.find(&json!({"a": [{"b": null}]})), None);
        assert!(DotPath::parse("a..b", "f").is_err());
        assert!(DotPath::parse(&vec!["a"; 33].join("."), "f").is_err());
    }

    #[test]
    fn each_record_becomes_one_event() {
        let op = OperationId::new();
        let draft = record_event(
            &SyncName::parse("d", "f").unwrap(),
            op,
            Record {
                id: json!(7),
                updated_at: Some(json!("t")),
                data: json!({"number": 7}),
            },
        );
        assert_eq!(draft.event_type, EventType::SyncRecordChanged);
        assert_eq!(draft.data["recordId"], 7);
        assert_eq!(draft.data["syncName"], "d");
        assert_eq!(draft.data["record"]["number"], 7);
        assert_eq!(draft.data["operationId"], json!(op));
    }
}
