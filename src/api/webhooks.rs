//! `…/async/webhooks`: register, inspect, change, test and recover webhook endpoints, and
//! the project's callback signing secret.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{opt_time, time};
use super::idempotency::Idempotency;
use super::operations::{parse_query, to_json};
use super::wire::answers::webhooks::{
    AttemptLog, AttemptView, DeliveryRequeued, DeliveryStatsView, FiltersView, MessageList,
    MessageView, PreviousSecret, Recovered, SecretsView, TestQueued, WebhookList, WebhookView,
};
use super::wire::query::{parse_page, parse_time};
use super::wire::webhooks::{PageQuery, RecoverBody, RotateBody, WebhookBody};
use super::wire::{self, answers, params};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::event::EventType;
use crate::domain::ids::{DeliveryId, WebhookId};
use crate::domain::webhook::{
    live_secrets, rotate, SecretVersion, Webhook, WebhookSpec, WebhookStatus,
};
use crate::domain::FieldError;
use crate::outbound::guard::check_url;
use crate::outbound::signing::generate_secret;
use crate::store::{CreateOutcome, DeliveryStats, StoreError, WEBHOOK_REGISTRATION_SCOPE};

const CREATE_SCOPE: &str = WEBHOOK_REGISTRATION_SCOPE;
/// A rotation may keep the old secret signing for at most a week.
const MAX_OVERLAP_SECONDS: u64 = 7 * 86_400;

#[derive(Debug, Deserialize)]
pub struct WebhookPath {
    #[serde(flatten)]
    pub project: ProjectPath,
    #[serde(rename = "webhookId")]
    pub webhook_id: String,
}

#[derive(Debug, Deserialize)]
pub struct DeliveryPath {
    #[serde(flatten)]
    pub webhook: WebhookPath,
    #[serde(rename = "deliveryId")]
    pub delivery_id: String,
}

fn parse_id<T: std::str::FromStr<Err = crate::domain::ids::InvalidId>>(
    value: &str,
    field: &str,
) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|e| FieldError::new(field, format!("{e}")).into())
}

/// The project and the webhook the path names, once the caller is authorized.
async fn locate(
    state: &AppState,
    principal: &Principal,
    path: &WebhookPath,
) -> Result<(ProjectRef, WebhookId), ApiError> {
    let target = state
        .authorize(principal, &path.project, Some(Scope::WebhooksManage))
        .await?;
    Ok((target, parse_id(&path.webhook_id, "webhookId")?))
}

/// A portal link made for one owner sees that owner's endpoints only; the others are
/// as if they did not exist.
fn within_reach(principal: &Principal, webhook: &Webhook) -> bool {
    principal
        .portal
        .as_ref()
        .is_none_or(|portal| portal.sees(&webhook.labels))
}

/// The webhook with its secrets, for what shows them or writes the webhook back.
async fn load(
    state: &AppState,
    principal: &Principal,
    path: &WebhookPath,
) -> Result<(ProjectRef, Webhook), ApiError> {
    let (target, id) = locate(state, principal, path).await?;
    let webhook = state
        .store
        .webhooks()
        .get(target.tenant, target.project, id)
        .await?
        .filter(|w| within_reach(principal, w))
        .ok_or(ApiError::NotFound("webhook"))?;
    Ok((target, webhook))
}

/// The webhook without its secrets, which are not opened: reading it, its deliveries and
/// its attempts works even when no key given opens them.
async fn load_settings(
    state: &AppState,
    principal: &Principal,
    path: &WebhookPath,
) -> Result<(ProjectRef, Webhook), ApiError> {
    let (target, id) = locate(state, principal, path).await?;
    let webhook = state
        .store
        .webhooks()
        .get_settings(target.tenant, target.project, id)
        .await?
        .filter(|w| within_reach(principal, w))
        .ok_or(ApiError::NotFound("webhook"))?;
    Ok((target, webhook))
}

