//! The outbox dispatcher: takes the webhook deliveries this process's writes hand it
//! (already leased to it by the transaction that queued them), claims the other due
//! deliveries in batches under a lease, sends them with bounded concurrency (overall and
//! per endpoint), and hands every outcome to a recorder that settles them in batches.
//!
//! Crash safety comes from the lease: a delivery claimed by a process that dies becomes
//! claimable again when its lease expires, and the lease always outlives the request
//! timeout, so a slow but live send is never duplicated by another dispatcher.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::endpoint::{Endpoint, EndpointSlot, Turn};
use super::notify::{send_mail, slack_request, Mailer};
use crate::clock;
use crate::domain::delivery::{
    decide_after, http_verdict, parse_retry_after, slack_verdict, smtp_verdict, storable_text,
    AttemptLog, AttemptResult, Channel, DeliveryOutcome, Settlement,
};
use crate::domain::endpoint_limit::{load_of, EndpointBounds, Load};
use crate::domain::ids::WebhookId;
use crate::domain::rate_limit::{reserve, RateLimit, Reservation};
use crate::domain::webhook::live_secrets;
use crate::outbound::client::root_cause;
use crate::outbound::signing::{generate_secret, SigningKey};
use crate::outbound::{OutboundClient, SignedMessage};
use crate::shared::SharedByKey;
use crate::store::{
    ClaimBudget, ClaimedDelivery, Deliveries, Handed, Held, Signals, StoreError, Webhooks,
};

/// Longest stored slice of a receiver's answer.
const RESPONSE_BODY_LIMIT: usize = 4096;
const CLAIM_BATCH: usize = 500;
const RECORD_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    pub request_timeout: Duration,
    /// Multiplies retry-policy delays; below 1 in tests so retries take milliseconds.
    pub retry_time_scale: f64,
    pub allow_private_targets: bool,
    pub disable_after: Duration,
    pub max_in_flight: usize,
    pub per_endpoint: usize,
    pub retention: Duration,
    /// Where notifications' links point: this service's public URL.
    pub public_url: String,
    /// The SMTP server mails go through, if one is configured.
    pub mailer: Option<Mailer>,
}

impl DispatcherSettings {
    fn lease(&self) -> Duration {
        self.request_timeout * 2 + Duration::from_secs(10)
    }
}

struct Context {
    deliveries: Deliveries,
    /// Callback secrets, for a project whose first callback is being sent.
    webhooks: Webhooks,
    signals: Signals,
    settings: DispatcherSettings,
    client: OutboundClient,
    /// Deliveries in flight to each endpoint (a webhook, or a callback URL), within its
    /// limit, which moves up to `settings.per_endpoint`.
    endpoints: SharedByKey<String, Endpoint>,
    outcomes: mpsc::UnboundedSender<Settled>,
    /// Turns true when the process stops: no more claims, and sends that have not started
    /// go back to the queue.
    shutdown: watch::Receiver<bool>,
}

/// The dispatcher's tasks: `draining` ends once, after `shutdown`, every send in flight
/// has finished and its outcome is recorded (the deliveries not sent are released to
/// the queue); the others are aborted when the process stops.
pub struct Dispatcher {
    pub draining: JoinHandle<()>,
    pub others: Vec<JoinHandle<()>>,
}

pub fn spawn(
    deliveries: Deliveries,
    webhooks: Webhooks,
    signals: Signals,
    settings: DispatcherSettings,
    shutdown: watch::Receiver<bool>,
) -> Dispatcher {
    let (tx, rx) = mpsc::unbounded_channel();
    let next_due = Arc::new(AtomicI64::new(i64::MAX));
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    // As many again may wait in memory for a slot, handed off or claimed.
    let waiting = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    let handed = deliveries.hand_off_to(in_flight.clone(), waiting.clone(), settings.lease());
    let context = Arc::new(Context {
        client: OutboundClient::new(settings.request_timeout, settings.allow_private_targets),
        deliveries: deliveries.clone(),
        webhooks,
        signals: signals.clone(),
        settings: settings.clone(),
        endpoints: SharedByKey::default(),
        outcomes: tx,
        shutdown,
    });
    // The recorder ends when the last sender of outcomes is gone: the dispatch loop's
    // context and every send's copy of it.
    let draining = tokio::spawn(record(
        deliveries.clone(),
        signals,
        rx,
        settings.disable_after,
        next_due.clone(),
    ));
    Dispatcher {
        draining,
        others: vec![
            tokio::spawn(take_handoffs(context.clone(), in_flight.clone(), handed)),
            tokio::spawn(dispatch(context, in_flight, waiting, next_due)),
            tokio::spawn(prune(deliveries, settings.retention)),
        ],
    }
}

