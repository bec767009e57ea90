//! Clients written from seeds 001, 000 and 003 (and 002's, in `tasks`): every request body the seeds print
//! (`tests/seeds/`) is sent as it is, the operations are driven as the seeds show them, and
//! every field of the seeds' answers is read from Relais's (`seed001`: operations,
//! webhooks, batches; `seed000`: the breakout facade; `seed003`: pings and blocks).
//!
//! The one change made to a seed's body: its example URLs (`https://your-app.com/…`) point
//! nowhere, and deliveries need somewhere to go, so each is replaced by a local receiver
//! the test runs (see [`delivered_to`]).
//!
//! An answer is checked twice: its shape, generically (every key path of the seed's
//! example is in Relais's answer with the same JSON type, see [`assert_shaped`]), and the
//! values that the requests (or the worker's reports) determine, one by one. Values that
//! depend on time are real: estimates come from runs of the same type made first.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Response, TestApp};
use crate::receiver::Receiver;

/// A seed's example from `tests/seeds/`, parsed.
macro_rules! seed {
    ($path:literal) => {
        serde_json::from_str::<Value>(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/seeds/",
            $path
        )))
        .expect(concat!($path, " is JSON"))
    };
}
pub(crate) use seed;

mod seed000;
mod seed001;
mod seed003;

const SEC: Duration = Duration::from_secs(1);

/// Every example in `tests/seeds/` is one these tests replay or check answers against.
#[test]
fn every_example_of_the_seeds_is_used() {
    let source = [
        include_str!("seed_clients.rs"),
        include_str!("seed_clients/seed001.rs"),
        include_str!("seed_clients/seed000.rs"),
        include_str!("tasks.rs"),
        include_str!("seed_clients/seed003.rs"),
    ]
    .concat();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds");
    let mut examples = 0;
    for seed in ["000", "001", "002", "003"] {
        for file in std::fs::read_dir(root.join(seed)).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            let path = format!("{seed}/{name}");
            assert!(
                source.contains(&format!("seed!(\"{path}\")")),
                "{path} is not used"
            );
            examples += 1;
        }
    }
    assert_eq!(examples, 46, "one file per example");
}

/// Every key path of `example` (objects by key, arrays item by item as far as both go, `[]`
/// for any index) that `answer` lacks or holds with another JSON type; `unknowable` paths
/// aside, and `nulls`, which the request left out, so `null` in the answer.
fn mismatches(example: &Value, answer: &Value, path: &str, except: &Except) -> Vec<String> {
    let at_path = generic(path);
    if except.unknowable.contains(&at_path.as_str()) {
        return Vec::new();
    }
    if except.nulls.contains(&at_path.as_str()) {
        return match answer {
            Value::Null => Vec::new(),
            other => vec![format!("{path}: {other} where null was expected")],
        };
    }
    match (example, answer) {
        (Value::Object(example), Value::Object(answer)) => example
            .iter()
            .flat_map(|(key, value)| {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match answer.get(key) {
                    Some(given) => mismatches(value, given, &at, except),
                    None if except.unknowable.contains(&generic(&at).as_str()) => Vec::new(),
                    None => vec![format!("{at}: missing")],
                }
            })
            .collect(),
        // How many items there are is the requests' doing (the value checks look at it):
        // each of the answer's items is checked against the seed's item of the same place.
        (Value::Array(example), Value::Array(answer)) => example
            .iter()
            .zip(answer)
            .enumerate()
            .flat_map(|(i, (value, given))| {
                mismatches(value, given, &format!("{path}[{i}]"), except)
            })
            .collect(),
        (example, answer) if kind(example) == kind(answer) => Vec::new(),
        (example, answer) => vec![format!(
            "{path}: {} in the seed, {} in the answer ({answer})",
            kind(example),
            kind(answer)
        )],
    }
}

/// The paths of a seed's example that an answer is not held to.
struct Except<'a> {
    unknowable: &'a [&'a str],
    nulls: &'a [&'a str],
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `operations[2].resourceUsage` → `operations[].resourceUsage`.
fn generic(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// Every key path of `value`, generic.
fn paths(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.push(generic(&at));
                paths(value, &at, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                paths(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Relais's `answer` has every field of the seed's `example` with the same JSON type,
/// but the `unknowable` ones, which the seed has and the answer has not.
pub(crate) fn assert_shaped(name: &str, example: &Value, answer: &Value, unknowable: &[&str]) {
    assert_shaped_but_nulls(name, example, answer, unknowable, &[]);
}

/// [`assert_shaped`], with `nulls` `null` in the answer: the request left them out.
pub(crate) fn assert_shaped_but_nulls(
    name: &str,
    example: &Value,
    answer: &Value,
    unknowable: &[&str],
    nulls: &[&str],
) {
    let except = Except { unknowable, nulls };
    let wrong = mismatches(example, answer, "", &except);
    assert!(
        wrong.is_empty(),
        "{name}: the answer differs from the seed's example:\n  {}\nanswer: {answer:#}",
        wrong.join("\n  ")
    );
    let (mut in_example, mut in_answer) = (Vec::new(), Vec::new());
    paths(example, "", &mut in_example);
    paths(answer, "", &mut in_answer);
    for path in unknowable {
        assert!(
            in_example.iter().any(|p| p == path),
            "{name}: `{path}` is not in the seed's example"
        );
        assert!(
            !in_answer.iter().any(|p| p == path),
            "{name}: Relais answers `{path}`: it is not unknowable any more"
        );
    }
}

/// JSON equality where numbers are equal by value (`72` and `72.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        (a, b) => a == b,
    }
}

#[track_caller]
pub(crate) fn assert_same(given: &Value, expected: &Value, what: &str) {
    assert!(
        same(given, expected),
        "{what}: {given} where {expected} was sent or reported"
    );
}

/// The seed's body with each of its example URLs replaced by a receiver's: the seeds'
/// `https://your-app.com/…` has no server behind it, and Relais delivers to what it is given.
fn delivered_to(mut body: Value, receivers: &[(&str, &Receiver)]) -> Value {
    fn replace(value: &mut Value, receivers: &[(&str, &Receiver)]) {
        match value {
            Value::String(s) => {
                if let Some((_, receiver)) = receivers.iter().find(|(url, _)| url == s) {
                    *s = receiver.url.clone();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| replace(v, receivers)),
            Value::Object(map) => map.values_mut().for_each(|v| replace(v, receivers)),
            _ => {}
        }
    }
    replace(&mut body, receivers);
    assert!(
        !body.to_string().contains("your-app.com"),
        "every example URL has a receiver: {body}"
    );
    body
}

async fn ok(r: Response, status: StatusCode, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    r.body
}

async fn status(app: &TestApp, id: &str) -> Value {
    ok(
        app.get(&app.api(&format!("/operation/{id}"))).await,
        StatusCode::OK,
        "status",
    )
    .await
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|_| panic!("an RFC 3339 time: {value}"))
        .to_utc()
}
