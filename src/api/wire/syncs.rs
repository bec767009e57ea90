//! `…/async/credentials/{name}` and `…/async/syncs`: the secrets sources are read with,
//! and the cursor syncs of seed 004.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::sync::credential::{checked_origins, Credential, Secret};
use crate::domain::FieldError;

/// `PUT …/async/credentials/{name}`: `{"type": "bearer", "token": "…"}` or `{"type":
/// "header", "header": "X-Api-Key", "value": "…"}`. Never shown again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CredentialBody {
    /// Sent as `Authorization: Bearer <token>`.
    Bearer {
        token: String,
        /// The only origins (`https://api.example`) a sync may send it to; none: any.
        #[serde(default)]
        origins: Vec<String>,
    },
    /// Sent as `<header>: <value>`.
    Header {
        #[schema(example = "X-Api-Key")]
        header: String,
        value: String,
        #[serde(default)]
        origins: Vec<String>,
    },
}

impl TryFrom<CredentialBody> for Credential {
    type Error = FieldError;

    fn try_from(body: CredentialBody) -> Result<Self, FieldError> {
        Ok(match body {
            CredentialBody::Bearer { token, origins } => Credential {
                secret: Secret::bearer(&token, "token")?,
                origins: checked_origins(&origins, "origins")?,
            },
            CredentialBody::Header {
                header,
                value,
                origins,
            } => Credential {
                secret: Secret::header_value(&header, &value, "header", "value")?,
                origins: checked_origins(&origins, "origins")?,
            },
        })
    }
}

/// Query of `GET …/async/syncs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SyncsQuery {
    pub page: Option<String>,
    /// At most 100.
    pub page_size: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value) -> Result<Credential, String> {
        let body: CredentialBody = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Credential::try_from(body).map_err(|e| e.field)
    }

    #[test]
    fn both_forms_of_credential_parse_and_the_rest_is_refused() {
        assert!(parse(json!({"type": "bearer", "token": "abc"})).is_ok());
        let c = parse(
            json!({"type": "header", "header": "X-Api-Key", "value": "v",
                             "origins": ["https://a.example"]}),
        )
        .unwrap();
        assert_eq!(c.origins, ["https://a.example"]);
        assert!(parse(json!({"type": "basic", "token": "abc"})).is_err());
        assert!(parse(json!({"type": "bearer", "token": "abc", "extra": 1})).is_err());
        assert!(parse(json!({"type": "bearer"})).is_err());
        assert_eq!(
            parse(json!({"type": "bearer", "token": "a\nb"})),
            Err("token".into())
        );
        assert_eq!(
            parse(json!({"type": "bearer", "token": "a", "origins": ["https://a.example/x"]})),
            Err("origins[0]".into())
        );
    }
}
