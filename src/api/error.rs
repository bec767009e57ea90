//! Every error the API can answer, and the one place that turns them into HTTP.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value};

use super::request_id;
use super::wire::answers::errors::ErrorBody;
use crate::domain::operation::TransitionError;
use crate::domain::FieldError;
use crate::lease::LeaseError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("send `Authorization: Bearer <token>` with a valid API token")]
    Unauthorized,
    #[error("this token lacks the `{0}` scope")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The methods the path takes, as `Allow` lists them.
    #[error("this path takes {0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    InvalidField(#[from] FieldError),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
    #[error("this token is over its rate of requests; retry after {} s", super::rate_limit::seconds(*retry_after))]
    RateLimited {
        /// The burst a token may send at once.
        limit: u32,
        retry_after: std::time::Duration,
    },
    #[error("the service is not ready: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
    /// A stored secret this process cannot open: the operator must give it the key that
    /// sealed it.
    #[error("{0}; the service needs the key that sealed it (see RELAIS_PREVIOUS_SECRET_KEYS)")]
    SecretUnreadable(String),
    /// An error in a seed facade's own shape: its status, title and code, plus fields.
    #[error("{message}")]
    Facade {
        status: StatusCode,
        title: &'static str,
        code: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
}

impl ApiError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// The short title and the stable code of the error, as every error body shows them.
    pub(crate) fn title_and_code(&self) -> (&'static str, &'static str) {
        match self {
            Self::Unauthorized => ("Unauthorized", "UNAUTHORIZED"),
            Self::Forbidden(_) => ("Forbidden", "INSUFFICIENT_PERMISSIONS"),
            Self::NotFound(_) => ("Not Found", "NOT_FOUND"),
            Self::MethodNotAllowed(_) => ("Method not allowed", "METHOD_NOT_ALLOWED"),
            Self::InvalidField(_) => ("Invalid request", "VALIDATION_ERROR"),
            Self::MalformedJson(_) => ("Malformed JSON", "INVALID_JSON"),
            Self::PayloadTooLarge { .. } => ("Payload too large", "PAYLOAD_TOO_LARGE"),
            Self::Conflict { code, .. } => ("Conflict", code),
            Self::RateLimited { .. } => ("Too Many Requests", "RATE_LIMITED"),
            Self::Unavailable(_) => ("Service unavailable", "SERVICE_UNAVAILABLE"),
            Self::Internal => ("Internal error", "INTERNAL_ERROR"),
            Self::SecretUnreadable(_) => ("Internal error", "SECRET_UNREADABLE"),
            Self::Facade { title, code, .. } => (title, code),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidField(_) | Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal | Self::SecretUnreadable(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Facade { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, code) = self.title_and_code();
        let body = ErrorBody {
            error: title,
            code,
            message: self.to_string(),
            request_id: request_id::current(),
            field: match self {
                Self::InvalidField(e) => Some(e.field.clone()),
                _ => None,
            },
            extra: match self {
                Self::Conflict { extra, .. } | Self::Facade { extra, .. } => extra.clone(),
                _ => Map::new(),
            },
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            Self::MethodNotAllowed(allow) => {
                response.insert_header(("Allow", allow.as_str()));
            }
            Self::RateLimited { limit, retry_after } => {
                let wait = super::rate_limit::seconds(*retry_after).to_string();
                response
                    .insert_header(("Retry-After", wait.as_str()))
                    .insert_header(("RateLimit-Limit", limit.to_string()))
                    .insert_header(("RateLimit-Remaining", "0"))
                    .insert_header(("RateLimit-Reset", wait));
            }
            _ => {}
        }
        response.json(body)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            return Self::Unavailable("the database is unreachable; retry shortly".into());
        }
        if e.is_owner_gone() {
            // The tenant or project was deleted while the request was under way.
            return Self::NotFound("project");
        }
        if let StoreError::Secret { .. } = e {
            tracing::error!(error = %e, "a stored secret cannot be opened");
            return Self::SecretUnreadable(e.to_string());
        }
        tracing::error!(error = %e, "store error");
        Self::Internal
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        let code = match e {
            TransitionError::LeaseLost { .. } => "LEASE_LOST",
            TransitionError::NotRetryable { .. } => "OPERATION_NOT_RETRYABLE",
            TransitionError::AlreadyTerminal { .. } | TransitionError::Illegal { .. } => {
                "INVALID_STATE_TRANSITION"
            }
        };
        Self::conflict(code, e.to_string())
    }
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::NotFound => Self::NotFound("operation"),
            LeaseError::Refused(e) => e.into(),
            LeaseError::Store(e) => e.into(),
        }
    }
}
