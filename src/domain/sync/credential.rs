//! A project's credentials for the sources its syncs read: a bearer token, or one header
//! and its value. Stored sealed and never shown again; a sync names the one it sends.

use crate::domain::FieldError;

const MAX_SECRET_LEN: usize = 8192;
const MAX_HEADER_NAME_LEN: usize = 100;

/// Headers the HTTP client sets itself, or that would change how the request is framed
/// or routed: a credential cannot set them.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Bearer { token: String },
    Header { header: String, value: String },
}

// The secret never reaches a log line, even through `{:?}`.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer { .. } => f.write_str("Bearer(…)"),
            Self::Header { header, .. } => write!(f, "Header({header}: …)"),
        }
    }
}

impl Secret {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bearer { .. } => "bearer",
            Self::Header { .. } => "header",
        }
    }

    /// The header name, which is not secret (lists show it).
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Self::Bearer { .. } => None,
            Self::Header { header, .. } => Some(header),
        }
    }

    /// The header a request carries.
    pub fn header(&self) -> (String, String) {
        match self {
            Self::Bearer { token } => ("authorization".to_owned(), format!("Bearer {token}")),
            Self::Header { header, value } => (header.to_ascii_lowercase(), value.clone()),
        }
    }

    pub fn bearer(token: &str, field: &str) -> Result<Self, FieldError> {
        check_value(token, field)?;
        if token.contains(' ') {
            return Err(FieldError::new(field, "must not contain spaces"));
        }
        Ok(Self::Bearer {
            token: token.to_owned(),
        })
    }

    pub fn header_value(
        header: &str,
        value: &str,
        header_field: &str,
        value_field: &str,
    ) -> Result<Self, FieldError> {
        let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if header.is_empty() || header.len() > MAX_HEADER_NAME_LEN || !header.chars().all(is_token)
        {
            return Err(FieldError::new(
                header_field,
                format!("must be an HTTP header name of 1 to {MAX_HEADER_NAME_LEN} characters"),
            ));
        }
        if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            return Err(FieldError::new(
                header_field,
                "is set by Relais itself and cannot be a credential",
            ));
        }
        check_value(value, value_field)?;
        Ok(Self::Header {
            header: header.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The form it is sealed in.
    pub fn to_stored(&self) -> String {
        match self {
            Self::Bearer { token } => serde_json::json!({"type": "bearer", "token": token}),
            Self::Header { header, value } => {
                serde_json::json!({"type": "header", "header": header, "value": value})
            }
        }
        .to_string()
    }

    pub fn from_stored(stored: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(stored).ok()?;
        match v.get("type")?.as_str()? {
            "bearer" => Some(Self::Bearer {
                token: v.get("token")?.as_str()?.to_owned(),
            }),
            "header" => Some(Self::Header {
                header: v.get("header")?.as_str()?.to_owned(),
                value: v.get("value")?.as_str()?.to_owned(),
            }),
            _ => None,
        }
    }
}

/// Visible ASCII and spaces only: a header value cannot carry a line break or a NUL.
fn check_value(value: &str, field: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() || value.len() > MAX_SECRET_LEN {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_SECRET_LEN} characters"),
        ));
    }
    if !value.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        return Err(FieldError::new(
            field,
            "must be visible ASCII characters (no line breaks or control characters)",
        ));
    }
    Ok(())
}

const MAX_ORIGINS: usize = 20;

/// A secret and where it may be sent: a sync whose endpoint is not one of `origins` is
/// refused it (so a token that may start syncs cannot send a stored secret to a server of
/// its choosing). No origins: any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret: Secret,
    pub origins: Vec<String>,
}

impl Credential {
    pub fn allows(&self, url: &url::Url) -> bool {
        self.origins.is_empty() || self.origins.contains(&url.origin().ascii_serialization())
    }
}

/// Origins (`https://api.example` or with a port), each normalized as browsers write
/// them; nothing but scheme, host and port.
pub fn checked_origins(values: &[String], field: &str) -> Result<Vec<String>, FieldError> {
    if values.len() > MAX_ORIGINS {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_ORIGINS} origins"),
        ));
    }
    let mut origins = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let url = crate::domain::fields::http_url(value, &at)?;
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !bare {
            return Err(FieldError::new(
                at,
                "must be an origin: scheme, host and port only (https://api.example)",
            ));
        }
        let origin = url.origin().ascii_serialization();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_and_never_printed() {
        let bearer = Secret::bearer("abc.def", "token").unwrap();
        assert_eq!(
            bearer.header(),
            ("authorization".into(), "Bearer abc.def".into())
        );
        assert_eq!(format!("{bearer:?}"), "Bearer(…)");
        assert!(Secret::bearer("a\r\nX-Evil: 1", "token").is_err());
        assert!(Secret::bearer("a\0", "token").is_err());
        assert!(Secret::bearer("a b", "token").is_err());
        assert!(Secret::bearer("", "token").is_err());
        let header = Secret::header_value("X-Api-Key", "k", "header", "value").unwrap();
        assert_eq!(header.header(), ("x-api-key".into(), "k".into()));
        assert_eq!(format!("{header:?}"), "Header(X-Api-Key: …)");
        for bad in ["", "X Api", "Host", "content-length", "X:A"] {
            assert_eq!(
                Secret::header_value(bad, "k", "header", "value")
                    .unwrap_err()
                    .field,
                "header",
                "{bad:?}"
            );
        }
        assert_eq!(
            Secret::header_value("X-Key", "é", "header", "value")
                .unwrap_err()
                .field,
            "value"
        );
        for secret in [bearer, header] {
            assert_eq!(Secret::from_stored(&secret.to_stored()), Some(secret));
        }
    }

    #[test]
    fn a_credential_goes_only_to_its_origins() {
        let origins = checked_origins(
            &[
                "https://API.example".into(),
                "http://127.0.0.1:8080/".into(),
            ],
            "origins",
        )
        .unwrap();
        assert_eq!(origins, ["https://api.example", "http://127.0.0.1:8080"]);
        let credential = Credential {
            secret: Secret::bearer("t", "token").unwrap(),
            origins,
        };
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(credential.allows(&url("https://api.example/graphql")));
        assert!(credential.allows(&url("https://api.example:443/x")));
        assert!(!credential.allows(&url("https://api.example:8443/x")));
        assert!(!credential.allows(&url("http://api.example/x")));
        assert!(!credential.allows(&url("https://evil.example/x")));
        let any = Credential {
            origins: vec![],
            ..credential
        };
        assert!(any.allows(&url("https://evil.example/x")));
        for bad in [
            "https://a.example/path",
            "ftp://a.example",
            "https://u@a.example",
        ] {
            assert_eq!(
                checked_origins(&[bad.to_owned()], "origins")
                    .unwrap_err()
                    .field,
                "origins[0]",
                "{bad}"
            );
        }
    }
}
