//! `POST /oauth/token`'s form, for the document: the handler reads the form itself, as RFC
//! 6749 asks (each parameter once, the client authenticated one way).

use utoipa::ToSchema;

/// `application/x-www-form-urlencoded`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// `client_credentials`.
    #[schema(example = "client_credentials")]
    pub grant_type: String,
    /// Unless the client authenticates with HTTP Basic.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Space separated; only scopes the client has (default: all of them).
    pub scope: Option<String>,
}
