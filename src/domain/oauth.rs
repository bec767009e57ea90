//! OAuth2 client credentials (RFC 6749 §4.4): a registered client trades its id and
//! secret for a short-lived access token, a signed JWT that works wherever an API token
//! does. What a client may ask for, the token it gets, the errors of §5.2, and reading a
//! token back are decided here; keys, times and random bytes come in as arguments.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::{hash_token, Scope};
use super::ids::{ClientId, ProjectId, TenantId};

const ISSUER: &str = "relais";
/// A JWT is three base64url parts; anything longer than this is not one of ours.
const MAX_TOKEN_LEN: usize = 4096;

/// A client's secret, drawn by the caller from a secure source; only its hash is kept.
pub struct NewClientSecret {
    pub secret: String,
    pub hash: String,
}

impl NewClientSecret {
    pub fn from_random(bytes: [u8; 32]) -> Self {
        let secret = format!("rlscs_{}", hex::encode(bytes));
        let hash = hash_token(&secret);
        NewClientSecret { secret, hash }
    }
}

/// A registered client, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub id: ClientId,
    pub tenant_id: TenantId,
    pub project_id: Option<ProjectId>,
    pub name: Option<String>,
    pub scopes: Vec<Scope>,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The errors of RFC 6749 §5.2, each with what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
        }
    }

    /// 401 for a client that failed to authenticate (with `WWW-Authenticate`), else 400.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient(_) => 401,
            _ => 400,
        }
    }
}

/// What a token request carries, once read from its form and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant_type: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
}

/// The parameters of a token request's form (each at most once, RFC 6749 §3.2) and its
/// `Authorization` header, read into a request: the client authenticates by HTTP Basic or
/// by `client_id` and `client_secret` in the body, not both.
pub fn token_request(
    form: &[(String, String)],
    authorization: Option<&str>,
) -> Result<TokenRequest, OAuthError> {
    let mut seen = std::collections::BTreeMap::new();
    for (name, value) in form {
        if seen.insert(name.as_str(), value.as_str()).is_some() {
            return Err(OAuthError::InvalidRequest(format!(
                "`{name}` is given more than once"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(OAuthError::InvalidRequest(format!(
                "`{name}` holds control characters"
            )));
        }
    }
    let grant_type = seen
        .get("grant_type")
        .ok_or_else(|| OAuthError::InvalidRequest("`grant_type` is missing".into()))?;
    if *grant_type != "client_credentials" {
        return Err(OAuthError::UnsupportedGrantType(format!(
            "only `client_credentials` is supported, not `{grant_type}`"
        )));
    }
    let in_body = (seen.get("client_id"), seen.get("client_secret"));
    let (client_id, client_secret) = match (authorization, in_body) {
        (Some(header), (None, None)) => basic(header)?,
        (Some(_), _) => {
            return Err(OAuthError::InvalidRequest(
                "authenticate the client one way only: HTTP Basic or the body's client_id and client_secret".into(),
            ))
        }
        (None, (Some(id), Some(secret))) => (id.to_string(), secret.to_string()),
        (None, _) => {
            return Err(OAuthError::InvalidClient(
                "no client authentication: send HTTP Basic, or client_id and client_secret"
                    .into(),
            ))
        }
    };
    Ok(TokenRequest {
        grant_type: grant_type.to_string(),
        client_id,
        client_secret,
        scope: seen.get("scope").map(|s| s.to_string()),
    })
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::InvalidClient("the Authorization header is not HTTP Basic".into());
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
        .ok_or_else(bad)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok((unescape(id), unescape(secret)))
}

/// The scopes granted: the client's, or the part of them asked for (`scope`, space
/// separated). Asking for more than the client has is `invalid_scope`.
pub fn granted_scopes(client: &[Scope], asked: Option<&str>) -> Result<Vec<Scope>, OAuthError> {
    let Some(asked) = asked.filter(|a| !a.trim().is_empty()) else {
        return Ok(client.to_vec());
    };
    let mut granted = Vec::new();
    for name in asked.split(' ').filter(|n| !n.is_empty()) {
        let scope = Scope::parse(name)
            .ok_or_else(|| OAuthError::InvalidScope(format!("unknown scope `{name}`")))?;
        if !client.contains(&scope) && !client.contains(&Scope::Admin) {
            return Err(OAuthError::InvalidScope(format!(
                "the client may not have `{name}`"
            )));
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted)
}

pub fn scope_string(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The client's id.
    pub sub: String,
    pub tid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// An access token read back: whose, for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub client: ClientId,
    pub tenant: TenantId,
    pub project: Option<ProjectId>,
    pub scopes: Vec<Scope>,
}

/// The key access tokens are signed with (HMAC-SHA256), shared by every replica.
#[derive(Clone)]
pub struct TokenKey {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        TokenKey {
            encoding: jsonwebtoken::EncodingKey::from_secret(secret),
            decoding: jsonwebtoken::DecodingKey::from_secret(secret),
        }
    }

    /// A signed access token for `client`, with the scopes granted, valid for `ttl`.
    pub fn issue(
        &self,
        client: &Client,
        scopes: &[Scope],
        now: DateTime<Utc>,
        ttl: Duration,
        jti: String,
    ) -> String {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: client.id.to_string(),
            tid: client.tenant_id.to_string(),
            pid: client.project_id.map(|p| p.to_string()),
            scope: scope_string(scopes),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl.as_secs() as i64,
            jti,
        };
        self.sign(&claims)
    }

    /// Signs any claims with this key (HS256).
    pub(super) fn sign<C: Serialize>(&self, claims: &C) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &self.encoding,
        )
        .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims of a token this key signed for `issuer`. Each kind of token has its own
    /// issuer, so one kind is never read as another. Expiry is the caller's to check,
    /// against its own clock.
    pub(super) fn verify<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
    ) -> Option<C> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_exp = false;
        validation.leeway = 0;
        jsonwebtoken::decode::<C>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// The token's claims if this key signed it, it is ours and it has not expired at
    /// `now` (no leeway: an expired token is refused at once).
    pub fn read(&self, token: &str, now: DateTime<Utc>) -> Option<AccessToken> {
        let claims: Claims = self.verify(token, ISSUER)?;
        if claims.exp <= now.timestamp() {
            return None;
        }
        Some(AccessToken {
            client: claims.sub.parse().ok()?,
            tenant: claims.tid.parse().ok()?,
            project: match claims.pid {
                Some(p) => Some(p.parse().ok()?),
                None => None,
            },
            scopes: claims
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(Scope::parse)
                .collect::<Option<Vec<_>>>()?,
        })
    }
}

