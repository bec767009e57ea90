-- Slack and email notifications, and alerts when Relais disables an endpoint.

-- One Slack incoming webhook per project. Its URL is a secret (anyone holding it can post
-- to the channel), so it is sealed like signing secrets.
CREATE TABLE slack_integrations (
    project_id       TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    tenant_id        TEXT NOT NULL,
    webhook_url      TEXT NOT NULL,
    status           TEXT NOT NULL,
    disabled_reason  TEXT,
    disabled_at      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- Who hears that Relais disabled one of the project's endpoints.
CREATE TABLE alert_contacts (
    project_id  TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL,
    email       TEXT NOT NULL,
    slack       BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- A Slack message's or a mail's notice and recipient (JSON); NULL for the other channels.
ALTER TABLE deliveries ADD COLUMN message TEXT;

ALTER TABLE batches ADD COLUMN notifications TEXT;

-- Idempotency keys are forgotten after RELAIS_IDEMPOTENCY_RETENTION_HOURS: found by age.
CREATE INDEX idempotency_created ON idempotency_keys (created_at);