fn view(webhook: &Webhook, stats: &DeliveryStats) -> WebhookView {
    let subscribed: Vec<&str> = if webhook.events.is_empty() {
        EventType::ALL
            .iter()
            .filter(|t| **t != EventType::WebhookTest)
            .map(|t| t.as_str())
            .collect()
    } else {
        webhook.events.iter().map(|t| t.as_str()).collect()
    };
    WebhookView {
        webhook_id: webhook.id,
        webhook_url: webhook.url.clone(),
        webhook_name: webhook.name.clone(),
        status: webhook.status,
        disabled_reason: webhook.disabled_reason.clone(),
        events_subscribed: subscribed,
        all_events: webhook.events.is_empty(),
        filters: FiltersView::from(&webhook.filters),
        retry_policy: webhook.retry_policy,
        headers: webhook.headers.clone(),
        rate_limit: webhook.rate_limit.map(|limit| limit.per_second()),
        labels: webhook.labels.clone(),
        created_at: time(webhook.created_at),
        updated_at: time(webhook.updated_at),
        failing_since: opt_time(webhook.failing_since),
        last_delivery: opt_time(stats.last_attempt_at),
        delivery_stats: DeliveryStatsView {
            total_deliveries: stats.total,
            successful_deliveries: stats.successful,
            failed_deliveries: stats.failed,
            pending_deliveries: stats.pending,
            average_response_time: stats
                .average_response_ms
                .map(|ms| (ms * 10.0).round() / 10.0),
        },
        secret: None,
    }
}

async fn stats_of(state: &AppState, webhook: &Webhook) -> Result<DeliveryStats, ApiError> {
    let all = state
        .store
        .webhooks()
        .stats(webhook.project_id, Some(webhook.id))
        .await?;
    let id = webhook.id.db();
    Ok(all
        .into_iter()
        .find(|(w, _)| *w == id)
        .map(|(_, s)| s)
        .unwrap_or_default())
}

async fn checked_spec(
    state: &AppState,
    principal: &Principal,
    body: &Body,
) -> Result<WebhookSpec, ApiError> {
    let mut spec: WebhookSpec = body.json::<WebhookBody>()?.try_into()?;
    if let Some(portal) = &principal.portal {
        portal.stamp(&mut spec.labels)?;
    }
    check_url(&spec.url, state.config.delivery.allow_private_targets)
        .await
        .map_err(|e| FieldError::new("webhookUrl", e.to_string()))?;
    Ok(spec)
}

#[utoipa::path(
    post,
    operation_id = "webhooks_create",
    path = "/api/{tenantId}/{projectId}/async/webhooks",
    tag = "webhooks",
    summary = "Register a webhook",
    params(ProjectPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body = wire::webhooks::WebhookBody,
    responses((status = 201, description = "Registered; the answer shows its secret once", body = answers::webhooks::WebhookView))
)]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::WebhooksManage))
        .await?;
    let spec = checked_spec(&state, &principal, &body).await?;
    let idempotency = match Idempotency::check(&state, target, CREATE_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let now = clock::now();
    let secret = spec.secret.clone().unwrap_or_else(generate_secret);
    let webhook = Webhook {
        id: WebhookId::new(),
        tenant_id: target.tenant,
        project_id: target.project,
        url: spec.url.to_string(),
        name: spec.name,
        events: spec.events,
        filters: spec.filters,
        retry_policy: spec.retry_policy,
        headers: spec.headers,
        rate_limit: spec.rate_limit,
        labels: spec.labels,
        secrets: vec![SecretVersion {
            secret: secret.clone(),
            expires_at: None,
        }],
        status: WebhookStatus::Active,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    let response = to_json(&WebhookView {
        // Shown once here, and again only through `…/secret`.
        secret: Some(secret),
        ..view(&webhook, &DeliveryStats::default())
    })?;
    let record = idempotency.record(StatusCode::CREATED, &response);
    if state.store.webhooks().insert(&webhook, record).await? == CreateOutcome::IdempotencyKeyTaken
    {
        return idempotency.replay_winner(&state, target).await;
    }
    state.caches.webhooks.invalidate(&target.project);
    Ok(HttpResponse::Created()
        .content_type("application/json")
        .body(response))
}

#[utoipa::path(
    get,
    operation_id = "webhooks_list",
    path = "/api/{tenantId}/{projectId}/async/webhooks",
    tag = "webhooks",
    summary = "List webhooks",
    params(ProjectPath),
    responses((status = 200, description = "The project's webhooks", body = answers::webhooks::WebhookList))
)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::WebhooksManage))
        .await?;
    let webhooks = state
        .store
        .webhooks()
        .list(target.tenant, target.project)
        .await?;
    let stats = state.store.webhooks().stats(target.project, None).await?;
    let views: Vec<WebhookView> = webhooks
        .iter()
        .filter(|w| within_reach(&principal, w))
        .map(|w| {
            let id = w.id.db();
            let s = stats
                .iter()
                .find(|(x, _)| *x == id)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            view(w, &s)
        })
        .collect();
    Ok(HttpResponse::Ok().json(WebhookList { webhooks: views }))
}

