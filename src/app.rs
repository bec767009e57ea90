//! Assembles the service: database, background engine, HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::api::health::Instance;
use crate::api::{self, AppState};
use crate::config::{Config, SecretKeyArgs};
use crate::delivery::dispatcher::DispatcherSettings;
use crate::delivery::notify::Mailer;
use crate::domain::oauth::TokenKey;
use crate::engine::{push::PushSettings, Engine, EngineSettings};
use crate::executors::Registry;
use crate::lease::Leases;
use crate::secrets::{SecretKeyError, SecretKeys};
use crate::store::{Signals, Store};

pub struct Relais {
    addr: SocketAddr,
    store: Store,
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    engine: Engine,
    forget: tokio::task::JoinHandle<()>,
    instance: Arc<Instance>,
}

impl Relais {
    /// Connects and migrates the database, starts the background loops, and listens.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "connecting to the database at {}",
                    redact(&config.database_url)
                )
            })?;
        let store = migrate_and_reseal(store, &config.secret_keys).await?;
        let store = match &config.analytics_database_url {
            None => store,
            Some(url) => store.with_analytics_database(url).await.with_context(|| {
                format!("connecting to the analytics database at {}", redact(url))
            })?,
        };
        let store = if config.breakout_schema_per_project {
            store
                .with_breakout_schema_per_project()
                .map_err(anyhow::Error::msg)
                .context("RELAIS_BREAKOUT_SCHEMA_PER_PROJECT")?
        } else {
            store
        };
        crate::telemetry::install();
        let token_limits = config.rate_limit.map(|limit| {
            Arc::new(api::rate_limit::TokenLimits::new(
                limit.per_second,
                limit.burst,
            ))
        });
        let token_key = access_token_key(&store, &config).await?;
        let registry = Registry::builtin();
        let leases = Leases::new(
            store.operations().clone(),
            store.push_workers().clone(),
            store.signals().clone(),
            registry.types(),
            config.heartbeat_timeout,
            config.delivery.retry_time_scale,
        );
        let instance = Arc::new(Instance::new(crate::clock::now()));
        let state = web::Data::new(AppState {
            store: store.clone(),
            config: config.clone(),
            executors: registry.clone(),
            leases: leases.clone(),
            caches: Default::default(),
            instance: instance.clone(),
            token_key,
            token_limits: token_limits.clone(),
            event_tails: Default::default(),
        });
        let body_limit = config.body_limit;
        let forget = tokio::spawn(forget_removed_principals(
            store.signals().clone(),
            state.clone(),
        ));
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(from_fn(api::text::middleware))
                .wrap(from_fn(api::request_id::middleware))
                .wrap(from_fn(api::metrics::middleware))
                .configure(api::routes)
        })
        .disable_signals()
        // An event stream writes each frame as it comes: with Nagle's algorithm, a frame
        // written while the last is unacknowledged waited for the client's delayed ACK
        // (up to 40 ms on Linux). Answers go out in one write, so they lose nothing.
        .tcp_nodelay(true)
        // Requests in flight get what is left of the grace when the listener closes.
        .shutdown_timeout(config.shutdown_grace.as_secs().max(1));
        if let Some(workers) = config.http_workers {
            server = server.workers(workers);
        }
        let server = server
            .bind(&config.bind)
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = *server.addrs().first().context("no address bound")?;
        // Push workers call back on the address actually bound unless told otherwise.
        let mut config = config;
        config
            .public_url
            .get_or_insert_with(|| format!("http://{addr}"));
        let engine = Engine::start(&store, engine_settings(&config)?, registry, leases);
        let server = server.run();
        let handle = server.handle();
        let server = tokio::spawn(server);
        tracing::info!(%addr, backend = ?store.backend(), "relais listening");
        Ok(Relais {
            addr,
            store,
            handle,
            server,
            engine,
            forget,
            instance,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// From now on the instance says it is shutting down (`/readyz`, `/v1/status`), and
    /// still serves every request, until [`Relais::stop`].
    pub fn begin_shutdown(&self) {
        self.instance.begin_shutdown();
    }

    /// Stops accepting connections, hands the built-in executors' attempts back, lets
    /// deliveries in flight finish (putting back those not started), lets requests in
    /// flight finish, and stops the loops, all within `within`; what is still running then
    /// is left to its lease.
    pub async fn stop(mut self, within: Duration) {
        self.instance.begin_shutdown();
        let deadline = tokio::time::Instant::now() + within;
        // The HTTP server goes last: its worker threads' runtimes own the connections they
        // opened in the shared pool, and the group commit's writers they started, so the
        // engine winding down must not outlive them. Meanwhile connections already open
        // are still served.
        self.handle.pause().await;
        // Connections opened by HTTP workers die with their runtimes as the workers stop.
        self.store.check_connections_before_use();
        self.engine
            .wind_down(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        self.engine.stop();
        if tokio::time::timeout_at(deadline, self.handle.stop(true))
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight at the end of the shutdown grace");
        }
        self.forget.abort();
        if tokio::time::timeout_at(deadline, &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        // Connections still out belong to work cut off at the deadline: not waited for.
        let _ = tokio::time::timeout_at(deadline, self.store.close()).await;
    }
}

/// Deleted tenants, projects and tokens stop working at once: every cached answer is
/// dropped when a deletion is announced (by this process or another). Each minute, the
/// rate limits forget tokens that have been quiet.
async fn forget_removed_principals(signals: Signals, state: web::Data<AppState>) {
    let announced = signals.auth_changed();
    let mut next = Box::pin(announced.notified());
    next.as_mut().enable();
    let mut quiet = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = next.as_mut() => {
                // Listening again before forgetting, so an announcement meanwhile is not lost.
                next = Box::pin(announced.notified());
                next.as_mut().enable();
                state.caches.forget_all();
            }
            _ = quiet.tick() => {
                if let Some(limits) = &state.token_limits {
                    limits.forget_quiet();
                }
            }
        }
    }
}

