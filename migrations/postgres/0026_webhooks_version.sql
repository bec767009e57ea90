-- A count of the changes to a project's webhooks that routing reads (every column but
-- the rate limiter's schedule), moved by a trigger so that no write path can forget it.
-- A transaction that reads it in a statement it runs anyway (the group commit's lock)
-- can route with the webhooks this process already read for that count, instead of
-- reading them again.
ALTER TABLE projects ADD COLUMN webhooks_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION webhooks_version_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE projects SET webhooks_version = webhooks_version + 1 WHERE id = OLD.project_id;
    ELSE
        UPDATE projects SET webhooks_version = webhooks_version + 1 WHERE id = NEW.project_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhooks_version
    AFTER INSERT OR DELETE OR UPDATE OF id, tenant_id, project_id, url, name, events, filters,
        retry_policy, headers, secrets, status, disabled_reason, failing_since, created_at,
        updated_at, rate_limit, labels
    ON webhooks FOR EACH ROW EXECUTE FUNCTION webhooks_version_moves();
