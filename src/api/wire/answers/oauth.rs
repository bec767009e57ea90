//! What `POST /oauth/token` answers (RFC 6749 §5.1 and §5.2).

use serde::Serialize;
use utoipa::ToSchema;

/// An access token: a signed JWT to send as `Authorization: Bearer …`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenAnswer {
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds the token is valid.
    #[schema(example = 3600)]
    pub expires_in: u64,
    /// The scopes granted, space separated.
    #[schema(example = "operations:read operations:write")]
    pub scope: String,
}

/// An error of RFC 6749 §5.2.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type` or
    /// `invalid_scope`.
    #[schema(example = "invalid_client")]
    pub error: &'static str,
    pub error_description: String,
}
