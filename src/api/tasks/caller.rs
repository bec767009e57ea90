//! Who calls the `/v1` facade, and the headers of seed 002. `X-Vitam-Key` is an API token
//! (`relais token create`); the tasks are those of the project it is bound to.
//! `X-Tenant-Id` must be sent (except to `/v1/status`, the instance's), a number (else the
//! seed's 412), and that token's tenant's number (`vitamTenantId`; another tenant's number
//! is a 401: the key is not valid for it).
//! Every answer carries `FullApiVersion`, the caller's `X-Application-Id` echoed, and
//! `X-Tenant-Id` once the caller is known (`X-Request-Id` is everyone's, see
//! `api::request_id`).

use std::future::Future;
use std::pin::Pin;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use serde::de::DeserializeOwned;

use super::error::VitamError;
use crate::api::auth::{api_token, ProjectPath, ProjectRef};
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::{text, AppState};
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::{TenantId, VitamTenantId};
use crate::domain::FieldError;

pub const VITAM_KEY: HeaderName = HeaderName::from_static("x-vitam-key");
pub const TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
pub const APPLICATION_ID: HeaderName = HeaderName::from_static("x-application-id");
pub const FULL_API_VERSION: HeaderName = HeaderName::from_static("fullapiversion");
/// The facade's own version, not Relais's: it changes when the facade's shapes do.
pub const API_VERSION: &str = "V1.0";

/// A session identifier, as it is echoed: visible ASCII, as request ids are.
fn acceptable_application(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The one value of a header, if sent; sent twice it is refused, not chosen from. `field`
/// is the header's name as the seed writes it.
fn single<'a>(
    req: &'a HttpRequest,
    name: &HeaderName,
    field: &str,
) -> Result<Option<&'a str>, FieldError> {
    let mut values = req.headers().get_all(name);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(FieldError::new(field, "is sent more than once"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| FieldError::new(field, "must be visible ASCII"))
}

/// What a `/v1` request's headers say, checked before anything is looked up.
struct Headers {
    key: Option<String>,
    /// `Err`: not a number, the seed's 412 once the key is known to be good.
    tenant: Result<Option<VitamTenantId>, FieldError>,
}

fn headers(req: &HttpRequest) -> Result<Headers, FieldError> {
    // Options go in the body; only the list's `query` may come in the query string too, as
    // the seed's filter is a query. Anything else would be one more way to say them.
    let listing = req.method() == actix_web::http::Method::GET && req.path() == "/v1/tasks";
    if let Some(pair) = req
        .query_string()
        .split('&')
        .filter(|p| !p.is_empty())
        .find(|p| !(listing && p.split('=').next() == Some("query")))
    {
        let name: String = pair
            .split('=')
            .next()
            .unwrap_or_default()
            .chars()
            .take(40)
            .collect();
        return Err(FieldError::new(
            name,
            "is not a parameter of the /v1 facade, which takes none in the query string",
        ));
    }
    let tenant = single(req, &TENANT_ID, "X-Tenant-Id")?
        .map(|n| {
            n.parse::<VitamTenantId>()
                .map_err(|e| FieldError::new("X-Tenant-Id", e.to_string()))
        })
        .transpose();
    if let Some(application) = single(req, &APPLICATION_ID, "X-Application-Id")? {
        if !acceptable_application(application) {
            return Err(FieldError::new(
                "X-Application-Id",
                "must be 1 to 128 visible ASCII characters",
            ));
        }
    }
    let key = single(req, &VITAM_KEY, "X-Vitam-Key")?
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    Ok(Headers { key, tenant })
}

/// The caller of a `/v1` request: its key's principal and its tenant's number.
pub struct VitamCaller {
    pub principal: Principal,
    pub tenant: VitamTenantId,
}

