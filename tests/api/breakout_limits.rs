//! Hostile input to the breakout facade: server paths that are no regular file, bodies
//! and uploads over their limits, data files swapped after registration. Each gets a
//! prompt 4xx naming the field (or a failed job with a clear error), never a hang.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(breakout_a_json_body_over_the_limit_is_413,);

/// The JSON form of registration is refused as too large, like every other JSON route.
async fn breakout_a_json_body_over_the_limit_is_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.token_with("admin").await;
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = json!({"dataPath": padding, "dictionaryPath": "census.dcf"});
    let r = app
        .call(
            Method::POST,
            "/api/breakout/dictionaries",
            Some(&admin),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["code"], "PAYLOAD_TOO_LARGE", "{}", r.text);
}
