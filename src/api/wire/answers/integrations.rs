//! What `…/async/integrations/*` answer.

use serde::Serialize;
use utoipa::ToSchema;

/// The project's Slack integration; its URL is a secret, so only a masked form shows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackIntegrationView {
    #[schema(example = "https://hooks.slack.com/…XXXX")]
    pub webhook_url: String,
    /// `Active`, or `Disabled` once Slack said the channel is gone (a new `PUT` enables it).
    #[schema(example = "Active")]
    pub status: String,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertContactsView {
    pub email: Vec<String>,
    pub slack: bool,
    pub updated_at: String,
}
