//! `relais bench notifications`: how fast the dispatcher drains a backlog of mails to a
//! local SMTP server and of Slack messages to a local stand-in for Slack.
//!
//! Each phase queues its backlog with no dispatcher running (operations started with
//! `notifications` and cancelled, which writes one notification per operation), then
//! starts the service and times the drain. The SMTP server is a minimal sink in this
//! process that accepts every mail; the Slack stand-in answers `200 ok`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::app::Relais;
use crate::clock;
use crate::config::{Config, SecretKeyArgs, SmtpConfig};
use crate::domain::ids::{OperationId, ProjectId, TenantId};
use crate::domain::operation::{CancelRequest, Notifications, Operation, SlackNotification};
use crate::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct NotificationBenchArgs {
    /// Mails in the backlog (one recipient each).
    #[arg(long, default_value_t = 2000)]
    pub mails: usize,
    /// Slack messages in the backlog.
    #[arg(long, default_value_t = 2000)]
    pub slack: usize,
}

/// An SMTP server that accepts everything and counts the mails: just enough of RFC 5321
/// for a client that sends mail (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT).
async fn smtp_sink(count: Arc<AtomicUsize>) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("smtp://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                if write.write_all(b"220 bench ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        count.fetch_add(1, Ordering::Release);
                        b"250 queued\r\n"
                    } else {
                        match line.get(..4).map(|v| v.to_ascii_uppercase()).as_deref() {
                            Some("EHLO") => b"250-bench\r\n250 8BITMIME\r\n",
                            Some("DATA") => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            Some("QUIT") => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 OK\r\n",
                        }
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(url)
}

async fn slack_ok(count: web::Data<Arc<AtomicUsize>>) -> HttpResponse {
    count.fetch_add(1, Ordering::Release);
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

fn slack_stand_in(
    count: Arc<AtomicUsize>,
) -> anyhow::Result<(String, actix_web::dev::ServerHandle)> {
    let data = web::Data::new(count);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(slack_ok))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")?;
    let url = format!("http://{}/services/T0/B0/bench", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((url, handle))
}

/// `count` operations that ask for `notifications`, cancelled at once: one notification
/// each, queued.
async fn queue(
    store: &Store,
    tenant: TenantId,
    project: ProjectId,
    count: usize,
    notifications: &Notifications,
) -> anyhow::Result<()> {
    let mut spec = super::spec();
    spec.notifications = notifications.clone();
    for _ in 0..count {
        let id = OperationId::new();
        let mut op = Operation::new(id, tenant, project, spec.clone(), clock::now());
        store.operations().create(&mut op, Vec::new(), None).await?;
        store
            .operations()
            .mutate(tenant, project, id, clock::now(), |op| {
                let request = CancelRequest {
                    reason: None,
                    preserve_partial_results: false,
                    force_termination: false,
                    notify_callbacks: false,
                };
                let events = op
                    .cancel(clock::now(), request, "bench".into())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok::<_, StoreError>(((), events))
            })
            .await?;
    }
    Ok(())
}

async fn drain(
    name: &str,
    arrived: &AtomicUsize,
    count: usize,
    config: Config,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let relais = Relais::start(config).await?;
    let deadline = started + Duration::from_secs(600);
    while arrived.load(Ordering::Acquire) < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} {name} arrived",
                arrived.load(Ordering::Acquire)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name}: {count} in {seconds:.2} s = {:.0}/s",
        count as f64 / seconds
    );
    relais.stop(std::time::Duration::from_secs(30)).await;
    Ok(())
}

pub async fn notifications(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: NotificationBenchArgs,
) -> anyhow::Result<()> {
    let mails = Arc::new(AtomicUsize::new(0));
    let smtp_url = smtp_sink(mails.clone()).await?;
    let messages = Arc::new(AtomicUsize::new(0));
    let (slack_url, slack_handle) = slack_stand_in(messages.clone())?;

    let store = Store::connect(&database_url).await.context("connecting")?;
    let store = crate::app::migrate_and_reseal(store, &secret_keys).await?;
    let (tenant, project) = store.tenants().create_tenant("bench", clock::now()).await?;
    store
        .integrations()
        .put_slack(tenant, project, &slack_url, clock::now())
        .await?;
    println!(
        "backend: {:?}; cores: {}",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let config = || {
        let mut config = Config::for_database(database_url.clone());
        config.secret_keys = secret_keys.clone();
        config.http_workers = Some(1);
        config.delivery.allow_private_targets = true;
        config.smtp = Some(SmtpConfig {
            url: smtp_url.clone(),
            from: "Relais bench <bench@example.com>".into(),
        });
        config
    };

    let by_mail = Notifications {
        email: vec!["someone@example.com".into()],
        slack: None,
    };
    let started = Instant::now();
    queue(&store, tenant, project, args.mails, &by_mail).await?;
    println!(
        "queued {} mails in {:.1} s (no dispatcher running)",
        args.mails,
        started.elapsed().as_secs_f64()
    );
    drain("mails", &mails, args.mails, config()).await?;

    let to_slack = Notifications {
        email: Vec::new(),
        slack: Some(SlackNotification {
            channel: Some("#bench".into()),
            mention_users: Vec::new(),
        }),
    };
    let started = Instant::now();
    queue(&store, tenant, project, args.slack, &to_slack).await?;
    println!(
        "queued {} Slack messages in {:.1} s (no dispatcher running)",
        args.slack,
        started.elapsed().as_secs_f64()
    );
    drain("Slack messages", &messages, args.slack, config()).await?;
    slack_handle.stop(true).await;
    store.close().await;
    Ok(())
}
