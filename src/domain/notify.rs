//! Notifications to people: the Slack message and the mails sent when an operation or a
//! batch ends, and the alert sent when Relais stops calling an endpoint. What a
//! notification says is decided when the change is written (a [`Notice`], stored with its
//! delivery, so a retry sends the same words); how it reads is rendered when it is sent.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::event::EventType;
use super::fields::checked_name;
use super::FieldError;

/// Most recipients one notification or alert list names.
pub const MAX_RECIPIENTS: usize = 50;
/// Most users one Slack notification mentions.
pub const MAX_MENTIONS: usize = 50;
/// Slack refuses a message of more blocks than this.
pub const MAX_SLACK_BLOCKS: usize = 50;
const MAX_ADDRESS_LEN: usize = 254;
const MAX_CHANNEL_LEN: usize = 80;
/// Slack cuts a section's text at 3000 characters; an error message is cut before that.
const MAX_SLACK_TEXT: usize = 2900;
const MAX_SUBJECT: usize = 200;

// ---- What a notification says --------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubjectKind {
    Operation,
    Batch,
}

/// An operation or a batch that ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ending {
    pub kind: SubjectKind,
    pub id: String,
    pub name: String,
    /// The operation type; `None` for a batch.
    pub operation_type: Option<String>,
    /// `Completed`, `Failed`, `Timeout` or `Cancelled`.
    pub status: String,
    pub duration_seconds: Option<f64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The API path that shows it (`/api/{tenant}/{project}/async/operation/{id}`).
    pub tracking_path: String,
    /// A batch's members by state (`{"completed": 2, "failed": 1, …}`).
    pub members: Option<Value>,
    pub ended_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointKind {
    Webhook,
    Slack,
}

/// An endpoint Relais stopped calling, and how to call it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisabledEndpoint {
    pub kind: EndpointKind,
    /// The webhook's id, or `slack` for the project's Slack integration.
    pub id: String,
    pub name: Option<String>,
    /// Masked for a Slack integration: its URL is its secret.
    pub url: String,
    pub reason: String,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_at: DateTime<Utc>,
    /// The request that turns it back on.
    pub reenable: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "camelCase")]
pub enum Notice {
    Ended(Ending),
    EndpointDisabled(DisabledEndpoint),
}

/// Where one notification goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "camelCase")]
pub enum Recipient {
    #[serde(rename_all = "camelCase")]
    Slack {
        channel: Option<String>,
        mention_users: Vec<String>,
    },
    Email {
        address: String,
    },
}

/// What a Slack or email delivery row carries: the notice and its recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub notice: Notice,
    pub recipient: Recipient,
}

/// A notice and who asked to hear it, staged with the event that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub notice: Notice,
    pub email: Vec<String>,
    /// Slack's channel and mentions, when the notification goes to Slack.
    pub slack: Option<(Option<String>, Vec<String>)>,
}

impl Notify {
    /// One recipient per mail address, then Slack.
    pub fn recipients(&self) -> Vec<Recipient> {
        let mut recipients: Vec<Recipient> = self
            .email
            .iter()
            .map(|address| Recipient::Email {
                address: address.clone(),
            })
            .collect();
        if let Some((channel, mention_users)) = &self.slack {
            recipients.push(Recipient::Slack {
                channel: channel.clone(),
                mention_users: mention_users.clone(),
            });
        }
        recipients
    }
}

/// Who hears that Relais disabled one of a project's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertContacts {
    pub email: Vec<String>,
    /// Post to the project's Slack integration too.
    pub slack: bool,
}

impl AlertContacts {
    /// The alert for `endpoint`: by mail, and on Slack unless Slack is the endpoint that
    /// was disabled or the integration is not active. `None` when nobody is left to tell.
    pub fn alert(&self, endpoint: DisabledEndpoint, slack_active: bool) -> Option<Notify> {
        let slack = (self.slack && slack_active && endpoint.kind != EndpointKind::Slack)
            .then(|| (None, Vec::new()));
        if self.email.is_empty() && slack.is_none() {
            return None;
        }
        Some(Notify {
            notice: Notice::EndpointDisabled(endpoint),
            email: self.email.clone(),
            slack,
        })
    }
}

