//! The engine's clock: once a period, one look at what became due with nobody to
//! announce it, and a wake-up for each loop that has something to do. The loops
//! themselves wait for news (a commit here, another replica's notification) or for
//! this; none of them polls, so an idle server asks its database one question a period.
//!
//! The look is level-triggered: what it finds stays in the database until a loop acts on
//! it, so a wake-up a loop missed (busy at that instant) is given again next period.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock;
use crate::store::{DueNow, DueQuery, DueWork, Signals};

/// The longest period: a timeout or a retry delay runs out at most this late.
pub const MAX_PERIOD: Duration = Duration::from_secs(1);

/// Wake-ups of the loops that only the clock wakes. Each has one waiter, which gets a
/// stored permit if it was busy when woken.
#[derive(Default)]
pub struct Wakes {
    pub push: Notify,
    pub timeouts: Notify,
    pub expired_leases: Notify,
    pub notebooks: Notify,
    pub aging: Notify,
}

pub struct Watch {
    pub due: DueWork,
    pub signals: Signals,
    pub wakes: Arc<Wakes>,
    pub builtin_types: Vec<String>,
    pub period: Duration,
    /// Operations rank higher after waiting this long; looked for a quarter as often.
    pub priority_aging: Duration,
}

impl Watch {
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let aging_every = self.priority_aging / 4;
        let mut aging_looked = None::<Instant>;
        loop {
            // The tick's own time, not when the look ends: ticks a period apart are.
            let tick = ticker.tick().await;
            let aging = aging_looked
                .is_none_or(|at| tick - at >= aging_every)
                .then_some(self.priority_aging);
            let query = DueQuery {
                now: clock::now(),
                builtin_types: &self.builtin_types,
                aging,
            };
            let found = match self.due.look(query).await {
                Ok(found) => {
                    if aging.is_some() {
                        aging_looked = Some(tick);
                    }
                    found
                }
                Err(e) => {
                    // Each loop then looks for itself, and says what fails.
                    tracing::warn!(error = %e, "looking for due work failed; waking every loop");
                    DueNow::EVERYTHING
                }
            };
            self.wake(found);
        }
    }

    fn wake(&self, found: DueNow) {
        let DueNow {
            builtin_work,
            push_work,
            timeouts,
            expired_leases,
            batches,
            notebooks,
            aging,
            deliveries,
        } = found;
        if builtin_work {
            self.signals.work().wake_builtin();
        }
        if batches {
            self.signals.batches_to_schedule().notify_waiters();
        }
        if deliveries {
            self.signals.deliveries_available().notify_waiters();
        }
        for (due, wake) in [
            (push_work, &self.wakes.push),
            (timeouts, &self.wakes.timeouts),
            (expired_leases, &self.wakes.expired_leases),
            (notebooks, &self.wakes.notebooks),
            (aging, &self.wakes.aging),
        ] {
            if due {
                wake.notify_one();
            }
        }
    }
}