/// Sends what writes of this process hand straight to the dispatcher (see
/// `store::Deliveries::hand_off_to`), until the process stops.
async fn take_handoffs(
    ctx: Arc<Context>,
    in_flight: Arc<Semaphore>,
    mut handed: mpsc::UnboundedReceiver<Vec<Handed>>,
) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            batch = handed.recv() => match batch {
                Some(batch) => start_sends(&ctx, &in_flight, batch),
                None => break,
            },
            _ = shutdown.wait_for(|down| *down) => break,
        }
    }
    ctx.deliveries.stop_handoffs();
    // Handed off before writes stopped handing off: each send sees the shutdown and puts
    // its delivery back in the queue. Once closed, the channel refuses what a write that
    // took the hand-off before it stopped commits later, and that write releases its
    // deliveries itself.
    handed.close();
    while let Some(batch) = handed.recv().await {
        start_sends(&ctx, &in_flight, batch);
    }
}

fn start_sends(ctx: &Arc<Context>, in_flight: &Arc<Semaphore>, batch: Vec<Handed>) {
    for Handed { delivery, held } in batch {
        start_send(ctx, in_flight, delivery, held, Holds::default());
    }
}

/// Sends `delivery` now if it holds a slot, or once one frees up if it holds a place to
/// wait. `holds`: what else its attempt holds.
fn start_send(
    ctx: &Arc<Context>,
    in_flight: &Arc<Semaphore>,
    delivery: ClaimedDelivery,
    held: Held,
    mut holds: Holds,
) {
    match held {
        Held::Slot(slot) => {
            holds.permits.push(slot);
            tokio::spawn(send(ctx.clone(), delivery, holds));
        }
        Held::Waiting(place) => {
            tokio::spawn(send_when_free(
                ctx.clone(),
                in_flight.clone(),
                delivery,
                place,
                holds,
            ));
        }
    }
}

/// Sends a delivery that holds a place to wait once a slot frees up, in turn with the
/// other deliveries waiting; puts it back in the queue if the process stops first.
/// `holds`: what else its attempt holds.
async fn send_when_free(
    ctx: Arc<Context>,
    in_flight: Arc<Semaphore>,
    delivery: ClaimedDelivery,
    place: OwnedSemaphorePermit,
    mut holds: Holds,
) {
    let slot = tokio::select! {
        slot = in_flight.acquire_owned() => slot.ok(),
        () = stopping(&ctx.shutdown) => None,
    };
    drop(place);
    match slot {
        Some(slot) => {
            holds.permits.push(slot);
            send(ctx, delivery, holds).await
        }
        None => {
            let _ = ctx.outcomes.send(Settled {
                outcome: released(&delivery, clock::now()),
                queued_at: delivery.queued_at,
                _holds: holds,
            });
        }
    }
}