/// The events people hear of: an operation's or a batch's end.
pub fn is_ending(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::OperationCompleted
            | EventType::OperationFailed
            | EventType::OperationTimeout
            | EventType::OperationCancelled
            | EventType::BatchCompleted
            | EventType::BatchFailed
            | EventType::BatchCancelled
    )
}

// ---- Checking what clients ask for ---------------------------------------------------

/// A mail address Relais can put in a `To` header: one address, no display name, no
/// control characters (so nothing can be smuggled into the mail's headers).
pub fn checked_address(value: &str, field: &str) -> Result<String, FieldError> {
    if value.len() > MAX_ADDRESS_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_ADDRESS_LEN} characters"),
        ));
    }
    let looks_right = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(|c: char| c.is_whitespace() || c.is_control())
                && !value.contains(['<', '>', ',', ';', '"', '(', ')', '\\'])
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
                && value.matches('@').count() == 1
        }
        None => false,
    };
    if !looks_right {
        return Err(FieldError::new(field, "must be an email address"));
    }
    Ok(value.to_owned())
}

pub fn checked_addresses(values: &[String], field: &str) -> Result<Vec<String>, FieldError> {
    if values.len() > MAX_RECIPIENTS {
        return Err(FieldError::new(
            field,
            format!("must name at most {MAX_RECIPIENTS} recipients"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| checked_address(v, &format!("{field}[{i}]")))
        .collect()
}

/// A Slack channel as people write it (`#process-mining`), or a channel id.
pub fn checked_channel(value: &str, field: &str) -> Result<String, FieldError> {
    let channel = checked_name(value, field, MAX_CHANNEL_LEN)?;
    if channel == "#" || channel.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(FieldError::new(
            field,
            "must be a channel name such as #alerts, without spaces",
        ));
    }
    Ok(channel)
}

pub fn checked_mentions(values: &[String], field: &str) -> Result<Vec<String>, FieldError> {
    if values.len() > MAX_MENTIONS {
        return Err(FieldError::new(
            field,
            format!("must name at most {MAX_MENTIONS} users"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("{field}[{i}]");
            let user = checked_name(v, &field, MAX_CHANNEL_LEN)?;
            if user == "@" || user.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(FieldError::new(field, "must be a user such as @analyst"));
            }
            Ok(user)
        })
        .collect()
}

/// A Slack incoming-webhook URL: https (plain http only where private targets are
/// allowed, for a local Slack stand-in). Whether its host may be reached is the outbound
/// guard's question.
pub fn checked_slack_url(
    value: &str,
    field: &str,
    allow_plain_http: bool,
) -> Result<url::Url, FieldError> {
    let url = super::fields::http_url(value, field)?;
    if url.scheme() != "https" && !allow_plain_http {
        return Err(FieldError::new(field, "must be an https URL"));
    }
    if value.len() > 2048 {
        return Err(FieldError::new(field, "must be at most 2048 characters"));
    }
    Ok(url)
}

/// What the API shows of a Slack URL: enough to recognise it, never enough to post to it.
pub fn masked_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let tail: String = {
                let chars: Vec<char> = parsed.path().chars().collect();
                chars[chars.len().saturating_sub(4)..].iter().collect()
            };
            format!(
                "{}://{}/…{tail}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default()
            )
        }
        Err(_) => "…".to_owned(),
    }
}

