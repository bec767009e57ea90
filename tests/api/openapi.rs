//! The API's own description: `GET /openapi.json` (OpenAPI 3.1, generated from the types),
//! and `GET /docs` (rendered with assets Relais serves itself).

use reqwest::{Method, StatusCode};

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(the_document_and_its_page_are_served_without_a_token);

async fn the_document_and_its_page_are_served_without_a_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.text);
    assert!(
        doc.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc.body["openapi"]
    );
    let start = &doc.body["paths"]["/api/{tenantId}/{projectId}/async/operation"]["post"];
    assert_eq!(
        start["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/StartOperationBody"
    );
    assert!(start["responses"]["202"].is_object(), "{start}");
    assert_eq!(
        start["responses"]["400"]["$ref"], "#/components/responses/Error400",
        "errors are documented in their one shape"
    );
    assert!(doc.body["components"]["schemas"]["ErrorBody"].is_object());
    assert_eq!(
        doc.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let page = app.call(Method::GET, "/docs", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // Every asset the page loads is Relais's own: a path on this origin, never a CDN.
    let references: Vec<&str> = ["src=\"", "href=\"", "spec-url=\""]
        .iter()
        .flat_map(|attr| page.text.split(attr).skip(1))
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(references.len() >= 2, "{}", page.text);
    for reference in references {
        assert!(
            reference.starts_with('/') && !reference.starts_with("//"),
            "{reference} is not same-origin"
        );
        let asset = app.call(Method::GET, reference, None, None).await;
        assert_eq!(asset.status, StatusCode::OK, "{reference}");
    }
    let script = app
        .call(Method::GET, "/docs/redoc.standalone.js", None, None)
        .await;
    assert!(script.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(script.text.len() > 100_000, "the whole renderer is served");
}
