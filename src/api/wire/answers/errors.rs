//! The one shape of every error Relais answers (`api::error` builds it).

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// An error: what kind (`error`, `code`), what went wrong (`message`), the request to
/// quote when asking about it, and for a refused field, which one. Some errors add
/// fields of their own (a conflict's `job_id`, the facade's `suggestion`, …).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "error": "Invalid request",
    "code": "VALIDATION_ERROR",
    "message": "operationType: is required",
    "requestId": "req_01J9ZK3V7X4M2N8P5Q6R",
    "field": "operationType"
}))]
pub struct ErrorBody {
    /// A short title: `Invalid request`, `Not Found`, `Conflict`, …
    pub error: &'static str,
    /// Stable, for programs: `VALIDATION_ERROR`, `NOT_FOUND`, `LEASE_LOST`, …
    pub code: &'static str,
    pub message: String,
    pub request_id: String,
    /// The refused field, as the request named it (`operations[2].callbacks.onError`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}
