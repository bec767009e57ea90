//! What the portal links and `GET /api/whoami` answer.

use serde::Serialize;
use utoipa::ToSchema;

/// `201` to `POST …/async/portal-links`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortalLink {
    /// The console, opened on the project's webhooks, the token in the URL's fragment
    /// (which browsers never send to a server).
    pub url: String,
    /// The same grant as a bearer token, for the project's webhook endpoints only.
    pub token: String,
    pub expires_at: String,
}

/// `GET /api/whoami`: what the bearer token is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub tenant_id: String,
    /// `null`: every project of the tenant.
    pub project_id: Option<String>,
    #[schema(example = json!(["operations:read", "webhooks:manage"]))]
    pub scopes: Vec<&'static str>,
    /// `token` (an API token or an OAuth2 access token), `portal` (a portal link: the
    /// project's webhooks only) or `callback` (a push worker's token for one operation).
    pub kind: &'static str,
    pub name: Option<String>,
    /// The `owner` a portal link is limited to.
    pub owner: Option<String>,
    /// When a portal link stops working.
    pub expires_at: Option<String>,
}
