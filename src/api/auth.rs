//! Bearer-token authentication and tenant/project/scope authorization.

use std::future::Future;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use super::AppState;
use crate::clock;
use crate::domain::auth::{hash_token, Principal, Scope};
use crate::domain::ids::{ProjectId, TenantId, TokenId};
use crate::domain::oauth::{looks_like_jwt, AccessToken};
use crate::domain::portal::{self, Portal};
use crate::domain::FieldError;

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let route = req.match_pattern();
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned());
        Box::pin(async move {
            let (Some(state), Some(token)) = (state, token) else {
                return Err(ApiError::Unauthorized);
            };
            if token.starts_with("rlscb_") {
                let hash = hash_token(&token);
                let (tenant, project, operation) = state
                    .store
                    .push_workers()
                    .callback_operation(&hash)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                return Ok(Principal::for_callback(tenant, project, operation));
            }
            api_token(&state, &token, route.as_deref())
                .await?
                .ok_or(ApiError::Unauthorized)
        })
    }
}

/// Whose API token (or OAuth2 access token, or portal link) this is (a push worker's
/// callback token is none), remembered for a few seconds. `Ok(None)`: no such token, or
/// an access token that expired or whose client was revoked. `route` is the pattern the
/// request matched: a portal link learns nothing of what lies outside its reach (404).
pub async fn api_token(
    state: &AppState,
    token: &str,
    route: Option<&str>,
) -> Result<Option<Principal>, ApiError> {
    let principal = known_token(state, token).await?;
    if principal.as_ref().is_some_and(|p| p.portal.is_some()) && !route.is_some_and(portal::reaches)
    {
        return Err(ApiError::NotFound("route"));
    }
    if let (Some(principal), Some(limits)) = (&principal, &state.token_limits) {
        limits.check(principal.token_id)?;
    }
    Ok(principal)
}

async fn known_token(state: &AppState, token: &str) -> Result<Option<Principal>, ApiError> {
    // An access token's signature and expiry are checked on every request (a cached
    // answer must not outlive the token); only its client's lookup is remembered.
    let access = if looks_like_jwt(token) {
        // A portal grant is all in its signed token: nothing to look up or remember.
        if let Some(grant) = Portal::read(&state.token_key, token, clock::now()) {
            return Ok(Some(Principal::for_portal(grant)));
        }
        match state.token_key.read(token, clock::now()) {
            Some(read) => Some(read),
            None => return Ok(None),
        }
    } else {
        None
    };
    let hash = hash_token(token);
    if let Some(principal) = state.caches.principals.get(&hash) {
        return Ok(Some(principal));
    }
    let principal = match access {
        Some(read) => client_principal(state, read).await?,
        None => state.store.tenants().find_principal(&hash).await?,
    };
    let Some(principal) = principal else {
        return Ok(None);
    };
    state.caches.principals.insert(hash, principal.clone());
    Ok(Some(principal))
}

/// The principal of an access token this service signed (read, unexpired), if its client
/// still exists and is not revoked: the client's tenant and project, with the scopes the
/// token was granted.
async fn client_principal(
    state: &AppState,
    read: AccessToken,
) -> Result<Option<Principal>, ApiError> {
    let Some(client) = state.store.clients().get(read.client).await? else {
        return Ok(None);
    };
    if client.revoked_at.is_some() || client.tenant_id != read.tenant {
        return Ok(None);
    }
    Ok(Some(Principal {
        token_id: TokenId::from_uuid(client.id.uuid()),
        tenant_id: read.tenant,
        project_id: read.project,
        scopes: read.scopes,
        operation: None,
        token_name: Some(client.name.unwrap_or_else(|| client.id.to_string())),
        portal: None,
    }))
}

/// The tenant and project a request acts on, once the caller is known to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectRef {
    pub tenant: TenantId,
    pub project: ProjectId,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// The tenant's id (a GUID).
    #[serde(rename = "tenantId")]
    pub tenant_id: String,
    /// The project's id (a GUID).
    #[serde(rename = "projectId")]
    pub project_id: String,
}

impl ProjectPath {
    pub fn parse(&self) -> Result<ProjectRef, ApiError> {
        let tenant = self
            .tenant_id
            .parse()
            .map_err(|e| FieldError::new("tenantId", format!("{e}")))?;
        let project = self
            .project_id
            .parse()
            .map_err(|e| FieldError::new("projectId", format!("{e}")))?;
        Ok(ProjectRef { tenant, project })
    }
}

impl AppState {
    /// A token of another tenant, or bound to another project, learns nothing: 404, as if
    /// the project did not exist. Only then is the scope checked (403).
    pub async fn authorize(
        &self,
        principal: &Principal,
        path: &ProjectPath,
        scope: Option<Scope>,
    ) -> Result<ProjectRef, ApiError> {
        let target = path.parse()?;
        super::request_id::record("tenant_id", target.tenant);
        super::request_id::record("project_id", target.project);
        if !principal.can_see(target.tenant, target.project) {
            return Err(ApiError::NotFound("project"));
        }
        let key = (target.tenant, target.project);
        if !self.caches.projects.contains_key(&key) {
            if !self
                .store
                .tenants()
                .project_exists(target.tenant, target.project)
                .await?
            {
                return Err(ApiError::NotFound("project"));
            }
            self.caches.projects.insert(key, ());
        }
        if let Some(scope) = scope {
            if !principal.has_scope(scope) {
                return Err(ApiError::Forbidden(scope.as_str()));
            }
        }
        Ok(target)
    }
}
