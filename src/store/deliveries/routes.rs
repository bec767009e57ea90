//! A project's active webhooks as routing reads them, kept by this process between
//! transactions. Every transaction that writes events routes them, and reading the
//! webhooks was one statement (a round trip, and a sixth of a progress report's
//! statements). Each change to a project's webhooks moves its `webhooks_version` (a
//! trigger, so that no write path can forget it). A transaction that read the version
//! in a statement it runs anyway (the group commit's lock) routes with the webhooks kept
//! for that version: what reading them in that statement would have given, as no change
//! to them leaves the version where it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::ids::ProjectId;
use crate::domain::webhook::Webhook;

/// Active webhooks, each with its secrets as stored (sealed).
pub(in crate::store) type RoutedWebhooks = Arc<[(Webhook, Option<String>)]>;

/// Each project's `webhooks_version` as a transaction read it.
pub(in crate::store) type WebhookVersions = HashMap<ProjectId, i64>;

/// Webhooks kept in all: beyond, the kept lists are dropped and kept again as they are
/// read, so memory stays bounded whatever the number of projects and webhooks.
const MOST_KEPT: usize = 4_096;

#[derive(Default)]
pub(in crate::store) struct RouteCache {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_project: HashMap<ProjectId, (i64, RoutedWebhooks)>,
    webhooks: usize,
}

impl RouteCache {
    /// The webhooks kept for `project` at `version`, if any.
    pub(in crate::store) fn get(&self, project: ProjectId, version: i64) -> Option<RoutedWebhooks> {
        let kept = self.kept.lock().expect("route cache");
        kept.by_project
            .get(&project)
            .filter(|(kept_version, _)| *kept_version == version)
            .map(|(_, webhooks)| webhooks.clone())
    }

    /// Keeps what was read for `project` at `version`, unless a newer version is kept.
    pub(in crate::store) fn keep(
        &self,
        project: ProjectId,
        version: i64,
        webhooks: RoutedWebhooks,
    ) {
        if webhooks.len() > MOST_KEPT {
            return;
        }
        let mut kept = self.kept.lock().expect("route cache");
        if let Some((kept_version, old)) = kept.by_project.get(&project) {
            if *kept_version > version {
                return;
            }
            let old = old.len();
            kept.webhooks -= old;
        }
        if kept.webhooks + webhooks.len() > MOST_KEPT {
            kept.by_project.clear();
            kept.webhooks = 0;
        }
        kept.webhooks += webhooks.len();
        kept.by_project.insert(project, (version, webhooks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhooks(project: ProjectId, n: usize) -> RoutedWebhooks {
        let at = chrono::DateTime::from_timestamp_millis(0).unwrap();
        (0..n)
            .map(|i| {
                let webhook = Webhook {
                    id: crate::domain::ids::WebhookId::new(),
                    tenant_id: crate::domain::ids::TenantId::new(),
                    project_id: project,
                    url: format!("https://example.com/{i}"),
                    name: String::new(),
                    events: Vec::new(),
                    filters: Default::default(),
                    retry_policy: crate::domain::retry::RetryPolicy::WEBHOOK_DEFAULT,
                    headers: Default::default(),
                    rate_limit: None,
                    labels: Default::default(),
                    secrets: Vec::new(),
                    status: crate::domain::webhook::WebhookStatus::Active,
                    disabled_reason: None,
                    failing_since: None,
                    created_at: at,
                    updated_at: at,
                };
                (webhook, None)
            })
            .collect()
    }

    #[test]
    fn kept_webhooks_serve_only_their_own_version() {
        let cache = RouteCache::default();
        let project = ProjectId::new();
        assert!(cache.get(project, 0).is_none());
        cache.keep(project, 3, webhooks(project, 2));
        assert_eq!(cache.get(project, 3).map(|w| w.len()), Some(2));
        assert!(cache.get(project, 4).is_none());
        assert!(cache.get(project, 2).is_none());
        // A slower reader's older version never replaces a newer one.
        cache.keep(project, 2, webhooks(project, 5));
        assert_eq!(cache.get(project, 3).map(|w| w.len()), Some(2));
        // A project with no webhook is kept too: it is the common case.
        let empty = ProjectId::new();
        cache.keep(empty, 0, webhooks(empty, 0));
        assert_eq!(cache.get(empty, 0).map(|w| w.len()), Some(0));
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_webhooks() {
        let cache = RouteCache::default();
        let projects: Vec<ProjectId> = (0..40).map(|_| ProjectId::new()).collect();
        for project in &projects {
            cache.keep(*project, 1, webhooks(*project, 200));
            let kept = cache.kept.lock().unwrap();
            assert!(kept.webhooks <= MOST_KEPT);
            assert_eq!(
                kept.webhooks,
                kept.by_project
                    .values()
                    .map(|(_, w)| w.len())
                    .sum::<usize>()
            );
        }
        // The last one read is always kept; a list larger than the bound never is.
        assert!(cache.get(projects[39], 1).is_some());
        let large = ProjectId::new();
        cache.keep(large, 1, webhooks(large, MOST_KEPT + 1));
        assert!(cache.get(large, 1).is_none());
    }
}
