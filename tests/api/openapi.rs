//! The API's own description: `GET /openapi.json` (OpenAPI 3.1, generated from the types),
//! `GET /docs` (rendered with assets Relais serves itself), and the document checked
//! against the running server by schemathesis.

use std::process::Command;

use reqwest::{Method, StatusCode};

use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(
    the_document_and_its_page_are_served_without_a_token,
    schemathesis_finds_the_server_true_to_its_document,
);

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
    // What Relais sends out, beside what it answers.
    for sent in ["PushTask", "WorkOrder", "EventEnvelope"] {
        assert!(
            doc.body["components"]["schemas"][sent].is_object(),
            "{sent}"
        );
    }
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

/// schemathesis (tests/requirements.txt) sends every operation of the document generated
/// requests, valid and invalid, in this app's own project with its token (as the bearer
/// token, and as the `/v1` facade's `X-Vitam-Key`), and checks each
/// answer against the document: no 5xx, a documented status, content type and schema.
/// A fixed seed keeps a run reproducible; 30 examples an operation keep it within half a
/// minute per backend (150 found nothing more).
async fn schemathesis_finds_the_server_true_to_its_document(backend: Backend) {
    // An event stream answers for as long as it lives: a short life lets schemathesis
    // read each answer whole.
    let app = TestApp::spawn_with(backend, |config| {
        config.event_stream_lifetime = std::time::Duration::from_millis(200)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    // The `/v1` facade's tenant number is the app's, as its path ids are: schemathesis
    // then reaches past the 404 of another tenant's number.
    let number = app
        .store()
        .tenants()
        .vitam_id(app.tenant)
        .await
        .unwrap()
        .unwrap();
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.tenantId\" = \"{}\"\n\"path.projectId\" = \"{}\"\n\"header.X-Tenant-Id\" = \"{number}\"\n",
            app.tenant, app.project
        ),
    )
    .unwrap();
    // The document as the server serves it, read from a file: schemathesis leaves out the
    // operation that serves a document it fetched itself.
    let document = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(document.status, StatusCode::OK);
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, &document.text).unwrap();
    let base = app.base.clone();
    let python = std::env::var("RELAIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let auth = format!("Authorization: Bearer {}", app.token);
    // The same token is the `/v1` facade's key.
    let key = format!("X-Vitam-Key: {}", app.token);
    let report = dir.path().join("report");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .current_dir(dir.path())
            .args([
                "-c",
                "import sys; from schemathesis.cli import schemathesis; schemathesis(sys.argv[1:], prog_name='st')",
                "--config-file",
            ])
            .arg(&config)
            .arg("run")
            .arg(&schema)
            .args([
                "--url",
                &base,
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--header",
                &auth,
                "--header",
                &key,
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "30",
                "--seed",
                "7",
                "--workers",
                "2",
                "--request-timeout",
                "60",
                "--no-shrink",
                "--suppress-health-check",
                "all",
                "--report-dir",
            ])
            .arg(&report)
            .output()
            .expect("python runs (scripts/test installs schemathesis)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation was tried, none skipped for want of a document it could read.
    let operations = relais::api::route_table().len();
    assert!(
        stdout.contains(&format!("Tested: {operations}")),
        "not every one of the {operations} operations was tested:\n{stdout}"
    );
}
