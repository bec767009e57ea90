-- Claims order by (priority DESC, created_at, id); with id in the index the database
-- reads the most urgent rows in order and stops at the limit instead of sorting them all.
DROP INDEX operations_claimable;
CREATE INDEX operations_claimable ON operations (project_id, priority DESC, created_at, id)
    WHERE lease_token IS NULL AND status IN ('Initiated', 'Running');
