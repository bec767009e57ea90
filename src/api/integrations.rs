//! `…/async/integrations/slack` and `…/async/integrations/alerts`: where a project's
//! Slack notifications go, and who hears that Relais disabled one of its endpoints.

use actix_web::{web, HttpResponse};

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{opt_time, time};
use super::wire::answers::integrations::{AlertContactsView, SlackIntegrationView};
use super::wire::integrations::{AlertsBody, SlackIntegrationBody};
use super::wire::{self, answers};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::notify::{
    check_channels_available, checked_slack_url, masked_url, AlertContacts,
};
use crate::domain::FieldError;
use crate::outbound::guard::check_url;
use crate::store::{SlackIntegration, StoredAlertContacts};

async fn authorized(
    state: &AppState,
    principal: &Principal,
    path: &ProjectPath,
) -> Result<ProjectRef, ApiError> {
    state
        .authorize(principal, path, Some(Scope::WebhooksManage))
        .await
}

fn slack_view(slack: &SlackIntegration) -> SlackIntegrationView {
    SlackIntegrationView {
        webhook_url: masked_url(&slack.webhook_url),
        status: slack.status.as_str().to_owned(),
        disabled_reason: slack.disabled_reason.clone(),
        disabled_at: opt_time(slack.disabled_at),
        created_at: time(slack.created_at),
        updated_at: time(slack.updated_at),
    }
}

fn alerts_view(stored: &StoredAlertContacts) -> AlertContactsView {
    AlertContactsView {
        email: stored.contacts.email.clone(),
        slack: stored.contacts.slack,
        updated_at: time(stored.updated_at),
    }
}

#[utoipa::path(
    put,
    operation_id = "integrations_slack_put",
    path = "/api/{tenantId}/{projectId}/async/integrations/slack",
    tag = "notifications",
    summary = "Set the project's Slack incoming webhook",
    description = "Operations and batches started with `notifications.slack` post their end here. Setting it again (even to the same URL) enables an integration Relais disabled.",
    params(ProjectPath),
    request_body = wire::integrations::SlackIntegrationBody,
    responses((status = 200, description = "Set; the URL shows masked", body = answers::integrations::SlackIntegrationView))
)]
pub async fn put_slack(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = authorized(&state, &principal, &path).await?;
    let body: SlackIntegrationBody = body.json()?;
    let allow_private = state.config.delivery.allow_private_targets;
    let url = checked_slack_url(&body.webhook_url, "webhookUrl", allow_private)?;
    check_url(&url, allow_private)
        .await
        .map_err(|e| FieldError::new("webhookUrl", e.to_string()))?;
    let slack = state
        .store
        .integrations()
        .put_slack(target.tenant, target.project, url.as_str(), clock::now())
        .await?;
    Ok(HttpResponse::Ok().json(slack_view(&slack)))
}

#[utoipa::path(
    get,
    operation_id = "integrations_slack_get",
    path = "/api/{tenantId}/{projectId}/async/integrations/slack",
    tag = "notifications",
    summary = "The project's Slack integration",
    params(ProjectPath),
    responses((status = 200, description = "The integration, its URL masked", body = answers::integrations::SlackIntegrationView))
)]
pub async fn get_slack(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorized(&state, &principal, &path).await?;
    let slack = state
        .store
        .integrations()
        .slack(target.project)
        .await?
        .ok_or(ApiError::NotFound("Slack integration"))?;
    Ok(HttpResponse::Ok().json(slack_view(&slack)))
}

#[utoipa::path(
    delete,
    operation_id = "integrations_slack_delete",
    path = "/api/{tenantId}/{projectId}/async/integrations/slack",
    tag = "notifications",
    summary = "Remove the project's Slack integration",
    description = "Slack messages still queued are then not sent (recorded as failed, with the reason).",
    params(ProjectPath),
    responses((status = 204, description = "Removed"))
)]
pub async fn delete_slack(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorized(&state, &principal, &path).await?;
    if !state
        .store
        .integrations()
        .delete_slack(target.project)
        .await?
    {
        return Err(ApiError::NotFound("Slack integration"));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    put,
    operation_id = "integrations_alerts_put",
    path = "/api/{tenantId}/{projectId}/async/integrations/alerts",
    tag = "notifications",
    summary = "Set who hears that an endpoint was disabled",
    description = "When Relais disables one of the project's webhooks (a 410, or failing for RELAIS_ENDPOINT_DISABLE_AFTER) or its Slack integration, these contacts get one message: which endpoint, why, since when, and how to enable it again.",
    params(ProjectPath),
    request_body = wire::integrations::AlertsBody,
    responses((status = 200, description = "Set", body = answers::integrations::AlertContactsView))
)]
pub async fn put_alerts(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = authorized(&state, &principal, &path).await?;
    let contacts = AlertContacts::try_from(body.json::<AlertsBody>()?)?;
    let slack_active = contacts.slack
        && state
            .store
            .integrations()
            .slack_active(target.project)
            .await?;
    check_channels_available(
        !contacts.email.is_empty(),
        contacts.slack,
        "",
        state.config.smtp.is_some(),
        slack_active,
    )?;
    let stored = state
        .store
        .integrations()
        .put_alerts(target.tenant, target.project, &contacts, clock::now())
        .await?;
    Ok(HttpResponse::Ok().json(alerts_view(&stored)))
}

#[utoipa::path(
    get,
    operation_id = "integrations_alerts_get",
    path = "/api/{tenantId}/{projectId}/async/integrations/alerts",
    tag = "notifications",
    summary = "Who hears that an endpoint was disabled",
    params(ProjectPath),
    responses((status = 200, description = "The alert contacts", body = answers::integrations::AlertContactsView))
)]
pub async fn get_alerts(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorized(&state, &principal, &path).await?;
    let stored = state
        .store
        .integrations()
        .alerts(target.project)
        .await?
        .ok_or(ApiError::NotFound("alert contacts"))?;
    Ok(HttpResponse::Ok().json(alerts_view(&stored)))
}

#[utoipa::path(
    delete,
    operation_id = "integrations_alerts_delete",
    path = "/api/{tenantId}/{projectId}/async/integrations/alerts",
    tag = "notifications",
    summary = "Stop alerting anyone",
    params(ProjectPath),
    responses((status = 204, description = "Removed"))
)]
pub async fn delete_alerts(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorized(&state, &principal, &path).await?;
    if !state
        .store
        .integrations()
        .delete_alerts(target.project)
        .await?
    {
        return Err(ApiError::NotFound("alert contacts"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Refuses notifications the server or the project cannot send: mail without an SMTP
/// server, Slack without an active integration. `field` is where they are in the body.
pub async fn check_notifications_sendable(
    state: &AppState,
    target: ProjectRef,
    wants_email: bool,
    wants_slack: bool,
    field: &str,
) -> Result<(), ApiError> {
    let slack_active = wants_slack
        && state
            .store
            .integrations()
            .slack_active(target.project)
            .await?;
    check_channels_available(
        wants_email,
        wants_slack,
        field,
        state.config.smtp.is_some(),
        slack_active,
    )?;
    Ok(())
}
