use reqwest::{Method, StatusCode};

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(health_readiness_pings_and_request_ids);

async fn health_readiness_pings_and_request_ids(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["database"], "ok");

    let r = app
        .call(Method::GET, &app.api("/unauthorized-ping"), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, "Ping Successful");
    let r = app.get(&app.api("/ping")).await;
    assert_eq!(
        r.text,
        format!("Ping Successful (tenant id: {})", app.tenant)
    );
    let generated = r.headers["x-request-id"].to_str().unwrap();
    assert!(!generated.is_empty());

    let echoed = app
        .client
        .get(format!("{}{}", app.base, app.api("/operations")))
        .header("X-Request-Id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-42");
    let body: serde_json::Value = echoed.json().await.unwrap();
    assert_eq!(
        body["requestId"], "client-chosen-42",
        "errors quote the request id"
    );
}
