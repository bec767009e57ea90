//! What `…/async/credentials` and `…/async/syncs` answer.

use serde::Serialize;
use utoipa::ToSchema;

/// A stored credential: its name and form, never its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialView {
    #[schema(example = "ds-token")]
    pub name: String,
    /// `bearer` or `header`.
    #[serde(rename = "type")]
    #[schema(example = "bearer")]
    pub kind: String,
    /// For a `header` credential, the header it is sent in.
    pub header: Option<String>,
    /// The only origins a sync may send it to (empty: any).
    pub origins: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialList {
    pub credentials: Vec<CredentialView>,
}

/// The last run of a sync.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncRunView {
    pub operation_id: String,
    /// The operation's status now (`Running`, `Completed`, `Failed`, …); `null` if the
    /// operation was deleted with its project's history.
    pub status: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Records (and pages) the run wrote as events.
    pub records: i64,
    pub pages: i64,
}

/// One cursor sync of the project.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncView {
    #[schema(example = "dossiers-123")]
    pub sync_name: String,
    /// The source's cursor the next page is asked after; `null`: the next run starts
    /// from its `updatedSince`.
    pub cursor: Option<String>,
    pub records_total: i64,
    pub pages_total: i64,
    pub last_run: Option<SyncRunView>,
    /// What the last attempt ended on, if it failed.
    pub last_error: Option<String>,
    /// The operation paging it now, if one is.
    pub running_operation_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncList {
    pub syncs: Vec<SyncView>,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}
