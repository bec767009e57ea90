//! `POST …/async/portal-links`.

use serde::Deserialize;
use utoipa::ToSchema;

use super::present;

/// A link for the owner of a webhook endpoint. The body may be empty (`{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortalLinkBody {
    /// Seconds the link works, 60 to 604,800 (7 days); 3,600 when left out.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, example = 3600)]
    pub expires_in: Option<u64>,
    /// Only the endpoints labelled `owner` with this value; left out, every endpoint of
    /// the project.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, example = "acme")]
    pub owner: Option<String>,
}