/// What a start (or an alert list) may ask for given what the server and the project
/// have: Slack needs the project's integration, mail needs `RELAIS_SMTP_URL`. `field` is
/// where the request names them (empty at the top level).
pub fn check_channels_available(
    wants_email: bool,
    wants_slack: bool,
    field: &str,
    email_configured: bool,
    slack_integration: bool,
) -> Result<(), FieldError> {
    let named = |name: &str| {
        if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        }
    };
    if wants_email && !email_configured {
        return Err(FieldError::new(
            named("email"),
            "email is not configured on this server (RELAIS_SMTP_URL); remove it or ask the operator to set it",
        ));
    }
    if wants_slack && !slack_integration {
        return Err(FieldError::new(
            named("slack"),
            "this project has no active Slack integration: PUT …/async/integrations/slack first",
        ));
    }
    Ok(())
}

// ---- Rendering -----------------------------------------------------------------------

/// A duration as people read it: `45 s`, `12 min 5 s`, `3 h 20 min`.
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    }
}

fn absolute(base_url: &str, path: &str) -> String {
    format!("{}{path}", base_url.trim_end_matches('/'))
}

/// Text that goes into a mail header: one line, bounded.
fn one_line(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(cleaned.trim(), max)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_escape(text: &str) -> String {
    slack_escape(text)
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn subject_word(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Operation => "Operation",
        SubjectKind::Batch => "Batch",
    }
}

fn status_words(status: &str) -> &'static str {
    match status {
        "Completed" => "completed",
        "Failed" => "failed",
        "Timeout" => "timed out",
        "Cancelled" => "was cancelled",
        _ => "ended",
    }
}

/// A Slack mention: `@here`-style keywords and user ids become real mentions; names
/// stay `@name`, which Slack links when `link_names` is set.
fn slack_mention(user: &str) -> String {
    let bare = user.trim_start_matches('@');
    match bare {
        "here" | "channel" | "everyone" => format!("<!{bare}>"),
        id if id.len() >= 9
            && id.starts_with(['U', 'W'])
            && id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
        {
            format!("<@{id}>")
        }
        name => format!("@{}", slack_escape(name)),
    }
}

/// The rows of facts both renderings show, in order.
fn facts(notice: &Notice) -> Vec<(&'static str, String)> {
    let when = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    match notice {
        Notice::Ended(e) => {
            let mut rows = vec![("Status", e.status.clone())];
            if let Some(t) = &e.operation_type {
                rows.push(("Type", t.clone()));
            }
            if let Some(d) = e.duration_seconds {
                rows.push(("Duration", human_duration(d)));
            }
            if let Some(members) = e.members.as_ref().and_then(Value::as_object) {
                let counts: Vec<String> = members
                    .iter()
                    .filter(|(_, n)| n.as_i64().unwrap_or(0) > 0)
                    .map(|(state, n)| format!("{n} {}", state.to_lowercase()))
                    .collect();
                rows.push(("Members", counts.join(", ")));
            }
            rows.push(("Id", e.id.clone()));
            rows.push(("Ended", when(&e.ended_at)));
            rows
        }
        Notice::EndpointDisabled(d) => {
            let mut rows = vec![
                ("Endpoint", d.url.clone()),
                ("Why", d.reason.clone()),
                ("Disabled", when(&d.disabled_at)),
            ];
            if let Some(since) = &d.failing_since {
                rows.push(("Failing since", when(since)));
            }
            rows.push(("Re-enable", d.reenable.clone()));
            rows
        }
    }
}

fn title(notice: &Notice) -> String {
    match notice {
        Notice::Ended(e) => format!(
            "{} \"{}\" {}",
            subject_word(e.kind),
            e.name,
            status_words(&e.status)
        ),
        Notice::EndpointDisabled(d) => match (d.kind, &d.name) {
            (EndpointKind::Webhook, Some(name)) => {
                format!("Webhook \"{name}\" was disabled")
            }
            (EndpointKind::Webhook, None) => format!("Webhook {} was disabled", d.id),
            (EndpointKind::Slack, _) => "The Slack integration was disabled".to_owned(),
        },
    }
}

