//! Identifiers. Each kind of id is its own type so a tenant id can never be passed where an
//! operation id is expected; the textual forms are the ones clients see in the API.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The given text is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}: expected {expected}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub expected: &'static str,
    pub value: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Time-ordered (UUIDv7, increasing within a process), so listings that sort by
            /// creation time break millisecond ties in creation order by id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn uuid(&self) -> Uuid {
                self.0
            }

            /// The form stored in the database: the bare hyphenated UUID.
            pub fn db(&self) -> String {
                self.0.hyphenated().to_string()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// Accepts the prefixed form clients see (`op-…`) and the bare GUID.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bare = s.strip_prefix($prefix).unwrap_or(s);
                Uuid::try_parse(bare).map(Self).map_err(|_| InvalidId {
                    kind: $kind,
                    expected: if $prefix.is_empty() {
                        "a GUID"
                    } else {
                        concat!("a GUID (optionally prefixed with `", $prefix, "`)")
                    },
                    value: s.chars().take(80).collect(),
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

uuid_id!(
    /// A tenant: the unit of isolation. Shown as a bare GUID.
    TenantId,
    "tenant id",
    ""
);
uuid_id!(
    /// A project inside a tenant. Shown as a bare GUID.
    ProjectId,
    "project id",
    ""
);
uuid_id!(
    /// An operation, shown as `op-<guid>` as in the seed API.
    OperationId,
    "operation id",
    "op-"
);
uuid_id!(
    /// One execution attempt of an operation, shown as `exec-<guid>`.
    ExecutionId,
    "execution id",
    "exec-"
);
uuid_id!(
    /// A webhook endpoint, shown as `wh-<guid>` as in the seed API.
    WebhookId,
    "webhook id",
    "wh-"
);
uuid_id!(
    /// One message to one destination (a webhook or a callback URL).
    DeliveryId,
    "delivery id",
    "dlv-"
);
uuid_id!(
    /// A push worker, shown as `wkr-<guid>`.
    PushWorkerId,
    "worker id",
    "wkr-"
);
uuid_id!(
    /// A batch of operations with dependencies, shown as `batch-<guid>` as in the seed API.
    BatchId,
    "batch id",
    "batch-"
);
uuid_id!(
    /// An API token's row id (never the secret itself).
    TokenId,
    "token id",
    "tok-"
);
uuid_id!(
    /// An OAuth2 client (client credentials), shown as `client-<guid>`: its `client_id`.
    ClientId,
    "client id",
    "client-"
);
uuid_id!(
    /// A portal link handed to a webhook endpoint's owner, shown as `portal-<guid>`.
    PortalLinkId,
    "portal link id",
    "portal-"
);
uuid_id!(
    /// One running process of Relais, new at each start (`/v1/status`'s `id`).
    InstanceId,
    "instance id",
    "relais-"
);
uuid_id!(
    /// A data file uploaded for a CSPro breakout, kept in the database in chunks.
    UploadId,
    "upload id",
    "upl-"
);
uuid_id!(
    /// A notebook: a saved pipeline of blocks (seed 003). Shown as a bare GUID, as the
    /// seed's clients parse it (`Guid NotebookId`).
    NotebookId,
    "notebook id",
    ""
);
uuid_id!(
    /// A block of a notebook. Shown as a bare GUID, as the seed shows it (`Guid BlockId`).
    BlockId,
    "block id",
    ""
);
uuid_id!(
    /// One run of a notebook (a batch), shown as `run-<guid>`.
    NotebookRunId,
    "run id",
    "run-"
);

/// A tenant's number for the `/v1` facade of seed 002 (`X-Tenant-Id`): given by the
/// database when the tenant is created (never minted here), never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct VitamTenantId(i64);

impl VitamTenantId {
    /// The largest number a JSON client reads exactly (2^53 - 1): numbers are sent as
    /// JSON numbers, and many clients hold them as doubles.
    pub const MAX: i64 = (1 << 53) - 1;

    /// A number the database gave, if a tenant may have it.
    pub fn from_db(n: i64) -> Option<Self> {
        (0..=Self::MAX).contains(&n).then_some(Self(n))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for VitamTenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// As a client writes it in `X-Tenant-Id`: a decimal integer from 0 to
/// [`VitamTenantId::MAX`], digits only (no sign, no spaces).
impl FromStr for VitamTenantId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidId {
            kind: "tenant number",
            expected: "a whole number from 0 to 9007199254740991",
            value: s.chars().take(80).collect(),
        };
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        s.parse::<i64>()
            .ok()
            .and_then(Self::from_db)
            .ok_or_else(invalid)
    }
}

/// Event ids follow the Standard Webhooks habit of a type prefix and an opaque suffix;
/// they double as the `webhook-id` of every delivery of that event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EventId(String);

impl EventId {
    pub fn new() -> Self {
        Self(format!("evt_{}", Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_db(s: String) -> Self {
        Self(s)
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The secret a worker must present with every report about the operation it leased.
/// A fresh one is minted per lease, so a worker whose lease was taken back cannot report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(String);

impl LeaseToken {
    pub fn generate() -> Self {
        Self(format!("lease_{}", Uuid::new_v4().simple()))
    }

    pub fn from_string(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_round_trip_with_and_without_prefix() {
        let id = OperationId::new();
        let shown = id.to_string();
        assert!(shown.starts_with("op-"));
        assert_eq!(shown.parse::<OperationId>().unwrap(), id);
        assert_eq!(id.uuid().to_string().parse::<OperationId>().unwrap(), id);
    }

    #[test]
    fn ids_stored_in_creation_order_sort_in_creation_order() {
        let created: Vec<String> = (0..1000).map(|_| BatchId::new().db()).collect();
        let mut sorted = created.clone();
        sorted.sort();
        assert_eq!(sorted, created);
    }

    #[test]
    fn non_guids_are_rejected_with_the_kind_named() {
        let err = "op-123".parse::<OperationId>().unwrap_err();
        assert_eq!(err.kind, "operation id");
        let err = "not-a-guid".parse::<TenantId>().unwrap_err();
        assert_eq!(err.expected, "a GUID", "no empty prefix to mention");
        assert!(err.to_string().contains("a GUID"));
        assert!("".parse::<ProjectId>().is_err());
    }

    #[test]
    fn tenant_numbers_are_plain_non_negative_integers_a_json_client_reads_exactly() {
        assert_eq!("0".parse::<VitamTenantId>().unwrap().get(), 0);
        assert_eq!("42".parse::<VitamTenantId>().unwrap().get(), 42);
        assert_eq!(
            "9007199254740991".parse::<VitamTenantId>().unwrap().get(),
            VitamTenantId::MAX
        );
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "0x10",
            "9007199254740992",
            "99999999999999999999",
            "٣",
        ] {
            let err = bad.parse::<VitamTenantId>().unwrap_err();
            assert_eq!(err.kind, "tenant number", "{bad:?}");
        }
        assert_eq!(VitamTenantId::from_db(-1), None);
    }

    #[test]
    fn event_ids_are_prefixed_and_unique() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a.as_str().starts_with("evt_"));
        assert_ne!(a, b);
    }
}