#[utoipa::path(
    get,
    operation_id = "webhooks_get",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}",
    tag = "webhooks",
    summary = "A webhook",
    params(ProjectPath, params::WebhookIdParam),
    responses((status = 200, description = "The webhook", body = answers::webhooks::WebhookView))
)]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    let (_, webhook) = load_settings(&state, &principal, &path).await?;
    let stats = stats_of(&state, &webhook).await?;
    Ok(HttpResponse::Ok().json(view(&webhook, &stats)))
}

/// Replaces the configuration. A new `authentication.secret` is a rotation: the old secret
/// keeps signing for the configured overlap.
#[utoipa::path(
    put,
    operation_id = "webhooks_update",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}",
    tag = "webhooks",
    summary = "Change a webhook",
    params(ProjectPath, params::WebhookIdParam),
    request_body = wire::webhooks::WebhookBody,
    responses((status = 200, description = "Changed", body = answers::webhooks::WebhookView))
)]
pub async fn update(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (_, mut webhook) = load(&state, &principal, &path).await?;
    let spec = checked_spec(&state, &principal, &body).await?;
    let now = clock::now();
    webhook.url = spec.url.to_string();
    webhook.name = spec.name;
    webhook.events = spec.events;
    webhook.filters = spec.filters;
    webhook.retry_policy = spec.retry_policy;
    webhook.headers = spec.headers;
    webhook.rate_limit = spec.rate_limit;
    webhook.labels = spec.labels;
    if let Some(secret) = spec.secret {
        if live_secrets(&webhook.secrets, now).first() != Some(&secret.as_str()) {
            webhook.secrets = rotate(&webhook.secrets, secret, now, state.config.secret_overlap);
        }
    }
    webhook.updated_at = now;
    if !state.store.webhooks().update(&webhook).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    state.caches.webhooks.invalidate(&webhook.project_id);
    let stats = stats_of(&state, &webhook).await?;
    Ok(HttpResponse::Ok().json(view(&webhook, &stats)))
}

#[utoipa::path(
    delete,
    operation_id = "webhooks_delete",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}",
    tag = "webhooks",
    summary = "Remove a webhook",
    params(ProjectPath, params::WebhookIdParam),
    responses((status = 204, description = "Removed"))
)]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    // Its settings only: a webhook whose secret no key opens can still be deleted.
    let (target, webhook) = load_settings(&state, &principal, &path).await?;
    if !state
        .store
        .webhooks()
        .delete(target.tenant, target.project, webhook.id)
        .await?
    {
        return Err(ApiError::NotFound("webhook"));
    }
    state.caches.webhooks.invalidate(&target.project);
    Ok(HttpResponse::NoContent().finish())
}