fn emoji(notice: &Notice) -> &'static str {
    match notice {
        Notice::Ended(e) => match e.status.as_str() {
            "Completed" => ":white_check_mark:",
            "Cancelled" => ":no_entry_sign:",
            "Timeout" => ":hourglass:",
            _ => ":x:",
        },
        Notice::EndpointDisabled(_) => ":warning:",
    }
}

/// The Slack message: a `text` fallback (notifications and old clients show it) and
/// Block Kit blocks, never more than Slack accepts. An incoming webhook posts to the
/// channel it was made for, so the channel the request names is shown, not routed to.
pub fn slack_message(notice: &Notice, recipient: &Recipient, base_url: &str) -> Value {
    let (channel, mentions) = match recipient {
        Recipient::Slack {
            channel,
            mention_users,
        } => (channel.clone(), mention_users.clone()),
        Recipient::Email { .. } => (None, Vec::new()),
    };
    let title = truncate(&title(notice), 140);
    let mentions: Vec<String> = mentions.iter().map(|m| slack_mention(m)).collect();
    let mut text = format!("{} {}", emoji(notice), slack_escape(&title));
    if !mentions.is_empty() {
        text = format!("{text} {}", mentions.join(" "));
    }
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": title, "emoji": true}
    })];
    let mut facts = facts(notice);
    if let Some(channel) = &channel {
        facts.push(("Channel", channel.clone()));
    }
    let fields: Vec<Value> = facts
        .into_iter()
        .take(10)
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{}", slack_escape(&value)), 1900)})
        })
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    if let Notice::Ended(e) = notice {
        if let Some(message) = &e.error_message {
            let code = e
                .error_code
                .as_deref()
                .map(|c| format!("`{}` ", slack_escape(c)))
                .unwrap_or_default();
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&format!("*Error* {code}\n```{}```", slack_escape(message)), MAX_SLACK_TEXT)}
            }));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("<{}|Open the {}>", absolute(base_url, &e.tracking_path), subject_word(e.kind).to_lowercase())}
        }));
    }
    if !mentions.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(&mentions.join(" "), MAX_SLACK_TEXT)}]
        }));
    }
    blocks.truncate(MAX_SLACK_BLOCKS);
    json!({"text": text, "blocks": blocks, "link_names": true})
}

