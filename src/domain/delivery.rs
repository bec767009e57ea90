//! Deliveries: which destinations an event goes to, what one attempt comes to, how a
//! delivery settles, and what a batch of settled attempts says about each endpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::event::{Event, EventType};
use super::ids::{DeliveryId, ProjectId, PushWorkerId, WebhookId};
use super::notify::{Notify, Outgoing, Recipient};
use super::retry::RetryPolicy;
use super::webhook::Webhook;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Queued: due at its next attempt time, or leased to a dispatcher.
    Pending,
    Delivered,
    /// Given up on: out of retries, refused for good, or its endpoint disabled.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    /// The name clients see and the database keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Delivered => "Delivered",
            Self::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Webhook,
    Callback,
    /// A cancel or timeout notice to the push worker running the operation.
    Push,
    /// A message to the project's Slack integration.
    Slack,
    /// A mail to one recipient.
    Email,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Self::Webhook,
        Self::Callback,
        Self::Push,
        Self::Slack,
        Self::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Callback => "callback",
            Self::Push => "push",
            Self::Slack => "slack",
            Self::Email => "email",
        }
    }

    /// Slack messages and mails, as opposed to signed requests to an endpoint.
    pub fn is_notification(self) -> bool {
        matches!(self, Self::Slack | Self::Email)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|channel| channel.as_str() == s)
    }
}

// ---- Fan-out -------------------------------------------------------------------------

/// An event with the destinations its operation adds to those of the project.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    pub event: &'a Event,
    /// The operation's callback URL for this event, if it asked for one.
    pub callback: Option<&'a str>,
    /// The push worker to tell (of a cancel or a timeout), with its URL, if it still exists.
    pub push_worker: Option<(PushWorkerId, &'a str)>,
    /// The people who asked to hear of this event, by mail or Slack.
    pub notify: Option<&'a Notify>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    Webhook {
        id: WebhookId,
        url: String,
    },
    Callback {
        url: String,
    },
    Push {
        worker: PushWorkerId,
        url: String,
    },
    /// A Slack message or a mail: what it says and to whom.
    Notification(Box<Outgoing>),
}

impl Destination {
    pub fn channel(&self) -> Channel {
        match self {
            Self::Webhook { .. } => Channel::Webhook,
            Self::Callback { .. } => Channel::Callback,
            Self::Push { .. } => Channel::Push,
            Self::Notification(out) => match out.recipient {
                Recipient::Slack { .. } => Channel::Slack,
                Recipient::Email { .. } => Channel::Email,
            },
        }
    }

    /// Where it goes, as the deliveries list shows it: the URL, `mailto:` the address, or
    /// `slack:` the channel (the integration's URL is a secret, read when sending).
    pub fn url(&self) -> String {
        match self {
            Self::Webhook { url, .. } | Self::Callback { url } | Self::Push { url, .. } => {
                url.clone()
            }
            Self::Notification(out) => match &out.recipient {
                Recipient::Email { address } => format!("mailto:{address}"),
                Recipient::Slack { channel, .. } => {
                    format!("slack:{}", channel.as_deref().unwrap_or_default())
                }
            },
        }
    }
}

/// What percentage each throttled webhook was last sent for each subject
/// (`minProgressIncrement`), keyed by webhook and subject.
pub type Watermarks = BTreeMap<(WebhookId, String), f64>;

/// The deliveries to queue, in order, and the watermarks that changed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct FanOut<'a> {
    pub deliveries: Vec<(&'a Event, Destination)>,
    pub watermarks: Watermarks,
}

