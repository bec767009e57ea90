-- Batches: operations with dependencies. Members are ordinary operations; the batch row
-- holds what is shared, and serializes the scheduling of its members (row lock).
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    status TEXT NOT NULL,
    failure_policy TEXT NOT NULL,
    callbacks TEXT NOT NULL,
    retry_policy TEXT NOT NULL,
    total INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    retry_number INTEGER NOT NULL DEFAULT 0,
    event_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX batches_listing ON batches (project_id, created_at DESC);

-- Which operation currently stands for each key (a batch retry replaces failed ones).
CREATE TABLE batch_members (
    batch_id TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    member_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    operation_id TEXT NOT NULL,
    dependencies TEXT NOT NULL,
    -- Dependencies that have not completed yet: the member is released at 0.
    waiting INTEGER NOT NULL,
    PRIMARY KEY (batch_id, member_key)
);
CREATE INDEX batch_members_operation ON batch_members (operation_id);

CREATE TABLE batch_edges (
    batch_id TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    upstream_key TEXT NOT NULL,
    downstream_key TEXT NOT NULL,
    PRIMARY KEY (batch_id, upstream_key, downstream_key)
);
CREATE INDEX batch_edges_downstream ON batch_edges (batch_id, downstream_key);

ALTER TABLE operations ADD COLUMN batch_id TEXT;
ALTER TABLE operations ADD COLUMN batch_key TEXT;
-- 0 until the batch scheduler has acted on the member's final state.
ALTER TABLE operations ADD COLUMN batch_settled INTEGER NOT NULL DEFAULT 0;
CREATE INDEX operations_batch_unsettled ON operations (batch_id)
    WHERE batch_id IS NOT NULL AND batch_settled = 0
      AND status IN ('Completed', 'Failed', 'Cancelled', 'Timeout', 'Skipped');
-- Whether a batch still has members that can change, without counting them all.
CREATE INDEX operations_batch_live ON operations (batch_id)
    WHERE batch_id IS NOT NULL AND status IN ('Pending', 'Initiated', 'Running');