async fn set_status(
    state: &AppState,
    principal: &Principal,
    path: &WebhookPath,
    status: WebhookStatus,
) -> Result<HttpResponse, ApiError> {
    let (_, mut webhook) = load(state, principal, path).await?;
    webhook.status = status;
    webhook.disabled_reason =
        (status == WebhookStatus::Disabled).then(|| "disabled through the API".to_owned());
    webhook.failing_since = None;
    webhook.updated_at = clock::now();
    state.store.webhooks().update(&webhook).await?;
    state.caches.webhooks.invalidate(&webhook.project_id);
    let stats = stats_of(state, &webhook).await?;
    Ok(HttpResponse::Ok().json(view(&webhook, &stats)))
}

#[utoipa::path(
    post,
    operation_id = "webhooks_enable",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/enable",
    tag = "webhooks",
    summary = "Enable a webhook",
    params(ProjectPath, params::WebhookIdParam),
    responses((status = 200, description = "Enabled", body = answers::webhooks::WebhookView))
)]
pub async fn enable(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &principal, &path, WebhookStatus::Active).await
}

#[utoipa::path(
    post,
    operation_id = "webhooks_disable",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/disable",
    tag = "webhooks",
    summary = "Disable a webhook",
    params(ProjectPath, params::WebhookIdParam),
    responses((status = 200, description = "Disabled", body = answers::webhooks::WebhookView))
)]
pub async fn disable(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &principal, &path, WebhookStatus::Disabled).await
}

/// The new secret and how long the previous ones keep signing.
fn rotation(body: RotateBody, default_overlap: Duration) -> Result<(String, Duration), ApiError> {
    let secret = match body.secret {
        Some(s) if s.len() < 8 || s.len() > 256 => {
            return Err(FieldError::new("secret", "must be 8 to 256 characters").into())
        }
        Some(s) => s,
        None => generate_secret(),
    };
    let overlap = match body.overlap_seconds {
        None => default_overlap,
        Some(s) if s <= MAX_OVERLAP_SECONDS => Duration::from_secs(s),
        Some(_) => {
            return Err(FieldError::new(
                "overlapSeconds",
                format!("must be at most {MAX_OVERLAP_SECONDS}"),
            )
            .into())
        }
    };
    Ok((secret, overlap))
}

fn secrets_view(
    secrets: &[SecretVersion],
    now: chrono::DateTime<chrono::Utc>,
    webhook_id: Option<WebhookId>,
) -> SecretsView {
    SecretsView {
        webhook_id,
        secret: secrets.first().map(|s| s.secret.clone()),
        previous_secrets: secrets
            .iter()
            .skip(1)
            .filter(|s| s.expires_at.is_none_or(|t| t > now))
            .map(|s| PreviousSecret {
                expires_at: opt_time(s.expires_at),
            })
            .collect(),
    }
}

#[utoipa::path(
    post,
    operation_id = "webhooks_rotate_secret",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/rotate-secret",
    tag = "webhooks",
    summary = "Rotate a webhook's signing secret",
    params(ProjectPath, params::WebhookIdParam),
    request_body(content = Option<wire::webhooks::RotateBody>, description = "Optional: an empty body takes every default"),
    responses((status = 200, description = "Rotated; previous secrets keep signing for the overlap", body = answers::webhooks::SecretsView))
)]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (_, mut webhook) = load(&state, &principal, &path).await?;
    let (secret, overlap) = rotation(body.json_or_default()?, state.config.secret_overlap)?;
    let now = clock::now();
    webhook.secrets = rotate(&webhook.secrets, secret, now, overlap);
    webhook.updated_at = now;
    state.store.webhooks().update(&webhook).await?;
    Ok(HttpResponse::Ok().json(secrets_view(&webhook.secrets, now, Some(webhook.id))))
}

#[utoipa::path(
    get,
    operation_id = "webhooks_secret",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/secret",
    tag = "webhooks",
    summary = "A webhook's signing secret",
    params(ProjectPath, params::WebhookIdParam),
    responses((status = 200, description = "The signing secret", body = answers::webhooks::SecretsView))
)]
pub async fn secret(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    let (_, webhook) = load(&state, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(secrets_view(
        &webhook.secrets,
        clock::now(),
        Some(webhook.id),
    )))
}

