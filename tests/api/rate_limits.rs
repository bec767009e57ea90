//! `RELAIS_RATE_LIMIT`: a token over its rate gets 429 with `Retry-After` and the
//! `RateLimit-*` headers, then recovers; another token of the same tenant is not slowed.

use std::num::NonZeroU32;
use std::time::Duration;

use reqwest::StatusCode;

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(a_token_over_its_rate_is_told_to_wait_and_others_are_not);

async fn a_token_over_its_rate_is_told_to_wait_and_others_are_not(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.rate_limit = Some(relais::config::RateLimit {
            per_second: NonZeroU32::new(5).unwrap(),
            burst: NonZeroU32::new(5).unwrap(),
        })
    })
    .await;
    let other = app.token_with("operations:read").await;
    let path = app.api("/operations");
    for i in 0..5 {
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text);
    }
    let refused = app.get(&path).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert_eq!(refused.body["code"], "RATE_LIMITED");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["ratelimit-limit"], "5");
    assert_eq!(refused.headers["ratelimit-remaining"], "0");
    // Another token is not slowed by this one.
    let r = app
        .call(reqwest::Method::GET, &path, Some(&other), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // A bad token is still a 401, never a 429.
    let r = app
        .call(reqwest::Method::GET, &path, Some("rls_nope"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get(&path).await.status, StatusCode::OK, "recovered");
}
