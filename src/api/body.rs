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
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() {
                // serde_json calls a value of the wrong type where an enum's name belongs
                // (`"priority": 5`) a syntax error, though the document is valid JSON: read
                // from a parsed document, the same mistake is the data error it is.
                if let Ok(document) = serde_json::from_slice::<Value>(bytes) {
                    if let Err(err) = serde_path_to_error::deserialize::<_, T>(document) {
                        let path = err.path().to_string();
                        return Err(describe(&path, &err.into_inner()));
                    }
                }
            }
            return Err(describe(&path, &inner));
        }
    };
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
            ApiError::InvalidField(FieldError::new(field, explain(message)))
        }
    }
}

/// serde's wording, where it would mislead someone who reads the JSON.
fn explain(message: String) -> String {
    if message.starts_with("invalid type: null") {
        return "must not be null: leave the field out to get its default".to_owned();
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!("is not a field of this request: unknown field {rest}");
    }
    // What a parsed document answers for a non-string where a name belongs: every enum of
    // a request is a plain name.
    match message.strip_suffix(", expected string or map") {
        Some(head) => format!("{head}, expected a string"),
        None => message,
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
    use serde_json::json;

    use super::*;
    use crate::api::wire::batches::SubmitBatchBody;
    use crate::api::wire::operations::{CancelBody, RetryBody, StartOperationBody};
    use crate::api::wire::push_workers::PushWorkerBody;
    use crate::api::wire::webhooks::WebhookBody;
    use crate::api::wire::workers::{CompleteBody, FailBody, LeaseBody, ProgressBody};

    fn field_of<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        match parse::<T>(body.as_bytes()) {
            Err(ApiError::InvalidField(e)) => e.field,
            other => panic!("expected a field error for {body}, got {other:?}"),
        }
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let field = field_of::<StartOperationBody>;
        assert_eq!(field(r#"{"operationType": "T"}"#), "operationName");
        assert_eq!(
            field(r#"{"operationType": "T", "operationName": "n", "priority": "Urgent"}"#),
            "priority"
        );
        assert_eq!(
            field(
                r#"{"operationType": "T", "operationName": "n", "retryPolicy": {"maxRetries": "x"}}"#
            ),
            "retryPolicy.maxRetries"
        );
        assert_eq!(field("[]"), "body");
    }

    #[test]
    fn a_wrong_type_where_a_name_belongs_is_a_field_error_not_broken_json() {
        let body = r#"{"operationType": "T", "operationName": "n", "priority": 5}"#;
        match parse::<StartOperationBody>(body.as_bytes()) {
            Err(ApiError::InvalidField(e)) => {
                assert_eq!(e.field, "priority");
                assert!(e.message.contains("expected a string"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        let batch = r#"{"batchName": "b", "operations": [
            {"operationKey": "a", "operationType": "T", "operationName": "a"},
            {"operationKey": "b", "operationType": "T", "operationName": "b"},
            {"operationKey": "c", "operationType": "T", "operationName": "c", "priority": [1]}]}"#;
        assert_eq!(field_of::<SubmitBatchBody>(batch), "operations[2].priority");
        let filters =
            r#"{"webhookUrl": "https://x.io", "filters": {"priorities": ["High", true]}}"#;
        assert_eq!(field_of::<WebhookBody>(filters), "filters.priorities[1]");
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
        assert!(matches!(
            parse::<StartOperationBody>(b"{\"priority\": 5,"),
            Err(ApiError::MalformedJson(_))
        ));
    }

    /// Every key of `body` as a path (`a.b`, `a[0].c`), except inside free-form values.
    fn paths(body: &Value, at: &str, free: &[&str], out: &mut Vec<String>) {
        let children: Vec<(String, &Value)> = match body {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    (path, v)
                })
                .collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{at}[{i}]"), v))
                .collect(),
            _ => return,
        };
        for (path, child) in children {
            if body.is_object() {
                out.push(path.clone());
            }
            if !free.contains(&path.as_str()) {
                paths(child, &path, free, out);
            }
        }
    }

    fn at_path<'a>(body: &'a mut Value, path: &str) -> &'a mut Value {
        let mut target = body;
        for step in path.split('.') {
            let (key, index) = match step.split_once('[') {
                Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (step, None),
            };
            target = &mut target[key];
            if let Some(i) = index {
                target = &mut target[i];
            }
        }
        target
    }

    /// Each key set to `null` is refused naming it; an unknown key in each object that is
    /// not free-form is refused naming it.
    fn strict<T: DeserializeOwned + std::fmt::Debug>(body: Value, free: &[&str]) {
        parse::<T>(body.to_string().as_bytes()).expect("the full body is accepted");
        let mut keys = Vec::new();
        paths(&body, "", free, &mut keys);
        for path in &keys {
            let mut nulled = body.clone();
            *at_path(&mut nulled, path) = Value::Null;
            assert_eq!(field_of::<T>(&nulled.to_string()), *path, "{nulled}");
        }
        let mut objects = vec![String::new()];
        for path in keys.iter().filter(|p| !free.contains(&p.as_str())) {
            if at_path(&mut body.clone(), path).is_object() {
                objects.push(path.clone());
            }
        }
        for object in objects {
            let mut extended = body.clone();
            let path = if object.is_empty() {
                "priorty".to_owned()
            } else {
                format!("{object}.priorty")
            };
            *at_path(&mut extended, &path) = json!("High");
            assert_eq!(field_of::<T>(&extended.to_string()), path, "{extended}");
        }
    }

    #[test]
    fn every_body_refuses_nulls_and_unknown_fields_naming_them() {
        let retry_policy =
            json!({"maxRetries": 1, "retryDelay": 1, "backoffMultiplier": 2.0, "maxDelay": 10});
        let callbacks = json!({"onProgress": "https://a.io/p", "onCompletion": "https://a.io/c", "onError": "https://a.io/e"});
        strict::<StartOperationBody>(
            json!({
                "operationType": "T", "operationName": "n", "operationDescription": "d",
                "priority": "High", "parameters": {"free": null}, "callbacks": callbacks,
                "notifications": {"email": ["a@b.io"], "slack": {"channel": "#c", "mentionUsers": ["@u"]}},
                "timeout": 60, "retryPolicy": retry_policy
            }),
            &["parameters"],
        );
        strict::<SubmitBatchBody>(
            json!({
                "batchName": "b", "batchDescription": "d",
                "operations": [{"operationKey": "a", "operationType": "T", "operationName": "a",
                    "dependencies": [], "operationDescription": "d", "priority": "Low",
                    "parameters": {}, "callbacks": callbacks, "notifications": {"email": []},
                    "timeout": 10, "retryPolicy": retry_policy}],
                "batchCallbacks": {"onBatchStart": "https://a.io/s", "onOperationComplete": "https://a.io/o", "onBatchComplete": "https://a.io/b"},
                "failurePolicy": {"stopOnFirstFailure": false, "continueIndependentOperations": true, "retryFailedOperations": true},
                "retryPolicy": retry_policy
            }),
            &["operations[0].parameters"],
        );
        strict::<RetryBody>(
            json!({"retryMode": "resume", "retryReason": "r", "modifyParameters": true,
                   "updatedParameters": {"a": null}, "retryPolicy": retry_policy,
                   "newTimeout": 30, "preserveOriginalResults": true}),
            &["updatedParameters"],
        );
        strict::<CancelBody>(
            json!({"reason": "r", "preservePartialResults": true, "forceTermination": false, "notifyCallbacks": true}),
            &[],
        );
        strict::<WebhookBody>(
            json!({"webhookUrl": "https://a.io/h", "webhookName": "w", "events": ["operation.completed"],
                   "filters": {"operationTypes": ["T"], "priorities": ["High"], "minProgressIncrement": 10},
                   "authentication": {"type": "hmac-sha256", "secret": "a-long-enough-secret"},
                   "retryPolicy": retry_policy, "headers": {"X-Team": "a"}}),
            &["headers"],
        );
        strict::<PushWorkerBody>(
            json!({"url": "https://w.io", "name": "w", "operationTypes": ["A"], "maxConcurrency": 2, "secret": "a-long-enough-secret"}),
            &[],
        );
        strict::<LeaseBody>(
            json!({"operationTypes": ["A"], "max": 1, "waitSeconds": 0, "workerId": "w"}),
            &[],
        );
        strict::<ProgressBody>(
            json!({"leaseToken": "l", "percentage": 50, "currentPhase": "p", "totalPhases": 2,
                   "processedRecords": 1, "totalRecords": 2,
                   "phase": {"phaseName": "p", "status": "Running", "results": {"r": null}, "checkpoint": {"at": 1}}}),
            &["phase.results", "phase.checkpoint"],
        );
        strict::<FailBody>(
            json!({"leaseToken": "l", "error": {"code": "c", "message": "m", "details": {"d": null}}, "retryable": true}),
            &["error.details"],
        );
        // `complete` keeps the top-level fields it does not know (the worker's own
        // results), and refuses nulls as every body does.
        let complete = json!({"leaseToken": "l", "summary": {"s": null}, "phaseResults": [{"p": 1}], "artifacts": [{"a": 1}]});
        for key in ["leaseToken", "summary", "phaseResults", "artifacts"] {
            let mut nulled = complete.clone();
            nulled[key] = Value::Null;
            assert_eq!(field_of::<CompleteBody>(&nulled.to_string()), key);
        }
        let mut extended = complete;
        extended["performance"] = json!({"efficiency": 87.2});
        let kept = parse::<CompleteBody>(extended.to_string().as_bytes()).unwrap();
        assert_eq!(kept.extra["performance"], json!({"efficiency": 87.2}));
    }
}