/// The webhooks of the events' projects that accept each event and throttle it, and so
/// need their watermark for its subject to decide.
pub fn watermarks_needed(
    events: &[Routed<'_>],
    webhooks: &HashMap<ProjectId, Vec<Webhook>>,
) -> BTreeSet<(WebhookId, String)> {
    let mut needed = BTreeSet::new();
    for routed in events {
        let event = routed.event;
        if event.event_type != EventType::OperationProgress {
            continue;
        }
        for webhook in accepting(webhooks, event).filter(|w| w.throttles_progress()) {
            needed.insert((webhook.id, event.subject.clone()));
        }
    }
    needed
}

/// Where each event goes, in order: every webhook of its project that accepts it (a
/// throttled progress event only once it moved far enough from the last one sent for
/// the subject), the operation's callback, and the push worker to tell. `known` holds
/// the stored watermarks for [`watermarks_needed`]; the events of one pass see the
/// watermarks the earlier ones moved.
pub fn fan_out<'a>(
    events: &[Routed<'a>],
    webhooks: &HashMap<ProjectId, Vec<Webhook>>,
    mut known: Watermarks,
) -> FanOut<'a> {
    let mut deliveries = Vec::new();
    let mut moved = Watermarks::new();
    for routed in events {
        let event = routed.event;
        for webhook in accepting(webhooks, event) {
            if event.event_type == EventType::OperationProgress && webhook.throttles_progress() {
                let percentage = event
                    .data
                    .pointer("/progress/percentage")
                    .and_then(|v| v.as_f64());
                let key = (webhook.id, event.subject.clone());
                if !webhook.progress_due(known.get(&key).copied(), percentage) {
                    continue;
                }
                let sent = percentage.unwrap_or_default();
                known.insert(key.clone(), sent);
                moved.insert(key, sent);
            }
            deliveries.push((
                event,
                Destination::Webhook {
                    id: webhook.id,
                    url: webhook.url.clone(),
                },
            ));
        }
        if let Some(url) = routed.callback {
            deliveries.push((
                event,
                Destination::Callback {
                    url: url.to_owned(),
                },
            ));
        }
        if let Some((worker, url)) = routed.push_worker {
            deliveries.push((
                event,
                Destination::Push {
                    worker,
                    url: url.to_owned(),
                },
            ));
        }
        if let Some(notify) = routed.notify {
            for recipient in notify.recipients() {
                deliveries.push((
                    event,
                    Destination::Notification(Box::new(Outgoing {
                        notice: notify.notice.clone(),
                        recipient,
                    })),
                ));
            }
        }
    }
    FanOut {
        deliveries,
        watermarks: moved,
    }
}

fn accepting<'w>(
    webhooks: &'w HashMap<ProjectId, Vec<Webhook>>,
    event: &'w Event,
) -> impl Iterator<Item = &'w Webhook> {
    webhooks
        .get(&event.project_id)
        .into_iter()
        .flatten()
        .filter(move |w| w.accepts(event.event_type, &event.data))
}

// ---- One attempt ---------------------------------------------------------------------

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// The receiver answered with this status.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, timed out, refused target.
    NoResponse { error: String },
}

/// What an answer means, whatever the channel: each channel reads its own answers
/// ([`http_verdict`], [`slack_verdict`], [`smtp_verdict`]), and [`decide_after`] applies the
/// retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// A failure worth trying again.
    Retry,
    /// A failure that trying again cannot fix.
    GiveUp,
    /// The receiver asks never to be called again.
    Disable,
}

/// A webhook's, callback's or push worker's answer: 2xx delivered, 410 disables, anything
/// else (or nothing) is retried.
pub fn http_verdict(result: &AttemptResult) -> Verdict {
    match result {
        AttemptResult::Status {
            code: 200..=299, ..
        } => Verdict::Delivered,
        AttemptResult::Status { code: 410, .. } => Verdict::Disable,
        _ => Verdict::Retry,
    }
}

/// Slack's answers to an incoming webhook, as Slack documents them: 200 `ok`; a payload
/// it refuses (400 `invalid_payload`, `no_text`…) or a post it forbids (403
/// `action_prohibited`) fails for good; a channel gone (404 `channel_not_found`, 410
/// `channel_is_archived`) disables the integration; 429 and server errors are retried.
pub fn slack_verdict(result: &AttemptResult) -> Verdict {
    match result {
        AttemptResult::Status {
            code: 200..=299, ..
        } => Verdict::Delivered,
        AttemptResult::Status {
            code: 404 | 410, ..
        } => Verdict::Disable,
        AttemptResult::Status { code: 429, .. } => Verdict::Retry,
        AttemptResult::Status {
            code: 400..=499, ..
        } => Verdict::GiveUp,
        _ => Verdict::Retry,
    }
}

