-- HTTP workers that Relais pushes tasks to.
CREATE TABLE push_workers (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    url              TEXT NOT NULL,
    operation_types  TEXT NOT NULL,
    max_concurrency  BIGINT NOT NULL,
    secret           TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX push_workers_project ON push_workers (project_id);

-- A push worker reports on its task with a token good for that one operation.
ALTER TABLE operations ADD COLUMN callback_token_hash TEXT;
CREATE INDEX operations_callback_token ON operations (callback_token_hash) WHERE callback_token_hash IS NOT NULL;
CREATE INDEX operations_lease_worker ON operations (lease_worker) WHERE status = 'Running' AND lease_token IS NOT NULL;
