//! OpenTelemetry traces of a real `relais serve`, exported over OTLP/HTTP to a collector
//! the test runs: each API request is a server span named by its route, continuing the
//! caller's `traceparent`; the delivery of an event is a span in the trace of the request
//! that wrote it, and the receiver gets a `traceparent` naming that span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, Backend, Response, ServeProcess, TestDb};
use crate::receiver::Receiver;

both_backends!(a_request_and_the_deliveries_it_caused_are_one_trace);

/// A span as the collector received it, ids in hex.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    /// The resource's `service.name`.
    service: String,
}

/// An OTLP/HTTP receiver of traces (protobuf), keeping every span it is sent.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Exported>>>,
    handle: actix_web::dev::ServerHandle,
}

fn text(value: Option<&Any>) -> String {
    match value {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            (kv.key.clone(), text(value))
        })
        .collect()
}

async fn export(body: web::Bytes, spans: web::Data<Arc<Mutex<Vec<Exported>>>>) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut kept = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            kept.push(Exported {
                name: span.name,
                kind: span.kind,
                trace_id: hex::encode(span.trace_id),
                span_id: hex::encode(span.span_id),
                parent_span_id: hex::encode(span.parent_span_id),
                attributes: attributes(&span.attributes),
                service: service.clone(),
            });
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

impl Collector {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Exported>>> = Default::default();
        let data = web::Data::new(spans.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .route("/v1/traces", web::post().to(export))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Collector {
            url: format!("http://{addr}"),
            spans,
            handle,
        }
    }

    /// The first span `pick` finds among those exported, waiting up to `limit` for it.
    async fn wait_for(&self, limit: Duration, pick: impl Fn(&Exported) -> bool) -> Exported {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| pick(s)) {
                return span.clone();
            }
            if tokio::time::Instant::now() > deadline {
                let names: Vec<_> = self
                    .spans
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.trace_id))
                    .collect();
                panic!("no such span within {limit:?}; exported: {names:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// A caller's trace: a fresh trace id and the caller's span id.
fn caller() -> (String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (trace, span)
}

const LIMIT: Duration = Duration::from_secs(30);

async fn a_request_and_the_deliveries_it_caused_are_one_trace(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (tenant, project, token) = cli_tenant(&db.url, "traces");
    let collector = Collector::start().await;
    let receiver = Receiver::start().await;
    let server = ServeProcess::start(
        &db,
        &[
            ("RELAIS_ALLOW_PRIVATE_TARGETS", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value, traceparent: Option<String>| {
        let url = format!("{}/api/{tenant}/{project}/async{path}", server.base);
        let mut request = client.post(url).bearer_auth(&token).json(&body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        async move { Response::read(request.send().await.unwrap()).await }
    };

    let r = post(
        "/webhooks",
        json!({"webhookUrl": receiver.url, "events": ["operation.completed"]}),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let (start_trace, start_parent) = caller();
    let r = post(
        "/operation",
        json!({"operationType": "Traced", "operationName": "traced"}),
        Some(format!("00-{start_trace}-{start_parent}-01")),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let operation = r.body["operationId"].as_str().unwrap().to_owned();
    let r = post(
        "/workers/lease",
        json!({"operationTypes": ["Traced"]}),
        None,
    )
    .await;
    let lease = r.body["leases"][0]["leaseToken"].clone();
    assert!(lease.is_string(), "{}", r.text);

    // The completion is written by the group commit, in a task of its own, and sent by
    // the dispatcher: the trace must go through both.
    let (trace, parent) = caller();
    let r = post(
        &format!("/operation/{operation}/complete"),
        json!({"leaseToken": lease}),
        Some(format!("00-{trace}-{parent}-01")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let started = collector
        .wait_for(LIMIT, |s| s.trace_id == start_trace)
        .await;
    assert_eq!(
        started.name, "POST /api/{tenantId}/{projectId}/async/operation",
        "{started:?}"
    );
    assert_eq!(started.parent_span_id, start_parent, "{started:?}");
    assert_eq!(started.kind, SpanKind::Server as i32, "{started:?}");
    assert_eq!(
        started.attributes["http.route"],
        "/api/{tenantId}/{projectId}/async/operation"
    );
    assert_eq!(started.attributes["http.request.method"], "POST");
    assert_eq!(started.attributes["http.response.status_code"], "202");
    assert_eq!(started.service, "relais", "OTEL_SERVICE_NAME's default");

    let completed = collector
        .wait_for(LIMIT, |s| {
            s.trace_id == trace && s.kind == SpanKind::Server as i32
        })
        .await;
    assert_eq!(
        completed.name,
        "POST /api/{tenantId}/{projectId}/async/operation/{operationId}/complete"
    );
    assert_eq!(completed.parent_span_id, parent, "{completed:?}");
    assert_eq!(completed.attributes["http.response.status_code"], "200");
    assert_eq!(completed.attributes["operation_id"], operation);

    let delivered = collector
        .wait_for(LIMIT, |s| s.name == "deliver webhook")
        .await;
    assert_eq!(
        delivered.trace_id, trace,
        "in the completing request's trace"
    );
    assert_eq!(delivered.parent_span_id, completed.span_id, "{delivered:?}");
    assert_eq!(delivered.kind, SpanKind::Client as i32, "{delivered:?}");
    assert_eq!(delivered.attributes["http.response.status_code"], "200");

    let received = receiver.wait_for(1, LIMIT).await;
    assert_eq!(received[0].event_type(), "operation.completed");
    assert_eq!(
        received[0].header("traceparent"),
        format!("00-{trace}-{}-01", delivered.span_id),
        "the receiver's request is the delivery span's child"
    );

    // A request that continues nobody's trace starts its own.
    let leased = collector
        .wait_for(LIMIT, |s| {
            s.name == "POST /api/{tenantId}/{projectId}/async/workers/lease"
        })
        .await;
    assert_eq!(leased.parent_span_id, "", "{leased:?}");
    assert!(![&trace, &start_trace].contains(&&leased.trace_id));
}