/// An SMTP server's last reply: 2xx accepted, 4xx (and no answer) retried, 5xx refused
/// for good for that recipient.
pub fn smtp_verdict(result: &AttemptResult) -> Verdict {
    match result {
        AttemptResult::Status {
            code: 200..=399, ..
        } => Verdict::Delivered,
        AttemptResult::Status {
            code: 500..=599, ..
        } => Verdict::GiveUp,
        _ => Verdict::Retry,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    RetryAt(DateTime<Utc>),
    GiveUp,
    /// 410 Gone: the receiver asks never to be called again.
    GiveUpAndDisable,
}

/// Longest `Retry-After` honoured; beyond it the receiver is treated as failing normally.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `attempts` counts the attempt just made. `time_scale` shrinks policy delays (tests);
/// a receiver's own `Retry-After` is honoured in real time.
pub fn decide(
    result: &AttemptResult,
    attempts: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    jitter: f64,
    time_scale: f64,
) -> Decision {
    decide_after(
        http_verdict(result),
        result,
        attempts,
        policy,
        now,
        jitter,
        time_scale,
    )
}

/// What to do after an attempt its channel judged `verdict`: retries follow the policy,
/// or the receiver's `Retry-After` on a 429 or 503.
pub fn decide_after(
    verdict: Verdict,
    result: &AttemptResult,
    attempts: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    jitter: f64,
    time_scale: f64,
) -> Decision {
    match verdict {
        Verdict::Delivered => return Decision::Delivered,
        Verdict::Disable => return Decision::GiveUpAndDisable,
        Verdict::GiveUp => return Decision::GiveUp,
        Verdict::Retry => {}
    }
    if attempts > policy.max_retries {
        return Decision::GiveUp;
    }
    let asked = match result {
        AttemptResult::Status {
            code: 429 | 503,
            retry_after: Some(wait),
        } if *wait <= MAX_RETRY_AFTER => Some(*wait),
        _ => None,
    };
    let wait = asked.unwrap_or_else(|| {
        let base = policy.delay_after(attempts).mul_f64(time_scale.max(0.0));
        // ±10% so that endpoints failing together do not retry in lockstep.
        base.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0))
    });
    Decision::RetryAt(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero()))
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or_default())
}

// ---- Settling ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    Delivered,
    RetryAt(DateTime<Utc>),
    Failed,
    /// Failed, and the endpoint asked never to be called again (410).
    FailedAndDisable,
    /// Not attempted (the endpoint was saturated): back to the queue, due again then.
    Released(DateTime<Utc>),
    /// Not attempted because the endpoint is disabled.
    Skipped(String),
}

impl From<Decision> for Settlement {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Delivered => Self::Delivered,
            Decision::RetryAt(t) => Self::RetryAt(t),
            Decision::GiveUp => Self::Failed,
            Decision::GiveUpAndDisable => Self::FailedAndDisable,
        }
    }
}

/// Text a receiver or a remote server chose (its answer's body, an error naming what it
/// sent) as it can be stored: PostgreSQL's text holds no NUL, and one such byte would fail
/// the whole batch of outcomes it is recorded with, other tenants' included.
pub fn storable_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptLog {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub id: DeliveryId,
    pub lease_token: String,
    pub channel: Channel,
    pub webhook_id: Option<WebhookId>,
    pub project_id: ProjectId,
    pub settlement: Settlement,
    /// `None` when nothing was sent (released or skipped).
    pub attempt: Option<AttemptLog>,
    /// The webhook was marked failing when the delivery was claimed: a success has
    /// something to clear. (A mark made since is cleared by the next success claimed
    /// after it, long before it could disable the endpoint.)
    pub endpoint_was_failing: bool,
}

/// Where a delivery stands once an outcome is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledState {
    pub status: DeliveryStatus,
    /// `None` keeps the time it had.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl DeliveryOutcome {
    pub fn succeeded(&self) -> bool {
        self.settlement == Settlement::Delivered
    }

    pub fn settled_state(&self, now: DateTime<Utc>) -> SettledState {
        let attempt_error = self.attempt.as_ref().and_then(|a| a.error.clone());
        let (status, next_attempt_at, delivered_at, last_error) = match &self.settlement {
            Settlement::Delivered => (DeliveryStatus::Delivered, None, Some(now), None),
            Settlement::RetryAt(t) | Settlement::Released(t) => {
                (DeliveryStatus::Pending, Some(*t), None, attempt_error)
            }
            Settlement::Failed | Settlement::FailedAndDisable => {
                (DeliveryStatus::Failed, None, None, attempt_error)
            }
            Settlement::Skipped(reason) => {
                (DeliveryStatus::Failed, None, None, Some(reason.clone()))
            }
        };
        SettledState {
            status,
            next_attempt_at,
            delivered_at,
            last_error,
        }
    }
}

// ---- Endpoint health -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    /// The receiver answered 410.
    Gone,
    /// Every delivery failed for this long.
    FailingFor(Duration),
}

