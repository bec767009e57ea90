//! Short-lived answers to questions every request asks: who a token is, whether a project
//! exists, how long an operation type usually takes. They trade a few seconds of
//! staleness for two to three fewer database round trips per request.

use std::time::Duration;

use moka::sync::Cache;

use std::sync::Arc;

use crate::domain::auth::Principal;
use crate::domain::ids::{ProjectId, TenantId, VitamTenantId};
use crate::domain::webhook::Webhook;

/// A token created with the CLI is usable at once; one removed from the database stops
/// working within this long.
pub const PRINCIPAL_TTL: Duration = Duration::from_secs(5);
const PROJECT_TTL: Duration = Duration::from_secs(60);
const ESTIMATE_TTL: Duration = Duration::from_secs(10);
/// A webhook changed through this process is forgotten at once; one changed through
/// another replica (or disabled by the dispatcher) is seen within this long.
const WEBHOOKS_TTL: Duration = Duration::from_secs(5);

pub struct Caches {
    pub principals: Cache<String, Principal>,
    /// Only projects known to exist are remembered; an unknown one is asked again.
    pub projects: Cache<(TenantId, ProjectId), ()>,
    pub estimates: Cache<(ProjectId, String), Duration>,
    /// A project's active webhooks, for counting who hears of a new operation.
    pub webhooks: Cache<ProjectId, Arc<Vec<Webhook>>>,
    /// Tenants' numbers for the `/v1` facade: a tenant's never changes.
    pub vitam_ids: Cache<TenantId, VitamTenantId>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            principals: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PRINCIPAL_TTL)
                .build(),
            projects: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PROJECT_TTL)
                .build(),
            estimates: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ESTIMATE_TTL)
                .build(),
            webhooks: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(WEBHOOKS_TTL)
                .build(),
            vitam_ids: Cache::builder().max_capacity(10_000).build(),
        }
    }
}

impl Caches {
    /// After a deletion: nothing cached may outlive what it was about.
    pub fn forget_all(&self) {
        self.principals.invalidate_all();
        self.projects.invalidate_all();
        self.estimates.invalidate_all();
        self.webhooks.invalidate_all();
        self.vitam_ids.invalidate_all();
    }
}
