//! `POST /oauth/token`: OAuth2 client credentials (RFC 6749 §4.4). A registered client
//! (`relais client create`) trades its id and secret for a short-lived access token that
//! works wherever an API token does. Errors are RFC 6749's, not the API's shape.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::Body;
use super::wire::answers::oauth::{OAuthErrorBody, TokenAnswer};
use super::AppState;
use crate::clock;
use crate::domain::auth::hash_token;
use crate::domain::ids::ClientId;
use crate::domain::oauth::{granted_scopes, scope_string, token_request, OAuthError};

fn refused(error: OAuthError) -> HttpResponse {
    let mut answer = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(error.status()).expect("400 or 401"),
    );
    answer
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    if error.status() == 401 {
        answer.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"relais\""));
    }
    answer.json(OAuthErrorBody {
        error: error.code(),
        error_description: error.to_string(),
    })
}

#[utoipa::path(
    post,
    operation_id = "oauth_token",
    path = "/oauth/token",
    tag = "oauth",
    summary = "Get an access token (client credentials)",
    description = "RFC 6749 §4.4. A body over the size limit is a 413 in the API's error shape. The client authenticates with HTTP Basic (`client_id:client_secret`) or with `client_id` and `client_secret` in the form. `scope` may only narrow the client's scopes. The access token (a JWT, valid `expires_in` seconds, `RELAIS_ACCESS_TOKEN_TTL`) is sent as `Authorization: Bearer …` wherever an API token is. A revoked client's tokens stop working.",
    request_body(content = super::wire::oauth::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(()),
    responses(
        (status = 200, description = "An access token", body = super::wire::answers::oauth::TokenAnswer),
        (status = 400, description = "`invalid_request`, `unsupported_grant_type`, `invalid_scope` or `invalid_grant`", body = super::wire::answers::oauth::OAuthErrorBody),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate`", body = super::wire::answers::oauth::OAuthErrorBody),
        (status = 413, description = "The body is larger than the limit", body = super::wire::answers::errors::ErrorBody)
    )
)]
pub async fn token(state: web::Data<AppState>, req: HttpRequest, body: Body) -> HttpResponse {
    match issue(&state, &req, &body.0).await {
        Ok(answer) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(answer),
        Err(Refusal::OAuth(error)) => refused(error),
        Err(Refusal::Store(e)) => {
            actix_web::ResponseError::error_response(&super::error::ApiError::from(e))
        }
    }
}

enum Refusal {
    OAuth(OAuthError),
    Store(crate::store::StoreError),
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        Refusal::OAuth(e)
    }
}

async fn issue(state: &AppState, req: &HttpRequest, body: &[u8]) -> Result<TokenAnswer, Refusal> {
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !form_type {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        )
        .into());
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let request = token_request(&form, authorization)?;
    let unknown = || OAuthError::InvalidClient("unknown client or wrong secret".into());
    let id: ClientId = request.client_id.parse().map_err(|_| unknown())?;
    let client = state
        .store
        .clients()
        .get(id)
        .await
        .map_err(Refusal::Store)?
        .ok_or_else(unknown)?;
    if client.revoked_at.is_some() || hash_token(&request.client_secret) != client.secret_hash {
        return Err(unknown().into());
    }
    let scopes = granted_scopes(&client.scopes, request.scope.as_deref())?;
    let ttl = state.config.access_tokens.ttl;
    let jti = crate::domain::ids::TokenId::new().to_string();
    let access_token = state
        .token_key
        .issue(&client, &scopes, clock::now(), ttl, jti);
    Ok(TokenAnswer {
        access_token,
        token_type: "Bearer",
        expires_in: ttl.as_secs(),
        scope: scope_string(&scopes),
    })
}
