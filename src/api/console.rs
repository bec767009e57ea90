//! The console: a page for people, served by Relais itself from assets built into the
//! binary (`assets/console/`), which works offline and talks to the documented API only,
//! with the token the person signs in with. Every path under `/console` that is not an
//! asset is the same page, so that deep links (`/console/operations/{id}`) open directly;
//! the script reads the path. These paths are for browsers, not part of the API's
//! document.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");

/// No inline script or style, nothing from another origin, no framing: a value from the
/// API that slipped past the script's escaping still could not run.
const POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(page))
        .route("/assets/console.js", web::get().to(script))
        .route("/assets/console.css", web::get().to(style))
        .route("/{page:.*}", web::get().to(page));
}

fn hardened(mut answer: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    answer
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    answer
}

async fn page() -> HttpResponse {
    hardened(HttpResponse::Ok())
        .content_type("text/html; charset=utf-8")
        // A portal link's token arrives in this page's URL fragment; nothing is cached.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(PAGE)
}

async fn script() -> HttpResponse {
    hardened(HttpResponse::Ok())
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SCRIPT)
}

async fn style() -> HttpResponse {
    hardened(HttpResponse::Ok())
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(STYLE)
}
