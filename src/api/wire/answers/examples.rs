//! The seeds' own examples of the answers (`tests/seeds/`, which the client tests replay),
//! shown by the OpenAPI document as each answer's `example`, less the fields Relais cannot
//! know and never answers (the README lists them and why).

use serde_json::Value;

/// The seed's example, parsed, without `unknowable` (`a.b`, or `items[].b` in every item).
fn seed(text: &str, unknowable: &[&str]) -> Value {
    let mut example = serde_json::from_str(text).expect("the seeds' examples are JSON");
    for path in unknowable {
        remove(&mut example, path);
    }
    example
}

fn remove(value: &mut Value, path: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    match (head.strip_suffix("[]"), rest) {
        (Some(items), Some(rest)) => {
            if let Some(Value::Array(items)) = value.get_mut(items) {
                items.iter_mut().for_each(|item| remove(item, rest));
            }
        }
        (None, Some(rest)) => {
            if let Some(inner) = value.get_mut(head) {
                remove(inner, rest);
            }
        }
        (_, None) => {
            if let Value::Object(map) = value {
                map.remove(head);
            }
        }
    }
}

pub fn operation_accepted() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/start_operation.response.json"),
        &["resourcesAllocated"],
    )
}

pub fn operation_status() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/status.running.response.json"),
        &["execution.resourceUsage"],
    )
}

pub fn operation_list() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/list_operations.response.json"),
        &["operations[].resourceUsage"],
    )
}

pub fn operation_cancelled() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/cancel_operation.response.json"),
        &["resourcesReleased"],
    )
}

pub fn operation_results() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/results.completed.response.json"),
        &[],
    )
}

pub fn retry_accepted() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/retry_operation.response.json"),
        &["resourcesAllocated"],
    )
}

pub fn webhook() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/register_webhook.response.json"),
        &[],
    )
}

pub fn batch_accepted() -> Value {
    seed(
        include_str!("../../../../tests/seeds/001/submit_batch.response.json"),
        &[],
    )
}

pub fn breakout_started() -> Value {
    seed(
        include_str!("../../../../tests/seeds/000/start.202.response.json"),
        &[],
    )
}

pub fn job_running() -> Value {
    seed(
        include_str!("../../../../tests/seeds/000/status.running.response.json"),
        &[],
    )
}

pub fn job_completed() -> Value {
    seed(
        include_str!("../../../../tests/seeds/000/status.completed.response.json"),
        &[],
    )
}

pub fn job_failed() -> Value {
    seed(
        include_str!("../../../../tests/seeds/000/status.failed.response.json"),
        &[],
    )
}

pub fn tables() -> Value {
    seed(
        include_str!("../../../../tests/seeds/000/tables.200.response.json"),
        &[],
    )
}

pub fn tables_deleted() -> Value {
    seed(
        include_str!("../../../../tests/seeds/000/tables_delete.200.response.json"),
        &[],
    )
}

pub fn jobs() -> Value {
    seed(
        include_str!("../../../../tests/seeds/000/jobs.200.response.json"),
        &[],
    )
}

pub fn task() -> Value {
    seed(
        include_str!("../../../../tests/seeds/002/task.response.json"),
        &[],
    )
}

pub fn task_list() -> Value {
    seed(
        include_str!("../../../../tests/seeds/002/list_tasks.response.json"),
        &[],
    )
}

pub fn instance() -> Value {
    seed(
        include_str!("../../../../tests/seeds/002/status.response.json"),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknowable_paths_are_removed_at_any_depth_and_in_every_item() {
        let text = r#"{"a": 1, "b": {"c": 2, "d": 3}, "items": [{"x": 1, "y": 2}, {"x": 3}]}"#;
        assert_eq!(
            seed(text, &["a", "b.c", "items[].x", "missing.z"]),
            json!({"b": {"d": 3}, "items": [{"y": 2}, {}]})
        );
        assert!(operation_status()["execution"]
            .get("resourceUsage")
            .is_none());
        assert!(operation_status()["execution"]["workerNode"].is_string());
    }
}