async fn dispatch(
    ctx: Arc<Context>,
    in_flight: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    next_due: Arc<AtomicI64>,
) {
    // Retries may use at most half of the capacity: fresh events always find room.
    let retry_share = Arc::new(Semaphore::new((ctx.settings.max_in_flight / 2).max(1)));
    let mut shutdown = ctx.shutdown.clone();
    // Whether a claim may find something: at start, after a full claim, after a wake-up
    // (deliveries queued here or by another replica, or found due by the engine's clock)
    // or when a retry scheduled here becomes due. Otherwise the loop waits, so a quiet
    // outbox costs the database nothing.
    let mut worth_claiming = true;
    while !*shutdown.borrow_and_update() {
        // Enabled before the claim: what is queued while it runs wakes the next one.
        let woken = ctx.signals.deliveries_available().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if worth_claiming {
            // The slots are taken before the claim: writes of this process take slots
            // for the deliveries they hand off meanwhile. When none is free, the claim
            // waits for a share of the places to wait for one, ahead of the writes (the
            // semaphore serves waiters first), so what waits in the outbox is not
            // crowded out by what is handed off, and the slots keep sending what waits
            // in memory while the claim runs.
            let mut slots = free_permits(&in_flight, CLAIM_BATCH);
            let mut places = Vec::new();
            if slots.is_empty() {
                let share = (ctx.settings.max_in_flight / 4).clamp(1, CLAIM_BATCH) as u32;
                tokio::select! {
                    permits = waiting.clone().acquire_many_owned(share) => {
                        if let Ok(mut permits) = permits {
                            while let Some(one) = permits.split(1) {
                                places.push(one);
                            }
                        }
                    }
                    _ = shutdown.changed() => continue,
                }
                places.extend(free_permits(&waiting, CLAIM_BATCH - places.len()));
            }
            let now = clock::now();
            let lease_until =
                now + chrono::Duration::from_std(ctx.settings.lease()).expect("lease fits");
            let total = slots.len() + places.len();
            let mut retry_slots = free_permits(&retry_share, total);
            let budget = ClaimBudget {
                total,
                retries: retry_slots.len(),
            };
            let claimed = match ctx.deliveries.claim(budget, now, lease_until).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming deliveries failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            worth_claiming = claimed.len() == budget.total;
            for delivery in claimed {
                let mut holds = Holds::default();
                if delivery.is_retry() {
                    holds.permits.push(
                        retry_slots
                            .pop()
                            .expect("claimed within the retry share taken"),
                    );
                }
                let held = slots
                    .pop()
                    .map(Held::Slot)
                    .or_else(|| places.pop().map(Held::Waiting))
                    .expect("claimed within the slots and places taken");
                start_send(&ctx, &in_flight, delivery, held, holds);
            }
            if worth_claiming {
                continue;
            }
        }
        // Deliveries a dead replica leased or scheduled to retry are found by the
        // engine's clock, which wakes this loop like a commit does.
        let due_in = match next_due.load(Ordering::Acquire) {
            i64::MAX => None,
            due => Some(Duration::from_millis(
                (due - clock::now().timestamp_millis()).max(0) as u64,
            )),
        };
        tokio::select! {
            _ = &mut woken => {}
            _ = shutdown.changed() => {}
            _ = sleep_for(due_in) => {
                let now = clock::now().timestamp_millis();
                let _ = next_due.fetch_update(Ordering::AcqRel, Ordering::Acquire, |due| (due <= now).then_some(i64::MAX));
            }
        }
        worth_claiming = true;
    }
}

/// Sleeps that long, or forever.
async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// Up to `max` of the semaphore's free permits, one by one.
fn free_permits(semaphore: &Arc<Semaphore>, max: usize) -> Vec<OwnedSemaphorePermit> {
    std::iter::from_fn(|| semaphore.clone().try_acquire_owned().ok())
        .take(max)
        .collect()
}

/// An outcome on its way to the recorder, with what its attempt holds. That is released
/// only once the outcome is committed, so the deliveries that are sent but not yet
/// settled (the ones a crash would send again) never outnumber the concurrency limits.
struct Settled {
    outcome: DeliveryOutcome,
    /// When the delivery was queued (its event written).
    queued_at: DateTime<Utc>,
    _holds: Holds,
}

/// What an attempt holds until its outcome is committed: its slot in flight, perhaps a
/// place in the retries' share, and its endpoint's slot.
#[derive(Default)]
struct Holds {
    permits: Vec<OwnedSemaphorePermit>,
    endpoint: Option<EndpointSlot>,
}

