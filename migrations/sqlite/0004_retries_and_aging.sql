-- Retries of a finished operation are new operations linked to it; `resume_from_phase`
-- names where a resumed run starts.
ALTER TABLE operations ADD COLUMN retry_of TEXT;
ALTER TABLE operations ADD COLUMN retry_number BIGINT NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN resume_from_phase TEXT;

-- The rank claims order by: the priority, raised one level per aging interval waited, so
-- a steady stream of urgent work never starves the rest.
-- `queue_order` is first-in, first-out within a rank, finer than the millisecond clock.
ALTER TABLE operations ADD COLUMN queue_rank BIGINT NOT NULL DEFAULT 1;
ALTER TABLE operations ADD COLUMN queue_order BIGINT NOT NULL DEFAULT 0;
UPDATE operations SET queue_rank = priority, queue_order = created_at * 1000;
DROP INDEX operations_claimable;
CREATE INDEX operations_claimable ON operations (project_id, queue_rank DESC, queue_order, id)
    WHERE lease_token IS NULL AND status IN ('Initiated', 'Running');

CREATE INDEX operations_deadline ON operations (timeout_at) WHERE status = 'Running';
CREATE INDEX operations_retry_of ON operations (retry_of) WHERE retry_of IS NOT NULL;
