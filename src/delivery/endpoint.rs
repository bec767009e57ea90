//! One endpoint as the dispatcher sees it: its slots (as many as its limit, which its
//! answers move), how long it takes to answer, the deliveries waiting for it, and when the
//! ones it could not take soon are due again. The rules are `domain::endpoint_limit`'s.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock;
use crate::domain::endpoint_limit::{
    expected_answer, next_limit, parked_until, typical_answer, waits_in_memory, EndpointBounds,
    Load, LONGEST_WAIT,
};

/// How long a delivery waits in memory for its busy endpoint, at most, before going back
/// to the queue: twice the wait it expected.
const ENDPOINT_WAIT: Duration = LONGEST_WAIT.saturating_mul(2);

pub(super) struct Endpoint {
    slots: Arc<Semaphore>,
    bounds: EndpointBounds,
    learned: Mutex<Learned>,
}

/// What the endpoint's answers and the deliveries for it have shown so far.
struct Learned {
    limit: usize,
    /// Deliveries waiting in memory for one of its slots.
    waiting: usize,
    answer_time: Option<Duration>,
    /// Since when a delivery has found its slots all taken with no answer back since.
    silent_since: Option<Instant>,
    /// When the last delivery sent back to the queue for it is due.
    parked_until: Option<DateTime<Utc>>,
}

/// One of an endpoint's slots. It keeps the endpoint remembered (`SharedByKey` forgets
/// only what nobody holds), so that a slot out never lets a new limit start beside it.
pub(super) struct EndpointSlot {
    _permit: OwnedSemaphorePermit,
    _endpoint: Arc<Endpoint>,
}

/// A delivery's turn at its endpoint.
pub(super) enum Turn {
    /// A slot; `waited`: whether it had to wait for it.
    Now { slot: EndpointSlot, waited: bool },
    /// None soon: back to the queue, due then.
    Later(DateTime<Utc>),
}

impl Endpoint {
    pub(super) fn new(bounds: EndpointBounds) -> Self {
        Endpoint {
            slots: Arc::new(Semaphore::new(bounds.start)),
            bounds,
            learned: Mutex::new(Learned {
                limit: bounds.start,
                waiting: 0,
                answer_time: None,
                silent_since: None,
                parked_until: None,
            }),
        }
    }

    fn learned(&self) -> MutexGuard<'_, Learned> {
        self.learned.lock().expect("endpoint state")
    }

    /// A slot free now; or one within `ENDPOINT_WAIT`, when the wait to expect is short;
    /// otherwise, when to try again.
    pub(super) async fn turn(self: &Arc<Self>) -> Turn {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return self.slot(permit, false);
        }
        {
            let mut learned = self.learned();
            let silent_since = *learned.silent_since.get_or_insert_with(Instant::now);
            let expected = expected_answer(learned.answer_time, silent_since.elapsed());
            if !waits_in_memory(learned.waiting, learned.limit, expected) {
                return Turn::Later(learned.park(expected));
            }
            learned.waiting += 1;
        }
        // Counted out however the wait ends, dropped mid-way included.
        let _waiting = Waiting(self);
        match tokio::time::timeout(ENDPOINT_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => self.slot(permit, true),
            _ => {
                let mut learned = self.learned();
                let silent_for = learned.silent_since.map(|at| at.elapsed());
                let expected =
                    expected_answer(learned.answer_time, silent_for.unwrap_or(ENDPOINT_WAIT));
                Turn::Later(learned.park(expected))
            }
        }
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit, waited: bool) -> Turn {
        let slot = EndpointSlot {
            _permit: permit,
            _endpoint: self.clone(),
        };
        Turn::Now { slot, waited }
    }

    /// Learns from an answer: how long it took, and what it says of the load, which moves
    /// the limit. Slots taken back while they are out are forgotten as they come back,
    /// ahead of the sends waiting for them.
    pub(super) fn answered(&self, load: Load, latency: Duration, waited: bool) {
        let mut learned = self.learned();
        learned.answer_time = Some(typical_answer(learned.answer_time, latency));
        learned.silent_since = None;
        let limit = learned.limit;
        let next = next_limit(limit, self.bounds, load, waited);
        if next > limit {
            self.slots.add_permits(next - limit);
        } else if next < limit {
            let owed = limit - next;
            let out = owed - self.slots.forget_permits(owed);
            if out > 0 {
                let slots = self.slots.clone();
                tokio::spawn(async move {
                    if let Ok(taken) = slots.acquire_many_owned(out as u32).await {
                        taken.forget();
                    }
                });
            }
        }
        learned.limit = next;
    }
}

impl Learned {
    /// When a delivery sent back to the queue is due, after the others parked, at the pace
    /// of an answer every `expected` per slot.
    fn park(&mut self, expected: Duration) -> DateTime<Utc> {
        let at = parked_until(self.parked_until, clock::now(), self.limit, expected);
        self.parked_until = Some(at);
        at
    }
}