/// Whether a bearer token has a JWT's shape (three dot-separated parts), so that it is
/// read as an access token rather than looked up as an API token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && !token.starts_with("rls")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(scopes: Vec<Scope>) -> Client {
        Client {
            id: ClientId::new(),
            tenant_id: TenantId::new(),
            project_id: Some(ProjectId::new()),
            name: Some("etl".into()),
            scopes,
            secret_hash: String::new(),
            created_at: Utc::now(),
            revoked_at: None,
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_token_request_authenticates_one_way_and_says_what_is_wrong() {
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "a"),
            ("client_secret", "b"),
        ]);
        let r = token_request(&body, None).unwrap();
        assert_eq!((r.client_id.as_str(), r.client_secret.as_str()), ("a", "b"));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("id%3Ax:s%20t")
        );
        let r =
            token_request(&form(&[("grant_type", "client_credentials")]), Some(&basic)).unwrap();
        assert_eq!(
            (r.client_id.as_str(), r.client_secret.as_str()),
            ("id:x", "s t")
        );
        let code =
            |f: &[(&str, &str)], h: Option<&str>| token_request(&form(f), h).unwrap_err().code();
        assert_eq!(code(&[], None), "invalid_request");
        assert_eq!(
            code(&[("grant_type", "password")], None),
            "unsupported_grant_type"
        );
        assert_eq!(
            code(&[("grant_type", "client_credentials")], None),
            "invalid_client"
        );
        assert_eq!(
            code(&[("grant_type", "client_credentials")], Some("Bearer x")),
            "invalid_client"
        );
        assert_eq!(
            code(
                &[
                    ("grant_type", "client_credentials"),
                    ("grant_type", "client_credentials")
                ],
                None
            ),
            "invalid_request"
        );
        assert_eq!(
            code(
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", "a"),
                    ("client_secret", "b")
                ],
                Some(&basic)
            ),
            "invalid_request"
        );
        assert_eq!(
            code(&[("grant_type", "client_credentials\u{0}")], None),
            "invalid_request"
        );
        assert_eq!(OAuthError::InvalidClient(String::new()).status(), 401);
        assert_eq!(OAuthError::InvalidScope(String::new()).status(), 400);
    }

    #[test]
    fn scopes_may_only_narrow() {
        let mine = [Scope::OperationsRead, Scope::OperationsWrite];
        assert_eq!(granted_scopes(&mine, None).unwrap(), mine);
        assert_eq!(
            granted_scopes(&mine, Some("operations:read")).unwrap(),
            [Scope::OperationsRead]
        );
        assert_eq!(
            granted_scopes(&mine, Some("admin")).unwrap_err().code(),
            "invalid_scope"
        );
        assert_eq!(
            granted_scopes(&mine, Some("everything"))
                .unwrap_err()
                .code(),
            "invalid_scope"
        );
        assert_eq!(
            granted_scopes(&[Scope::Admin], Some("workers")).unwrap(),
            [Scope::Workers]
        );
    }

    #[test]
    fn a_token_reads_back_until_it_expires_and_only_under_its_key() {
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef");
        let c = client(vec![Scope::OperationsRead, Scope::Workers]);
        let now = Utc::now();
        let token = key.issue(
            &c,
            &[Scope::OperationsRead],
            now,
            Duration::from_secs(60),
            "j1".into(),
        );
        assert!(looks_like_jwt(&token));
        let read = key.read(&token, now).unwrap();
        assert_eq!(read.client, c.id);
        assert_eq!(read.tenant, c.tenant_id);
        assert_eq!(read.project, c.project_id);
        assert_eq!(read.scopes, [Scope::OperationsRead]);
        assert_eq!(key.read(&token, now + chrono::Duration::seconds(60)), None);
        let other = TokenKey::new(b"another key, another key, another");
        assert_eq!(other.read(&token, now), None);
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 3, 'A');
        assert_eq!(key.read(&tampered, now), None);
        assert_eq!(key.read("a.b.c", now), None);
        assert!(!looks_like_jwt("rls_abc"));
        // A token that says `alg: none` is never accepted.
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(key.read(&none, now), None);
    }
}
