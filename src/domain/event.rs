//! Events: what the outside world is told about a change, in the envelope of DESIGN §5.1.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::ids::{EventId, ProjectId, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    OperationStarted,
    OperationProgress,
    OperationPhaseCompleted,
    OperationCompleted,
    OperationFailed,
    OperationCancelled,
    OperationTimeout,
    BatchStarted,
    BatchOperationCompleted,
    BatchCompleted,
    BatchFailed,
    BatchCancelled,
    WebhookTest,
    SyncRecordChanged,
    /// Relais stopped calling one of the project's endpoints (a webhook, the Slack
    /// integration): its alert contacts hear of it.
    EndpointDisabled,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        Self::OperationStarted,
        Self::OperationProgress,
        Self::OperationPhaseCompleted,
        Self::OperationCompleted,
        Self::OperationFailed,
        Self::OperationCancelled,
        Self::OperationTimeout,
        Self::BatchStarted,
        Self::BatchOperationCompleted,
        Self::BatchCompleted,
        Self::BatchFailed,
        Self::BatchCancelled,
        Self::WebhookTest,
        Self::SyncRecordChanged,
        Self::EndpointDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperationStarted => "operation.started",
            Self::OperationProgress => "operation.progress",
            Self::OperationPhaseCompleted => "operation.phase.completed",
            Self::OperationCompleted => "operation.completed",
            Self::OperationFailed => "operation.failed",
            Self::OperationCancelled => "operation.cancelled",
            Self::OperationTimeout => "operation.timeout",
            Self::BatchStarted => "batch.started",
            Self::BatchOperationCompleted => "batch.operation.completed",
            Self::BatchCompleted => "batch.completed",
            Self::BatchFailed => "batch.failed",
            Self::BatchCancelled => "batch.cancelled",
            Self::WebhookTest => "webhook.test",
            Self::SyncRecordChanged => "sync.record.changed",
            Self::EndpointDisabled => "endpoint.disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// An event a transition produced, before it is given its id and place in the sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub event_type: EventType,
    pub data: Value,
}

impl EventDraft {
    pub fn new(event_type: EventType, data: Value) -> Self {
        Self { event_type, data }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub subject: String,
    /// Grows by one per subject, so receivers can drop a stale event.
    pub sequence: i64,
    pub data: Value,
}

impl Event {
    /// Gives drafts their ids, drawn from `ids` (fresh ones, minted by the caller), and
    /// consecutive sequence numbers after `last_sequence`.
    pub fn seal(
        drafts: Vec<EventDraft>,
        tenant_id: TenantId,
        project_id: ProjectId,
        subject: &str,
        last_sequence: &mut i64,
        now: DateTime<Utc>,
        ids: impl IntoIterator<Item = EventId>,
    ) -> Vec<Event> {
        drafts
            .into_iter()
            .zip(ids)
            .map(|(draft, id)| {
                *last_sequence += 1;
                Event {
                    id,
                    event_type: draft.event_type,
                    timestamp: now,
                    tenant_id,
                    project_id,
                    subject: subject.to_owned(),
                    sequence: *last_sequence,
                    data: draft.data,
                }
            })
            .collect()
    }

    pub fn envelope(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.event_type.as_str(),
            "timestamp": self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            "tenantId": self.tenant_id,
            "projectId": self.project_id,
            "subject": self.subject,
            "sequence": self.sequence,
            "data": self.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_numbers_events_consecutively_after_the_last() {
        let mut seq = 4;
        let drafts = vec![
            EventDraft::new(EventType::OperationProgress, json!({})),
            EventDraft::new(EventType::OperationCompleted, json!({})),
        ];
        let now = Utc::now();
        let events = Event::seal(
            drafts,
            TenantId::new(),
            ProjectId::new(),
            "op-x",
            &mut seq,
            now,
            std::iter::repeat_with(EventId::new),
        );
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(seq, 6);
        let envelope = events[1].envelope();
        assert_eq!(envelope["type"], "operation.completed");
        assert_eq!(envelope["subject"], "op-x");
        assert_eq!(envelope["sequence"], 6);
        assert!(envelope["id"].as_str().unwrap().starts_with("evt_"));
    }

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }
}
