//! The one way tests start Relais: the real server on a free port against a fresh database
//! of the chosen backend, with a tenant, a project and a token ready to use.

use std::process::Command;
use std::time::Duration;

use relais::app::Relais;
use relais::config::{Config, SmtpConfig};
use relais::domain::auth::{NewToken, Scope};
use relais::domain::ids::{ProjectId, TenantId};
use relais::secrets::SecretKeys;
use relais::store::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, Executor, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test function once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    )*};
}

pub const ALL_SCOPES: &str = "operations:read,operations:write,workers,webhooks:manage";

pub fn postgres_admin_url() -> String {
    std::env::var("RELAIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Where the PostgreSQL server of the tests listens, for tests that put a proxy in front.
pub fn postgres_addr() -> std::net::SocketAddr {
    let url = url::Url::parse(&postgres_admin_url()).expect("a PostgreSQL URL");
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .expect("the PostgreSQL host resolves")
        .next()
        .expect("an address")
}

/// A database that exists for one test and is removed after it, with the key its
/// secrets are sealed under (so no test writes a key file into the checkout).
pub struct TestDb {
    pub url: String,
    pub secret_key: String,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("relais.db").display());
                TestDb {
                    url,
                    secret_key: SecretKeys::generate(),
                    postgres_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("relais_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL must be running for the postgres tests (see README)");
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDb {
                    url: format!("{base}/{name}"),
                    secret_key: SecretKeys::generate(),
                    postgres_name: Some(name),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs outside async context; a short-lived runtime on its own thread does it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

fn mysql_admin_url() -> String {
    std::env::var("RELAIS_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A MySQL/MariaDB database that exists for one test (as an analytics database: Relais
/// keeps none of its own state in MySQL) and is dropped after it.
pub struct MysqlDb {
    pub url: String,
    name: String,
}

impl MysqlDb {
    pub async fn create() -> Self {
        let admin = mysql_admin_url();
        let name = format!("relais_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::MySqlConnection::connect(&admin)
            .await
            .expect("MariaDB (or MySQL) must be running for the breakout tests (see README)");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let base = admin.trim_end_matches('/');
        let base = match base.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
            }
            None => base.to_owned(),
        };
        MysqlDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::MySqlConnection::connect(&mysql_admin_url()).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub struct TestApp {
    pub base: String,
    pub tenant: TenantId,
    pub project: ProjectId,
    pub token: String,
    pub client: reqwest::Client,
    relais: Option<Relais>,
    // Declared last: dropped after the server stopped using it.
    db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::create(backend).await;
        Self::start_on(db, tweak).await
    }

    /// Starts a server on an existing test database (used after a restart).
    pub async fn start_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Self {
        let relais = Relais::start(test_config(&db, tweak))
            .await
            .expect("relais starts");
        let (tenant, project) = relais
            .store()
            .tenants()
            .create_tenant("test", chrono::Utc::now())
            .await
            .unwrap();
        let token = mint_token(relais.store(), tenant, Some(project), ALL_SCOPES).await;
        TestApp {
            base: format!("http://{}", relais.addr()),
            tenant,
            project,
            token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
            relais: Some(relais),
            db,
        }
    }

    /// A server that can send what seed 001's `notifications` ask for: mail through a real
    /// SMTP server, Slack to a local stand-in set as the project's integration.
    pub async fn spawn_notifying(
        backend: Backend,
    ) -> (Self, crate::smtp::SmtpSink, crate::receiver::Receiver) {
        let sink = crate::smtp::SmtpSink::start().await;
        let url = sink.url();
        let app = Self::spawn_with(backend, move |config| {
            config.smtp = Some(SmtpConfig {
                url,
                from: "Relais <relais@example.com>".into(),
            })
        })
        .await;
        let slack = crate::receiver::Receiver::start().await;
        let set = app
            .call(
                Method::PUT,
                &app.api("/integrations/slack"),
                Some(&app.token),
                Some(&serde_json::json!({"webhookUrl": slack.url})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
        (app, sink, slack)
    }

    /// The database this app runs on, for the command line.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// The key its secrets are sealed under unless a restart is given another.
    pub fn secret_key(&self) -> &str {
        &self.db.secret_key
    }

    pub fn store(&self) -> &Store {
        self.relais.as_ref().expect("running").store()
    }

    /// `/api/{tenant}/{project}/async{path}` of this app's own project.
    pub fn api(&self, path: &str) -> String {
        format!("/api/{}/{}/async{path}", self.tenant, self.project)
    }

    pub async fn token_with(&self, scopes: &str) -> String {
        mint_token(self.store(), self.tenant, Some(self.project), scopes).await
    }

    /// Another tenant, with its project and an all-scopes token.
    pub async fn other_tenant(&self) -> (TenantId, ProjectId, String) {
        let (tenant, project) = self
            .store()
            .tenants()
            .create_tenant("other", chrono::Utc::now())
            .await
            .unwrap();
        let token = mint_token(self.store(), tenant, Some(project), ALL_SCOPES).await;
        (tenant, project, token)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Response::read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, Some(&self.token), None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.call(Method::POST, path, Some(&self.token), Some(body))
            .await
    }

    /// A POST carrying an `Idempotency-Key`, as a client retrying a create sends it.
    pub async fn post_idempotent(&self, path: &str, key: &str, body: &Value) -> Response {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", key)
            .json(body);
        Response::read(request.send().await.expect("request sent")).await
    }

    pub async fn delete(&self, path: &str, body: Option<&Value>) -> Response {
        self.call(Method::DELETE, path, Some(&self.token), body)
            .await
    }

    /// Starts an operation and returns its id.
    pub async fn start_operation(&self, body: &Value) -> String {
        let r = self.post(&self.api("/operation"), body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        r.body["operationId"].as_str().unwrap().to_owned()
    }

    /// Registers a webhook and returns its answer (id, secret, …).
    pub async fn register_webhook(&self, body: &Value) -> Value {
        let r = self.post(&self.api("/webhooks"), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    /// Leases work as a pull worker would.
    pub async fn lease(&self, body: &Value) -> Vec<Value> {
        let r = self.post(&self.api("/workers/lease"), body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["leases"].as_array().unwrap().clone()
    }

    /// Another server on the same database, as a second replica would run; the same
    /// tenant, project and token work against it, at its own `/api/…` base.
    pub async fn start_replica(&self) -> (Relais, String) {
        let replica = Relais::start(test_config(&self.db, |_| {}))
            .await
            .expect("the replica starts");
        let base = format!("http://{}", replica.addr());
        (replica, base)
    }

    /// Stops the server, waits `down` with none running, and starts a new one on the
    /// same database: an outage of the whole service.
    pub async fn down_for(mut self, down: Duration) -> Self {
        let relais = self.relais.take().expect("running");
        relais.stop(Duration::from_secs(10)).await;
        tokio::time::sleep(down).await;
        let relais = Relais::start(test_config(&self.db, |_| {}))
            .await
            .expect("relais restarts");
        self.base = format!("http://{}", relais.addr());
        self.relais = Some(relais);
        self
    }

    /// Stops the server and starts a new one on the same database, as after a crash or a
    /// deploy; the tenant, project and token stay the same.
    pub async fn restart(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        let relais = self.relais.take().expect("running");
        relais.stop(Duration::from_secs(10)).await;
        let relais = Relais::start(test_config(&self.db, tweak))
            .await
            .expect("relais restarts");
        self.base = format!("http://{}", relais.addr());
        self.relais = Some(relais);
        self
    }
}

impl Response {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }
}

/// Tests talk to receivers on 127.0.0.1, and retry delays are shrunk a hundredfold so a
/// policy of "60 s, doubling" plays out in 0.6 s, 1.2 s, …
fn test_config(db: &TestDb, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::for_database(db.url.clone());
    config.secret_keys.secret_key = Some(db.secret_key.clone());
    config.delivery.allow_private_targets = true;
    config.delivery.retry_time_scale = 0.01;
    tweak(&mut config);
    config
}

/// Runs the real `relais` binary with `--json` against a database and returns the one
/// JSON object it prints.
pub fn relais_json(database_url: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(args)
        .env("RELAIS_DATABASE_URL", database_url)
        .output()
        .expect("relais runs");
    assert!(
        out.status.success(),
        "relais {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints exactly one line: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap()
}

pub async fn mint_token(
    store: &Store,
    tenant: TenantId,
    project: Option<ProjectId>,
    scopes: &str,
) -> String {
    let scopes = Scope::parse_list(scopes).unwrap();
    let token = NewToken::from_random(rand::random());
    store
        .tenants()
        .insert_token(tenant, project, &scopes, &token.hash, chrono::Utc::now())
        .await
        .unwrap();
    token.secret
}

/// Polls `check` until it returns `Some`, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until an operation of `app`'s project has ended; its status.
pub async fn finished(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(60), || async {
        let s = app.get(&app.api(&format!("/operation/{id}"))).await;
        let status = s.body["status"].as_str().unwrap_or_default().to_owned();
        matches!(
            status.as_str(),
            "Completed" | "Failed" | "Cancelled" | "Timeout"
        )
        .then_some(s.body)
    })
    .await
}

/// A real `relais serve` child process on a free port, killed (SIGKILL) when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    pub base: String,
    /// What it logged (on stderr), line by line, when started with [`ServeProcess::logged`].
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `relais serve` on `db` (with its secret key) with these extra `RELAIS_*` variables and
    /// waits until it is ready.
    pub async fn start(db: &TestDb, env: &[(&str, &str)]) -> Self {
        Self::spawn(db, env, false).await
    }

    /// [`ServeProcess::start`], keeping what the server logs (see [`ServeProcess::logs`]).
    pub async fn logged(db: &TestDb, env: &[(&str, &str)]) -> Self {
        Self::spawn(db, env, true).await
    }

    /// The lines logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    async fn spawn(db: &TestDb, env: &[(&str, &str)], keep_logs: bool) -> Self {
        use std::io::BufRead;
        let stderr = match keep_logs {
            true => std::process::Stdio::piped(),
            false => std::process::Stdio::null(),
        };
        // Port 0, and the address it printed: a port picked here could be taken by
        // another test's server before this one binds it.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("RELAIS_DATABASE_URL", &db.url)
            .env("RELAIS_SECRET_KEY", &db.secret_key)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("relais serve starts");
        let stdout = child.stdout.take().expect("piped");
        let logs: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        // Owned by the guard at once, so a panic below still kills and reaps it.
        let mut process = ServeProcess {
            child,
            base: String::new(),
            logs,
        };
        let first = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next();
            // Keep reading, so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            first
        })
        .await
        .unwrap();
        let Some(Ok(line)) = first else {
            panic!("relais serve exited before listening");
        };
        process.base = line
            .strip_prefix("relais listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/readyz", process.base)).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    return process;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("relais serve did not become ready");
    }

    /// SIGTERM, as an orchestrator stops a process: it shuts down gracefully.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
    }

    /// Waits until the process exits by itself; its exit status.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "relais serve did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown hooks, no graceful drain.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant, its project and an admin token bound to that project, made with the CLI
/// as an operator would: `(tenant, project, token)`.
pub fn cli_tenant(database_url: &str, name: &str) -> (String, String, String) {
    let tenant = relais_json(
        database_url,
        &["tenant", "create", "--name", name, "--json"],
    );
    let (t, p) = (
        tenant["tenantId"].as_str().unwrap().to_owned(),
        tenant["projectId"].as_str().unwrap().to_owned(),
    );
    let token = relais_json(
        database_url,
        &[
            "token",
            "create",
            "--tenant",
            &t,
            "--project",
            &p,
            "--scopes",
            "admin",
            "--json",
        ],
    );
    let token = token["token"].as_str().unwrap().to_owned();
    (t, p, token)
}

/// A TCP proxy in front of a database server, to take the server away from Relais and give
/// it back while the tests' own connections still reach it, or to count what Relais asks.
pub struct TcpProxy {
    pub port: u16,
    /// Chunks of bytes read from clients: a client that waits for each answer before it
    /// asks again (as a database client does) sends about one per round trip.
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reachable: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reachable = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let accepting = {
            let (reachable, connections, requests) =
                (reachable.clone(), connections.clone(), requests.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !reachable.load(std::sync::atomic::Ordering::Acquire) {
                        // Accepted and dropped: the client sees its connection close at once,
                        // as when the server is gone, rather than waiting on a refusal.
                        drop(client);
                        continue;
                    }
                    let requests = requests.clone();
                    let relay = tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        let (mut from_client, mut to_client) = client.into_split();
                        let (mut from_server, mut to_server) = server.into_split();
                        let asking = async {
                            let mut buffer = vec![0u8; 64 * 1024];
                            loop {
                                let n = from_client.read(&mut buffer).await?;
                                if n == 0 {
                                    return to_server.shutdown().await;
                                }
                                requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                to_server.write_all(&buffer[..n]).await?;
                            }
                        };
                        let answering = tokio::io::copy(&mut from_server, &mut to_client);
                        let _ = tokio::try_join!(asking, answering);
                    });
                    connections.lock().unwrap().push(relay.abort_handle());
                }
            })
        };
        TcpProxy {
            port,
            requests,
            reachable,
            connections,
            accepting,
        }
    }

    /// Cuts every open connection and drops new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.reachable
            .store(false, std::sync::atomic::Ordering::Release);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// How many requests clients have sent through the proxy so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The URL of `db`'s database reached through this proxy, in plain text (so that
    /// each request is one chunk, not split into TLS records).
    pub fn url_of(&self, db: &TestDb) -> String {
        let (base, name) = db.url.rsplit_once('/').expect("a database URL");
        let (scheme_user, _) = base.rsplit_once('@').expect("a user in the URL");
        format!(
            "{scheme_user}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    pub fn restore(&self) {
        self.reachable
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

/// Rows of a query against the test database, every value read as text.
pub async fn query(app: &TestApp, sql: &str) -> Vec<Vec<Option<String>>> {
    query_at(app.store().url(), sql).await
}

pub async fn query_at(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect()
}
