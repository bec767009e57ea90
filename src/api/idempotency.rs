//! `Idempotency-Key` on creating POSTs: the same key and body get the first answer again;
//! the same key with another body is a conflict.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::auth::ProjectRef;
use super::body::Body;
use super::error::ApiError;
use super::AppState;
use crate::domain::FieldError;
use crate::store::{IdempotencyKey, IdempotencyRecord, StoredResponse};

pub struct Idempotency {
    scope: &'static str,
    key: Option<String>,
    request_hash: String,
}

impl Idempotency {
    /// `Err(response)`: this request was already answered; send that answer again.
    pub async fn check(
        state: &AppState,
        target: ProjectRef,
        scope: &'static str,
        req: &HttpRequest,
        body: &Body,
    ) -> Result<Result<Self, HttpResponse>, ApiError> {
        let key = match req.headers().get("Idempotency-Key") {
            None => None,
            Some(value) => match value.to_str() {
                Ok(key) if (1..=255).contains(&key.len()) => Some(key.to_owned()),
                _ => {
                    return Err(FieldError::new(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters",
                    )
                    .into())
                }
            },
        };
        let request_hash = match &key {
            // The path and the canonical JSON (sorted keys): formatting differences are the
            // same request, another resource is not.
            Some(_) => {
                let mut hasher = Sha256::new();
                hasher.update(req.path().as_bytes());
                hasher.update(b"\n");
                hasher.update(body.canonical()?.as_bytes());
                hex::encode(hasher.finalize())
            }
            None => String::new(),
        };
        let this = Idempotency {
            scope,
            key,
            request_hash,
        };
        if let Some(key) = &this.key {
            if let Some(stored) = state
                .store
                .idempotency()
                .find_response(target.project, scope, key)
                .await?
            {
                return Ok(Err(this.replay(stored)?));
            }
        }
        Ok(Ok(this))
    }

    /// What to store with the created resource, if the request carried a key.
    pub fn record<'a>(
        &'a self,
        status: StatusCode,
        response: &'a str,
    ) -> Option<IdempotencyRecord<'a>> {
        self.key.as_deref().map(|key| IdempotencyRecord {
            scope: self.scope,
            key,
            request_hash: &self.request_hash,
            status_code: status.as_u16(),
            response,
        })
    }

    /// The key, for a store write that draws up its answer in its own transaction.
    pub fn key(&self, status: StatusCode) -> Option<IdempotencyKey> {
        self.key.as_ref().map(|key| IdempotencyKey {
            scope: self.scope,
            key: key.clone(),
            request_hash: self.request_hash.clone(),
            status_code: status.as_u16(),
        })
    }

    /// A concurrent request with the same key won the race: answer what it answered.
    pub async fn replay_winner(
        &self,
        state: &AppState,
        target: ProjectRef,
    ) -> Result<HttpResponse, ApiError> {
        let key = self.key.as_deref().ok_or(ApiError::Internal)?;
        let stored = state
            .store
            .idempotency()
            .find_response(target.project, self.scope, key)
            .await?
            .ok_or(ApiError::Internal)?;
        self.replay(stored)
    }

    fn replay(&self, stored: StoredResponse) -> Result<HttpResponse, ApiError> {
        if stored.request_hash != self.request_hash {
            return Err(ApiError::conflict(
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was already used with a different body; use a new key for a new request",
            ));
        }
        let status = StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::OK);
        Ok(HttpResponse::build(status)
            .insert_header(("Idempotent-Replayed", "true"))
            .content_type("application/json")
            .body(stored.body))
    }
}
