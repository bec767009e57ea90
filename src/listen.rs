//! `relais listen`: a local receiver for Standard Webhooks requests, as `stripe listen`
//! and `svix listen` are for theirs. Each request is verified (when a secret is known)
//! and printed on one line: event type, subject, sequence, and verified or why not. It
//! can forward what it gets to a local app, and register itself as a webhook of a
//! project so that nothing else is needed to see Relais's events arrive.

use std::io::Write;
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::clock;
use crate::outbound::signing::{self, SigningKey};

#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Address to listen on: `0.0.0.0` to be reached from other hosts or containers.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// The endpoint's secret (`whsec_…`). With `--register`, the registered webhook gets
    /// this secret (a new one when absent). Without either, requests are printed
    /// unverified.
    #[arg(long, env = "RELAIS_WEBHOOK_SECRET")]
    pub secret: Option<String>,
    /// Also send each request, headers and body as received, to this URL.
    #[arg(long)]
    pub forward: Option<String>,
    /// Register this listener as a webhook of a project (removed again on exit); needs
    /// `--api`, `--tenant`, `--project` and a token with `webhooks:manage`.
    #[arg(long)]
    pub register: bool,
    /// Where Relais is, for `--register`.
    #[arg(long, env = "RELAIS_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The tenant whose project gets the webhook, for `--register`.
    #[arg(long, env = "RELAIS_TENANT")]
    pub tenant: Option<String>,
    /// The project that gets the webhook, for `--register`.
    #[arg(long, env = "RELAIS_PROJECT")]
    pub project: Option<String>,
    /// A token of that project with `webhooks:manage`, for `--register`.
    #[arg(long, env = "RELAIS_TOKEN")]
    pub token: Option<String>,
    /// Event types to subscribe to with `--register` (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub events: Vec<String>,
    /// Print each request's JSON body too.
    #[arg(long)]
    pub body: bool,
    /// Seconds a signature's timestamp may differ from now.
    #[arg(long, default_value_t = 300)]
    pub tolerance: i64,
}

struct Listener {
    key: Option<SigningKey>,
    forward: Option<String>,
    client: reqwest::Client,
    print_body: bool,
    tolerance: i64,
}

/// Every event type Relais emits, for a registration that asks for all of them.
const ALL_EVENTS: &[&str] = &[
    "operation.started",
    "operation.progress",
    "operation.phase.completed",
    "operation.completed",
    "operation.failed",
    "operation.cancelled",
    "operation.timeout",
    "batch.started",
    "batch.operation.completed",
    "batch.completed",
    "batch.failed",
    "batch.cancelled",
    "webhook.test",
];

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let secret = match (&args.secret, args.register) {
        (Some(secret), _) => Some(secret.clone()),
        (None, true) => Some(signing::generate_secret()),
        (None, false) => None,
    };
    let listener = Arc::new(Listener {
        key: secret.as_deref().map(SigningKey::from_secret),
        forward: args.forward.clone(),
        client: reqwest::Client::new(),
        print_body: args.body,
        tolerance: args.tolerance,
    });
    let state = web::Data::from(listener);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind((args.host, args.port))
    .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let addr = *server.addrs().first().context("no address bound")?;
    let url = format!("http://{addr}/");
    let server = server.run();
    let handle = server.handle();
    let running = tokio::spawn(server);
    println!("listening on {url}");
    if secret.is_none() {
        println!("no --secret given: requests are printed without being verified");
    }
    let registered = match args.register {
        true => Some(register(&args, &url, secret.as_deref().unwrap_or_default()).await?),
        false => None,
    };
    std::io::stdout().flush().ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        ended = running => { ended??; }
    }
    handle.stop(true).await;
    if let Some(webhook) = registered {
        unregister(&args, &webhook).await;
    }
    Ok(())
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<Listener>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let verdict = match &state.key {
        None => Verdict::Unchecked,
        Some(key) => check(
            key,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            &body,
            state.tolerance,
        ),
    };
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut line = format!(
        "{} {} {} {} #{} {}",
        clock::now().format("%H:%M:%S%.3f"),
        req.method(),
        event["type"].as_str().unwrap_or("(no type)"),
        event["subject"].as_str().unwrap_or("-"),
        event["sequence"]
            .as_i64()
            .map_or("-".to_owned(), |n| n.to_string()),
        verdict.describe(),
    );
    if let Some(target) = &state.forward {
        line.push_str(&format!(
            " → {}",
            forward(&state.client, target, &req, body.clone()).await
        ));
    }
    println!("{line}");
    if state.print_body {
        println!(
            "{}",
            serde_json::to_string_pretty(&event).unwrap_or_default()
        );
    }
    std::io::stdout().flush().ok();
    match verdict {
        Verdict::Refused(reason) => HttpResponse::Unauthorized().json(json!({"error": reason})),
        _ => HttpResponse::Ok().finish(),
    }
}

