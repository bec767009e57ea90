//! Portal links: a signed, expiring grant that lets the owner of a webhook endpoint manage
//! one project's webhooks (their deliveries, replays, secrets) in the console, and reach
//! nothing else. The grant is a JWT signed with the access tokens' key under an issuer of
//! its own, so it is never read as an access token, and its claims cannot be widened
//! without the key.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{PortalLinkId, ProjectId, TenantId};
use super::oauth::TokenKey;
use super::webhook::OWNER_LABEL;
use super::FieldError;

const ISSUER: &str = "relais-portal";

pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
pub const MIN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a portal token may go: the webhook endpoints of the project it names (the
/// tenant and project are checked as for any token), and the description of the token
/// itself. Everything else answers 404, as if it did not exist.
const WEBHOOKS: &str = "/api/{tenantId}/{projectId}/async/webhooks";
const WHOAMI: &str = "/api/whoami";

/// Whether a request matched to `route` (actix's pattern, `{…}` for parameters) is one a
/// portal token may make.
pub fn reaches(route: &str) -> bool {
    route == WHOAMI
        || route
            .strip_prefix(WEBHOOKS)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// How long a new link lives, from the request's `expiresIn` (seconds).
pub fn lifetime(expires_in: Option<u64>) -> Result<Duration, FieldError> {
    match expires_in {
        None => Ok(DEFAULT_TTL),
        Some(seconds) if (MIN_TTL.as_secs()..=MAX_TTL.as_secs()).contains(&seconds) => {
            Ok(Duration::from_secs(seconds))
        }
        Some(_) => Err(FieldError::new(
            "expiresIn",
            format!(
                "must be between {} and {} seconds",
                MIN_TTL.as_secs(),
                MAX_TTL.as_secs()
            ),
        )),
    }
}

/// A portal grant, read back from its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    pub link: PortalLinkId,
    pub tenant: TenantId,
    pub project: ProjectId,
    /// Only the endpoints whose `owner` label is this one; `None`: all the project's.
    pub owner: Option<String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    tid: String,
    pid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    own: Option<String>,
    iat: i64,
    exp: i64,
}

impl Portal {
    /// A new grant, `link`, on a project's webhooks (those of `owner` only, if given),
    /// valid for `ttl` from `now`.
    pub fn grant(
        link: PortalLinkId,
        tenant: TenantId,
        project: ProjectId,
        owner: Option<String>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Portal {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        Portal {
            link,
            tenant,
            project,
            owner,
            // Whole seconds, as the token carries them.
            expires_at: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now) + ttl,
        }
    }

    /// The grant as a token, signed with `key`.
    pub fn token(&self, key: &TokenKey, now: DateTime<Utc>) -> String {
        key.sign(&Claims {
            iss: ISSUER.to_owned(),
            sub: self.link.to_string(),
            tid: self.tenant.to_string(),
            pid: self.project.to_string(),
            own: self.owner.clone(),
            iat: now.timestamp(),
            exp: self.expires_at.timestamp(),
        })
    }

    /// The grant a token carries if `key` signed it as a portal token and it has not
    /// expired at `now`.
    pub fn read(key: &TokenKey, token: &str, now: DateTime<Utc>) -> Option<Portal> {
        let claims: Claims = key.verify(token, ISSUER)?;
        if claims.exp <= now.timestamp() {
            return None;
        }
        Some(Portal {
            link: claims.sub.parse().ok()?,
            tenant: claims.tid.parse().ok()?,
            project: claims.pid.parse().ok()?,
            owner: claims.own,
            expires_at: DateTime::from_timestamp(claims.exp, 0)?,
        })
    }
}

impl Portal {
    /// Whether the grant covers an endpoint with these labels.
    pub fn sees(&self, labels: &BTreeMap<String, String>) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|owner| labels.get(OWNER_LABEL) == Some(owner))
    }

    /// The labels of an endpoint made or changed through the grant: an owner's endpoint
    /// stays theirs (its `owner` label is set, and may not name another).
    pub fn stamp(&self, labels: &mut BTreeMap<String, String>) -> Result<(), FieldError> {
        let Some(owner) = &self.owner else {
            return Ok(());
        };
        match labels.get(OWNER_LABEL) {
            Some(given) if given != owner => Err(FieldError::new(
                format!("labels.{OWNER_LABEL}"),
                "must be this portal link's owner",
            )),
            _ => {
                labels.insert(OWNER_LABEL.to_owned(), owner.clone());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::oauth::Client;

    fn key() -> TokenKey {
        TokenKey::new(&[7; 32])
    }

    #[test]
    fn a_portal_token_reaches_the_webhooks_and_nothing_else() {
        for route in [
            "/api/{tenantId}/{projectId}/async/webhooks",
            "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}",
            "/api/{tenantId}/{projectId}/async/webhooks/{webhookId}/rotate-secret",
            "/api/whoami",
        ] {
            assert!(reaches(route), "{route}");
        }
        for route in [
            "/api/{tenantId}/{projectId}/async/operations",
            "/api/{tenantId}/{projectId}/async/operation/{operationId}",
            "/api/{tenantId}/{projectId}/async/webhooksx",
            "/api/{tenantId}/{projectId}/async/events/stream",
            "/api/{tenantId}/{projectId}/async/portal-links",
            "/api/{tenantId}/{projectId}/async/callbacks/secret",
            "/api/{tenantId}/{projectId}/async/integrations/slack",
            "/api/breakout/jobs",
            "/v1/tasks",
            "/api/whoami/",
            "",
        ] {
            assert!(!reaches(route), "{route}");
        }
    }

    #[test]
    fn a_grant_reads_back_until_it_expires() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let grant = Portal::grant(
            PortalLinkId::new(),
            TenantId::new(),
            ProjectId::new(),
            None,
            now,
            Duration::from_secs(3600),
        );
        let token = grant.token(&key(), now);
        assert_eq!(Portal::read(&key(), &token, now), Some(grant));
        let late = now + chrono::Duration::seconds(3600);
        assert_eq!(Portal::read(&key(), &token, late), None, "expired");
        assert_eq!(
            Portal::read(&TokenKey::new(&[8; 32]), &token, now),
            None,
            "another key"
        );
    }

    #[test]
    fn portal_tokens_and_access_tokens_are_never_taken_for_each_other() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let grant = Portal::grant(
            PortalLinkId::new(),
            TenantId::new(),
            ProjectId::new(),
            None,
            now,
            DEFAULT_TTL,
        );
        assert_eq!(key().read(&grant.token(&key(), now), now), None);
        let client = Client {
            id: crate::domain::ids::ClientId::new(),
            tenant_id: grant.tenant,
            project_id: Some(grant.project),
            scopes: vec![crate::domain::auth::Scope::WebhooksManage],
            name: None,
            secret_hash: String::new(),
            created_at: now,
            revoked_at: None,
        };
        let access = key().issue(&client, &client.scopes, now, DEFAULT_TTL, "jti".to_owned());
        assert_eq!(Portal::read(&key(), &access, now), None);
    }

    #[test]
    fn an_owners_link_sees_and_makes_only_their_endpoints() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let grant = Portal::grant(
            PortalLinkId::new(),
            TenantId::new(),
            ProjectId::new(),
            Some("acme".into()),
            now,
            DEFAULT_TTL,
        );
        assert_eq!(
            Portal::read(&key(), &grant.token(&key(), now), now),
            Some(grant.clone())
        );
        let labels = |owner: Option<&str>| -> BTreeMap<String, String> {
            owner
                .map(|o| (OWNER_LABEL.to_owned(), o.to_owned()))
                .into_iter()
                .collect()
        };
        assert!(grant.sees(&labels(Some("acme"))));
        assert!(!grant.sees(&labels(Some("other"))));
        assert!(!grant.sees(&labels(None)));
        let mut made = labels(None);
        grant.stamp(&mut made).unwrap();
        assert_eq!(made, labels(Some("acme")));
        assert_eq!(
            grant.stamp(&mut labels(Some("other"))).unwrap_err().field,
            "labels.owner"
        );
        let everyone = Portal {
            owner: None,
            ..grant
        };
        assert!(everyone.sees(&labels(None)) && everyone.sees(&labels(Some("other"))));
        let mut untouched = labels(None);
        everyone.stamp(&mut untouched).unwrap();
        assert!(untouched.is_empty());
    }

    #[test]
    fn a_link_lives_an_hour_unless_asked_otherwise_within_bounds() {
        assert_eq!(lifetime(None).unwrap(), DEFAULT_TTL);
        assert_eq!(lifetime(Some(60)).unwrap(), Duration::from_secs(60));
        for refused in [0, 59, MAX_TTL.as_secs() + 1, u64::MAX] {
            assert_eq!(lifetime(Some(refused)).unwrap_err().field, "expiresIn");
        }
    }
}