#[utoipa::path(
    post,
    operation_id = "webhooks_test",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/test",
    tag = "webhooks",
    summary = "Send a test event",
    params(ProjectPath, params::WebhookIdParam),
    responses((status = 202, description = "A test event is queued for the webhook", body = answers::webhooks::TestQueued))
)]
pub async fn test(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    let (_, webhook) = load_settings(&state, &principal, &path).await?;
    if webhook.status != WebhookStatus::Active {
        return Err(ApiError::conflict(
            "WEBHOOK_DISABLED",
            "enable the webhook before testing it",
        ));
    }
    let (event_id, delivery_id) = state
        .store
        .deliveries()
        .queue_test_event(&webhook, clock::now())
        .await?;
    Ok(HttpResponse::Accepted().json(TestQueued {
        event_id,
        delivery_id,
        status: DeliveryStatus::Pending.as_str(),
    }))
}

fn page(q: &PageQuery) -> Result<(u32, u32), ApiError> {
    Ok(parse_page(q.page.as_deref(), q.page_size.as_deref())?)
}

/// The attempt log: every try, newest first.
#[utoipa::path(
    get,
    operation_id = "webhooks_deliveries",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/deliveries",
    tag = "webhooks",
    summary = "A webhook's attempt log",
    params(ProjectPath, params::WebhookIdParam, wire::webhooks::PageQuery),
    responses((status = 200, description = "Every attempt, newest first", body = answers::webhooks::AttemptLog))
)]
pub async fn deliveries(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (_, webhook) = load_settings(&state, &principal, &path).await?;
    let q: PageQuery = parse_query(&query)?;
    let (page, size) = page(&q)?;
    let offset = (page as u64 - 1) * size as u64;
    let mut entries = state
        .store
        .deliveries()
        .attempts_of_webhook(webhook.id, size + 1, offset)
        .await?;
    let has_next_page = entries.len() > size as usize;
    entries.truncate(size as usize);
    let deliveries = entries
        .into_iter()
        .map(|a| AttemptView {
            delivery_id: a.delivery_id,
            event_id: a.event_id,
            event_type: a.event_type,
            delivery_status: a.delivery_status.as_str(),
            attempted_at: time(a.attempt.attempted_at),
            status_code: a.attempt.status_code,
            latency_ms: a.attempt.latency_ms,
            response_body: a.attempt.response_body,
            error: a.attempt.error,
            success: a.attempt.success,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AttemptLog {
        deliveries,
        page,
        page_size: size,
        has_next_page,
    }))
}

/// One row per event sent to the webhook, with where it stands.
#[utoipa::path(
    get,
    operation_id = "webhooks_messages",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/messages",
    tag = "webhooks",
    summary = "A webhook's messages",
    params(ProjectPath, params::WebhookIdParam, wire::webhooks::PageQuery),
    responses((status = 200, description = "One row per event sent to the webhook", body = answers::webhooks::MessageList))
)]
pub async fn messages(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (_, webhook) = load_settings(&state, &principal, &path).await?;
    let q: PageQuery = parse_query(&query)?;
    let status = q
        .status
        .as_deref()
        .map(|s| DeliveryStatus::parse(s).ok_or_else(unknown_status))
        .transpose()?;
    let (page, size) = page(&q)?;
    let offset = (page as u64 - 1) * size as u64;
    let mut rows = state
        .store
        .deliveries()
        .of_webhook(webhook.id, status, size + 1, offset)
        .await?;
    let has_next_page = rows.len() > size as usize;
    rows.truncate(size as usize);
    let messages = rows
        .into_iter()
        .map(|d| MessageView {
            delivery_id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: opt_time(d.next_attempt_at),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: time(d.created_at),
            delivered_at: opt_time(d.delivered_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(MessageList {
        messages,
        page,
        page_size: size,
        has_next_page,
    }))
}

/// "must be Pending, Delivered or Failed"
fn unknown_status() -> ApiError {
    let names: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
    let (last, rest) = names.split_last().expect("delivery statuses exist");
    FieldError::new("status", format!("must be {} or {last}", rest.join(", "))).into()
}

#[utoipa::path(
    post,
    operation_id = "webhooks_recover",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/recover",
    tag = "webhooks",
    summary = "Send failed deliveries again",
    params(ProjectPath, params::WebhookIdParam),
    request_body = wire::webhooks::RecoverBody,
    responses((status = 202, description = "What failed since then is queued again", body = answers::webhooks::Recovered))
)]
pub async fn recover(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WebhookPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (_, webhook) = load_settings(&state, &principal, &path).await?;
    let RecoverBody { since } = body.json()?;
    let since = parse_time(&since, "since")?;
    let recovered = state
        .store
        .deliveries()
        .recover(webhook.id, since, clock::now())
        .await?;
    Ok(HttpResponse::Accepted().json(Recovered {
        webhook_id: webhook.id,
        recovered,
        since: time(since),
    }))
}

