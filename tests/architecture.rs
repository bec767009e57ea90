//! The rules of ARCHITECTURE.md's "Invariants", checked on the source: which top-level
//! module may use which (every `crate::…` path counts, in `use` lines or inline), what
//! never appears outside its one place (SQL, the clock, randomness, network and files in
//! `domain`), and how long a file may grow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may use. Anything not listed is refused.
const MAY_USE: &[(&str, &[&str])] = &[
    // Pure: rules and types, parsers.
    ("domain", &[]),
    ("cspro", &[]),
    ("clock", &[]),
    ("shared", &[]),
    ("secrets", &[]),
    ("config", &[]),
    // The request a piece of work is done for, carried with it.
    ("trace", &[]),
    // The process's metrics recorder and its Prometheus rendering; the OTLP tracer.
    ("telemetry", &[]),
    // Outbound HTTP: signing, the address guard, the pinned client.
    ("outbound", &["domain"]),
    // All SQL.
    (
        "store",
        &["domain", "cspro", "clock", "shared", "secrets", "trace"],
    ),
    // The leased transitions, shared by every kind of worker.
    ("lease", &["domain", "store", "clock", "shared"]),
    // Built-in operation types: they see the store only through narrow handles, and
    // report through their lease.
    (
        "executors",
        &["domain", "cspro", "store", "lease", "outbound", "clock"],
    ),
    // The loops.
    (
        "delivery",
        &["domain", "store", "outbound", "clock", "shared", "trace"],
    ),
    (
        "engine",
        &[
            "domain",
            "store",
            "executors",
            "delivery",
            "lease",
            "outbound",
            "clock",
            "shared",
        ],
    ),
    // HTTP: parse, call, answer.
    (
        "api",
        &[
            "domain",
            "store",
            "engine",
            "executors",
            "lease",
            "outbound",
            "config",
            "cspro",
            "clock",
            "shared",
            "trace",
            "telemetry",
        ],
    ),
    // A local receiver for webhooks.
    ("listen", &["outbound", "clock"]),
    // Assembly and the command line.
    (
        "app",
        &[
            "api",
            "config",
            "domain",
            "engine",
            "delivery",
            "executors",
            "lease",
            "outbound",
            "secrets",
            "store",
            "clock",
            "telemetry",
        ],
    ),
    (
        "bench",
        &[
            "app",
            "api",
            "config",
            "domain",
            "store",
            "cspro",
            "clock",
            "outbound",
            "secrets",
            "executors",
        ],
    ),
    (
        "cli",
        &[
            "app",
            "bench",
            "config",
            "domain",
            "store",
            "outbound",
            "clock",
            "secrets",
            "listen",
            "telemetry",
        ],
    ),
];

/// Words that must not appear in a module's code (tests aside), and why.
const NEVER_IN: &[(&str, &[&str], &str)] = &[
    (
        "domain",
        &[
            "sqlx",
            "tokio::",
            "reqwest",
            "std::fs",
            "std::net",
            "Utc::now",
            "rand::",
            "OsRng",
            "Instant::now",
            "SystemTime",
        ],
        "domain is pure: I/O, the clock and randomness come in as values",
    ),
    (
        "api",
        &["sqlx", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM"],
        "handlers never build SQL",
    ),
    (
        "engine",
        &["sqlx", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM"],
        "the loops call the store",
    ),
    (
        "delivery",
        &["sqlx", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM"],
        "the dispatcher calls the store",
    ),
    (
        "executors",
        &["sqlx", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM"],
        "executors write through the store's narrow handles",
    ),
];

/// Minting an id (UUIDv7: the time and random bits) happens in `domain::ids` only, and
/// no rule mints one: rules take ids minted by their callers.
const ID_MINTING_FILE: &str = "src/domain/ids.rs";

/// The CSPro parsers are long by nature (format tables and their tests).
const LONG_FILES_ALLOWED: &[&str] = &[
    "src/cspro/dictionary.rs",
    "src/cspro/data.rs",
    "src/cspro/csdb.rs",
];
const MAX_CODE_LINES: usize = 900;

/// Source files of the crate, without the files that hold only unit tests.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("tests.rs")
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut out,
    );
    out.sort();
    out
}

/// `src/store/batches/mod.rs` → `store`; `src/cli.rs` → `cli`.
fn top_module(path: &Path) -> String {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let relative = path.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .display()
        .to_string()
}

/// The file's code without its `#[cfg(test)]` module and without comments.
fn code_of(text: &str) -> String {
    let before_tests = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    before_tests
        .lines()
        .map(|line| match line.trim_start().starts_with("//") {
            true => "",
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module a file names through `crate::`, in `use` lines (grouped ones
/// included) or inline paths.
fn used_modules(code: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if rest.starts_with('{') {
            // `use crate::{a::b, c};`
            let end = rest.find('}').unwrap_or(rest.len());
            let mut depth = 0;
            let mut item = String::new();
            for ch in rest[1..].chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        used.push(item.trim().split("::").next().unwrap().to_owned());
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(ch);
                }
            }
            if !item.trim().is_empty() {
                used.push(item.trim().split("::").next().unwrap().to_owned());
            }
            rest = &rest[end..];
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.push(name);
        }
    }
    used.retain(|m| !m.is_empty());
    used
}

#[test]
fn modules_use_only_what_they_may() {
    let rules: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let mut broken = Vec::new();
    for path in sources() {
        let module = top_module(&path);
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let Some(allowed) = rules.get(module.as_str()) else {
            broken.push(format!(
                "{}: module `{module}` is not in ARCHITECTURE.md's table (add it to MAY_USE)",
                relative(&path)
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        for used in used_modules(&code) {
            if used != module && !allowed.contains(&used.as_str()) {
                broken.push(format!(
                    "{}: `{module}` uses `crate::{used}`",
                    relative(&path)
                ));
            }
        }
    }
    broken.dedup();
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
}

#[test]
fn what_never_happens_where() {
    let mut broken = Vec::new();
    for path in sources() {
        let module = top_module(&path);
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        for (owner, words, why) in NEVER_IN {
            if module != *owner {
                continue;
            }
            for word in *words {
                if code.contains(word) {
                    broken.push(format!("{}: `{word}` ({why})", relative(&path)));
                }
            }
        }
        if module == "domain" && relative(&path) != ID_MINTING_FILE {
            for minting in ["Id::new()", "Uuid::new_v4", "Uuid::now_v7"] {
                if code.contains(minting) {
                    broken.push(format!(
                        "{}: `{minting}` (rules take ids minted by their callers)",
                        relative(&path)
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
}

#[test]
fn no_source_file_grows_past_the_limit() {
    let mut long = Vec::new();
    for path in sources() {
        let name = relative(&path);
        if LONG_FILES_ALLOWED.contains(&name.as_str()) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        let lines = code.lines().filter(|l| !l.trim().is_empty()).count();
        if lines > MAX_CODE_LINES {
            long.push(format!("{name}: {lines} lines of code"));
        }
    }
    assert!(
        long.is_empty(),
        "split these by concern:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let code = "use crate::{domain::ids::X, store::{A, B}};\nlet x = crate::outbound::sign();";
    assert_eq!(used_modules(code), ["domain", "store", "outbound"]);
    assert_eq!(
        code_of("fn a() {}\n// crate::api\n#[cfg(test)]\nmod tests {\n use crate::api;\n}"),
        "fn a() {}\n"
    );
}
