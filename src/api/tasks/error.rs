//! The `/v1` facade's errors: every error of the API, and the 412 of a predicate that does
//! not hold, answered in the shape of the seed's task `error` (`VitamErrorBody`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::api::error::ApiError;
use crate::api::wire::answers::tasks::VitamErrorBody;
use crate::domain::operation::TransitionError;
use crate::domain::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum VitamError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A predicate of the request does not hold: a list's `query` Relais cannot apply, a
    /// message naming another task than its path. The seed's 412.
    #[error("{0}")]
    Precondition(FieldError),
}

impl From<FieldError> for VitamError {
    fn from(e: FieldError) -> Self {
        Self::Api(e.into())
    }
}

impl From<StoreError> for VitamError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<TransitionError> for VitamError {
    fn from(e: TransitionError) -> Self {
        Self::Api(e.into())
    }
}

/// `Not Found` → `Not_Found`, as the seed writes states.
fn state_of(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("Error")
        .replace([' ', '-'], "_")
}

impl ResponseError for VitamError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Api(e) => e.status_code(),
            Self::Precondition(_) => StatusCode::PRECONDITION_FAILED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (message, code) = match self {
            Self::Api(e) => e.title_and_code(),
            Self::Precondition(_) => (
                "A predicate of the request does not hold",
                "PRECONDITION_FAILED",
            ),
        };
        let field = match self {
            Self::Api(ApiError::InvalidField(e)) | Self::Precondition(e) => Some(e.field.clone()),
            Self::Api(_) => None,
        };
        let mut response = HttpResponse::build(status);
        if let Self::Api(ApiError::MethodNotAllowed(allow)) = self {
            response.insert_header(("Allow", allow.as_str()));
        }
        response.json(VitamErrorBody {
            http_code: status.as_u16(),
            code,
            state: state_of(status),
            message,
            description: self.to_string(),
            errors: Vec::new(),
            field,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_written_as_the_seed_writes_them() {
        assert_eq!(state_of(StatusCode::NOT_FOUND), "Not_Found");
        assert_eq!(
            state_of(StatusCode::PRECONDITION_FAILED),
            "Precondition_Failed"
        );
        assert_eq!(
            state_of(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            "Unsupported_Media_Type"
        );
    }
}
