-- A count of the changes to a project's webhooks that routing reads (every column but
-- the rate limiter's schedule), moved by triggers so that no write path can forget it
-- (see PostgreSQL's migration 0026).
ALTER TABLE projects ADD COLUMN webhooks_version BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER webhooks_version_insert AFTER INSERT ON webhooks
BEGIN
    UPDATE projects SET webhooks_version = webhooks_version + 1 WHERE id = NEW.project_id;
END;

CREATE TRIGGER webhooks_version_delete AFTER DELETE ON webhooks
BEGIN
    UPDATE projects SET webhooks_version = webhooks_version + 1 WHERE id = OLD.project_id;
END;

CREATE TRIGGER webhooks_version_update
    AFTER UPDATE OF id, tenant_id, project_id, url, name, events, filters, retry_policy,
        headers, secrets, status, disabled_reason, failing_since, created_at, updated_at,
        rate_limit, labels
    ON webhooks
BEGIN
    UPDATE projects SET webhooks_version = webhooks_version + 1 WHERE id = NEW.project_id;
END;
