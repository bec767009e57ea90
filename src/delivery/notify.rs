//! Sending notifications: a Slack message to the project's incoming webhook, a mail
//! through the configured SMTP server. What they say is `domain::notify`'s; what their
//! answers mean is `domain::delivery`'s.

use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::delivery::AttemptResult;
use crate::domain::notify::{self, Outgoing, Recipient};
use crate::outbound::OutboundClient;

/// An SMTP server, with the pooled connections lettre keeps to it.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// `url`: `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS), `smtps://…`
    /// (TLS), credentials in the URL. `from`: `Relais <relais@example.com>` or an address.
    pub fn new(url: &str, from: &str, timeout: Duration) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("RELAIS_SMTP_URL is not a usable SMTP URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("RELAIS_SMTP_FROM is not a mail address: {e}"))?;
        Ok(Mailer { transport, from })
    }
}

/// `X-Relais-Event-Id`: the event a mail is about, the same on every attempt, so a
/// recipient's filters (or a person) can tell a repeat from news.
#[derive(Clone)]
struct EventIdHeader(String);

impl Header for EventIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Relais-Event-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(EventIdHeader(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// One mail to the outgoing notice's recipient; the SMTP server's last reply (or why
/// there was none) and its words for the attempt log.
pub async fn send_mail(
    mailer: &Mailer,
    outgoing: &Outgoing,
    event_id: &str,
    base_url: &str,
) -> (AttemptResult, Option<String>) {
    let Recipient::Email { address } = &outgoing.recipient else {
        return no_response("not a mail recipient");
    };
    let to: Mailbox = match address.parse() {
        Ok(to) => to,
        // Checked when accepted; a stored address that no longer parses fails for good.
        Err(e) => {
            return (
                AttemptResult::Status {
                    code: 553,
                    retry_after: None,
                },
                Some(format!("not a mail address: {e}")),
            )
        }
    };
    let mail = notify::mail(&outgoing.notice, base_url);
    // Event ids are uuids, safe in a header; anything else is left out rather than sent.
    let event_header = event_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        .then(|| EventIdHeader(event_id.to_owned()));
    let mut builder = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(mail.subject)
        .message_id(None)
        .date_now();
    if let Some(header) = event_header {
        builder = builder.header(header);
    }
    let message = match builder.multipart(MultiPart::alternative_plain_html(mail.text, mail.html)) {
        Ok(message) => message,
        Err(e) => return no_response(&format!("the mail could not be built: {e}")),
    };
    match mailer.transport.send(message).await {
        Ok(response) => (
            AttemptResult::Status {
                code: reply_code(&response.code().to_string()).unwrap_or(250),
                retry_after: None,
            },
            Some(response.message().collect::<Vec<_>>().join(" ")),
        ),
        Err(e) => smtp_failure(&e),
    }
}

/// An SMTP error: the server's reply code when it gave one (4xx retried, 5xx final),
/// else no answer at all (retried).
fn smtp_failure(e: &SmtpError) -> (AttemptResult, Option<String>) {
    match e.status().and_then(|code| reply_code(&code.to_string())) {
        Some(code) => (
            AttemptResult::Status {
                code,
                retry_after: None,
            },
            Some(e.to_string()),
        ),
        None => (
            AttemptResult::NoResponse {
                error: format!("the SMTP server could not be reached: {e}"),
            },
            None,
        ),
    }
}

fn reply_code(text: &str) -> Option<u16> {
    text.get(..3)?.parse().ok()
}

fn no_response(why: &str) -> (AttemptResult, Option<String>) {
    (
        AttemptResult::NoResponse {
            error: why.to_owned(),
        },
        None,
    )
}

/// The Slack message for the outgoing notice, posted to the integration's URL.
pub fn slack_request(
    client: &OutboundClient,
    url: &str,
    outgoing: &Outgoing,
    base_url: &str,
) -> Option<reqwest::RequestBuilder> {
    let message = notify::slack_message(&outgoing.notice, &outgoing.recipient, base_url);
    client.json_post(url, message.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_are_read_from_their_first_three_digits() {
        assert_eq!(reply_code("250"), Some(250));
        assert_eq!(reply_code("451 4.3.0"), Some(451));
        assert_eq!(reply_code("x"), None);
    }

    // The pool keeps its connections with a task on the runtime.
    #[tokio::test]
    async fn a_mailer_needs_an_smtp_url_and_an_address() {
        let t = Duration::from_secs(1);
        assert!(Mailer::new("smtp://127.0.0.1:2525", "Relais <r@example.com>", t).is_ok());
        assert!(Mailer::new("smtps://u:p@mail.example.com", "r@example.com", t).is_ok());
        assert!(Mailer::new("smtp://h:25?tls=required", "r@example.com", t).is_ok());
        assert!(Mailer::new("http://x", "r@example.com", t).is_err());
        assert!(Mailer::new("smtp://h:25", "not an address", t).is_err());
    }
}