/// A mail: its subject (one line), plain text and HTML.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn mail(notice: &Notice, base_url: &str) -> Mail {
    let title = title(notice);
    let subject = one_line(&format!("[Relais] {title}"), MAX_SUBJECT);
    let facts = facts(notice);
    let mut text = format!("{title}\n\n");
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><table>",
        html_escape(&title)
    );
    for (label, value) in &facts {
        text.push_str(&format!("{label}: {value}\n"));
        html.push_str(&format!(
            "<tr><th style=\"text-align:left;padding-right:1em\">{}</th><td>{}</td></tr>",
            html_escape(label),
            html_escape(value)
        ));
    }
    html.push_str("</table>");
    if let Notice::Ended(e) = notice {
        if let Some(message) = &e.error_message {
            let code = e.error_code.as_deref().unwrap_or("ERROR");
            text.push_str(&format!("\nError {code}: {message}\n"));
            html.push_str(&format!(
                "<p><strong>Error {}</strong></p><pre>{}</pre>",
                html_escape(code),
                html_escape(message)
            ));
        }
        let link = absolute(base_url, &e.tracking_path);
        text.push_str(&format!("\n{link}\n"));
        html.push_str(&format!(
            "<p><a href=\"{}\">Open the {}</a></p>",
            html_escape(&link),
            subject_word(e.kind).to_lowercase()
        ));
    }
    html.push_str("</body></html>");
    Mail {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(status: &str, error: Option<&str>) -> Notice {
        Notice::Ended(Ending {
            kind: SubjectKind::Operation,
            id: "op-1".into(),
            name: "Nightly <report>\r\nBcc: x@evil.io".into(),
            operation_type: Some("Report".into()),
            status: status.into(),
            duration_seconds: Some(725.0),
            error_code: error.map(|_| "BOOM".into()),
            error_message: error.map(str::to_owned),
            tracking_path: "/api/t/p/async/operation/op-1".into(),
            members: None,
            ended_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        })
    }

    fn slack(channel: &str, mentions: &[&str]) -> Recipient {
        Recipient::Slack {
            channel: Some(channel.into()),
            mention_users: mentions.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn addresses_are_single_plain_addresses() {
        assert!(checked_address("analyst@company.com", "e").is_ok());
        for bad in [
            "nobody",
            "a@b",
            "a@@b.io",
            "A <a@b.io>",
            "a@b.io\r\nBcc: c@d.io",
            "a@b.io,c@d.io",
            "a b@c.io",
            "a@b.io\0",
            "@b.io",
            "a@.io",
        ] {
            assert_eq!(checked_address(bad, "e").unwrap_err().field, "e", "{bad:?}");
        }
        let many: Vec<String> = (0..51).map(|i| format!("u{i}@x.io")).collect();
        assert_eq!(
            checked_addresses(&many, "email").unwrap_err().field,
            "email"
        );
        let bad = vec!["a@b.io".to_owned(), "no".to_owned()];
        assert_eq!(
            checked_addresses(&bad, "email").unwrap_err().field,
            "email[1]"
        );
    }

    #[test]
    fn channels_mentions_and_slack_urls_are_checked() {
        assert_eq!(checked_channel("  #pm ", "c").unwrap(), "#pm");
        assert!(checked_channel("", "c").is_err());
        assert!(checked_channel("#", "c").is_err());
        assert!(checked_channel("#a b", "c").is_err());
        assert!(
            checked_mentions(&["@a".into(), " ".into()], "m")
                .unwrap_err()
                .field
                == "m[1]"
        );
        assert!(checked_slack_url("https://hooks.slack.com/services/T/B/X", "u", false).is_ok());
        assert!(checked_slack_url("http://hooks.slack.com/services/T/B/X", "u", false).is_err());
        assert!(checked_slack_url("http://127.0.0.1:9/x", "u", true).is_ok());
        assert!(checked_slack_url("ftp://x.io/", "u", true).is_err());
        assert_eq!(
            masked_url("https://hooks.slack.com/services/T000/B000/abcdefXYZ9"),
            "https://hooks.slack.com/…XYZ9"
        );
    }

    #[test]
    fn what_cannot_be_sent_is_refused_naming_the_field() {
        assert!(check_channels_available(true, true, "notifications", true, true).is_ok());
        assert_eq!(
            check_channels_available(true, false, "notifications", false, true)
                .unwrap_err()
                .field,
            "notifications.email"
        );
        assert_eq!(
            check_channels_available(false, true, "notifications", false, false)
                .unwrap_err()
                .field,
            "notifications.slack"
        );
    }

    #[test]
    fn only_ends_are_notified() {
        assert!(is_ending(EventType::OperationFailed));
        assert!(is_ending(EventType::BatchCancelled));
        assert!(!is_ending(EventType::OperationProgress));
        assert!(!is_ending(EventType::BatchOperationCompleted));
    }

    #[test]
    fn a_slack_message_has_text_blocks_channel_mentions_and_the_error() {
        let notice = ended("Failed", Some("disk <full>"));
        let m = slack_message(
            &notice,
            &slack("#pm", &["@analyst", "@here", "U012AB3CD"]),
            "https://relais.example.com/",
        );
        assert!(
            m.get("channel").is_none(),
            "the webhook's own channel is where it goes"
        );
        assert!(m["blocks"].to_string().contains("#pm"), "{m}");
        let text = m["text"].as_str().unwrap();
        assert!(
            text.contains("failed") && text.contains("&lt;report&gt;"),
            "{text}"
        );
        assert!(
            text.contains("@analyst") && text.contains("<!here>") && text.contains("<@U012AB3CD>")
        );
        let blocks = m["blocks"].as_array().unwrap();
        assert!(!blocks.is_empty() && blocks.len() <= MAX_SLACK_BLOCKS);
        assert_eq!(blocks[0]["type"], "header");
        let all = m.to_string();
        assert!(all.contains("disk &lt;full&gt;"), "{all}");
        assert!(all.contains("12 min 5 s"));
        assert!(all.contains("https://relais.example.com/api/t/p/async/operation/op-1"));
        assert!(all.contains("BOOM"));
        let done = slack_message(&ended("Completed", None), &slack("#pm", &[]), "http://x");
        assert!(!done.to_string().contains("*Error*"));
        assert!(done.get("blocks").unwrap().as_array().unwrap().len() <= MAX_SLACK_BLOCKS);
    }

    #[test]
    fn a_mail_subject_is_one_line_and_parts_are_escaped() {
        let m = mail(&ended("Timeout", Some("took <too> long")), "https://r.io");
        assert!(!m.subject.contains(['\r', '\n']), "{:?}", m.subject);
        assert!(m.subject.starts_with("[Relais] Operation"));
        assert!(m.subject.contains("timed out"));
        assert!(m.text.contains("took <too> long"));
        assert!(m.text.contains("https://r.io/api/t/p/async/operation/op-1"));
        assert!(m.html.contains("took &lt;too&gt; long"));
        assert!(!m.html.contains("<report>"));
    }

    #[test]
    fn an_alert_says_which_endpoint_why_since_when_and_how_to_reenable() {
        let notice = Notice::EndpointDisabled(DisabledEndpoint {
            kind: EndpointKind::Webhook,
            id: "wh-1".into(),
            name: Some("Main".into()),
            url: "https://app.io/hook".into(),
            reason: "the receiver answered 410 Gone".into(),
            failing_since: Some(DateTime::from_timestamp(1_600_000_000, 0).unwrap()),
            disabled_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            reenable: "POST /api/t/p/async/webhooks/wh-1/enable".into(),
        });
        let m = mail(&notice, "https://r.io");
        assert_eq!(m.subject, "[Relais] Webhook \"Main\" was disabled");
        for part in [
            "https://app.io/hook",
            "410 Gone",
            "2020-09-13",
            "/webhooks/wh-1/enable",
        ] {
            assert!(m.text.contains(part), "{part}: {}", m.text);
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(45.2), "45 s");
        assert_eq!(human_duration(725.0), "12 min 5 s");
        assert_eq!(human_duration(12_000.0), "3 h 20 min");
        assert_eq!(human_duration(-3.0), "0 s");
    }

    #[test]
    fn outgoing_notices_round_trip_through_json() {
        let out = Outgoing {
            notice: ended("Failed", Some("x")),
            recipient: Recipient::Email {
                address: "a@b.io".into(),
            },
        };
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(serde_json::from_str::<Outgoing>(&text).unwrap(), out);
    }

    #[test]
    fn alerts_go_by_mail_and_to_slack_unless_slack_is_what_failed() {
        let endpoint = |kind| DisabledEndpoint {
            kind,
            id: "x".into(),
            name: None,
            url: "u".into(),
            reason: "r".into(),
            failing_since: None,
            disabled_at: DateTime::from_timestamp(0, 0).unwrap(),
            reenable: "e".into(),
        };
        let both = AlertContacts {
            email: vec!["ops@x.io".into()],
            slack: true,
        };
        let webhook = both.alert(endpoint(EndpointKind::Webhook), true).unwrap();
        assert_eq!(webhook.recipients().len(), 2);
        let slack = both.alert(endpoint(EndpointKind::Slack), true).unwrap();
        assert_eq!(
            slack.recipients(),
            [Recipient::Email {
                address: "ops@x.io".into()
            }]
        );
        let slack_only = AlertContacts {
            email: vec![],
            slack: true,
        };
        assert!(slack_only
            .alert(endpoint(EndpointKind::Slack), true)
            .is_none());
        assert!(slack_only
            .alert(endpoint(EndpointKind::Webhook), false)
            .is_none());
    }
}