impl FromRequest for VitamCaller {
    type Error = VitamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, VitamError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let headers = headers(&req)?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or(ApiError::Internal)?;
            let key = headers.key.ok_or(ApiError::Unauthorized)?;
            let principal = api_token(&state, &key, req.match_pattern().as_deref())
                .await?
                .ok_or(ApiError::Unauthorized)?;
            // A missing or unreadable tenant number is the seed's 412, not a 400.
            let asked = match headers.tenant.map_err(VitamError::Precondition)? {
                Some(asked) => Some(asked),
                None if req.path() == "/v1/status" => None,
                None => {
                    return Err(VitamError::Precondition(FieldError::new(
                        "X-Tenant-Id",
                        "is required: the tenant's number",
                    )))
                }
            };
            let number = vitam_id(&state, principal.tenant_id).await?;
            if asked.is_some_and(|asked| asked != number) {
                return Err(ApiError::Unauthorized.into());
            }
            req.extensions_mut().insert(number);
            Ok(VitamCaller {
                principal,
                tenant: number,
            })
        })
    }
}

async fn vitam_id(state: &AppState, tenant: TenantId) -> Result<VitamTenantId, VitamError> {
    if let Some(known) = state.caches.vitam_ids.get(&tenant) {
        return Ok(known);
    }
    // A token outlives its tenant only while the tenant is being deleted.
    let number = state
        .store
        .tenants()
        .vitam_id(tenant)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    state.caches.vitam_ids.insert(tenant, number);
    Ok(number)
}

impl VitamCaller {
    /// The project the key is bound to, once the key may act there with `scope`.
    pub async fn project(&self, state: &AppState, scope: Scope) -> Result<ProjectRef, VitamError> {
        let Some(project) = self.principal.project_id else {
            return Err(ApiError::Facade {
                status: StatusCode::FORBIDDEN,
                title: "Forbidden",
                code: "INSUFFICIENT_PERMISSIONS",
                message: "the /v1 facade needs a key bound to one project (relais token create --project)".into(),
                extra: Default::default(),
            }
            .into());
        };
        let path = ProjectPath {
            tenant_id: self.principal.tenant_id.to_string(),
            project_id: project.to_string(),
        };
        Ok(state.authorize(&self.principal, &path, Some(scope)).await?)
    }
}

/// A `/v1` request's body: read within the limit, refused in the facade's shape.
pub struct VitamBody(pub Body);

impl FromRequest for VitamBody {
    type Error = VitamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, VitamError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let body = Body::from_request(req, payload);
        Box::pin(async move { Ok(VitamBody(body.await?)) })
    }
}

impl VitamBody {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, VitamError> {
        Ok(self.0.json()?)
    }

    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, VitamError> {
        Ok(self.0.json_or_default()?)
    }

    pub fn is_empty(&self) -> bool {
        self.0 .0.iter().all(u8::is_ascii_whitespace)
    }
}

/// The seed's answer headers on every `/v1` answer, errors included; and the NUL check of
/// `api::text`, answered in the facade's shape (`api::text` leaves `/v1` to it).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let application = req
        .headers()
        .get(&APPLICATION_ID)
        .filter(|v| v.to_str().is_ok_and(acceptable_application))
        .cloned();
    let mut response = match text::nul_in_url(req.uri().path(), req.query_string()) {
        Some(field) => {
            let error = VitamError::from(text::nul_error(field)).error_response();
            req.into_response(error).map_into_right_body()
        }
        None => next.call(req).await?.map_into_left_body(),
    };
    let tenant = response
        .request()
        .extensions()
        .get::<VitamTenantId>()
        .copied();
    let headers = response.headers_mut();
    headers.insert(FULL_API_VERSION, HeaderValue::from_static(API_VERSION));
    if let Some(application) = application {
        headers.insert(APPLICATION_ID, application);
    }
    if let Some(tenant) = tenant {
        if let Ok(value) = HeaderValue::from_str(&tenant.to_string()) {
            headers.insert(TENANT_ID, value);
        }
    }
    Ok(response)
}
