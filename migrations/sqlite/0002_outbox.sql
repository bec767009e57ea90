-- The outbox: webhooks, one delivery row per (event, destination), and every attempt.

ALTER TABLE projects ADD COLUMN callback_secrets TEXT;

-- Order of the events feed: the writing transaction's id, then position. Readers only see
-- transactions older than every one still running, so the feed never skips an event that
-- commits late (see store::events).
ALTER TABLE events ADD COLUMN commit_order BIGINT NOT NULL DEFAULT 0;
CREATE INDEX events_feed ON events (project_id, commit_order, position);
CREATE INDEX events_created ON events (created_at);

CREATE TABLE webhooks (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url              TEXT NOT NULL,
    name             TEXT NOT NULL,
    events           TEXT NOT NULL,
    filters          TEXT NOT NULL,
    retry_policy     TEXT NOT NULL,
    headers          TEXT NOT NULL,
    secrets          TEXT NOT NULL,
    status           TEXT NOT NULL,
    disabled_reason  TEXT,
    failing_since    BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhooks_project ON webhooks (project_id, status);

CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    project_id        TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    channel           TEXT NOT NULL,
    webhook_id        TEXT,
    url               TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          BIGINT NOT NULL,
    next_attempt_at   BIGINT NOT NULL,
    lease_token       TEXT,
    lease_expires_at  BIGINT,
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    delivered_at      BIGINT
);
-- Two lanes: first attempts and retries are claimed separately, so a dead endpoint's
-- retries never hold up fresh events.
CREATE INDEX deliveries_fresh ON deliveries (next_attempt_at) WHERE status = 'Pending' AND attempts = 0;
CREATE INDEX deliveries_retry ON deliveries (next_attempt_at) WHERE status = 'Pending' AND attempts > 0;
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status <> 'Pending';

CREATE TABLE delivery_attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    TEXT NOT NULL,
    webhook_id     TEXT,
    project_id     TEXT NOT NULL,
    attempted_at   BIGINT NOT NULL,
    status_code    BIGINT,
    latency_ms     BIGINT NOT NULL,
    response_body  TEXT,
    error          TEXT,
    success        BIGINT NOT NULL
);
CREATE INDEX delivery_attempts_webhook ON delivery_attempts (webhook_id, id);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
CREATE INDEX delivery_attempts_time ON delivery_attempts (attempted_at);

-- Last progress percentage sent to each webhook for each operation (minProgressIncrement).
CREATE TABLE webhook_progress (
    webhook_id       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    last_percentage  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (webhook_id, subject)
);