/// The key OAuth2 access tokens are signed with: `RELAIS_JWT_SECRET`, or the one stored
/// in the database (generated by whichever replica started first).
async fn access_token_key(store: &Store, config: &Config) -> anyhow::Result<TokenKey> {
    let secret = match &config.access_tokens.secret {
        Some(secret) => secret.clone(),
        None => {
            let generated = crate::outbound::signing::generate_secret();
            store
                .clients()
                .access_token_key(&generated, crate::clock::now())
                .await
                .context("reading the access tokens' signing key")?
        }
    };
    Ok(TokenKey::new(secret.as_bytes()))
}

fn engine_settings(config: &Config) -> anyhow::Result<EngineSettings> {
    Ok(EngineSettings {
        heartbeat_timeout: config.heartbeat_timeout,
        retry_time_scale: config.delivery.retry_time_scale,
        max_lost_leases: config.max_lost_leases,
        priority_aging: config.priority_aging,
        executor_concurrency: config.executor_concurrency,
        source_timeout: config.source_timeout,
        idempotency_retention: config.idempotency_retention,
        push: PushSettings {
            lease_ttl: config.heartbeat_timeout,
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.bind)),
            allow_private_targets: config.delivery.allow_private_targets,
        },
        delivery: dispatcher_settings(config)?,
    })
}

/// Migrates the database, gives the store the keys of secrets at rest, and seals again
/// every stored secret not sealed under the current key. The keys are read (or the key
/// file created) only once the database is known to be reachable and migrated, so a
/// command that cannot reach it leaves no key file behind.
pub async fn migrate_and_reseal(store: Store, settings: &SecretKeyArgs) -> anyhow::Result<Store> {
    store.migrate().await.context("migrating the database")?;
    let store = store.with_secret_keys(secret_keys(settings)?);
    let done = store
        .reseal_secrets()
        .await
        .context("sealing stored secrets under the current secret key")?;
    if done.resealed > 0 {
        tracing::info!(
            resealed = done.resealed,
            "sealed stored secrets under the current secret key"
        );
    }
    if done.unreadable > 0 {
        tracing::warn!(
            unreadable = done.unreadable,
            "stored secrets that none of the secret keys given opens (named above): what they sign fails until the key that sealed them is given in RELAIS_PREVIOUS_SECRET_KEYS"
        );
    }
    Ok(store)
}

/// The keys of secrets at rest, from the settings: RELAIS_SECRET_KEY, else the key file
/// (created with a new key if it does not exist), with the previous keys.
pub fn secret_keys(settings: &SecretKeyArgs) -> anyhow::Result<Arc<SecretKeys>> {
    let previous = &settings.previous_secret_keys;
    let keys = match &settings.secret_key {
        Some(key) => SecretKeys::from_base64(key, previous),
        None => SecretKeys::from_file(&settings.secret_key_file, previous),
    };
    keys.map(Arc::new).map_err(|e| {
        let source = match (&e, &settings.secret_key) {
            (SecretKeyError::Previous { .. }, _) => "RELAIS_PREVIOUS_SECRET_KEYS".to_owned(),
            (_, Some(_)) => "RELAIS_SECRET_KEY".to_owned(),
            (_, None) => format!(
                "RELAIS_SECRET_KEY_FILE ({})",
                settings.secret_key_file.display()
            ),
        };
        anyhow::Error::new(e).context(format!("reading the secret key from {source}"))
    })
}

fn dispatcher_settings(config: &Config) -> anyhow::Result<DispatcherSettings> {
    let delivery = &config.delivery;
    let mailer = config
        .smtp
        .as_ref()
        .map(|smtp| Mailer::new(&smtp.url, &smtp.from, delivery.request_timeout))
        .transpose()?;
    Ok(DispatcherSettings {
        request_timeout: delivery.request_timeout,
        retry_time_scale: delivery.retry_time_scale,
        allow_private_targets: delivery.allow_private_targets,
        disable_after: delivery.disable_after,
        max_in_flight: delivery.max_in_flight,
        per_endpoint: delivery.per_endpoint,
        retention: delivery.retention,
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.bind)),
        mailer,
    })
}

/// A database URL fit for logs: no password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