async fn send(ctx: Arc<Context>, delivery: ClaimedDelivery, mut holds: Holds) {
    // Every line about this delivery names it, its event and the request that caused the
    // event, so that a search for the request id finds its deliveries too; exported, the
    // span is a child of that request's, in its trace.
    let span = tracing::info_span!(
        "delivery",
        request_id = delivery.request_id.as_deref(),
        tenant_id = %delivery.tenant_id,
        project_id = %delivery.project_id,
        event_id = %delivery.event_id,
        delivery_id = %delivery.id,
        otel.name = format!("deliver {}", delivery.channel.as_str()),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    crate::trace::follow(&span, delivery.traceparent.as_deref());
    async move {
        if let Some(outcome) = attempt(&ctx, &delivery, &mut holds).await {
            log_outcome(&delivery, &outcome);
            // The recorder outlives every sender; a closed channel means shutdown, and the
            // lease then hands the delivery to the next process.
            let _ = ctx.outcomes.send(Settled {
                outcome,
                queued_at: delivery.queued_at,
                _holds: holds,
            });
        }
    }
    .instrument(span)
    .await
}

fn log_outcome(delivery: &ClaimedDelivery, outcome: &DeliveryOutcome) {
    match &outcome.attempt {
        Some(sent) => {
            let span = tracing::Span::current();
            if let Some(code) = sent.status_code {
                span.record("http.response.status_code", code);
            }
            if !matches!(outcome.settlement, Settlement::Delivered) {
                span.record("otel.status_code", "error");
            }
            tracing::info!(
            channel = delivery.channel.as_str(),
            attempt = delivery.attempts + 1,
            status_code = sent.status_code,
            latency_ms = sent.latency_ms,
            error = sent.error.as_deref(),
            settlement = ?outcome.settlement,
            "delivery sent"
            )
        }
        None => tracing::debug!(settlement = ?outcome.settlement, "delivery not sent"),
    }
}

fn outcome(
    delivery: &ClaimedDelivery,
    settlement: Settlement,
    attempt: Option<AttemptLog>,
) -> DeliveryOutcome {
    DeliveryOutcome {
        id: delivery.id,
        lease_token: delivery.lease_token.clone(),
        channel: delivery.channel,
        webhook_id: delivery.webhook_id,
        project_id: delivery.project_id,
        settlement,
        attempt,
        endpoint_was_failing: delivery.endpoint_failing,
    }
}

/// One attempt. `None`: the lease was lost while waiting, so another process owns it.
async fn attempt(
    ctx: &Context,
    delivery: &ClaimedDelivery,
    holds: &mut Holds,
) -> Option<DeliveryOutcome> {
    if !delivery.endpoint_active {
        let why = match delivery.channel {
            Channel::Slack => "the project's Slack integration is disabled or removed",
            Channel::Push => "the push worker is deleted",
            _ => "the webhook is disabled",
        };
        return Some(outcome(delivery, Settlement::Skipped(why.into()), None));
    }
    // Mails share the SMTP server's limit; Slack messages their project's integration's.
    let key = match delivery.channel {
        Channel::Email => "smtp".to_owned(),
        Channel::Slack => format!("slack:{}", delivery.project_id),
        _ => delivery
            .webhook_id
            .map_or_else(|| delivery.url.clone(), |w| w.to_string()),
    };
    // Slack takes about one message a second per incoming webhook: one at a time.
    let bounds = match delivery.channel {
        Channel::Slack => EndpointBounds::one_at_a_time(),
        _ => EndpointBounds::up_to(ctx.settings.per_endpoint),
    };
    let endpoint = ctx.endpoints.get(key.as_str(), || Endpoint::new(bounds));
    let turn = tokio::select! {
        turn = endpoint.turn() => turn,
        () = stopping(&ctx.shutdown) => return Some(released(delivery, clock::now())),
    };
    let waited = match turn {
        Turn::Now { slot, waited } => {
            holds.endpoint = Some(slot);
            waited
        }
        Turn::Later(at) => {
            metrics::counter!("relais_deliveries_endpoint_busy_total").increment(1);
            return Some(released(delivery, at));
        }
    };
    if let (Some(limit), Some(webhook)) = (delivery.rate_limit, delivery.webhook_id) {
        match take_slot(ctx, webhook, limit).await {
            Ok(Reservation::Granted { send_at, .. }) => {
                let wait = (send_at - clock::now()).to_std().unwrap_or_default();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stopping(&ctx.shutdown) => return Some(released(delivery, clock::now())),
                }
            }
            Ok(Reservation::Held { until }) => {
                metrics::counter!("relais_deliveries_rate_limited_total").increment(1);
                return Some(released(delivery, until));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the webhook's rate schedule");
                let later = clock::now() + chrono::Duration::milliseconds(250);
                return Some(released(delivery, later));
            }
        }
    }
    let now = clock::now();
    let margin = chrono::Duration::from_std(ctx.settings.request_timeout + Duration::from_secs(5))
        .expect("fits");
    if delivery.lease_expires_at - now < margin {
        let until = now + chrono::Duration::from_std(ctx.settings.lease()).expect("fits");
        match ctx
            .deliveries
            .extend_lease(delivery.id, &delivery.lease_token, until)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "could not extend a delivery lease");
                return None;
            }
        }
    }
    if delivery.channel.is_notification() {
        // Heard from, so not silent; the limits of a Slack integration and of the SMTP
        // server stay where they started.
        let started = Instant::now();
        let outcome = send_notification(ctx, delivery, now).await;
        endpoint.answered(Load::Steady, started.elapsed(), waited);
        return Some(outcome);
    }
    let secrets = match &delivery.secrets {
        Ok(Some(s)) => s.clone(),
        Ok(None) => match ctx
            .webhooks
            .callback_secrets(delivery.project_id, generate_secret)
            .await
        {
            Ok(s) => s,
            Err(e @ StoreError::Secret { .. }) => {
                return Some(unsigned(ctx, delivery, e.to_string(), now));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not load callback secrets");
                return None;
            }
        },
        Err(why) => return Some(unsigned(ctx, delivery, why.clone(), now)),
    };
    let keys: Vec<SigningKey> = live_secrets(&secrets, now)
        .into_iter()
        .map(SigningKey::from_secret)
        .collect();
    let request = ctx.client.signed_post(
        &delivery.url,
        SignedMessage {
            id: &delivery.event_id,
            timestamp: now.timestamp(),
            body: delivery.payload.clone(),
            keys: &keys,
            headers: &delivery.headers,
            traceparent: crate::trace::traceparent_of(&tracing::Span::current()).as_deref(),
        },
    );

    let started = Instant::now();
    let (attempt_result, response_body) = send_http(request.ok(), "target address", now).await;
    let latency = started.elapsed();
    endpoint.answered(load_of(&attempt_result, latency), latency, waited);
    let latency_ms = latency.as_millis() as i64;
    Some(settle(
        ctx,
        delivery,
        attempt_result,
        response_body,
        now,
        latency_ms,
    ))
}