impl fmt::Display for DisableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gone => f.write_str("the receiver answered 410 Gone"),
            Self::FailingFor(d) => write!(f, "every delivery failed for {} s", d.as_secs()),
        }
    }
}

/// What a batch of outcomes says about the webhooks it touched. Whether a failing
/// webhook has failed for long enough depends on when it started failing, which the
/// store compares with `disable_failing_since` as it marks it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointHealth {
    /// Marked failing, and delivered at least once: failing no longer.
    pub recovered: Vec<WebhookId>,
    /// Failed every attempt of the batch: failing from now on unless it already was,
    /// and disabled for `failing_reason` if it was failing since `disable_failing_since`
    /// or earlier.
    pub failing: Vec<WebhookId>,
    pub disable_failing_since: DateTime<Utc>,
    pub failing_reason: DisableReason,
    /// Disabled at once ([`DisableReason::Gone`]).
    pub gone: Vec<WebhookId>,
    /// Projects whose Slack integration Slack said is gone, with Slack's words.
    pub slack_gone: Vec<(ProjectId, String)>,
}

impl EndpointHealth {
    /// Nothing to write: no endpoint recovered, started failing or is to be disabled.
    pub fn is_unchanged(&self) -> bool {
        self.recovered.is_empty()
            && self.failing.is_empty()
            && self.gone.is_empty()
            && self.slack_gone.is_empty()
    }
}