enum Verdict {
    Unchecked,
    Verified,
    Refused(String),
}

impl Verdict {
    fn describe(&self) -> String {
        match self {
            Self::Unchecked => "unverified".into(),
            Self::Verified => "verified".into(),
            Self::Refused(reason) => format!("refused: {reason}"),
        }
    }
}

fn check(
    key: &SigningKey,
    id: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
    body: &[u8],
    tolerance: i64,
) -> Verdict {
    let (Some(id), Some(timestamp), Some(signature)) = (id, timestamp, signature) else {
        return Verdict::Refused(
            "missing webhook-id, webhook-timestamp or webhook-signature header".into(),
        );
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return Verdict::Refused(format!("webhook-timestamp `{timestamp}` is not a number"));
    };
    let now = clock::now().timestamp();
    match signing::verify(key, &id, timestamp, body, &signature, now, tolerance) {
        Ok(()) => Verdict::Verified,
        Err(e) => Verdict::Refused(e.to_string()),
    }
}

async fn forward(
    client: &reqwest::Client,
    target: &str,
    req: &HttpRequest,
    body: web::Bytes,
) -> String {
    let mut request = client.post(target).body(body);
    for (name, value) in req.headers() {
        if name.as_str().starts_with("webhook-") || name == "content-type" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    match request.send().await {
        Ok(answer) => format!("forwarded: {}", answer.status()),
        Err(e) => format!("forwarding failed: {e}"),
    }
}

async fn register(args: &ListenArgs, url: &str, secret: &str) -> anyhow::Result<Registered> {
    let (Some(tenant), Some(project), Some(token)) = (&args.tenant, &args.project, &args.token)
    else {
        bail!("--register needs --tenant, --project and --token (or RELAIS_TENANT, RELAIS_PROJECT and RELAIS_TOKEN)");
    };
    let events: Vec<&str> = match args.events.is_empty() {
        true => ALL_EVENTS.to_vec(),
        false => args.events.iter().map(String::as_str).collect(),
    };
    let base = format!(
        "{}/api/{tenant}/{project}/async/webhooks",
        args.api.trim_end_matches('/')
    );
    let answer = reqwest::Client::new()
        .post(&base)
        .bearer_auth(token)
        .json(&json!({
            "webhookUrl": url,
            "webhookName": format!("relais listen on {url}"),
            "events": events,
            "authentication": {"type": "hmac-sha256", "secret": secret},
        }))
        .send()
        .await
        .with_context(|| format!("registering with Relais at {}", args.api))?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "Relais refused the registration ({status}): {}",
            body["message"].as_str().unwrap_or("no message")
        );
    }
    let id = body["webhookId"]
        .as_str()
        .context("Relais answered without a webhookId")?
        .to_owned();
    println!("registered as webhook {id} for {}", events.join(", "));
    Ok(Registered {
        url: format!("{base}/{id}"),
        token: token.clone(),
    })
}

struct Registered {
    url: String,
    token: String,
}

async fn unregister(args: &ListenArgs, webhook: &Registered) {
    let removed = reqwest::Client::new()
        .delete(&webhook.url)
        .bearer_auth(&webhook.token)
        .send()
        .await;
    match removed {
        Ok(answer) if answer.status().is_success() => println!("unregistered"),
        Ok(answer) => eprintln!(
            "could not unregister from {}: {}",
            args.api,
            answer.status()
        ),
        Err(e) => eprintln!("could not unregister from {}: {e}", args.api),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_verified_or_refused_with_the_reason() {
        let secret = signing::generate_secret();
        let key = SigningKey::from_secret(&secret);
        let now = clock::now().timestamp();
        let body = br#"{"type":"operation.completed"}"#;
        let signature = key.sign("evt_1", now, body);
        let verdict = |id: Option<&str>, ts: Option<String>, sig: Option<&str>, body: &[u8]| {
            check(
                &key,
                id.map(str::to_owned),
                ts,
                sig.map(str::to_owned),
                body,
                300,
            )
            .describe()
        };
        assert_eq!(
            verdict(Some("evt_1"), Some(now.to_string()), Some(&signature), body),
            "verified"
        );
        assert_eq!(
            verdict(
                Some("evt_1"),
                Some(now.to_string()),
                Some(&signature),
                b"{}"
            ),
            "refused: no `v1` signature in the header matches"
        );
        assert!(verdict(None, Some(now.to_string()), Some(&signature), body).contains("missing"));
        assert!(
            verdict(Some("evt_1"), Some("soon".into()), Some(&signature), body)
                .contains("not a number")
        );
        let old = (now - 3600).to_string();
        assert!(verdict(Some("evt_1"), Some(old), Some(&signature), body).contains("tolerance"));
    }
}
