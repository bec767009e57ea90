//! `relais bench sync`: a `CursorSync` reads a local GraphQL source shaped like seed
//! 004's and every record goes out as a signed `sync.record.changed` webhook to a local
//! receiver. For each page size: the time until the sync's operation completed (every
//! page read and written with its events) and until the receiver had every record.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::{register_webhook_for, start_receiver, wait_for};
use crate::app::Relais;
use crate::clock;
use crate::config::{Config, SecretKeyArgs};
use crate::domain::event::EventType;
use crate::domain::ids::OperationId;
use crate::domain::operation::{Operation, OperationStatus};

#[derive(Debug, clap::Args)]
pub struct SyncBenchArgs {
    /// Records in the source.
    #[arg(long, default_value_t = 20_000)]
    pub records: usize,
    /// Page sizes to run, one sync each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub page_sizes: Vec<u32>,
}

/// Answers `dossiers(first, after)` over `records` records; the cursor is the index of
/// a page's last record.
async fn page(body: web::Json<Value>, records: web::Data<usize>) -> HttpResponse {
    let variables = &body["variables"];
    let first = variables["first"].as_u64().unwrap_or(100) as usize;
    let start = variables["after"]
        .as_str()
        .and_then(|c| c.parse::<usize>().ok())
        .map_or(0, |last| last + 1);
    let end = (start + first).min(**records);
    let nodes: Vec<Value> = (start..end)
        .map(|i| {
            json!({"number": i + 1, "dateDerniereModification": "2024-06-01T12:00:00.000Z",
                   "state": "en_instruction", "usager": {"email": format!("user{i}@example.com")}})
        })
        .collect();
    let end_cursor = (end > start).then(|| (end - 1).to_string());
    HttpResponse::Ok().json(json!({"data": {"demarche": {"dossiers": {
        "pageInfo": {"endCursor": end_cursor, "hasNextPage": end < **records},
        "nodes": nodes}}}}))
}

fn start_source(records: usize) -> anyhow::Result<(String, actix_web::dev::ServerHandle)> {
    let data = web::Data::new(records);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::JsonConfig::default().limit(1 << 20))
            .route("/graphql", web::post().to(page))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")?;
    let url = format!("http://{}/graphql", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((url, handle))
}

pub async fn sync(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: SyncBenchArgs,
) -> anyhow::Result<()> {
    if args.records == 0 || args.page_sizes.is_empty() {
        bail!("--records and --page-sizes must not be empty");
    }
    let (source_url, source) = start_source(args.records)?;
    let (arrivals, receiver_url, receiver) = start_receiver("hook")?;
    let mut config = Config::for_database(database_url);
    config.secret_keys = secret_keys;
    config.delivery.allow_private_targets = true;
    let relais = Relais::start(config).await?;
    let store = relais.store();
    let (tenant, project) = store.tenants().create_tenant("bench", clock::now()).await?;
    register_webhook_for(
        store,
        tenant,
        project,
        receiver_url,
        EventType::SyncRecordChanged,
    )
    .await?;
    println!(
        "backend: {:?}; cores: {}; {} records in the source",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.records
    );
    let mut delivered = 0;
    for page_size in args.page_sizes {
        let mut spec = super::spec();
        spec.operation_type = crate::executors::cursor_sync::OPERATION_TYPE.into();
        spec.parameters = json!({
            "syncName": format!("bench-{page_size}"),
            "endpoint": source_url,
            "query": "query getDemarche($first: Int, $after: String) { demarche(number: 1) { dossiers(first: $first, after: $after) { pageInfo { endCursor hasNextPage } nodes { number dateDerniereModification } } } }",
            "pageSize": page_size,
            "nodesPath": "data.demarche.dossiers.nodes",
            "pageInfoPath": "data.demarche.dossiers.pageInfo",
            "idPath": "number",
            "updatedAtPath": "dateDerniereModification"
        });
        let started = Instant::now();
        let id = OperationId::new();
        let mut op = Operation::new(id, tenant, project, spec, clock::now());
        store.operations().create(&mut op, Vec::new(), None).await?;
        let synced = loop {
            let status = store
                .operations()
                .get(tenant, project, id)
                .await?
                .context("the bench's operation is gone")?
                .status;
            match status {
                OperationStatus::Completed => break started.elapsed(),
                OperationStatus::Failed | OperationStatus::Cancelled | OperationStatus::Timeout => {
                    bail!("the sync ended {status:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        delivered += args.records;
        let arrived = wait_for(&arrivals, delivered, Duration::from_secs(600)).await?;
        let all = arrived - started;
        println!(
            "page size {page_size}: read and written in {:.2} s ({:.0} records/s); delivered in {:.2} s ({:.0} records/s)",
            synced.as_secs_f64(),
            args.records as f64 / synced.as_secs_f64(),
            all.as_secs_f64(),
            args.records as f64 / all.as_secs_f64(),
        );
    }
    relais.stop(std::time::Duration::from_secs(30)).await;
    source.stop(true).await;
    receiver.stop(true).await;
    Ok(())
}
