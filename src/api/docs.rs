//! The API described: `GET /openapi.json`, generated from the answer and request types
//! and the handlers' `#[utoipa::path]`s (`api::openapi`), and `GET /docs`, a page that
//! renders it with a copy of Redoc that Relais serves itself, so the docs work where
//! nothing else can be reached.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::HttpResponse;

use super::error::ApiError;
use super::openapi;

/// Redoc's standalone bundle (npm package `redoc`, MIT; see `assets/redoc/`).
const REDOC: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

/// The page: only same-origin references, the document and the renderer.
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Relais API</title>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/docs/redoc.standalone.js"></script>
</body>
</html>
"#;

#[utoipa::path(
    get,
    operation_id = "docs_openapi_json",
    path = "/openapi.json",
    tag = "docs",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value)),
    security(())
)]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    // The document does not change while the process runs: generated once.
    static DOCUMENT: OnceLock<Option<String>> = OnceLock::new();
    let document = DOCUMENT
        .get_or_init(|| openapi::document().to_json().ok())
        .as_deref()
        .ok_or(ApiError::Internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(document))
}

#[utoipa::path(
    get,
    operation_id = "docs_page",
    path = "/docs",
    tag = "docs",
    summary = "This document, for people",
    responses((status = 200, description = "A page rendering the document", body = String, content_type = "text/html")),
    security(())
)]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

#[utoipa::path(
    get,
    operation_id = "docs_renderer",
    path = "/docs/redoc.standalone.js",
    tag = "docs",
    summary = "The renderer of the docs page",
    responses((status = 200, description = "Redoc's standalone bundle", body = String, content_type = "text/javascript")),
    security(())
)]
pub async fn renderer() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(REDOC)
}
