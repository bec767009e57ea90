//! What `/healthz` and `/readyz` answer.

use serde::Serialize;
use utoipa::ToSchema;

/// `{"status": "ok"}`: the process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `{"status": "ready", "database": "ok"}`: the database answers too.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: &'static str,
    #[schema(example = "ok")]
    pub database: &'static str,
}
