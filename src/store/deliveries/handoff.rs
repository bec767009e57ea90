//! Deliveries handed straight to this process's dispatcher by the transaction that
//! queues them. They are written already leased to it and given to it once the
//! transaction commits, so they cost no claim, and a transaction that fails drops them
//! with the places they hold. Only as many are handed off as the dispatcher has free
//! slots for, or free places to wait in memory for one (shared with the dispatcher's
//! claims, which take them first when they wait for them, so that what waits in the
//! outbox keeps its turn); the others wait in the outbox for a claim, as everything does
//! when no dispatcher runs here. A process that dies with deliveries handed to it leaves
//! them leased, and their leases expire as a claim's would; those that were only waiting
//! were never sent.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::{open_secret_versions, ClaimedDelivery};
use crate::domain::delivery::Channel;
use crate::domain::ids::DeliveryId;
use crate::domain::webhook::Webhook;
use crate::store::events::StagedEvent;
use crate::store::sealed::{webhook_place, Sealer};

/// Where a dispatcher takes deliveries handed to it.
pub struct HandoffSink {
    /// The dispatcher's slots: a delivery handed off holds one from before its row is
    /// written (or from when it stops waiting) until its outcome is recorded, as a
    /// claimed one does.
    in_flight: Arc<Semaphore>,
    /// Places to wait in memory for a slot, for deliveries handed off or claimed while
    /// every slot is taken.
    waiting: Arc<Semaphore>,
    lease: chrono::Duration,
    sealer: Sealer,
    sender: mpsc::UnboundedSender<Vec<Handed>>,
}

/// A delivery handed to the dispatcher, with the place it holds.
pub struct Handed {
    pub delivery: ClaimedDelivery,
    pub held: Held,
}

/// What a handed-off delivery holds of the dispatcher's.
pub enum Held {
    /// A slot: it may be sent at once.
    Slot(OwnedSemaphorePermit),
    /// A place among those waiting for a slot.
    Waiting(OwnedSemaphorePermit),
}

/// What one transaction hands off: given to the dispatcher after the commit.
#[derive(Default)]
pub struct HandedOff(Vec<Handed>);

impl std::fmt::Debug for HandedOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HandedOff({})", self.0.len())
    }
}

impl HandedOff {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn push(&mut self, handed: Handed) {
        self.0.push(handed);
    }

    pub(crate) fn absorb(&mut self, other: HandedOff) {
        self.0.extend(other.0);
    }

    /// The leases they were written under, each once.
    pub(crate) fn lease_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .0
            .iter()
            .map(|h| h.delivery.lease_token.clone())
            .collect();
        tokens.sort();
        tokens.dedup();
        tokens
    }
}

/// A lease granted by a transaction to the dispatcher of its process.
pub(super) struct HandoffLease<'a> {
    sink: &'a HandoffSink,
    pub(super) token: String,
    pub(super) until: DateTime<Utc>,
    now: DateTime<Utc>,
}

impl HandoffSink {
    pub(super) fn new(
        in_flight: Arc<Semaphore>,
        waiting: Arc<Semaphore>,
        lease: std::time::Duration,
        sealer: Sealer,
    ) -> (HandoffSink, mpsc::UnboundedReceiver<Vec<Handed>>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let sink = HandoffSink {
            in_flight,
            waiting,
            lease: chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60)),
            sealer,
            sender,
        };
        (sink, receiver)
    }

    /// The lease of a transaction that queues deliveries at `now`.
    pub(super) fn lease(&self, now: DateTime<Utc>) -> HandoffLease<'_> {
        HandoffLease {
            sink: self,
            token: format!("dl_{}", uuid::Uuid::new_v4().simple()),
            until: now + self.lease,
            now,
        }
    }

    /// Gives the dispatcher what a committed transaction handed off; gives it back if
    /// the dispatcher stopped meanwhile.
    pub(crate) fn deliver(&self, handed: HandedOff) -> std::result::Result<(), HandedOff> {
        if handed.is_empty() {
            return Ok(());
        }
        self.sender
            .send(handed.0)
            .map_err(|unsent| HandedOff(unsent.0))
    }
}

impl HandoffLease<'_> {
    /// Hands the delivery `id` of `staged`'s event to `webhook` off, if the dispatcher
    /// has a free slot or a free place to wait for one. `sealed`: the webhook's secrets
    /// as stored. Never fails the transaction that queues it: secrets that cannot be
    /// opened fail only the delivery, and without the keys to open anything it stays in
    /// the outbox.
    pub(super) fn take(
        &self,
        id: DeliveryId,
        staged: &StagedEvent,
        webhook: &Webhook,
        url: &str,
        sealed: Option<&str>,
    ) -> Option<Handed> {
        // A slot is free only while nobody waits for one (the semaphore serves waiters
        // first), so what is handed off never overtakes what waits.
        let held = match self.sink.in_flight.clone().try_acquire_owned() {
            Ok(slot) => Held::Slot(slot),
            Err(_) => Held::Waiting(self.sink.waiting.clone().try_acquire_owned().ok()?),
        };
        let secrets = open_secret_versions(
            &self.sink.sealer,
            sealed,
            &webhook_place(&webhook.id.db()),
            "secrets",
        )
        .ok()?;
        let event = &staged.event;
        let request = staged.request.as_ref();
        let delivery = ClaimedDelivery {
            id,
            lease_token: self.token.clone(),
            lease_expires_at: self.until,
            channel: Channel::Webhook,
            url: url.to_owned(),
            webhook_id: Some(webhook.id),
            tenant_id: event.tenant_id,
            project_id: event.project_id,
            attempts: 0,
            queued_at: self.now,
            event_id: event.id.to_string(),
            request_id: request.map(|r| r.id.to_string()),
            traceparent: request.and_then(|r| r.traceparent.as_deref().map(str::to_owned)),
            payload: staged.payload().to_owned(),
            headers: webhook.headers.clone(),
            secrets,
            retry_policy: webhook.retry_policy,
            endpoint_active: true,
            outgoing: None,
            rate_limit: webhook.rate_limit,
            endpoint_failing: webhook.failing_since.is_some(),
        };
        Some(Handed { delivery, held })
    }
}
