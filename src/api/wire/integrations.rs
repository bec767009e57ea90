//! `…/async/integrations/*`: the project's Slack incoming webhook and its alert contacts.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::notify::{checked_addresses, AlertContacts};
use crate::domain::FieldError;

/// `PUT …/async/integrations/slack`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackIntegrationBody {
    /// The incoming-webhook URL Slack gave (`https://hooks.slack.com/services/…`).
    #[schema(example = "https://hooks.slack.com/services/T000/B000/XXXXXXXX")]
    pub webhook_url: String,
}

/// `PUT …/async/integrations/alerts`: who hears that Relais disabled an endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertsBody {
    #[serde(default)]
    pub email: Vec<String>,
    /// Post the alerts to the project's Slack integration too.
    #[serde(default)]
    pub slack: bool,
}

impl TryFrom<AlertsBody> for AlertContacts {
    type Error = FieldError;

    fn try_from(body: AlertsBody) -> Result<Self, FieldError> {
        Ok(AlertContacts {
            email: checked_addresses(&body.email, "email")?,
            slack: body.slack,
        })
    }
}