struct Waiting<'a>(&'a Endpoint);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.learned().waiting -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::{SharedByKey, KEPT_BEFORE_PRUNING};

    fn now_slot(turn: Turn) -> (EndpointSlot, bool) {
        match turn {
            Turn::Now { slot, waited } => (slot, waited),
            Turn::Later(at) => panic!("sent back to the queue until {at}"),
        }
    }

    #[tokio::test]
    async fn an_endpoint_busy_while_others_are_forgotten_keeps_its_limit() {
        let endpoints: SharedByKey<String, Endpoint> = SharedByKey::default();
        let one = || Endpoint::new(EndpointBounds::one_at_a_time());
        let (busy, waited) = now_slot(endpoints.get("busy", one).turn().await);
        assert!(!waited);
        for i in 0..KEPT_BEFORE_PRUNING * 3 {
            endpoints.get(format!("https://example.com/callback/{i}").as_str(), one);
        }
        assert!(
            endpoints.len() <= KEPT_BEFORE_PRUNING + 1,
            "{}",
            endpoints.len()
        );
        // The busy endpoint was kept, so its limit still holds.
        let again = endpoints.get("busy", one);
        assert!(again.slots.clone().try_acquire_owned().is_err());
        drop(busy);
        assert!(again.slots.clone().try_acquire_owned().is_ok());
    }

    #[tokio::test]
    async fn an_endpoints_slots_follow_its_limit_up_and_down() {
        let endpoint = Arc::new(Endpoint::new(EndpointBounds::up_to(8)));
        let quick = Duration::from_millis(5);
        let mut out = Vec::new();
        for _ in 0..2 {
            out.push(now_slot(endpoint.turn().await).0);
        }
        assert!(endpoint.slots.try_acquire().is_err(), "two at first");
        // Quick answers while deliveries wait earn slots, up to the most.
        for _ in 0..10 {
            endpoint.answered(Load::Light, quick, true);
        }
        assert_eq!(endpoint.learned().limit, 8);
        assert_eq!(endpoint.slots.available_permits(), 6);
        for _ in 0..6 {
            out.push(now_slot(endpoint.turn().await).0);
        }
        // Strain while all eight are out: the slots taken back are forgotten as they
        // come home, before anyone else gets one.
        for _ in 0..10 {
            endpoint.answered(Load::Strained, quick, true);
        }
        assert_eq!(endpoint.learned().limit, 2);
        out.truncate(1);
        tokio::task::yield_now().await;
        let free = endpoint.slots.available_permits();
        assert_eq!(free, 1, "one of the two out again, after the strain");
    }

    #[tokio::test]
    async fn a_busy_slow_endpoints_deliveries_go_back_to_the_queue_spaced_at_its_pace() {
        let endpoint = Arc::new(Endpoint::new(EndpointBounds::up_to(8)));
        let _out: Vec<_> = [endpoint.turn().await, endpoint.turn().await]
            .into_iter()
            .map(now_slot)
            .collect();
        // Two answers a second, at two at a time.
        endpoint.answered(Load::Steady, Duration::from_secs(1), true);
        let before = clock::now();
        let mut due = Vec::new();
        for _ in 0..3 {
            match endpoint.turn().await {
                Turn::Later(at) => due.push(at),
                Turn::Now { .. } => panic!("no slot is free"),
            }
        }
        assert!(
            due[0] >= before + chrono::Duration::milliseconds(500),
            "{due:?}"
        );
        assert_eq!(due[1] - due[0], chrono::Duration::milliseconds(500));
        assert_eq!(due[2] - due[1], chrono::Duration::milliseconds(500));
        assert_eq!(endpoint.learned().waiting, 0);
    }

    #[tokio::test]
    async fn an_endpoint_silent_with_its_slots_taken_is_taken_for_slow() {
        let endpoint = Arc::new(Endpoint::new(EndpointBounds::one_at_a_time()));
        let (_out, _) = now_slot(endpoint.turn().await);
        // The first delivery to find the slot taken starts the silence, and waits.
        let first = {
            let endpoint = endpoint.clone();
            tokio::spawn(async move { endpoint.turn().await })
        };
        tokio::time::sleep(LONGEST_WAIT + Duration::from_millis(50)).await;
        // Nothing back for longer than a wait may be: the next goes back to the queue,
        // and so does the first, after twice the wait it expected.
        assert!(matches!(endpoint.turn().await, Turn::Later(_)));
        assert!(matches!(first.await.unwrap(), Turn::Later(_)));
        assert_eq!(endpoint.learned().waiting, 0);
    }

    #[tokio::test]
    async fn an_answer_ends_the_silence() {
        let endpoint = Arc::new(Endpoint::new(EndpointBounds::one_at_a_time()));
        let (out, _) = now_slot(endpoint.turn().await);
        let waiter = {
            let endpoint = endpoint.clone();
            tokio::spawn(async move { endpoint.turn().await })
        };
        tokio::time::sleep(LONGEST_WAIT + Duration::from_millis(50)).await;
        // The answer comes back, quick: the next delivery waits for the slot again.
        endpoint.answered(Load::Steady, Duration::from_millis(5), true);
        drop(out);
        let (_slot, waited) = now_slot(waiter.await.unwrap());
        assert!(waited);
        let next = {
            let endpoint = endpoint.clone();
            tokio::spawn(async move { endpoint.turn().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(endpoint.learned().waiting, 1, "waiting, not parked");
        next.abort();
    }

    #[tokio::test]
    async fn a_quick_endpoints_deliveries_wait_for_a_slot_and_are_counted_out() {
        let endpoint = Arc::new(Endpoint::new(EndpointBounds::up_to(4)));
        let (slot, _) = now_slot(endpoint.turn().await);
        endpoint.answered(Load::Light, Duration::from_millis(5), false);
        let waiter = {
            let endpoint = endpoint.clone();
            tokio::spawn(async move { endpoint.turn().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(endpoint.learned().waiting, 1);
        drop(slot);
        let (_slot, waited) = now_slot(waiter.await.unwrap());
        assert!(waited);
        assert_eq!(endpoint.learned().waiting, 0);
    }
}