/// Not sent this time, and not an attempt: the delivery goes back to the queue, due at
/// `at`.
fn released(delivery: &ClaimedDelivery, at: DateTime<Utc>) -> DeliveryOutcome {
    outcome(delivery, Settlement::Released(at), None)
}

/// Resolves once the process is stopping.
async fn stopping(shutdown: &watch::Receiver<bool>) {
    let mut shutdown = shutdown.clone();
    let _ = shutdown.wait_for(|down| *down).await;
}

/// How many times a send tries to move a schedule that other sends keep moving first.
const SCHEDULE_TRIES: u32 = 8;

/// A slot on the webhook's schedule, which every replica's sends to it share: read it,
/// let `domain::rate_limit` decide, and move it only if nobody moved it meanwhile.
async fn take_slot(
    ctx: &Context,
    webhook: WebhookId,
    limit: RateLimit,
) -> Result<Reservation, StoreError> {
    for _ in 0..SCHEDULE_TRIES {
        let seen = ctx.deliveries.rate_schedule(webhook).await?;
        let reservation = reserve(limit, seen, clock::now());
        match reservation {
            Reservation::Granted { next, .. } => {
                if ctx
                    .deliveries
                    .move_rate_schedule(webhook, seen, next)
                    .await?
                {
                    return Ok(reservation);
                }
            }
            Reservation::Held { .. } => return Ok(reservation),
        }
    }
    // So contended that the limit is surely reached: try again a little later.
    let later = clock::now() + chrono::Duration::milliseconds(100);
    Ok(Reservation::Held { until: later })
}

