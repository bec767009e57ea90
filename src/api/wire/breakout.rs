//! The breakout facade's bodies and query (`/api/breakout/*`, seed 000), in its own
//! shapes, and the parameters its jobs are started with.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::present;

/// `POST /api/breakout/dictionaries` as JSON: files on the server (the dictionary may be
/// left out for a `.csdb`, which carries its own).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub dictionary_path: Option<String>,
    pub data_path: String,
}

/// `POST /api/breakout/start`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dictionaries": ["EVAL_DICT"], "threads": 3, "overwrite": false}))]
pub struct StartBody {
    pub dictionaries: Vec<String>,
    /// Kept loose so that any value out of 1–10 (`null` too) is `INVALID_THREADS`, as the
    /// seed says.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub threads: Option<Value>,
    #[serde(default)]
    pub overwrite: bool,
    #[serde(default)]
    pub strict: bool,
    /// Write into existing tables, only the chunks of cases that changed since the last
    /// run (without it, existing tables are a 409 unless `overwrite`).
    #[serde(default)]
    pub incremental: bool,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub chunk_size: Option<usize>,
}

/// `GET /api/breakout/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    pub status: Option<String>,
    pub limit: Option<String>,
}

/// The parameters of the `CsproBreakout` operation a job is, as its executor reads them.
#[derive(Debug, Serialize)]
pub struct BreakoutParameters<'a> {
    pub dictionaries: &'a [String],
    pub threads: u32,
    pub overwrite: bool,
    pub strict: bool,
    pub chunk_size: Option<usize>,
}
