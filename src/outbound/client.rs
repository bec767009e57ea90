//! The HTTP client for every request to a tenant's endpoint, and the one signed POST that
//! webhooks, callbacks, push-worker notices and push tasks are all sent as.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::guard::{is_private, literal_is_private, TargetError};
use super::signing::{signature_header, SigningKey};

/// A message as Standard Webhooks sends it: `webhook-id`, `webhook-timestamp` and one
/// signature per key over `{id}.{timestamp}.{body}`.
#[derive(Debug)]
pub struct SignedMessage<'a> {
    /// The `webhook-id`: stable across retries, so receivers can de-duplicate.
    pub id: &'a str,
    /// Seconds since the epoch.
    pub timestamp: i64,
    pub body: String,
    pub keys: &'a [SigningKey],
    /// A webhook's own headers, sent as they are.
    pub headers: &'a BTreeMap<String, String>,
    /// The W3C `traceparent` of the span that sends it, so that the receiver's work
    /// joins the trace; it replaces one among the webhook's own headers.
    pub traceparent: Option<&'a str>,
}

/// Sends to tenants' endpoints: no redirects followed, and unless private targets are
/// allowed, only to public addresses.
#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    allow_private: bool,
}

impl OutboundClient {
    pub fn new(timeout: Duration, allow_private: bool) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("Relais/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PinnedPublicResolver));
        }
        OutboundClient {
            http: builder
                .build()
                .expect("the HTTP client configuration is valid"),
            allow_private,
        }
    }

    /// A URL whose host is a private address written literally is refused here; a name is
    /// checked as it resolves.
    fn guard(&self, url: &str) -> Result<(), TargetError> {
        if !self.allow_private && literal_is_private(url) {
            return Err(TargetError::Private(url.to_owned()));
        }
        Ok(())
    }

    /// An unsigned JSON POST (a Slack message: Slack's incoming webhooks take no
    /// signature), under the same address guard.
    pub fn json_post(
        &self,
        url: &str,
        body: String,
    ) -> Result<reqwest::RequestBuilder, TargetError> {
        self.guard(url)?;
        Ok(self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body))
    }

    /// A request to a source a sync reads, under the same address guard.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, TargetError> {
        self.guard(url)?;
        Ok(self.http.request(method, url))
    }

    /// The signed POST of `message` to `url`, ready to send, under the same address guard.
    pub fn signed_post(
        &self,
        url: &str,
        message: SignedMessage<'_>,
    ) -> Result<reqwest::RequestBuilder, TargetError> {
        self.guard(url)?;
        let signature = signature_header(
            message.keys,
            message.id,
            message.timestamp,
            message.body.as_bytes(),
        );
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message.id)
            .header("webhook-timestamp", message.timestamp.to_string())
            .header("webhook-signature", signature);
        for (name, value) in message.headers {
            if message.traceparent.is_some() && name.eq_ignore_ascii_case("traceparent") {
                continue;
            }
            request = request.header(name, value);
        }
        if let Some(traceparent) = message.traceparent {
            request = request.header("traceparent", traceparent);
        }
        Ok(request.body(message.body))
    }
}

/// The innermost cause of a failed request, which says what actually went wrong.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Whether a request failed because its host resolved only to refused addresses.
pub fn refused_by_guard(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.downcast_ref::<TargetError>().is_some() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Resolves a name and keeps only its public addresses. The connection is made to the
/// addresses returned here, so the answer that was checked is the one used: a second
/// lookup (DNS rebinding) cannot swap a private address in.
struct PinnedPublicResolver;

impl Resolve for PinnedPublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(TargetError::Private(host))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::signing::verify;

    fn message<'a>(
        keys: &'a [SigningKey],
        headers: &'a BTreeMap<String, String>,
    ) -> SignedMessage<'a> {
        SignedMessage {
            id: "evt_1",
            timestamp: 1_700_000_000,
            body: r#"{"a":1}"#.to_owned(),
            keys,
            headers,
            traceparent: None,
        }
    }

    #[test]
    fn the_post_carries_the_standard_webhooks_headers_and_the_extra_ones() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let keys = [key.clone()];
        let headers = BTreeMap::from([("X-Source".to_owned(), "relais".to_owned())]);
        let client = OutboundClient::new(Duration::from_secs(5), false);
        let request = client
            .signed_post("https://receiver.example/hook", message(&keys, &headers))
            .expect("a public name")
            .build()
            .expect("a valid request");
        assert_eq!(request.method(), reqwest::Method::POST);
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("webhook-id"), "evt_1");
        assert_eq!(header("webhook-timestamp"), "1700000000");
        assert_eq!(header("x-source"), "relais");
        let body = request.body().and_then(|b| b.as_bytes()).unwrap();
        assert_eq!(body, br#"{"a":1}"#);
        assert_eq!(
            verify(
                &key,
                "evt_1",
                1_700_000_000,
                body,
                &header("webhook-signature"),
                1_700_000_000,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn the_senders_traceparent_replaces_the_webhooks_own() {
        let keys = [SigningKey::from_secret("secret-secret")];
        let headers = BTreeMap::from([
            ("Traceparent".to_owned(), "theirs".to_owned()),
            ("X-Source".to_owned(), "relais".to_owned()),
        ]);
        let client = OutboundClient::new(Duration::from_secs(5), false);
        let ours = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let traced = client
            .signed_post(
                "https://receiver.example/hook",
                SignedMessage {
                    traceparent: Some(ours),
                    ..message(&keys, &headers)
                },
            )
            .unwrap()
            .build()
            .unwrap();
        let sent: Vec<_> = traced.headers().get_all("traceparent").iter().collect();
        assert_eq!(sent, [ours]);
        assert_eq!(traced.headers()["x-source"], "relais");

        let untraced = client
            .signed_post("https://receiver.example/hook", message(&keys, &headers))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(untraced.headers()["traceparent"], "theirs");
    }

    #[test]
    fn a_private_literal_is_refused_unless_allowed() {
        let keys = [SigningKey::from_secret("secret-secret")];
        let headers = BTreeMap::new();
        let strict = OutboundClient::new(Duration::from_secs(5), false);
        assert!(strict
            .signed_post("http://127.0.0.1:9/hook", message(&keys, &headers))
            .is_err());
        let open = OutboundClient::new(Duration::from_secs(5), true);
        assert!(open
            .signed_post("http://127.0.0.1:9/hook", message(&keys, &headers))
            .is_ok());
    }
}
