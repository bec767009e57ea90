//! Request bodies: read within the size limit, then parsed so that every error names the
//! field at fault.

use std::future::Future;
use std::pin::Pin;

use actix_web::error::PayloadError;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::AppState;
use crate::domain::FieldError;

/// A route's own body limit, where it differs from the configured one.
pub struct BodyLimit(pub usize);

/// The raw body of a request, refused with a JSON 413 when over the limit.
pub struct Body(pub web::Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let limit = match req.app_data::<BodyLimit>() {
            Some(BodyLimit(limit)) => *limit,
            None => req
                .app_data::<web::Data<AppState>>()
                .map_or(0, |state| state.config.body_limit),
        };
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            match bytes.await {
                Ok(b) => Ok(Body(b)),
                Err(e) => match e.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => Err(ApiError::PayloadTooLarge { limit }),
                    _ => Err(ApiError::MalformedJson(format!(
                        "the body could not be read: {e}"
                    ))),
                },
            }
        })
    }
}

impl Body {
    /// Bodies are JSON objects; serde alone would also accept an array for a struct.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        match self.0.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => parse(&self.0),
            Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                Err(FieldError::new("body", "must be a JSON object").into())
            }
            _ => parse(&self.0),
        }
    }

    /// An empty body means "all defaults".
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.json()
    }

    /// The body as a canonical JSON text (keys sorted), so that two requests that differ
    /// only in formatting are recognised as the same.
    pub fn canonical(&self) -> Result<String, ApiError> {
        Ok(parse::<Value>(&self.0)?.to_string())
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(field) = super::text::nul_in_json(bytes) {
        return Err(super::text::nul_error(field));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        describe(&path, &inner)
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(without_position(&e)))?;
    Ok(value)
}

fn describe(path: &str, error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = without_position(error);
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::MalformedJson(error.to_string())
        }
        Category::Data => {
            // serde reports a missing field at its parent's path; name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            let field = match (missing, path) {
                (Some(name), ".") => name.to_owned(),
                (Some(name), parent) => format!("{parent}.{name}"),
                (None, ".") => "body".to_owned(),
                (None, path) => path.to_owned(),
            };
            ApiError::InvalidField(FieldError::new(field, message))
        }
    }
}

fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::operations::StartOperationBody;

    fn field_of(body: &str) -> String {
        match parse::<StartOperationBody>(body.as_bytes()) {
            Err(ApiError::InvalidField(e)) => e.field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        assert_eq!(field_of(r#"{"operationType": "T"}"#), "operationName");
        assert_eq!(
            field_of(r#"{"operationType": "T", "operationName": "n", "priority": "Urgent"}"#),
            "priority"
        );
        assert_eq!(
            field_of(
                r#"{"operationType": "T", "operationName": "n", "retryPolicy": {"maxRetries": "x"}}"#
            ),
            "retryPolicy.maxRetries"
        );
        assert_eq!(field_of("[]"), "body");
    }

    #[test]
    fn broken_json_is_malformed() {
        assert!(matches!(
            parse::<StartOperationBody>(b"{\"operationType\": "),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<Value>(b"{} trailing"),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
