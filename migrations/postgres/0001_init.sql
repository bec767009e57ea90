-- Times are Unix epoch milliseconds (BIGINT) and structured values are JSON text, so
-- PostgreSQL and SQLite share every query; see ARCHITECTURE.md.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX projects_tenant ON projects (tenant_id);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    project_id  TEXT REFERENCES projects (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE operations (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    project_id        TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    operation_type    TEXT NOT NULL,
    operation_name    TEXT NOT NULL,
    description       TEXT,
    priority          BIGINT NOT NULL,
    status            TEXT NOT NULL,
    parameters        TEXT NOT NULL,
    callbacks         TEXT NOT NULL,
    notifications     TEXT NOT NULL,
    timeout_seconds   BIGINT NOT NULL,
    retry_policy      TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    timeout_at        BIGINT NOT NULL,
    available_at      BIGINT NOT NULL,
    progress          TEXT NOT NULL,
    phases            TEXT NOT NULL,
    attempt           BIGINT NOT NULL,
    attempts          TEXT NOT NULL,
    execution_id      TEXT,
    lease_token       TEXT,
    lease_worker      TEXT,
    lease_expires_at  BIGINT,
    cancellation      TEXT,
    result            TEXT,
    error             TEXT,
    event_seq         BIGINT NOT NULL
);
CREATE INDEX operations_listing ON operations (project_id, created_at DESC);
CREATE INDEX operations_claimable ON operations (project_id, priority DESC, created_at)
    WHERE lease_token IS NULL AND status IN ('Initiated', 'Running');
CREATE INDEX operations_leased ON operations (lease_expires_at)
    WHERE status = 'Running' AND lease_token IS NOT NULL;
CREATE INDEX operations_history ON operations (project_id, operation_type, finished_at)
    WHERE status = 'Completed';

CREATE TABLE events (
    position    BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    sequence    BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (subject, sequence)
);
CREATE INDEX events_project ON events (project_id, position);

CREATE TABLE idempotency_keys (
    project_id    TEXT NOT NULL,
    scope         TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status_code   BIGINT NOT NULL,
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (project_id, scope, idem_key)
);