/// An endpoint that succeeds is healthy again; one that has failed every attempt for
/// `disable_after`, or answered 410, is disabled. Each list is sorted, without repeats,
/// and names only endpoints whose state changes: a healthy endpoint's successes, the
/// common case, write nothing.
pub fn endpoint_health(
    outcomes: &[DeliveryOutcome],
    now: DateTime<Utc>,
    disable_after: Duration,
) -> EndpointHealth {
    let mut delivered = BTreeSet::new();
    let mut recovered = BTreeSet::new();
    let mut failing = BTreeSet::new();
    let mut gone = BTreeSet::new();
    let mut slack_gone = BTreeMap::new();
    for o in outcomes {
        if o.channel == Channel::Slack && o.settlement == Settlement::FailedAndDisable {
            let why = o
                .attempt
                .as_ref()
                .and_then(|a| a.error.clone())
                .unwrap_or_else(|| "Slack refused the channel".to_owned());
            slack_gone.insert(o.project_id, why);
        }
        let Some(w) = o.webhook_id else { continue };
        match o.settlement {
            Settlement::Delivered => {
                if o.endpoint_was_failing {
                    recovered.insert(w);
                }
                delivered.insert(w)
            }
            Settlement::RetryAt(_) | Settlement::Failed => failing.insert(w),
            Settlement::FailedAndDisable => gone.insert(w),
            Settlement::Released(_) | Settlement::Skipped(_) => false,
        };
    }
    EndpointHealth {
        failing: failing.difference(&delivered).copied().collect(),
        recovered: recovered.into_iter().collect(),
        disable_failing_since: now
            - chrono::Duration::from_std(disable_after).unwrap_or(chrono::Duration::days(5)),
        failing_reason: DisableReason::FailingFor(disable_after),
        gone: gone.into_iter().collect(),
        slack_gone: slack_gone.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventDraft;
    use crate::domain::ids::TenantId;
    use crate::domain::operation::Priority;
    use crate::domain::webhook::{WebhookFilters, WebhookStatus};
    use serde_json::{json, Value};

    #[test]
    fn nul_bytes_become_replacement_characters_and_other_text_is_kept() {
        assert_eq!(storable_text("ok\0done\0".into()), "ok\u{fffd}done\u{fffd}");
        assert_eq!(storable_text("plain é".into()), "plain é");
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn webhook(project: ProjectId, events: Vec<EventType>, filters: WebhookFilters) -> Webhook {
        Webhook {
            id: WebhookId::new(),
            tenant_id: TenantId::new(),
            project_id: project,
            url: format!("https://example.com/{}", uuid::Uuid::new_v4()),
            name: "n".into(),
            events,
            filters,
            retry_policy: RetryPolicy::WEBHOOK_DEFAULT,
            headers: Default::default(),
            rate_limit: None,
            labels: Default::default(),
            secrets: vec![],
            status: WebhookStatus::Active,
            disabled_reason: None,
            failing_since: None,
            created_at: t(0),
            updated_at: t(0),
        }
    }

    fn event(project: ProjectId, subject: &str, event_type: EventType, data: Value) -> Event {
        let mut sequence = 0;
        Event::seal(
            vec![EventDraft::new(event_type, data)],
            TenantId::new(),
            project,
            subject,
            &mut sequence,
            t(0),
            std::iter::repeat_with(crate::domain::ids::EventId::new),
        )
        .remove(0)
    }

    fn progress(project: ProjectId, subject: &str, percentage: f64) -> Event {
        event(
            project,
            subject,
            EventType::OperationProgress,
            json!({"operationType": "Report", "priority": "Normal", "progress": {"percentage": percentage}}),
        )
    }

    fn routed(event: &Event) -> Routed<'_> {
        Routed {
            event,
            callback: None,
            push_worker: None,
            notify: None,
        }
    }

    fn urls(fan_out: &FanOut<'_>) -> Vec<(String, String)> {
        fan_out
            .deliveries
            .iter()
            .map(|(e, d)| (e.subject.clone(), d.url().to_owned()))
            .collect()
    }

    #[test]
    fn status_and_channel_names_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(DeliveryStatus::parse("pending"), None);
    }

    #[test]
    fn an_event_goes_to_accepting_webhooks_of_its_project_then_its_callback_and_worker() {
        let project = ProjectId::new();
        let elsewhere = ProjectId::new();
        let all = webhook(project, vec![], WebhookFilters::default());
        let completions = webhook(
            project,
            vec![EventType::OperationCompleted],
            WebhookFilters::default(),
        );
        let high_only = webhook(
            project,
            vec![],
            WebhookFilters {
                priorities: vec![Priority::High],
                ..Default::default()
            },
        );
        let other_project = webhook(elsewhere, vec![], WebhookFilters::default());
        let webhooks = HashMap::from([
            (project, vec![all.clone(), completions.clone(), high_only]),
            (elsewhere, vec![other_project.clone()]),
        ]);
        let data = json!({"operationType": "Report", "priority": "Normal"});
        let started = event(project, "op-a", EventType::OperationStarted, data.clone());
        let cancelled = event(project, "op-a", EventType::OperationCancelled, data.clone());
        let foreign = event(elsewhere, "op-b", EventType::OperationCompleted, data);
        let worker = PushWorkerId::new();
        let events = [
            Routed {
                event: &started,
                callback: Some("https://cb.example/a"),
                push_worker: None,
                notify: None,
            },
            Routed {
                event: &cancelled,
                callback: None,
                push_worker: Some((worker, "https://worker.example/run")),
                notify: None,
            },
            routed(&foreign),
        ];
        let out = fan_out(&events, &webhooks, Watermarks::new());
        let kinds: Vec<(String, Channel, String)> = out
            .deliveries
            .iter()
            .map(|(e, d)| (e.subject.clone(), d.channel(), d.url().to_owned()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("op-a".into(), Channel::Webhook, all.url.clone()),
                (
                    "op-a".into(),
                    Channel::Callback,
                    "https://cb.example/a".into()
                ),
                ("op-a".into(), Channel::Webhook, all.url.clone()),
                (
                    "op-a".into(),
                    Channel::Push,
                    "https://worker.example/run".into()
                ),
                ("op-b".into(), Channel::Webhook, other_project.url.clone()),
            ]
        );
        assert_eq!(
            out.deliveries[3].1,
            Destination::Push {
                worker,
                url: "https://worker.example/run".into()
            }
        );
        assert!(out.watermarks.is_empty(), "no throttled webhook");
        assert!(watermarks_needed(&events, &webhooks).is_empty());
        let none = fan_out(&events, &HashMap::new(), Watermarks::new());
        assert_eq!(none.deliveries.len(), 2, "the callback and the worker only");
    }

    #[test]
    fn throttled_progress_follows_the_stored_watermark_and_moves_it() {
        let project = ProjectId::new();
        let step = WebhookFilters {
            min_progress_increment: Some(25.0),
            ..Default::default()
        };
        let throttled = webhook(project, vec![EventType::OperationProgress], step);
        let unthrottled = webhook(
            project,
            vec![EventType::OperationProgress],
            WebhookFilters::default(),
        );
        let webhooks = HashMap::from([(project, vec![throttled.clone(), unthrottled.clone()])]);
        let a: Vec<Event> = [10.0, 20.0, 40.0, 60.0, 70.0]
            .iter()
            .map(|p| progress(project, "op-a", *p))
            .collect();
        let b = progress(project, "op-b", 5.0);
        let mut events: Vec<Routed<'_>> = a.iter().map(routed).collect();
        events.push(routed(&b));
        assert_eq!(
            watermarks_needed(&events, &webhooks),
            BTreeSet::from([(throttled.id, "op-a".into()), (throttled.id, "op-b".into())])
        );
        // op-a was last sent at 10 to the throttled webhook; op-b never was.
        let known = Watermarks::from([((throttled.id, "op-a".to_owned()), 10.0)]);
        let out = fan_out(&events, &webhooks, known);
        let to_throttled: Vec<f64> = out
            .deliveries
            .iter()
            .filter(|(_, d)| d.url() == throttled.url)
            .map(|(e, _)| e.data["progress"]["percentage"].as_f64().unwrap())
            .collect();
        assert_eq!(to_throttled, [40.0, 70.0, 5.0]);
        let to_unthrottled = urls(&out)
            .iter()
            .filter(|(_, u)| *u == unthrottled.url)
            .count();
        assert_eq!(to_unthrottled, 6);
        assert_eq!(
            out.watermarks,
            Watermarks::from([
                ((throttled.id, "op-a".to_owned()), 70.0),
                ((throttled.id, "op-b".to_owned()), 5.0)
            ]),
            "one final watermark per webhook and subject"
        );
    }

    #[test]
    fn progress_without_a_percentage_is_not_sent_to_a_throttled_webhook() {
        let project = ProjectId::new();
        let throttled = webhook(
            project,
            vec![],
            WebhookFilters {
                min_progress_increment: Some(10.0),
                ..Default::default()
            },
        );
        let webhooks = HashMap::from([(project, vec![throttled])]);
        let phase_only = event(
            project,
            "op-a",
            EventType::OperationProgress,
            json!({"progress": {}}),
        );
        let completed = event(project, "op-a", EventType::OperationCompleted, json!({}));
        let out = fan_out(
            &[routed(&phase_only), routed(&completed)],
            &webhooks,
            Watermarks::new(),
        );
        assert_eq!(out.deliveries.len(), 1);
        assert_eq!(
            out.deliveries[0].0.event_type,
            EventType::OperationCompleted
        );
        assert!(out.watermarks.is_empty());
    }

    #[test]
    fn decisions_follow_the_status_and_the_policy() {
        let p = RetryPolicy::WEBHOOK_DEFAULT;
        let status = |code| AttemptResult::Status {
            code,
            retry_after: None,
        };
        assert_eq!(
            decide(&status(204), 1, &p, t(0), 0.5, 1.0),
            Decision::Delivered
        );
        assert_eq!(
            decide(&status(410), 1, &p, t(0), 0.5, 1.0),
            Decision::GiveUpAndDisable
        );
        assert_eq!(
            decide(&status(500), 1, &p, t(0), 0.5, 1.0),
            Decision::RetryAt(t(60))
        );
        assert_eq!(
            decide(&status(302), 2, &p, t(0), 0.5, 1.0),
            Decision::RetryAt(t(120)),
            "redirects are failures"
        );
        let network = AttemptResult::NoResponse {
            error: "refused".into(),
        };
        assert_eq!(
            decide(&network, 3, &p, t(0), 0.5, 1.0),
            Decision::RetryAt(t(240))
        );
        assert_eq!(
            decide(&status(500), 6, &p, t(0), 0.5, 1.0),
            Decision::GiveUp,
            "5 retries after the first attempt"
        );
        let scaled = decide(&status(500), 1, &p, t(0), 0.5, 0.01);
        assert_eq!(
            scaled,
            Decision::RetryAt(t(0) + chrono::Duration::milliseconds(600))
        );
        let busy = AttemptResult::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            decide(&busy, 1, &p, t(0), 0.5, 0.01),
            Decision::RetryAt(t(7)),
            "Retry-After is honoured as given"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            parse_retry_after("120", t(0)),
            Some(Duration::from_secs(120))
        );
        let date = (t(0) + chrono::Duration::seconds(30)).to_rfc2822();
        assert_eq!(
            parse_retry_after(&date, t(0)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", t(0)), None);
    }

    fn outcome(
        webhook_id: Option<WebhookId>,
        settlement: Settlement,
        error: Option<&str>,
    ) -> DeliveryOutcome {
        DeliveryOutcome {
            id: DeliveryId::new(),
            lease_token: "dl_x".into(),
            channel: Channel::Webhook,
            webhook_id,
            project_id: ProjectId::new(),
            settlement,
            attempt: error.map(|e| AttemptLog {
                attempted_at: t(0),
                status_code: Some(500),
                latency_ms: 3,
                response_body: None,
                error: Some(e.to_owned()),
            }),
            endpoint_was_failing: true,
        }
    }

    #[test]
    fn each_settlement_leaves_the_delivery_in_its_state() {
        let now = t(100);
        let state = |s: Settlement, error: Option<&str>| outcome(None, s, error).settled_state(now);
        assert_eq!(
            state(Settlement::Delivered, None),
            SettledState {
                status: DeliveryStatus::Delivered,
                next_attempt_at: None,
                delivered_at: Some(now),
                last_error: None
            }
        );
        for pending in [Settlement::RetryAt(t(160)), Settlement::Released(t(160))] {
            assert_eq!(
                state(pending, Some("the receiver answered 500")),
                SettledState {
                    status: DeliveryStatus::Pending,
                    next_attempt_at: Some(t(160)),
                    delivered_at: None,
                    last_error: Some("the receiver answered 500".into())
                }
            );
        }
        for failed in [Settlement::Failed, Settlement::FailedAndDisable] {
            let s = state(failed, Some("gone"));
            assert_eq!(
                (s.status, s.last_error.as_deref()),
                (DeliveryStatus::Failed, Some("gone"))
            );
            assert_eq!(s.next_attempt_at, None, "keeps its last due time");
        }
        let skipped = state(Settlement::Skipped("the webhook is disabled".into()), None);
        assert_eq!(skipped.status, DeliveryStatus::Failed);
        assert_eq!(
            skipped.last_error.as_deref(),
            Some("the webhook is disabled")
        );
        assert!(outcome(None, Settlement::Delivered, None).succeeded());
        assert!(!outcome(None, Settlement::Failed, None).succeeded());
        assert_eq!(Settlement::from(Decision::GiveUp), Settlement::Failed);
    }

    #[test]
    fn a_healthy_endpoints_successes_change_nothing() {
        let (healthy, flaky) = (WebhookId::new(), WebhookId::new());
        let fine = |w| DeliveryOutcome {
            endpoint_was_failing: false,
            ..outcome(Some(w), Settlement::Delivered, None)
        };
        let health = endpoint_health(
            &[fine(healthy), fine(healthy)],
            t(1000),
            Duration::from_secs(600),
        );
        assert!(health.is_unchanged(), "{health:?}");
        // Delivered in the same batch as a failure: not failing, though there is nothing
        // to clear.
        let health = endpoint_health(
            &[
                outcome(Some(flaky), Settlement::RetryAt(t(1)), Some("x")),
                fine(flaky),
            ],
            t(1000),
            Duration::from_secs(600),
        );
        assert!(health.is_unchanged(), "{health:?}");
        let failing = endpoint_health(
            &[outcome(Some(flaky), Settlement::RetryAt(t(1)), Some("x"))],
            t(1000),
            Duration::from_secs(600),
        );
        assert_eq!(failing.failing, vec![flaky]);
        assert!(!failing.is_unchanged());
    }

    #[test]
    fn one_success_makes_an_endpoint_healthy_and_410_disables_it_at_once() {
        let (ok, flaky, down, gone) = {
            let mut ids = [
                WebhookId::new(),
                WebhookId::new(),
                WebhookId::new(),
                WebhookId::new(),
            ];
            ids.sort();
            (ids[0], ids[1], ids[2], ids[3])
        };
        let outcomes = [
            outcome(Some(ok), Settlement::Delivered, None),
            outcome(Some(ok), Settlement::Delivered, None),
            outcome(Some(flaky), Settlement::RetryAt(t(1)), Some("x")),
            outcome(Some(flaky), Settlement::Delivered, None),
            outcome(Some(down), Settlement::Failed, Some("x")),
            outcome(Some(down), Settlement::RetryAt(t(1)), Some("x")),
            outcome(Some(gone), Settlement::FailedAndDisable, Some("x")),
            // Not attempted: says nothing about the endpoint.
            outcome(Some(WebhookId::new()), Settlement::Released(t(1)), None),
            outcome(
                Some(WebhookId::new()),
                Settlement::Skipped("off".into()),
                None,
            ),
            // A callback is no webhook.
            outcome(None, Settlement::Failed, Some("x")),
        ];
        let health = endpoint_health(&outcomes, t(1000), Duration::from_secs(600));
        assert_eq!(
            health,
            EndpointHealth {
                recovered: vec![ok, flaky],
                failing: vec![down],
                disable_failing_since: t(400),
                failing_reason: DisableReason::FailingFor(Duration::from_secs(600)),
                gone: vec![gone],
                slack_gone: vec![],
            }
        );
        assert_eq!(
            health.failing_reason.to_string(),
            "every delivery failed for 600 s"
        );
        assert_eq!(
            DisableReason::Gone.to_string(),
            "the receiver answered 410 Gone"
        );
    }

    #[test]
    fn each_channel_reads_its_own_answers() {
        let status = |code| AttemptResult::Status {
            code,
            retry_after: None,
        };
        let none = AttemptResult::NoResponse {
            error: "refused".into(),
        };
        assert_eq!(slack_verdict(&status(200)), Verdict::Delivered);
        assert_eq!(slack_verdict(&status(400)), Verdict::GiveUp);
        assert_eq!(slack_verdict(&status(403)), Verdict::GiveUp);
        assert_eq!(slack_verdict(&status(404)), Verdict::Disable);
        assert_eq!(slack_verdict(&status(410)), Verdict::Disable);
        assert_eq!(slack_verdict(&status(429)), Verdict::Retry);
        assert_eq!(slack_verdict(&status(500)), Verdict::Retry);
        assert_eq!(slack_verdict(&none), Verdict::Retry);
        assert_eq!(smtp_verdict(&status(250)), Verdict::Delivered);
        assert_eq!(smtp_verdict(&status(451)), Verdict::Retry);
        assert_eq!(smtp_verdict(&status(550)), Verdict::GiveUp);
        assert_eq!(smtp_verdict(&none), Verdict::Retry);
        assert_eq!(http_verdict(&status(404)), Verdict::Retry);
        assert_eq!(http_verdict(&status(410)), Verdict::Disable);
        let policy = RetryPolicy::WEBHOOK_DEFAULT;
        assert_eq!(
            decide_after(Verdict::GiveUp, &status(400), 1, &policy, t(0), 0.5, 1.0),
            Decision::GiveUp
        );
        let later = AttemptResult::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            decide_after(slack_verdict(&later), &later, 1, &policy, t(0), 0.5, 1.0),
            Decision::RetryAt(t(7))
        );
    }

    #[test]
    fn an_ending_goes_to_each_mail_recipient_and_to_slack() {
        use crate::domain::notify::{Ending, Notice, SubjectKind};
        let project = ProjectId::new();
        let ended = event(
            project,
            "op-a",
            EventType::OperationFailed,
            json!({"operationType": "Report", "priority": "Normal"}),
        );
        let notify = Notify {
            notice: Notice::Ended(Ending {
                kind: SubjectKind::Operation,
                id: "op-a".into(),
                name: "n".into(),
                operation_type: Some("Report".into()),
                status: "Failed".into(),
                duration_seconds: None,
                error_code: None,
                error_message: None,
                tracking_path: "/x".into(),
                members: None,
                ended_at: t(0),
            }),
            email: vec!["a@b.io".into(), "c@d.io".into()],
            slack: Some((Some("#pm".into()), vec!["@x".into()])),
        };
        let routed = Routed {
            event: &ended,
            callback: None,
            push_worker: None,
            notify: Some(&notify),
        };
        let planned = fan_out(&[routed], &HashMap::new(), Watermarks::new());
        let sent: Vec<(Channel, String)> = planned
            .deliveries
            .iter()
            .map(|(_, d)| (d.channel(), d.url()))
            .collect();
        assert_eq!(
            sent,
            [
                (Channel::Email, "mailto:a@b.io".to_owned()),
                (Channel::Email, "mailto:c@d.io".to_owned()),
                (Channel::Slack, "slack:#pm".to_owned()),
            ]
        );
    }

    #[test]
    fn a_slack_channel_gone_disables_that_projects_integration_only() {
        let mut gone = outcome(
            None,
            Settlement::FailedAndDisable,
            Some("Slack answered 404 channel_not_found"),
        );
        gone.channel = Channel::Slack;
        let mut refused = outcome(None, Settlement::Failed, Some("invalid_payload"));
        refused.channel = Channel::Slack;
        let health = endpoint_health(&[gone.clone(), refused], t(0), Duration::from_secs(60));
        assert_eq!(
            health.slack_gone,
            [(
                gone.project_id,
                "Slack answered 404 channel_not_found".to_owned()
            )]
        );
        assert!(health.gone.is_empty() && health.failing.is_empty());
    }
}