/// A Slack message or a mail: sent as its channel sends, judged as its channel's
/// answers say.
async fn send_notification(
    ctx: &Context,
    delivery: &ClaimedDelivery,
    now: DateTime<Utc>,
) -> DeliveryOutcome {
    let Some(outgoing) = &delivery.outgoing else {
        return outcome(
            delivery,
            Settlement::Skipped("the notification has no message".into()),
            None,
        );
    };
    let base_url = &ctx.settings.public_url;
    let started = Instant::now();
    let (result, response_body) = match delivery.channel {
        Channel::Email => match &ctx.settings.mailer {
            Some(mailer) => send_mail(mailer, outgoing, &delivery.event_id, base_url).await,
            // Retried: a restart with RELAIS_SMTP_URL set lets a later attempt through.
            None => (
                AttemptResult::NoResponse {
                    error: "email is not configured on this server (RELAIS_SMTP_URL)".into(),
                },
                None,
            ),
        },
        _ => {
            if let Err(why) = &delivery.secrets {
                return unsigned(ctx, delivery, why.clone(), now);
            }
            let request = slack_request(&ctx.client, &delivery.url, outgoing, base_url);
            send_http(request, "Slack URL's address", now).await
        }
    };
    let latency_ms = started.elapsed().as_millis() as i64;
    settle(ctx, delivery, result, response_body, now, latency_ms)
}

/// Sends one request and reads what its answer says: status, `Retry-After`, the start of
/// the body. `None`: the guard refused the `target`'s literal private address.
async fn send_http(
    request: Option<reqwest::RequestBuilder>,
    target: &str,
    now: DateTime<Utc>,
) -> (AttemptResult, Option<String>) {
    let Some(request) = request else {
        let error =
            format!("the {target} is private; set RELAIS_ALLOW_PRIVATE_TARGETS to allow it");
        return (AttemptResult::NoResponse { error }, None);
    };
    match request.send().await.map_err(describe_error) {
        Ok(response) => {
            let code = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            let body = read_truncated(response).await;
            (AttemptResult::Status { code, retry_after }, Some(body))
        }
        Err(error) => (AttemptResult::NoResponse { error }, None),
    }
}

/// What an attempt made at `attempted_at` settles the delivery as, with its log line.
fn settle(
    ctx: &Context,
    delivery: &ClaimedDelivery,
    attempt_result: AttemptResult,
    response_body: Option<String>,
    attempted_at: DateTime<Utc>,
    latency_ms: i64,
) -> DeliveryOutcome {
    let verdict = match delivery.channel {
        Channel::Slack => slack_verdict(&attempt_result),
        Channel::Email => smtp_verdict(&attempt_result),
        Channel::Webhook | Channel::Callback | Channel::Push => http_verdict(&attempt_result),
    };
    let decision = decide_after(
        verdict,
        &attempt_result,
        delivery.attempts + 1,
        &delivery.retry_policy,
        clock::now(),
        rand::random::<f64>(),
        ctx.settings.retry_time_scale,
    );
    let said = || {
        response_body
            .as_deref()
            .map(|b| format!(": {}", b.chars().take(200).collect::<String>()))
            .unwrap_or_default()
    };
    let (status_code, error) = match (attempt_result, delivery.channel) {
        (
            AttemptResult::Status {
                code: c @ 200..=299,
                ..
            },
            _,
        ) => (Some(c), None),
        (AttemptResult::Status { code, .. }, Channel::Slack) => {
            (Some(code), Some(format!("Slack answered {code}{}", said())))
        }
        (AttemptResult::Status { code, .. }, Channel::Email) => (
            Some(code),
            Some(format!("the SMTP server answered {code}{}", said())),
        ),
        (AttemptResult::Status { code, .. }, _) => {
            (Some(code), Some(format!("the receiver answered {code}")))
        }
        (AttemptResult::NoResponse { error }, _) => (None, Some(error)),
    };
    let log = AttemptLog {
        attempted_at,
        status_code,
        latency_ms,
        response_body: response_body.map(storable_text),
        error: error.map(storable_text),
    };
    outcome(delivery, Settlement::from(decision), Some(log))
}

