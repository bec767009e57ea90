//! Portal links (`POST …/async/portal-links`): a URL and token that let the owner of a
//! webhook endpoint manage the project's webhooks in the console, for a while, and reach
//! nothing else (`domain::portal`). And `GET /api/whoami`, which tells a console what
//! the token it holds may do.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::ProjectPath;
use super::body::Body;
use super::error::ApiError;
use super::format::{opt_time, time};
use super::wire::answers::portal::{PortalLink, TokenInfo};
use super::wire::portal::PortalLinkBody;
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::PortalLinkId;
use crate::domain::portal::{self, Portal};
use crate::domain::webhook::check_label_value;

#[utoipa::path(
    post,
    operation_id = "portal_links_create",
    path = "/api/{tenantId}/{projectId}/async/portal-links",
    tag = "webhooks",
    summary = "Hand a webhook endpoint's owner a link to the console",
    description = "The link opens the console on this project's webhooks (with `owner`, only those labelled `owner: <owner>`; the endpoints it makes get that label): their deliveries, replays and secrets. Its token works as a bearer token on the project's `…/webhooks` paths and nowhere else (any other path answers 404), until it expires. A portal token cannot make another link.",
    params(ProjectPath),
    request_body = PortalLinkBody,
    responses((status = 201, description = "The link", body = PortalLink))
)]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    body: Body,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::WebhooksManage))
        .await?;
    let body: PortalLinkBody = body.json_or_default()?;
    let ttl = portal::lifetime(body.expires_in)?;
    if let Some(owner) = &body.owner {
        check_label_value(owner, "owner")?;
    }
    let now = clock::now();
    let grant = Portal::grant(
        PortalLinkId::new(),
        target.tenant,
        target.project,
        body.owner,
        now,
        ttl,
    );
    let token = grant.token(&state.token_key, now);
    // The address clients reach this service at, unless one was configured.
    let base = match &state.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    tracing::info!(portal_link = %grant.link, expires_at = %time(grant.expires_at), "portal link made");
    Ok(HttpResponse::Created().json(PortalLink {
        url: format!("{base}/console/portal#token={token}"),
        token,
        expires_at: time(grant.expires_at),
    }))
}

#[utoipa::path(
    get,
    operation_id = "whoami",
    path = "/api/whoami",
    tag = "health",
    summary = "What the bearer token is",
    description = "Its tenant, its project (`null`: every project of the tenant), its scopes, and for a portal link when it expires.",
    responses((status = 200, description = "The token", body = TokenInfo))
)]
pub async fn whoami(principal: Principal) -> HttpResponse {
    let kind = if principal.portal.is_some() {
        "portal"
    } else if principal.operation.is_some() {
        "callback"
    } else {
        "token"
    };
    HttpResponse::Ok().json(TokenInfo {
        tenant_id: principal.tenant_id.to_string(),
        project_id: principal.project_id.map(|p| p.to_string()),
        scopes: principal.scopes.iter().map(|s| s.as_str()).collect(),
        kind,
        name: principal.token_name.clone(),
        owner: principal.portal.as_ref().and_then(|p| p.owner.clone()),
        expires_at: opt_time(principal.portal.as_ref().map(|p| p.expires_at)),
    })
}
