//! Pure types and rules: no I/O, no clock (times are passed in), no randomness that a
//! test cannot control.

pub mod auth;
pub mod batch;
pub mod breakout;
pub mod delivery;
pub mod endpoint_limit;
pub mod event;
pub mod fields;
pub mod ids;
pub mod notebook;
pub mod notify;
pub mod oauth;
pub mod operation;
pub mod portal;
pub mod rate_limit;
pub mod retry;
pub mod sync;
pub mod task;
pub mod webhook;
pub mod worker;

/// A request field that does not hold an acceptable value; `field` is its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
