//! The parts of an `OperationSpec` with rules of their own: the callbacks and
//! notifications it carries, its operation type and its timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::event::EventType;
use crate::domain::fields::{checked_name, http_url};
use crate::domain::{notify, FieldError};

pub const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
/// Thirty days: an operation that needs longer should checkpoint and be resumed.
pub const MAX_TIMEOUT_SECONDS: i64 = 30 * 24 * 3600;
pub const MAX_TYPE_LEN: usize = 200;
/// Operation types in one list (a worker's, a lease request's, a webhook's filter): a
/// claim makes one pick per listed type, so the list is kept to what a worker can mean.
pub const MAX_LISTED_TYPES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Callbacks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_completion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
}

impl Callbacks {
    /// The events that go to `onProgress`: the progress callbacks status counts.
    pub const PROGRESS_EVENTS: [EventType; 3] = [
        EventType::OperationStarted,
        EventType::OperationProgress,
        EventType::OperationPhaseCompleted,
    ];

    /// Which callback hears of which event: progress of any kind to `onProgress`, the
    /// end of the run to `onCompletion` (also on cancellation), failures to `onError`.
    pub fn url_for(&self, event: EventType) -> Option<&str> {
        match event {
            _ if Self::PROGRESS_EVENTS.contains(&event) => self.on_progress.as_deref(),
            EventType::OperationCompleted | EventType::OperationCancelled => {
                self.on_completion.as_deref()
            }
            EventType::OperationFailed | EventType::OperationTimeout => self.on_error.as_deref(),
            _ => None,
        }
    }

    pub fn count(&self) -> usize {
        [&self.on_progress, &self.on_completion, &self.on_error]
            .iter()
            .filter(|c| c.is_some())
            .count()
    }

    /// Every callback given is an http(s) URL; `field` is where the callbacks are.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        for (name, url) in [
            ("onProgress", &self.on_progress),
            ("onCompletion", &self.on_completion),
            ("onError", &self.on_error),
        ] {
            if let Some(url) = url {
                http_url(url, &format!("{field}.{name}"))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackNotification {
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub mention_users: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackNotification>,
}

impl Notifications {
    /// Addresses, channel and mentions as `domain::notify` accepts them; `field` is where
    /// the notifications are.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        notify::checked_addresses(&self.email, &format!("{field}.email"))?;
        if let Some(slack) = &self.slack {
            if let Some(channel) = &slack.channel {
                notify::checked_channel(channel, &format!("{field}.slack.channel"))?;
            }
            notify::checked_mentions(&slack.mention_users, &format!("{field}.slack.mentionUsers"))?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.email.is_empty() && self.slack.is_none()
    }

    /// Who hears of `notice`, if anyone asked to.
    pub fn notify(&self, notice: notify::Notice) -> Option<notify::Notify> {
        (!self.is_empty()).then(|| notify::Notify {
            notice,
            email: self.email.clone(),
            slack: self
                .slack
                .as_ref()
                .map(|s| (s.channel.clone(), s.mention_users.clone())),
        })
    }
}

/// Operation types are routing keys: keep them to characters that are safe everywhere.
pub fn checked_operation_type(value: &str, field: &str) -> Result<String, FieldError> {
    let value = checked_name(value, field, MAX_TYPE_LEN)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(FieldError::new(
            field,
            "may contain only letters, digits and `_ - . :`",
        ));
    }
    Ok(value)
}

/// A list of operation types: each checked, a repeated one counted once, at most
/// [`MAX_LISTED_TYPES`] different ones.
pub fn checked_operation_types(types: &[String], field: &str) -> Result<Vec<String>, FieldError> {
    let mut checked: Vec<String> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let t = checked_operation_type(t, &format!("{field}[{i}]"))?;
        if checked.contains(&t) {
            continue;
        }
        if checked.len() == MAX_LISTED_TYPES {
            return Err(FieldError::new(
                field,
                format!("may list at most {MAX_LISTED_TYPES} operation types"),
            ));
        }
        checked.push(t);
    }
    Ok(checked)
}

/// How long a run may last, counted from its first start: whole seconds, from one second
/// to [`MAX_TIMEOUT_SECONDS`].
pub fn checked_timeout(seconds: i64, field: &str) -> Result<Duration, FieldError> {
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
        return Err(FieldError::new(
            field,
            format!("must be a number of seconds between 1 and {MAX_TIMEOUT_SECONDS}"),
        ));
    }
    Ok(Duration::from_secs(seconds as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_types_are_routing_keys() {
        assert_eq!(
            checked_operation_type(" Report.v2 ", "t").unwrap(),
            "Report.v2"
        );
        assert_eq!(
            checked_operation_type("has space", "t").unwrap_err().field,
            "t"
        );
        assert!(checked_operation_type(&"x".repeat(MAX_TYPE_LEN + 1), "t").is_err());
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(checked_timeout(1, "t").unwrap(), Duration::from_secs(1));
        assert!(checked_timeout(MAX_TIMEOUT_SECONDS, "t").is_ok());
        assert_eq!(checked_timeout(0, "t").unwrap_err().field, "t");
        assert!(checked_timeout(-5, "t").is_err());
        assert!(checked_timeout(MAX_TIMEOUT_SECONDS + 1, "t").is_err());
    }

    #[test]
    fn callbacks_and_notifications_name_the_bad_entry() {
        let callbacks = Callbacks {
            on_error: Some("ftp://x".into()),
            ..Default::default()
        };
        assert_eq!(
            callbacks.check("callbacks").unwrap_err().field,
            "callbacks.onError"
        );
        let notifications = Notifications {
            email: vec!["a@b.io".into(), "nobody".into()],
            slack: None,
        };
        assert_eq!(
            notifications.check("notifications").unwrap_err().field,
            "notifications.email[1]"
        );
    }
}
