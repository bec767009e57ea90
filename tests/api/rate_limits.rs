//! `RELAIS_RATE_LIMIT`: a token over its rate gets 429 with `Retry-After` and the
//! `RateLimit-*` headers, then recovers; another token of the same tenant is not slowed.

use std::num::NonZeroU32;
use std::time::Duration;

use reqwest::StatusCode;

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(a_token_over_its_rate_is_told_to_wait_and_others_are_not);

async fn a_token_over_its_rate_is_told_to_wait_and_others_are_not(backend: Backend) {
    // One new request a second after a burst of five: a loaded machine may take a second
    // or more over the burst, so the refill during it is counted, not assumed away.
    let app = TestApp::spawn_with(backend, |c| {
        c.rate_limit = Some(relais::config::RateLimit {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(5).unwrap(),
        })
    })
    .await;
    let other = app.token_with("operations:read").await;
    let path = app.api("/operations");
    let started = std::time::Instant::now();
    let mut accepted = 0;
    let refused = loop {
        let r = app.get(&path).await;
        if r.status != StatusCode::OK {
            break r;
        }
        accepted += 1;
        assert!(accepted <= 20, "never refused");
    };
    let refills = started.elapsed().as_secs() + 1;
    assert!(
        (5..=5 + refills).contains(&accepted),
        "{accepted} accepted in {:?}",
        started.elapsed()
    );
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