/// A delivery whose secrets cannot be opened is not sent unsigned: the attempt fails with
/// the reason, and is retried by the endpoint's policy (a restart with the missing key in
/// `RELAIS_PREVIOUS_SECRET_KEYS` lets the next attempt through).
fn unsigned(
    ctx: &Context,
    delivery: &ClaimedDelivery,
    why: String,
    now: DateTime<Utc>,
) -> DeliveryOutcome {
    tracing::warn!(delivery_id = %delivery.id, reason = %why, "cannot sign a delivery");
    let error = format!("not sent: {why}");
    settle(
        ctx,
        delivery,
        AttemptResult::NoResponse { error },
        None,
        now,
        0,
    )
}

fn describe_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the receiver did not answer within the delivery timeout".to_owned()
    } else if e.is_connect() {
        format!("could not connect: {}", root_cause(&e))
    } else {
        format!("request failed: {}", root_cause(&e))
    }
}

async fn read_truncated(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < RESPONSE_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(RESPONSE_BODY_LIMIT);
    String::from_utf8_lossy(&body).into_owned()
}

async fn record(
    deliveries: Deliveries,
    signals: Signals,
    mut outcomes: mpsc::UnboundedReceiver<Settled>,
    disable_after: Duration,
    next_due: Arc<AtomicI64>,
) {
    while let Some(first) = outcomes.recv().await {
        let mut settled = vec![first];
        while settled.len() < RECORD_BATCH {
            match outcomes.try_recv() {
                Ok(o) => settled.push(o),
                Err(_) => break,
            }
        }
        let batch: Vec<DeliveryOutcome> = settled.iter().map(|s| s.outcome.clone()).collect();
        let mut wake = false;
        for o in &batch {
            if let Settlement::RetryAt(t) | Settlement::Released(t) = o.settlement {
                next_due.fetch_min(t.timestamp_millis(), Ordering::AcqRel);
                wake = true;
            }
        }
        let mut tries = 0;
        loop {
            match deliveries
                .record_outcomes(&batch, clock::now(), disable_after)
                .await
            {
                Ok(()) => {
                    count_outcomes(&settled, clock::now());
                    break;
                }
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %e, "recording delivery outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    // The leases expire and the deliveries are sent again: at least once.
                    tracing::error!(error = %e, count = batch.len(), "could not record delivery outcomes");
                    break;
                }
            }
        }
        // Committed (or given up on): the attempts' concurrency slots are free again.
        drop(settled);
        if wake {
            signals.deliveries_available().notify_waiters();
        }
    }
}

/// `relais_delivery_attempts_total{channel, result}`, the deliveries that ended
/// (`relais_deliveries_total{channel, outcome}`), and the time from an event's writing to
/// its delivery (`relais_delivery_latency_seconds{channel}`), once recorded.
fn count_outcomes(settled: &[Settled], now: DateTime<Utc>) {
    for s in settled {
        let o = &s.outcome;
        let channel = o.channel.as_str();
        if o.attempt.is_some() {
            let result = if o.succeeded() { "succeeded" } else { "failed" };
            metrics::counter!("relais_delivery_attempts_total", "channel" => channel, "result" => result)
                .increment(1);
        }
        let ended = match o.settlement {
            Settlement::Delivered => Some("delivered"),
            Settlement::Failed | Settlement::FailedAndDisable | Settlement::Skipped(_) => {
                Some("failed")
            }
            Settlement::RetryAt(_) | Settlement::Released(_) => None,
        };
        if let Some(outcome) = ended {
            metrics::counter!("relais_deliveries_total", "channel" => channel, "outcome" => outcome)
                .increment(1);
        }
        if o.succeeded() {
            let latency = (now - s.queued_at).to_std().unwrap_or_default();
            metrics::histogram!("relais_delivery_latency_seconds", "channel" => channel)
                .record(latency.as_secs_f64());
        }
    }
}

async fn prune(deliveries: Deliveries, retention: Duration) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        ticker.tick().await;
        let before: DateTime<Utc> = clock::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(30));
        match deliveries.prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned settled deliveries and old events"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}
