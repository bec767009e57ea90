//! API tokens and their scopes.

use sha2::{Digest, Sha256};

use super::fields::checked_name;
use super::ids::{OperationId, ProjectId, TenantId, TokenId};
use super::portal::Portal;
use super::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    OperationsRead,
    OperationsWrite,
    WebhooksManage,
    Workers,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Self::OperationsRead,
        Self::OperationsWrite,
        Self::WebhooksManage,
        Self::Workers,
        Self::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperationsRead => "operations:read",
            Self::OperationsWrite => "operations:write",
            Self::WebhooksManage => "webhooks:manage",
            Self::Workers => "workers",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Parses a comma-separated list such as `operations:read,workers`.
    pub fn parse_list(list: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = Scope::parse(part).ok_or_else(|| {
                let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope `{part}`; known scopes: {}", known.join(", "))
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required".into());
        }
        Ok(scopes)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Who a request is: what its token was granted.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub token_id: TokenId,
    pub tenant_id: TenantId,
    /// `None`: the token serves every project of its tenant.
    pub project_id: Option<ProjectId>,
    pub scopes: Vec<Scope>,
    /// A push worker's callback token serves one operation only.
    pub operation: Option<OperationId>,
    /// The name the token was given when it was created, if any.
    pub token_name: Option<String>,
    /// A portal link's grant: the project's webhook endpoints only (`portal::reaches`).
    pub portal: Option<Portal>,
}

pub const MAX_TOKEN_NAME_LEN: usize = 100;

/// A token's name, for people reading who did what: printable, at most
/// [`MAX_TOKEN_NAME_LEN`] characters.
pub fn checked_token_name(value: &str, field: &str) -> Result<String, FieldError> {
    let name = checked_name(value, field, MAX_TOKEN_NAME_LEN)?;
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name)
}

impl Principal {
    /// A push worker's callback token: the `workers` scope, for one operation.
    pub fn for_callback(
        tenant_id: TenantId,
        project_id: ProjectId,
        operation: OperationId,
    ) -> Self {
        Principal {
            token_id: TokenId::from_uuid(operation.uuid()),
            tenant_id,
            project_id: Some(project_id),
            scopes: vec![Scope::Workers],
            operation: Some(operation),
            token_name: None,
            portal: None,
        }
    }

    /// A portal link's holder: the project's webhooks, as `webhooks:manage` allows.
    pub fn for_portal(portal: Portal) -> Self {
        Principal {
            token_id: TokenId::from_uuid(portal.link.uuid()),
            tenant_id: portal.tenant,
            project_id: Some(portal.project),
            scopes: vec![Scope::WebhooksManage],
            operation: None,
            token_name: Some(portal.link.to_string()),
            portal: Some(portal),
        }
    }

    /// Who did something, as answers say it (`cancelledBy`): the token's name, or its id
    /// for a token created without one.
    pub fn acting_as(&self) -> String {
        self.token_name
            .clone()
            .unwrap_or_else(|| self.token_id.to_string())
    }

    /// Whether this caller may report on (or read) that operation.
    pub fn may_act_on(&self, operation: OperationId) -> bool {
        self.operation.is_none_or(|o| o == operation)
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    pub fn can_see(&self, tenant: TenantId, project: ProjectId) -> bool {
        self.tenant_id == tenant && self.project_id.is_none_or(|p| p == project)
    }
}

/// A freshly minted bearer token: shown once, then only its hash is kept.
pub struct NewToken {
    pub secret: String,
    pub hash: String,
}

impl NewToken {
    /// A token made of 32 random bytes, drawn by the caller from a secure source.
    pub fn from_random(bytes: [u8; 32]) -> Self {
        let secret = format!("rls_{}", hex::encode(bytes));
        let hash = hash_token(&secret);
        Self { secret, hash }
    }
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_and_reject_unknown_names() {
        let scopes = Scope::parse_list("operations:read, workers,workers").unwrap();
        assert_eq!(scopes, vec![Scope::OperationsRead, Scope::Workers]);
        assert!(Scope::parse_list("operations:delete").is_err());
        assert!(Scope::parse_list(" , ").is_err());
    }

    #[test]
    fn admin_implies_every_scope() {
        let p = Principal {
            token_id: TokenId::new(),
            tenant_id: TenantId::new(),
            project_id: None,
            scopes: vec![Scope::Admin],
            operation: None,
            token_name: None,
            portal: None,
        };
        assert!(Scope::ALL.iter().all(|s| p.has_scope(*s)));
    }

    #[test]
    fn a_project_bound_token_sees_only_its_project() {
        let tenant = TenantId::new();
        let project = ProjectId::new();
        let p = Principal {
            token_id: TokenId::new(),
            tenant_id: tenant,
            project_id: Some(project),
            scopes: vec![Scope::OperationsRead],
            operation: None,
            token_name: Some("ops".into()),
            portal: None,
        };
        assert_eq!(p.acting_as(), "ops");
        assert!(p.can_see(tenant, project));
        assert!(!p.can_see(tenant, ProjectId::new()));
        assert!(!p.can_see(TenantId::new(), project));
    }

    #[test]
    fn a_callback_token_reaches_one_operation_only() {
        let op = OperationId::new();
        let p = Principal::for_callback(TenantId::new(), ProjectId::new(), op);
        assert!(p.may_act_on(op));
        assert!(!p.may_act_on(OperationId::new()));
        assert!(p.has_scope(Scope::Workers));
        assert!(!p.has_scope(Scope::OperationsWrite));
    }

    #[test]
    fn an_unnamed_token_acts_as_its_id_and_names_are_printable() {
        let p = Principal::for_callback(TenantId::new(), ProjectId::new(), OperationId::new());
        assert_eq!(p.acting_as(), p.token_id.to_string());
        assert_eq!(
            checked_token_name(" ci deploy ", "name").unwrap(),
            "ci deploy"
        );
        assert!(checked_token_name("  ", "name").is_err());
        assert!(checked_token_name("a\u{7}b", "name").is_err());
        assert!(checked_token_name(&"x".repeat(MAX_TOKEN_NAME_LEN + 1), "name").is_err());
    }

    #[test]
    fn tokens_are_random_and_stored_as_their_sha256() {
        let a = NewToken::from_random(rand::random());
        let b = NewToken::from_random(rand::random());
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash_token(&a.secret));
        assert_eq!(a.hash.len(), 64);
    }
}
