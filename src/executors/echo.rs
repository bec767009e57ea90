//! `Echo`: finishes at once with its parameters and, for a batch member, the keys of the
//! members whose results it was handed. It shows outputs flowing down a batch without
//! growing them (a member that repeated its inputs whole would carry every ancestor's
//! output), and its zero run time makes what a benchmark measures the engine's overhead.
//!
//! Result: `{"summary": {"parameters": {…}, "received": ["<key>", …]}}`.

use serde_json::{json, Value};

use super::{Executor, Run, Task};
use crate::domain::operation::OperationResult;
use crate::domain::FieldError;

pub struct Echo;

impl Executor for Echo {
    fn operation_type(&self) -> &'static str {
        "Echo"
    }

    fn validate(&self, _parameters: &Value) -> Result<(), FieldError> {
        Ok(())
    }

    fn run(&self, task: Task) -> Run {
        Box::pin(async move {
            Ok(OperationResult {
                summary: json!({
                    "parameters": task.parameters,
                    "received": task
                        .dependency_results
                        .as_object()
                        .map(|inputs| inputs.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default(),
                }),
                phase_results: Vec::new(),
                artifacts: Vec::new(),
                extra: Default::default(),
            })
        })
    }
}