#[utoipa::path(
    post,
    operation_id = "webhooks_retry_delivery",
    path = "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
    tag = "webhooks",
    summary = "Send one delivery again",
    params(ProjectPath, params::WebhookIdParam, params::DeliveryIdParam),
    responses((status = 202, description = "Queued again", body = answers::webhooks::DeliveryRequeued))
)]
pub async fn retry_delivery(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<DeliveryPath>,
) -> Result<HttpResponse, ApiError> {
    let (_, webhook) = load_settings(&state, &principal, &path.webhook).await?;
    let delivery: DeliveryId = parse_id(&path.delivery_id, "deliveryId")?;
    match state
        .store
        .deliveries()
        .retry(webhook.id, delivery, clock::now())
        .await?
    {
        None => Err(ApiError::NotFound("delivery")),
        Some(false) => Err(ApiError::conflict(
            "DELIVERY_PENDING",
            "the delivery is still queued; it will be attempted",
        )),
        Some(true) => Ok(HttpResponse::Accepted().json(DeliveryRequeued {
            delivery_id: delivery,
            status: DeliveryStatus::Pending.as_str(),
        })),
    }
}

#[utoipa::path(
    get,
    operation_id = "webhooks_callback_secret",
    path = "/api/{tenantId}/{projectId}/async/callbacks/secret",
    tag = "webhooks",
    summary = "The callbacks' signing secret",
    params(ProjectPath),
    responses((status = 200, description = "The secret signing the project's callbacks", body = answers::webhooks::SecretsView))
)]
pub async fn callback_secret(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::WebhooksManage))
        .await?;
    let secrets = state
        .store
        .webhooks()
        .callback_secrets(target.project, generate_secret)
        .await?;
    Ok(HttpResponse::Ok().json(secrets_view(&secrets, clock::now(), None)))
}

#[utoipa::path(
    post,
    operation_id = "webhooks_rotate_callback_secret",
    path = "/api/{tenantId}/{projectId}/async/callbacks/secret/rotate",
    tag = "webhooks",
    summary = "Rotate the callbacks' signing secret",
    params(ProjectPath),
    request_body(content = Option<wire::webhooks::RotateBody>, description = "Optional: an empty body takes every default"),
    responses((status = 200, description = "Rotated", body = answers::webhooks::SecretsView))
)]
pub async fn rotate_callback_secret(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::WebhooksManage))
        .await?;
    let (secret, overlap) = rotation(body.json_or_default()?, state.config.secret_overlap)?;
    let now = clock::now();
    let current = match state
        .store
        .webhooks()
        .callback_secrets(target.project, generate_secret)
        .await
    {
        Ok(current) => current,
        // Secrets no key opens sign nothing any more: the new one replaces them.
        Err(StoreError::Secret { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let rotated = rotate(&current, secret, now, overlap);
    state
        .store
        .webhooks()
        .set_callback_secrets(target.project, &rotated)
        .await?;
    Ok(HttpResponse::Ok().json(secrets_view(&rotated, now, None)))
}
