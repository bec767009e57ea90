//! Text the databases can store. PostgreSQL refuses the NUL character in any text value
//! (SQLite keeps it but cuts strings at it in places), so a NUL anywhere in what a request
//! sends is refused at the edge with a 400 naming where it was: a URL path segment, a
//! query parameter, or a field of a JSON body. Every other Unicode character is storable
//! by both (JSON cannot carry lone surrogates, and the parser already refuses them).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use serde_json::Value;

use super::error::ApiError;
use crate::domain::FieldError;

const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Refuses a request whose path or query string carries an encoded NUL (`%00`). The
/// `/v1` facade answers its errors in its own shape, and checks its URLs itself
/// (`api::tasks::caller::middleware`).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if super::in_tasks_scope(req.uri().path()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    if let Some(field) = nul_in_url(req.uri().path(), req.query_string()) {
        let error = ApiError::from(FieldError::new(field, NUL_MESSAGE));
        let response = error.error_response().map_into_right_body();
        return Ok(req.into_response(response));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Where a NUL hides in a URL: `path` (a path segment), or the name of the query
/// parameter whose name or value carries one.
pub(crate) fn nul_in_url(path: &str, query: &str) -> Option<String> {
    if has_encoded_nul(path) {
        return Some("path".to_owned());
    }
    if !has_encoded_nul(query) {
        return None;
    }
    query
        .split('&')
        .find(|pair| has_encoded_nul(pair))
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            match name.contains('%') {
                // The name itself carries the NUL: it cannot be quoted as it is.
                true => "query".to_owned(),
                false => name.to_owned(),
            }
        })
}

fn has_encoded_nul(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// A JSON text can only carry a NUL as the escape `\u0000`; without one (nearly every
/// body) there is nothing to walk. With one, the parsed value is searched for the first
/// string, or key, holding a NUL, and its path is returned in the form field errors use
/// (`operations[0].operationName`).
pub fn nul_in_json(bytes: &[u8]) -> Option<String> {
    if !bytes.windows(6).any(|w| w == br"\u0000") {
        return None;
    }
    let value: Value = serde_json::from_slice(bytes).ok()?;
    find_nul(&value, String::new())
}

fn find_nul(value: &Value, path: String) -> Option<String> {
    let field = |path: String| if path.is_empty() { "body".into() } else { path };
    match value {
        Value::String(s) if s.contains('\0') => Some(field(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nul(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let inner = if path.is_empty() {
                key.replace('\0', "\\u0000")
            } else {
                format!("{path}.{}", key.replace('\0', "\\u0000"))
            };
            if key.contains('\0') {
                return Some(inner);
            }
            find_nul(item, inner)
        }),
        _ => None,
    }
}

/// Checks one string a request gave outside of a JSON body (a multipart field, a value
/// read from an uploaded file), naming `field` when it holds a NUL.
pub fn storable(value: &str, field: &str) -> Result<(), FieldError> {
    match value.contains('\0') {
        true => Err(FieldError::new(field, NUL_MESSAGE)),
        false => Ok(()),
    }
}

pub fn nul_error(field: String) -> ApiError {
    FieldError::new(field, NUL_MESSAGE).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_a_json_string_is_found_with_its_path() {
        let body = br#"{"operationName": "a\u0000b", "operationType": "T"}"#;
        assert_eq!(nul_in_json(body).as_deref(), Some("operationName"));
        let body = br#"{"operations": [{"k": "x"}, {"parameters": {"deep": ["ok", "\u0000"]}}]}"#;
        assert_eq!(
            nul_in_json(body).as_deref(),
            Some("operations[1].parameters.deep[1]")
        );
        assert_eq!(nul_in_json(br#""\u0000""#).as_deref(), Some("body"));
    }

    #[test]
    fn a_nul_in_a_key_names_the_key() {
        let body = br#"{"parameters": {"a\u0000": 1}}"#;
        assert_eq!(nul_in_json(body).as_deref(), Some(r"parameters.a\u0000"));
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        assert_eq!(nul_in_json(br#"{"name": "C:\\u0000"}"#), None);
        assert_eq!(nul_in_json(br#"{"name": "plain"}"#), None);
    }

    #[test]
    fn encoded_nuls_in_urls_are_named() {
        assert_eq!(
            nul_in_url("/api/x/y", "operationType=%00&page=1").as_deref(),
            Some("operationType")
        );
        assert_eq!(
            nul_in_url("/api/breakout/tables/a%00b", "").as_deref(),
            Some("path")
        );
        assert_eq!(nul_in_url("/api/x", "a=1&%00=2").as_deref(), Some("query"));
        assert_eq!(nul_in_url("/api/x", "a=100&b=%2500"), None);
        assert_eq!(nul_in_url("/api/x", ""), None);
    }
}
